"""Regenerate docs/results.md: every router on the shipped datasets, RouterBench's protocol.

    .venv/bin/python -m bench.results [--data DIR ...] [--home DIR] [--out docs/results.md]

For each ``--data`` folder (default: both shipped datasets, ``data/routerbench_subset`` and
``data/llmrouter_9models``) the RouterBench-format files are ingested into their own workspace under ``--home``
(default: a fresh temp folder; pass an existing one to reuse its cached embeddings; each dataset gets the
subfolder named after its folder), embedded, every router is fitted with the default seed on the dataset's own
train split and evaluated on its test split, and the page gets one section per dataset: the per-eval mean table,
the pooled block (the whole test split as one backlog, from metrics.json), the per-eval AIQ and the number of
distinct prompt vectors per eval. Vectors are the default representation (templates stripped, long prompts read
in up to 8 windows); where templates were learned, the dataset is also run on raw prompts cut at the encoder's
window (``ROUTER_EMBED_TEMPLATES=false ROUTER_EMBED_MAX_CHUNKS=1``, subfolder ``<dataset>-raw``) and compared.
Each dataset's report folder (metrics.json, PNGs) is under DIR/<dataset>/reports/latest.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = (ROOT / "data" / "routerbench_subset", ROOT / "data" / "llmrouter_9models")
BASELINES = ("knn5", "knn10", "knn40", "mlp")  # RouterBench's own baselines: the target's denominator
#: Per dataset folder: the per-eval AIQ ratio over the best baseline that the attention router is held to and,
#: where set, the largest pooled cost ratio (cost at the best single model's quality ÷ that model's cost).
TARGETS: dict[str, dict[str, float]] = {
    "routerbench_subset": {"ratio": 1.066},
    "llmrouter_9models": {"ratio": 1.03, "pooled_cost_ratio": 0.25},
}
DESCRIPTIONS = {
    "routerbench_subset": "RouterBench 0-shot rows of arc-challenge, mbpp and winogrande, 11 models (data/README.md)",
    "llmrouter_9models": "nine open models' graded answers to short distinct questions of 14 tasks; real quality, "
                         "costs estimated from prompt length and list prices (data/llmrouter_9models/README.md)",
}


def distinct_vectors(train: Any, test: Any) -> dict[str, tuple[int, int]]:
    """Per eval: (prompts, distinct prompt vectors) over train and test, vectors rounded to 5 decimals."""
    X = np.concatenate([train.X, test.X])
    evals = np.concatenate([train.eval_names, test.eval_names]).astype(str)
    return {str(ev): (int((evals == ev).sum()), int(np.unique(np.round(X[evals == ev], 5), axis=0).shape[0]))
            for ev in np.unique(evals)}


def run_dataset(source: Path, home: Path, templates: bool = True
                ) -> tuple[Any, dict[str, tuple[int, int]], dict[str, float], str]:
    """Ingest, embed, fit and evaluate one dataset in workspace ``home``: the run, distinct vectors per eval,
    timings and the encoder's name. ``templates``: the default, template-aware representation (else raw prompts cut
    at the encoder's window)."""
    from router.embeddings import embed_missing
    from router.ingest import discover, ingest_file
    from router.pipeline import train_and_evaluate
    from router.settings import Settings
    from router.storage import open_store
    from router.validation import docs_batch

    from bench.subset import RAW

    representation = {} if templates else RAW
    settings = Settings(home=home, **representation)
    settings.ensure_workspace()
    with open_store(settings) as con:
        files, _ = discover([source], "routerbench")
        with docs_batch(settings.gx_docs, settings.gx_docs_keep):
            for path in files:
                ingest_file(con, "routerbench", path, settings)
        start = time.perf_counter()
        embedded = embed_missing(con, settings)
        timings = {"embed_s": time.perf_counter() - start, "embedded": embedded.embedded, "cached": embedded.already,
                   "templates": embedded.templates}
        run = train_and_evaluate(con, settings, dataset=f"data/{source.name}")
    return run, distinct_vectors(run.train, run.test), timings, settings.encoder


