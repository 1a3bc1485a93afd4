"""The table of docs/registry.md, "Why the first version's bar allows for noise": for every fit seed, the attention
router's test AIQ against the best baseline's, the standard error of their difference and the gate's verdict with
the strict bar and with the noise allowance (for the best of five baselines); then, for docs/router.md, the
attention router's pooled cost ratio at the best single model's quality per fit seed::

    python -m bench.gate_noise /tmp/rb/subset_raw.npz [/tmp/rb/subset.npz ...] [--seeds 42 7 123 1 2]

The ``.npz`` files come from ``python -m bench.subset`` (template-stripped vectors; with ``--raw``, vectors of the
raw prompts). Every router of the nightly's gate (``attention`` and
``router.pipeline.BASELINES``) is fitted on the train rows with the seed and evaluated on the test rows
(``router.evaluation.evaluate``, linear reward); the standard error is
``router.evaluation.paired_aiq_se(..., seed=S)``, as the nightly computes it with ``ROUTER_SEED=S``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.tuning import load_npz
from router.evaluation import evaluate, noise_z, paired_aiq_se
from router.pipeline import ATTENTION, BASELINES
from router.registry.gate import decide
from router.routers import get_router

SANE = {"loads": True, "pool_matches": True, "finite": True}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", type=Path, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123, 1, 2])
    args = parser.parse_args(argv)
    print("| vectors | seed | attention AIQ | best baseline | difference | its standard error | strict bar "
          "| with the noise |")
    print("|---|---:|---:|---|---:|---:|---|---|")
    pooled: dict[str, list[str]] = {}
    for path in args.npz:
        train, test = load_npz(path)
        for seed in args.seeds:
            predictions = {}
            for name in (ATTENTION, *BASELINES):
                router = get_router(name).fit(train, seed=seed)
                predictions[name] = (*router.predict(test.X, test.prompt_chars, test.eval_names), "linear")
            metrics = evaluate(predictions, test.quality, test.cost, test.eval_names, test.models).metrics
            aiqs = metrics["routers"]
            ratio = metrics["pooled"]["routers"][ATTENTION]["cost_ratio_at_best_quality"]
            pooled.setdefault(path.name, []).append("never" if ratio is None else f"{ratio:.3f}")
            best = max(BASELINES, key=lambda n: aiqs[n]["aiq"])
            challenger, baseline = aiqs[ATTENTION]["aiq"], aiqs[best]["aiq"]
            se = paired_aiq_se(predictions[ATTENTION], predictions[best], test.quality, test.cost, test.eval_names,
                               seed=seed)
            verdicts = [decide(challenger, None, baseline, 0.0, challenger_version=1, champion_version=None,
                               checks=SANE, baseline_se=s, baselines=len(BASELINES)).promoted for s in (None, se)]
            shown = ["promoted" if v else "rejected" for v in verdicts]
            print(f"| {path.name} | {seed} | {challenger:.4f} | {best} {baseline:.4f} | {challenger - baseline:+.4f} "
                  f"| {se:.4f} | {shown[0]} | {shown[1]} |", flush=True)
    print(f"\nnoise allowance: {noise_z(len(BASELINES)):g} standard errors of the difference (the best of "
          f"{len(BASELINES)} baselines)")
    seeds = " / ".join(map(str, args.seeds))
    print(f"\nattention, pooled cost ratio at the best single model's quality, seeds {seeds}:")
    for name, cells in pooled.items():
        print(f"{name}: {' / '.join(cells)}")


if __name__ == "__main__":
    main()
