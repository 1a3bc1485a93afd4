"""Every figure of ``docs/performance.md``: ratios against floors measured in the same run (same rows).

Usage::

    python bench/perf.py --size full                  # the whole set (~15 min on 2 CPU cores)
    python bench/perf.py --size small --only route    # one bench, CI size

Same as ``routerctl bench``; the benches live in ``router/bench.py`` (each phase in its own child process).
"""

from router.bench import main

if __name__ == "__main__":
    main()