def section(source: Path, run: Any, distinct: dict[str, tuple[int, int]], timings: dict[str, float],
            encoder: str, seed: int) -> list[str]:
    """The markdown section of one dataset."""
    m = run.metrics
    routers = m["routers"]
    best_name = max(BASELINES, key=lambda n: routers[n]["aiq"])
    single = m["best_single_model"]
    target = TARGETS.get(source.name, {})
    evals = sorted(m["per_eval"])
    lines = [
        f"## data/{source.name}",
        "",
        f"{DESCRIPTIONS.get(source.name, 'RouterBench-format files')}. Its own train/test files: {run.train.n} train",
        f"prompts, {run.test.n} test prompts, {len(evals)} evals, {len(run.test.models)} models. Encoder `{encoder}`,"
        f" seed {seed}.",
        "",
        "### Per eval, mean over evals",
        "",
        "| router | AIQ | max perf | cost at max perf ($) | fit (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in sorted(routers.items(), key=lambda kv: -kv[1]["aiq"]):
        fit = run.seconds.get(f"fit.{name.removesuffix('_exp')}")
        lines.append(f"| {name} | {r['aiq']:.4f} | {r['max_perf']:.4f} | {r['max_perf_cost']:.4f} | "
                     f"{'' if fit is None else f'{fit:.1f}'} |")
    lines += ["", f"Best single model: {single['name']} (mean perf {single['perf']:.4f}, mean cost "
                  f"${single['cost']:.4f} per eval set).", ""]

    pooled = m["pooled"]
    pbest = pooled["best_single_model"]
    lines += [
        "### Pooled: the whole test split as one backlog",
        "",
        "Cost ratios: the hull's cost to reach the best single model's pooled quality (or 95 % of it) ÷ that",
        "model's cost; quality at half cost: the hull's quality at half of that model's cost (`never`/`–`: not on"
        " the curve).",
        "",
        "| router | AIQ | max perf | cost ratio at best quality | cost ratio at 95 % | quality at half cost |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def cell(value: float | None, fmt: str, missing: str) -> str:
        return missing if value is None else format(value, fmt)

    for name, r in sorted(pooled["routers"].items(), key=lambda kv: -kv[1]["aiq"]):
        lines.append(f"| {name} | {r['aiq']:.4f} | {r['max_perf']:.4f} | "
                     f"{cell(r['cost_ratio_at_best_quality'], '.3f', 'never')} | "
                     f"{cell(r['cost_ratio_at_95'], '.3f', 'never')} | {cell(r['quality_at_half_cost'], '.4f', '–')} |")
    lines += ["", f"Best single model on the pooled split: {pbest['name']} (perf {pbest['perf']:.4f}, cost "
                  f"${pbest['cost']:.4f}).", ""]

    ratio = routers["attention"]["aiq"] / routers[best_name]["aiq"]
    lines += ["### Against the targets", ""]
    if "ratio" in target:
        lines.append(f"- `attention` per-eval AIQ / best of knn5, knn10, knn40, mlp (`{best_name}`): **{ratio:.3f}×** "
                     f"(target ≥ {target['ratio']}×: {'met' if ratio >= target['ratio'] else 'not met'}); "
                     f"`attention_exp`: {routers['attention_exp']['aiq'] / routers[best_name]['aiq']:.3f}×.")
    lines.append(f"- `attention` vs `zero_router` (the hull of the single models, no prompt information): "
                 f"{routers['attention']['aiq']:.4f} vs {routers['zero_router']['aiq']:.4f} "
                 f"(`attention_exp` {routers['attention_exp']['aiq']:.4f}).")
    lines.append(f"- `attention` max perf {routers['attention']['max_perf']:.4f} vs best single model "
                 f"{single['perf']:.4f}.")
    if "pooled_cost_ratio" in target:
        ratios = {n: r["cost_ratio_at_best_quality"] for n, r in pooled["routers"].items() if n != "oracle"}
        reached = {n: v for n, v in ratios.items() if v is not None}
        lowest = min(reached, key=reached.get) if reached else None
        for name in ("attention", "attention_exp"):
            v = ratios.get(name)
            lines.append(f"- pooled `{name}` reaches the best single model's quality at "
                         f"{'never' if v is None else f'{v:.3f}'} of its cost (target ≤ {target['pooled_cost_ratio']}"
                         f", the lowest of all routers but the oracle: lowest here is `{lowest}`).")
    lines += [
        "",
        "### AIQ per eval",
        "",
        "| router | " + " | ".join(evals) + " |",
        "|---|" + "---:|" * len(evals),
    ]
    for name in sorted(routers, key=lambda n: -routers[n]["aiq"]):
        lines.append(f"| {name} | " + " | ".join(f"{m['per_eval'][e][name]['aiq']:.4f}" for e in evals) + " |")
    lines += [
        "",
        "### Distinct prompt vectors per eval (train + test)",
        "",
        "| eval | prompts | distinct vectors |",
        "|---|---:|---:|",
    ]
    for ev, (n, d) in sorted(distinct.items()):
        lines.append(f"| {ev} | {n} | {d} |")
    few = sorted(ev for ev, (n, d) in distinct.items() if d <= 2 < n)
    if few:
        lines += [
            "",
            f"In {', '.join(few)} every prompt gets one of at most two vectors (a shared few-shot opening and the",
            "encoder's 256-word-piece window): there no router can do better than re-creating the single-model",
            "points, i.e. the zero router's hull, and kNN's neighbours are arbitrary ties. The evaluation is per",
            "eval, so any margin over the baselines comes from the other evals.",
        ]
    lines += [
        "",
        f"Before encoding, the embed step strips the blocks most prompts of an eval share ({timings['templates']} "
        "learned templates; docs/router.md, \"What a prompt's vector is made of\"), so the distinct vectors above are",
        "those of the prompts' distinctive parts.",
        "",
        f"Timings (2 CPU cores, shared): embedding {timings['embedded']} new prompts took {timings['embed_s']:.0f} s "
        f"({timings['cached']} were cached); fitting every router took {sum(run.seconds.values()):.0f} s.",
        "",
    ]
    return lines


def default_section(run: Any, distinct: dict[str, tuple[int, int]], source: Path) -> list[str]:
    """The comparison with raw prompts cut at the encoder's window (``ROUTER_EMBED_TEMPLATES=false
    ROUTER_EMBED_MAX_CHUNKS=1``), for a dataset where templates were learned."""
    m = run.metrics
    routers, pooled = m["routers"], m["pooled"]["routers"]
    best_name = max(BASELINES, key=lambda n: routers[n]["aiq"])
    lines = [
        "### With raw prompts (`ROUTER_EMBED_TEMPLATES=false ROUTER_EMBED_MAX_CHUNKS=1`)",
        "",
        "The same routers fitted and evaluated on vectors of the full prompt texts cut at the encoder's window (256",
        f"word pieces), as `routerctl evaluate --data data/{source.name}` gives them with those settings; distinct "
        "vectors per eval: "
        + ", ".join(f"{ev} {d} of {n}" for ev, (n, d) in sorted(distinct.items())) + ".",
        "",
        "| router | per-eval AIQ | pooled AIQ | pooled cost ratio at best quality |",
        "|---|---:|---:|---:|",
    ]
    for name, r in sorted(routers.items(), key=lambda kv: -kv[1]["aiq"]):
        ratio = pooled[name]["cost_ratio_at_best_quality"]
        lines.append(f"| {name} | {r['aiq']:.4f} | {pooled[name]['aiq']:.4f} | "
                     f"{'never' if ratio is None else f'{ratio:.3f}'} |")
    best = routers[best_name]["aiq"]
    lines += ["", f"`attention` per-eval AIQ / `{best_name}`: {routers['attention']['aiq'] / best:.3f}× "
                  f"(`attention_exp` {routers['attention_exp']['aiq'] / best:.3f}×).", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", help="RouterBench-format folder (repeatable; "
                        "default: data/routerbench_subset and data/llmrouter_9models)")
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = args.home or Path(tempfile.mkdtemp(prefix="router-results-"))
    sources = [Path(d).resolve() for d in (args.data or DATASETS)]

    from router.settings import Settings

    seed = Settings(home=home).seed
    lines = [
        "# Results on the shipped datasets",
        "",
        "Generated by `.venv/bin/python -m bench.results"
        + "".join(f" --data {os.path.relpath(s, ROOT)}" for s in sources if args.data)
        + "` (this page is its output; rerun it to regenerate).",
        "Protocol: docs/evaluation.md (32 willingness-to-pay λ, perf = mean score, cost = sum, AIQ = area under",
        "the non-decreasing convex hull extended flat to the eval's max cost, ÷ max cost; mean over evals; the",
        "pooled block treats the whole test split as one eval). `attention_exp` is the same fitted router chosen",
        "with the exponential reward (docs/rewards.md). Each dataset is ingested into its own workspace.",
        "",
    ]
    for source in sources:
        run, distinct, timings, encoder = run_dataset(source, home / source.name)
        lines += section(source, run, distinct, timings, encoder, seed)
        if timings["templates"]:  # the representation changed something: show the default one beside it
            raw, raw_distinct, _, _ = run_dataset(source, home / f"{source.name}-raw", templates=False)
            lines += default_section(raw, raw_distinct, source)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
