"""Developer tooling, outside the library (``router/`` imports nothing from here): the speed and scale
benchmarks and the router experiments behind the figures of ``docs/performance.md`` and ``docs/router.md``.

Run from a checkout's root (``docs/performance.md`` lists what each prints)::

    python -m bench.perf --size small|full [--only NAME]     # every ratio (same as ``routerctl bench``)
    python -m bench.subset /tmp/rb/subset.npz [--raw]        # the embedded RouterBench subset for the three below
    python -m bench.tuning /tmp/rb/subset.npz --threads 2    # attention router's cross-validated grid
    python -m bench.ablations /tmp/rb/subset.npz             # input and optimiser changes outside its config
    python -m bench.router_experiments /tmp/rb/subset.npz    # routers' test AIQ by configuration
    python -m bench.ingest_bound_ids | ingest_history | jsonl_bad_lines | snapshot_history | vector_storage | results

The benches' SQL is in ``bench/sql/`` (read with :mod:`bench.store`), not in the library's ``sql/``.
"""
