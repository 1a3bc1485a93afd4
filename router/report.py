"""Evaluation reports: ``metrics.json``, one quality–cost plot per eval set, and ``report.md``.

Plots are drawn on matplotlib's Agg canvas directly (no ``pyplot``, no global backend switch), so writing a
report is safe in headless workers and threads.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from router.evaluation import ORACLE, ZERO_ROUTER, Curve, EvaluationResult

__all__ = ["copy_to_latest", "plot_eval", "plot_pooled", "write_report"]

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
POOLED_PLOT = "pooled.png"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "all"


def _plot_files(eval_names: tuple[str, ...]) -> dict[str, str]:
    """A distinct, filesystem-safe PNG name per eval set."""
    files: dict[str, str] = {}
    used: set[str] = set()
    for ev in eval_names:
        stem, k = f"eval_{_slug(ev)}", 1
        name = f"{stem}.png"
        while name in used:
            k += 1
            name = f"{stem}_{k}.png"
        used.add(name)
        files[ev] = name
    return files


def plot_eval(result: EvaluationResult, eval_name: str, path: Path) -> Path:
    """Draw one eval set's quality–cost plot to ``path`` (PNG).

    Every router's hull is a line (dotted where it is extended flat to the AIQ's ``max_cost``) over its raw
    points as markers; ``zero_router`` is a dashed grey hull through the single models, which are labelled
    black crosses; the oracle is a star. The cost axis is logarithmic when every plotted cost is positive.
    """
    return _plot_curves(result.curves[eval_name], result.single_models[eval_name],
                        float(result.metrics["aiq_max_cost"][eval_name]), result.metrics.get("dataset", ""),
                        eval_name, path)


def plot_pooled(result: EvaluationResult, path: Path) -> Path:
    """The pooled quality–cost plot (whole test split as one backlog), drawn like :func:`plot_eval`, with the
    best single model ringed and dashed guides at its quality and cost."""
    pooled = result.metrics["pooled"]
    best = pooled["best_single_model"]
    return _plot_curves(result.pooled, result.pooled_single_models, float(pooled["aiq_max_cost"]),
                        result.metrics.get("dataset", ""), "whole test split", path,
                        best=(float(best["cost"]), float(best["perf"]), str(best["name"])))


def _plot_curves(curves: dict[str, Curve], singles: dict[str, Curve], max_cost: float, dataset: str,
                 eval_name: str, path: Path, best: tuple[float, float, str] | None = None) -> Path:
    fig = Figure(figsize=(10, 6.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    palette = colormaps["tab10"]
    routers = [name for name in curves if name not in (ZERO_ROUTER, ORACLE)]

    def draw_hull(curve: Curve, color: object, style: str, label: str) -> None:
        ax.plot(curve.hull[:, 0], curve.hull[:, 1], style, color=color, lw=1.8, label=label)
        last_cost, last_perf = curve.hull[-1]
        if max_cost > last_cost:
            ax.plot([last_cost, max_cost], [last_perf, last_perf], ":", color=color, lw=1.2)

    for k, name in enumerate(routers):
        curve, color = curves[name], palette(k % 10)
        draw_hull(curve, color, "-", f"{name} (AIQ {curve.aiq:.3f})")
        ax.scatter(curve.points[:, 0], curve.points[:, 1], s=14, color=color, alpha=0.45, zorder=3)
    zero = curves[ZERO_ROUTER]
    draw_hull(zero, "0.5", "--", f"{ZERO_ROUTER} (AIQ {zero.aiq:.3f})")
    for model, single in singles.items():
        cost, perf = single.points[0]
        ax.scatter([cost], [perf], marker="x", s=40, color="black", zorder=4)
        ax.annotate(model, (cost, perf), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if best is not None:
        cost, perf, name = best
        ax.scatter([cost], [perf], s=160, facecolors="none", edgecolors="red", linewidths=1.6, zorder=6,
                   label=f"best single model: {name}")
        ax.axhline(perf, color="red", lw=0.8, ls="--", alpha=0.6)
        ax.axvline(cost, color="red", lw=0.8, ls="--", alpha=0.6)
    oracle = curves[ORACLE]
    ax.scatter(
        oracle.points[:, 0], oracle.points[:, 1], marker="*", s=220, color="gold", edgecolors="black", zorder=5,
        label=f"{ORACLE} (AIQ {oracle.aiq:.3f})",
    )  # fmt: skip

    all_costs = np.concatenate([c.points[:, 0] for c in curves.values()])
    if (all_costs > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel("total cost on the eval set ($)" if best is None else "total cost on the test split ($)")
    ax.set_ylabel("mean true quality")
    ax.set_title(f"{dataset} — {eval_name}" if dataset else eval_name)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _md(text: object) -> str:
    return str(text).replace("|", r"\|")


def _router_table(rows: dict[str, dict[str, float]], rewards: dict[str, str]) -> list[str]:
    lines = [
        "| router | reward | AIQ | max perf | cost at max perf ($) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, m in sorted(rows.items(), key=lambda kv: (-kv[1]["aiq"], kv[0])):
        lines.append(
            f"| {_md(name)} | {_md(rewards.get(name, '—'))} | {m['aiq']:.4f} | {m['max_perf']:.4f} "
            f"| {m['max_perf_cost']:.4g} |"
        )
    return lines


def _ratio(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f}"


def _pooled_table(result: EvaluationResult) -> list[str]:
    pooled = result.metrics["pooled"]
    best = pooled["best_single_model"]
    lines = [
        f"The whole test split as one backlog (perf = mean true quality over all {result.metrics['n_test']} test "
        f"prompts, cost = their total cost; AIQ cost range 0 … ${pooled['aiq_max_cost']:.4g}). Best single "
        f"model: {_md(best['name'])} (perf {best['perf']:.4f}, cost ${best['cost']:.4g}). Cost ratios are the "
        "cheapest point of the router's hull reaching that quality, divided by the best single model's cost.",
        "",
        "| router | reward | AIQ | max perf | cost at max perf ($) | cost ratio at best quality "
        "| cost ratio at 95% | quality at half cost |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = sorted(pooled["routers"].items(), key=lambda kv: (-kv[1]["aiq"], kv[0]))
    for name, m in rows:
        half = m["quality_at_half_cost"]
        lines.append(
            f"| {_md(name)} | {_md(result.rewards.get(name, '—'))} | {m['aiq']:.4f} | {m['max_perf']:.4f} "
            f"| {m['max_perf_cost']:.4g} | {_ratio(m['cost_ratio_at_best_quality'])} "
            f"| {_ratio(m['cost_ratio_at_95'])} | {'–' if half is None else f'{half:.4f}'} |"
        )
    return lines


def _render_markdown(result: EvaluationResult, plots: dict[str, str]) -> str:
    m = result.metrics
    best = m["best_single_model"]
    lines = [
        f"# Evaluation report{': ' + _md(m['dataset']) if m['dataset'] else ''}",
        "",
        f"- train rows: {m['n_train']}, test rows: {m['n_test']}",
        f"- eval sets: {', '.join(_md(ev) or '(unnamed)' for ev in result.eval_names)}",
        f"- best single model: {_md(best['name'])} (perf {best['perf']:.4f}, cost ${best['cost']:.4g})",
        "",
        "AIQ: area under each router's non-decreasing concave quality–cost hull, extended flat to the eval's",
        "`aiq_max_cost`, divided by it; perf = mean true quality, cost = total true cost of the eval set.",
        "Router values are unweighted means over eval sets (see `docs/evaluation.md`).",
        "",
        "## All eval sets (mean)",
        "",
        *_router_table(m["routers"], result.rewards),
        "",
        "## Pooled: the whole test split as one backlog",
        "",
        *_pooled_table(result),
        "",
        f"![pooled]({POOLED_PLOT})",
        "",
        "## Per eval set",
    ]
    for ev in result.eval_names:
        singles = sorted(
            result.single_models[ev].items(), key=lambda kv: (-kv[1].max_perf, kv[1].max_perf_cost, kv[0])
        )
        lines += [
            "",
            f"### {_md(ev) or '(unnamed)'}",
            "",
            f"AIQ cost range: 0 … ${m['aiq_max_cost'][ev]:.4g}",
            "",
            *_router_table(m["per_eval"][ev], result.rewards),
            "",
            "| single model | perf | cost ($) |",
            "|---|---:|---:|",
            *(f"| {_md(name)} | {c.max_perf:.4f} | {c.max_perf_cost:.4g} |" for name, c in singles),
            "",
            f"![{_md(ev) or 'all'}]({plots[ev]})",
        ]
    return "\n".join(lines) + "\n"


def write_report(result: EvaluationResult, out_dir: Path) -> dict[str, Path]:
    """Write ``metrics.json``, one PNG per eval set and ``report.md`` into ``out_dir`` (created if missing).

    Returns:
        The written paths: ``"metrics"``, ``"report"``, ``"plot:<eval_name>"`` per eval set and
        ``"plot:pooled"`` (``pooled.png``, the whole test split as one backlog).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    metrics_path = out / METRICS_FILE
    metrics_path.write_text(json.dumps(result.metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    written["metrics"] = metrics_path

    plots = _plot_files(result.eval_names)
    for ev in result.eval_names:
        written[f"plot:{ev}"] = plot_eval(result, ev, out / plots[ev])
    written["plot:pooled"] = plot_pooled(result, out / POOLED_PLOT)

    report_path = out / REPORT_FILE
    report_path.write_text(_render_markdown(result, plots), encoding="utf-8")
    written["report"] = report_path
    return written


def copy_to_latest(run_dir: Path, reports_root: Path, name: str = "latest") -> Path:
    """Replace ``reports_root/<name>/`` with a copy of ``run_dir``; returns the new folder.

    The copy is staged in a temporary folder under ``reports_root`` (same filesystem), then swapped in by two
    renames, so readers see either the old or the new complete folder, except for the instant between the two
    renames, when ``<name>`` is briefly absent. If the swap fails, the old folder is put back.
    """
    src = Path(run_dir).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    root = Path(reports_root)
    root.mkdir(parents=True, exist_ok=True)
    latest = root / name
    if latest.exists() and latest.resolve() == src:
        raise ValueError(f"{run_dir} is already {latest}")

    staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        staged = staging / "new"
        shutil.copytree(src, staged)
        old: Path | None = None
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.exists():
            old = staging / "old"
            latest.rename(old)
        try:
            staged.rename(latest)
        except OSError:
            if old is not None and not latest.exists():
                old.rename(latest)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return latest
