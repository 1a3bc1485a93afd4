"""The nightly report: ``reports/<night>/report.md`` with PNGs, and a row in ``nightly_runs`` for the trend.

It gathers what a data engineer reads in the morning: the AIQ table of the latest training run with its
curves, the promotion decision, the backlog routing summary with spend per model, the quarantine summary, the drift
checks (``router.drift``: which fired, with a plot of each statistic against its threshold) and the
night-over-night trend of AIQ and predicted spend.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from router.report import copy_to_latest
from router.storage import execute, relation

NIGHT_FILES = ("report.md", "trend.png", "drift.png", "night.json")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (a night that routed nothing has no mean predicted quality)
    replaced by None, so ``night.json`` is JSON every parser reads (``NaN`` is not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def night_json(data: dict[str, Any]) -> str:
    """``night.json``'s text: strict JSON (no NaN, values JSON lacks written as text)."""
    return json.dumps(_finite(data), indent=2, default=str, allow_nan=False)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):  # e.g. the mean of nothing routed
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _trend_plot(con: duckdb.DuckDBPyConnection, path: Path) -> Path | None:
    trend = relation(con, "nightly/trend").pl()
    if trend.height == 0:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot(111)
    labels = [str(d) for d in trend["night"].to_list()]
    nights = list(range(len(labels)))  # positions, labelled with the dates (no categorical-axis guessing)
    ax.plot(nights, trend["attention_aiq"].to_list(), marker="o", label="attention AIQ")
    ax.plot(nights, trend["baseline_aiq"].to_list(), marker="s", linestyle="--", label="best baseline AIQ")
    ax.set_ylabel("AIQ (test split)")
    ax.set_xlabel("night")
    ax2 = ax.twinx()
    ax2.bar(nights, trend["predicted_spend_usd"].to_list(), alpha=0.25, color="tab:green",
            label="predicted backlog spend ($)")
    ax2.set_ylabel("predicted spend of routed backlog ($)")
    lines = ax.get_legend_handles_labels()
    bars = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + bars[0], lines[1] + bars[1], loc="lower left", fontsize=8)
    ax.set_title("Night over night")
    ax.set_xticks(nights, labels)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _drift_plot(drift: dict[str, Any], path: Path) -> Path | None:
    """Each check that ran: its statistic beside its threshold (red when breached), one panel per check."""
    ran = [c for c in drift.get("checks", []) if c.get("statistic") is not None]
    if not ran:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 2.2 * len(ran)), 3.6))
    for i, c in enumerate(ran, start=1):
        ax = fig.add_subplot(1, len(ran), i)
        stat = float(c["statistic"])
        ax.bar([0], [stat], color="tab:red" if c["breached"] else "tab:blue", width=0.6)
        ax.axhline(c["threshold"], color="black", linestyle="--", linewidth=1)
        below = (c.get("detail") or {}).get("breach_when") == "below"
        ax.set_title(c["name"], fontsize=8)
        ax.set_xticks([])
        ax.set_ylabel(f"{'p-value' if below else 'statistic'} (breach {'below' if below else 'above'} --)",
                      fontsize=7)
        if below:
            ax.set_yscale("log")
    fig.suptitle(f"Drift checks {drift.get('night', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def drift_lines(drift: dict[str, Any] | None) -> list[str]:
    """The drift section's markdown (also the flow's Prefect artifact): which checks fired, and every check."""
    if not drift:
        return ["Drift checks did not run."]
    fired = [c["name"] for c in drift.get("checks", []) if c.get("breached")]
    lines = [f"**Drift: {', '.join(fired)} breached**." if fired
             else "No drift check breached.", "",
             "| check | statistic | threshold | breached | detail |", "|---|---:|---:|---|---|"]
    for c in drift.get("checks", []):
        detail = c.get("detail") or {}
        note = detail.get("skipped") and f"skipped: {detail['skipped']}" or ", ".join(
            f"{k} {_fmt(v)}" for k, v in detail.items() if k in ("breach_when", "new", "training", "outcomes",
                                                               "mmd2", "ratio"))
        lines.append(f"| {c['name']} | {_fmt(c.get('statistic'))} | {_fmt(c.get('threshold'))} | "
                     f"{'**yes**' if c.get('breached') else 'no'} | {note} |")
    return lines


def onboard_lines(onboard: dict[str, Any] | None) -> list[str]:
    """The onboarding section's markdown (``router.nightly.onboard_new_models``' result): each model onboarded
    into the champion tonight with its gate decision, and why others were not."""
    if not onboard:
        return ["Onboarding did not run."]
    lines = []
    for step in onboard.get("onboarded", []):
        d = step.get("decision") or {}
        lines.append(f"- {step['model']}: onboarded as challenger v{step.get('version')}, "
                     f"**{d.get('decision', '?')}** — {d.get('reason', '')}")
    lines += [f"- {note}" for note in onboard.get("notes", [])]
    return lines or ["Every model named by the stored outcomes is in the champion's pool."]


def routed_earlier(con: duckdb.DuckDBPyConnection, routing: dict[str, Any], flow_run_id: str, night: date
                   ) -> list[dict[str, Any]]:
    """What other flow runs of this night routed with tonight's champion and policy (``nightly/routed_tonight``):
    per flow run, ``queries``, ``predicted_spend_usd``, ``model_mix``, ``reported`` (it wrote its own
    ``nightly_runs`` row; a run stopped before its report did not) and ``counted`` (its routing is in a
    ``nightly_runs`` row already: its own, or that of the run that resumed it)."""
    if routing.get("model_version") is None or not routing.get("policy_key"):
        return []
    rows = relation(con, "nightly/routed_tonight", {"version": str(routing["model_version"]),
                                                     "policy": routing["policy_key"], "flow_run_id": flow_run_id,
                                                     "night": night}).pl()
    runs: dict[str, dict[str, Any]] = {}
    for run_id, model, queries, spend, _, reported, counted in rows.iter_rows():
        run = runs.setdefault(run_id, {"flow_run_id": run_id, "queries": 0, "predicted_spend_usd": 0.0,
                                       "model_mix": {}, "reported": bool(reported), "counted": bool(counted)})
        run["queries"] += int(queries)
        run["predicted_spend_usd"] += float(spend or 0.0)
        run["model_mix"][model] = int(queries)
    return list(runs.values())


def night_routing(routing: dict[str, Any], earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """This run's routing summary with the earlier runs of the night added: queries, predicted spend and model mix
    summed; the best single model's predicted spend is known for this run's queries only, so it is dropped when
    earlier runs routed any."""
    if not earlier:
        return routing
    mix = dict(routing.get("model_mix") or {})
    for run in earlier:
        for model, n in run["model_mix"].items():
            mix[model] = mix.get(model, 0) + n
    return {**routing, "routed": routing.get("routed", 0) + sum(r["queries"] for r in earlier),
            "predicted_spend_usd": routing.get("predicted_spend_usd", 0.0)
            + sum(r["predicted_spend_usd"] for r in earlier),
            "reference_spend_usd": None, "model_mix": dict(sorted(mix.items(), key=lambda kv: -kv[1]))}


def write_night_report(con: duckdb.DuckDBPyConnection, reports_root: Path, *, flow_run_id: str,
                       started: datetime, night: date, ingest: dict[str, Any], validation: dict[str, Any],
                       embed: dict[str, Any], train: dict[str, Any], promotion: dict[str, Any],
                       routing: dict[str, Any], drift: dict[str, Any] | None = None,
                       onboard: dict[str, Any] | None = None) -> Path:
    out = reports_root / night.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    metrics_dir = Path(train["report_dir"]) if train.get("report_dir") else None
    metrics = json.loads((metrics_dir / "metrics.json").read_text()) if metrics_dir and \
        (metrics_dir / "metrics.json").exists() else None
    if metrics_dir and metrics_dir.exists():
        for png in metrics_dir.glob("*.png"):
            shutil.copy2(png, out / png.name)
    now = datetime.now(UTC).replace(tzinfo=None)
    earlier = routed_earlier(con, routing, flow_run_id, night)
    uncounted = [r for r in earlier if not r["counted"]]  # a stopped run's routing counts in this run's row
    execute(con, "nightly/insert_nightly_run", {
        "flow_run_id": flow_run_id, "night": night, "started": started, "now": now,
        "rows_new": ingest.get("rows_new", 0), "rows_quarantined": ingest.get("rows_quarantined", 0),
        "trained": not train.get("skipped", True), "champion_version": routing.get("model_version"),
        "attention_aiq": train.get("attention_aiq"), "baseline_aiq": train.get("baseline_aiq"),
        "routed": routing.get("routed", 0) + sum(r["queries"] for r in uncounted),
        "spend": routing.get("predicted_spend_usd", 0.0) + sum(r["predicted_spend_usd"] for r in uncounted),
        "report_dir": str(out), "drift_breached": None if drift is None else bool(drift.get("breached")),
    })
    trend = _trend_plot(con, out / "trend.png")

    from router import savings

    tonight = night_routing(routing, earlier)  # what the report's savings cover: every routing run of the night
    outcomes = None
    if tonight.get("routed") and routing.get("reference_model"):
        outcomes = savings.realized(con, flow_run_ids=[flow_run_id, *(r["flow_run_id"] for r in earlier)],
                                    version=str(routing["model_version"]), reference=routing["reference_model"])
    routing = {**routing, "realized": outcomes, "earlier_tonight": earlier}
    lines = [f"# Nightly report {night.isoformat()}", "", savings.headline(tonight, outcomes), "",
             f"Flow run `{flow_run_id}`, started {started:%Y-%m-%d %H:%M:%S} UTC, finished {now:%H:%M:%S} UTC.", ""]
    lines += savings.section(tonight, outcomes)
    lines += ["## Ingest and validation", "",
              f"- files ingested: {len(ingest.get('files', []))}, new records: {ingest.get('rows_new', 0)}, "
              f"quarantined: {ingest.get('rows_quarantined', 0)}, rejected files: {len(ingest.get('rejected', []))}",
              f"- validation: {'ok' if validation.get('ok', True) else 'PROBLEMS'}"]
    lines += [f"  - {p}" for p in validation.get("problems", [])]
    lines += [f"- embedded: {embed.get('embedded', 0)} prompts ({embed.get('already', 0)} cached) on "
              f"{embed.get('device', '?')}, representation `{embed.get('representation', '?')}`, "
              f"{embed.get('templates', 0)} prompt templates"]
    if embed.get("weights_changed"):
        lines.append(f"  - the encoder's files changed: {embed['weights_changed']} stored vectors made by its "
                     "earlier weights re-embedded")
    if embed.get("templates_changed"):
        lines.append(f"  - learned templates changed for {', '.join(embed['templates_changed'])}: "
                     f"{embed.get('reembedded', 0)} stored vectors re-embedded")
    elif embed.get("reembedded") and not embed.get("weights_changed"):
        lines.append(f"  - {embed['reembedded']} stored vectors re-embedded (representation settings changed)")
    lines.append("")
    quarantine = relation(con, "nightly/quarantine_by_reason").pl()
    if quarantine.height:
        lines += ["### Quarantine (all time, top reasons)", "", "| kind | reason | rows |", "|---|---|---:|"]
        lines += [f"| {k} | {r} | {n} |" for k, r, n in quarantine.iter_rows()]
        lines.append("")
    lines += ["## Drift", "", *drift_lines(drift)]
    if drift and _drift_plot(drift, out / "drift.png"):
        lines += ["", "![drift](drift.png)"]
    lines += ["", "## Onboarding", "", *onboard_lines(onboard)]
    lines += ["", "## Training", ""]
    if train.get("skipped"):
        lines.append(f"Inputs unchanged since training run `{train.get('run_id')}`: not retrained.")
        if train.get("note"):
            lines += ["", train["note"]]
    else:
        lines.append(f"Trained run `{train.get('run_id')}` in {train.get('seconds', 0):.1f} s.")
    if metrics:
        lines += ["", "| router | AIQ | max perf | cost at max perf ($) |", "|---|---:|---:|---:|"]
        for name, m in sorted(metrics["routers"].items(), key=lambda kv: -kv[1]["aiq"]):
            lines.append(f"| {name} | {m['aiq']:.4f} | {m['max_perf']:.4f} | {m['max_perf_cost']:.4f} |")
        best = metrics["best_single_model"]
        lines += ["", f"Best single model: {best['name']} (perf {best['perf']:.4f}, cost ${best['cost']:.4f}).", ""]
        lines += [f"![{p.stem}]({p.name})" for p in sorted(out.glob("eval_*.png"))]
    lines += ["", "## Promotion", ""]
    if promotion.get("skipped"):
        lines.append("No new version (training skipped).")
    else:
        d = promotion.get("decision") or {}
        lines += [f"- challenger v{promotion.get('version')}: **{d.get('decision', '?')}** — {d.get('reason', '')}",
                  f"- challenger AIQ {_fmt(d.get('challenger_aiq'))}, champion AIQ {_fmt(d.get('champion_aiq'))} "
                  f"(re-evaluated now), best baseline AIQ {_fmt(d.get('baseline_aiq'))}"]
    lines += ["", "## Backlog routing", ""]
    if routing.get("model_version") is None:
        lines.append(f"Not routed: {routing.get('reason', 'no champion')}.")
    else:
        if routing.get("champion_moved"):
            lines.append(f"- recorded in `champion_history`: {routing['champion_moved']}")
        lines += [f"- champion v{routing['model_version']}, reward {routing['reward']} "
                  f"(parameter {routing['reward_param']:.4g})"
                  + (f", budget ${routing['budget_usd']:.2f}" if routing.get("budget_usd") is not None else ""),
                  f"- routed now: {routing['routed']} queries, predicted spend ${routing['predicted_spend_usd']:.4f}, "
                  f"mean predicted quality {_fmt(routing.get('predicted_quality'))}",
                  *[f"- routed earlier tonight by flow run `{r['flow_run_id']}`"
                    + ("" if r["reported"] else " (stopped before its report)")
                    + f": {r['queries']} queries, predicted spend ${r['predicted_spend_usd']:.4f}" for r in earlier],
                  f"- left for later (no embedding yet): {routing.get('skipped_unembedded', 0)}", ""]
        mix = relation(con, "nightly/spend_by_model", {"version": routing["model_version"],
                                                         "policy": routing.get("policy_key", "")}).pl()
        if mix.height:
            lines += [f"All decisions of this champion under tonight's policy (`{routing.get('policy_key', '')}`):",
                      "",
                      "| model | queries | predicted spend ($) | mean predicted quality |", "|---|---:|---:|---:|"]
            lines += [f"| {m} | {n} | {s:.4f} | {q:.4f} |" for m, n, s, q in mix.iter_rows()]
    lines += ["", "## Trend", ""]
    lines.append("![trend](trend.png)" if trend else "First night: no trend yet.")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "night.json").write_text(night_json({
        "flow_run_id": flow_run_id, "night": night.isoformat(), "ingest": {k: v for k, v in ingest.items()
                                                                            if k != "files"},
        "validation": validation, "embed": embed, "drift": drift, "train": train, "promotion": promotion,
        "routing": routing,
    }))
    copy_to_latest(out, reports_root, name="nightly-latest")
    return out


def append_doctor(out: Path, reports_root: Path, doctor: dict[str, Any]) -> Path:
    """Add the doctor's result (``router.doctor``, run after the report) to ``out/report.md`` and
    ``out/night.json``, and refresh ``reports/nightly-latest``. Written whole to a temporary file, then renamed."""
    from router.doctor import report_lines

    report = out / "report.md"
    text = report.read_text() if report.exists() else ""
    marker = "\n## Doctor\n"
    if marker in text:  # a re-run of this step replaces its section
        text = text[: text.index(marker)] + "\n"
    lines = ["## Doctor", "", *report_lines(doctor)]
    problems = doctor.get("problems", [])
    if problems:
        lines += ["", "Problems (the flow run is marked failed):", ""] + [f"- {p}" for p in problems]
    _replace(report, text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    night = out / "night.json"
    data = json.loads(night.read_text()) if night.exists() else {}
    data["doctor"] = doctor
    _replace(night, night_json(data))
    copy_to_latest(out, reports_root, name="nightly-latest")
    return out


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
