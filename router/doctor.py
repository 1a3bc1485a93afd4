"""``routerctl doctor``: integrity checks of the store (and of its decisions against the MLflow registry).

Run at the end of every nightly run (its result goes into the night's report) and by hand. Each check is
``ok``, ``pending`` (work the next nightly step will do: prompts to embed, backlog queries to route, a
challenger to gate; never a failure), ``warning`` (worth a human look, never a failure: the data drifted),
``problem`` (damage) or ``info``. Any problem makes the command exit 1
(and the nightly flow run end failed, after its report is written). The queries are in
``sql/queries/doctor/*.sql``.

* **schema** — the store's schema version equals the latest migration in ``sql/migrations`` (older: any writing
  command migrates it; newer: a newer release of xattn-router wrote it, and only that release can use it).
* **orphans** — outcomes, backlog queries or embeddings without their prompt; decisions without their backlog
  query; outcomes, backlog or quarantine rows without their ingest run (a half-written ingest).
* **keys** — natural keys are unique: ``prompts.prompt_id``, ``outcomes (source, sample_key, model)``,
  ``backlog.query_id`` (no PRIMARY KEY constraints since migration 005: the ingest keeps them unique).
* **embeddings** — prompts without a vector for the configured encoder, and its vectors made under another
  representation than the settings' (``router.representation``; pending: the next embed step adds or replaces
  them); coverage of every other encoder present (information).
* **backlog** — backlog queries no version has decided yet (pending: the next route step routes them).
* **challenger** — a version holding the ``challenger`` alias that the gate has not decided on (pending).
* **decision versions** — every ``model_version`` in ``routing_decisions`` is a registered version of the
  registered model; an unreachable registry, or one that answers with an error (a refusal, a server error), is
  itself a problem ("registry unreachable at …"), never "not registered"; so is a missing local registry while
  decisions exist ("no MLflow registry at …": the settings name another registry than the pipeline's).
* **ingest runs** — every run reconciles: ``rows_in = rows_ok + rows_quarantined``, and as many quarantine rows
  as ``rows_quarantined``.
* **quarantine** — counts by kind and reason (information, never a failure).
* **drift** — the latest night's drift checks (``router.drift``, table ``drift_checks``): ``warning`` naming the
  checks that breached, ``ok`` when none did, ``info`` before the first night that ran them.

The store is opened read-only and never migrated, so the doctor reports an old schema instead of fixing it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from router.errors import CheckFailed
from router.redact import mask, mask_uri
from router.representation import Representation
from router.settings import Settings
from router.storage import StoreError, connect, execute, migrations, newer_schema, schema_version

OK, PENDING, PROBLEM, INFO, WARNING = "ok", "pending", "problem", "info", "warning"


@dataclass
class Check:
    name: str
    status: str  # ok | pending | warning | problem | info
    detail: str
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DoctorReport:
    store: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == PROBLEM]

    @property
    def pending(self) -> list[Check]:
        return [c for c in self.checks if c.status == PENDING]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == WARNING]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "store": self.store, "problems": [f"{c.name}: {c.detail}" for c in self.problems],
                "pending": [f"{c.name}: {c.detail}" for c in self.pending],
                "warnings": [f"{c.name}: {c.detail}" for c in self.warnings],
                "checks": [asdict(c) for c in self.checks]}

    def markdown(self) -> list[str]:
        return report_lines(self.as_dict())


def report_lines(result: dict[str, Any]) -> list[str]:
    """Markdown lines for a doctor result (``DoctorReport.as_dict()``): a table of the checks."""
    lines = [f"Store integrity: **{'ok' if result.get('ok') else 'PROBLEMS'}**", "",
             "| check | status | detail |", "|---|---|---|"]
    for c in result.get("checks", []):
        detail = str(c.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {c.get('name')} | {c.get('status')} | {detail} |")
    return lines


def _schema(con) -> Check:
    latest = max((v for v, _, _ in migrations()), default=0)
    try:
        version = schema_version(con)
    except Exception as exc:  # noqa: BLE001 - no schema_migrations table at all
        return Check("schema", PROBLEM, f"cannot read the schema version ({exc}); latest migration is {latest}")
    if version > latest:  # a newer release wrote it: migrating cannot help, and writing commands refuse it
        return Check("schema", PROBLEM, f"{newer_schema(version, latest)}; this release's writing commands refuse "
                                        "the store")
    if version != latest:
        return Check("schema", PROBLEM, f"schema version {version}, latest migration {latest}: run any write "
                                        "command (e.g. `routerctl status`) to migrate")
    return Check("schema", OK, f"version {version} (latest migration)")


def _orphans(con) -> Check:
    rows = [{"what": what, "rows": int(n)} for what, n in execute(con, "doctor/orphans")]
    bad = [r for r in rows if r["rows"]]
    if bad:
        return Check("orphans", PROBLEM, "; ".join(f"{r['rows']} {r['what']}" for r in bad), bad)
    return Check("orphans", OK, "none", rows)


def _keys(con) -> Check:
    rows = [{"what": what, "keys": int(n), "example": example} for what, n, example in execute(con, "doctor/duplicate_keys")]
    bad = [r for r in rows if r["keys"]]
    if bad:
        return Check("keys", PROBLEM, "; ".join(f"{r['keys']} duplicated keys in {r['what']} (e.g. {r['example']})"
                                                for r in bad), bad)
    return Check("keys", OK, "every natural key is stored once", rows)


def _embeddings(con, encoder: str, representation: str) -> list[Check]:
    params = {"encoder": encoder, "representation": representation}
    rows = [{"encoder": e, "prompts": int(p), "embedded": int(d), "missing": int(m), "other_representation": int(o)}
            for e, p, d, m, o in execute(con, "doctor/embedding_coverage", params)]
    checks = []
    for r in rows:
        configured = r["encoder"] == encoder
        detail = f"{r['embedded']} of {r['prompts']} prompts embedded with {r['encoder']}"
        waiting = []
        if configured and r["missing"]:
            waiting.append(f"{r['missing']} prompts wait for the next embed step")
        if configured and r["other_representation"]:
            waiting.append(f"{r['other_representation']} vectors were made under another representation than "
                           f"{representation!r} (ROUTER_EMBED_TEMPLATES / ROUTER_EMBED_MAX_CHUNKS) and the next "
                           "embed step replaces them")
        if waiting:
            checks.append(Check("embeddings", PENDING, f"{detail}; {'; '.join(waiting)} (the nightly run, or "
                                                       "`routerctl embed`)", [r]))
        else:
            checks.append(Check("embeddings" if configured else "embeddings (other encoder)",
                                OK if configured else INFO, detail, [r]))
    return checks


def _backlog(con) -> Check:
    waiting = int(execute(con, "doctor/unrouted_backlog")[0][0])
    if waiting:
        return Check("backlog", PENDING, f"{waiting} backlog queries wait for the next route step (the nightly "
                                         "run, or `routerctl route`)", [{"unrouted": waiting}])
    return Check("backlog", OK, "every backlog query has a decision", [{"unrouted": 0}])


def _registry_checks(con, settings: Settings, check_registry: bool) -> list[Check]:
    """The decisions' versions against the registry, and a challenger waiting for its gate."""
    used = [{"model_version": v, "router": r, "decisions": int(n)}
            for v, r, n in execute(con, "doctor/decision_versions")]
    if not check_registry:
        return [Check("decision versions", INFO, f"{len(used)} versions made decisions; registry not checked",
                      used)]
    missing = settings.missing_registry()
    if missing and used:  # decisions were made, so a registry existed: this one is not it (or it was lost)
        n = sum(u["decisions"] for u in used)
        return [Check("decision versions", PROBLEM,
                      f"no MLflow registry at {mask_uri(missing)}, but {n} decisions were made by registered "
                      f"versions of {settings.registered_model!r}: check that ROUTER_MLFLOW_TRACKING_URI (or "
                      "ROUTER_MLFLOW_REGISTRY_URI) and ROUTER_HOME name the registry the pipeline uses", used),
                _challenger([])]
    if missing:  # nothing registered yet; opening it would create an empty registry
        return [_decision_versions(settings, used, set()), _challenger([])]
    from router.registry import promotion  # imports MLflow: only when asked

    try:
        versions = promotion.list_versions(settings)
    except Exception as exc:  # noqa: BLE001 - unreachable server, broken sqlite file, ...: report, don't crash
        return [Check("decision versions", PROBLEM,
                      f"registry unreachable at {mask_uri(settings.mlflow_registry)}: {mask(str(exc))}", used)]
    return [_decision_versions(settings, used, {v.version for v in versions}),
            _challenger([v for v in versions if promotion.CHALLENGER in v.aliases and not v.gate])]


def _challenger(ungated: list[Any]) -> Check:
    if ungated:
        listed = ", ".join(f"v{v.version}" for v in ungated)
        return Check("challenger", PENDING, f"{listed} waits for the next gate (the nightly run)",
                     [{"version": v.version} for v in ungated])
    return Check("challenger", OK, "no challenger waits for the gate")


def _decision_versions(settings: Settings, used: list[dict[str, Any]], registered: set[int]) -> Check:
    unknown = [u for u in used if not str(u["model_version"]).isdigit() or int(u["model_version"]) not in registered]
    if unknown:
        listed = ", ".join(f"v{u['model_version']} ({u['decisions']} decisions)" for u in unknown)
        return Check("decision versions", PROBLEM,
                     f"decisions by versions not registered as {settings.registered_model!r}: {listed}", unknown)
    return Check("decision versions", OK,
                 f"{sum(u['decisions'] for u in used)} decisions by {len(used)} registered version(s)", used)


def _ingest_runs(con) -> Check:
    cols = ("run_id", "kind", "file", "rows_in", "rows_ok", "rows_quarantined", "quarantine_rows")
    bad = [dict(zip(cols, row, strict=True)) for row in execute(con, "doctor/unreconciled_runs")]
    if bad:
        listed = "; ".join(f"{b['file']} ({b['rows_in']} in ≠ {b['rows_ok']} ok + {b['rows_quarantined']} "
                           f"quarantined, {b['quarantine_rows']} quarantine rows)" for b in bad[:5])
        return Check("ingest runs", PROBLEM, f"{len(bad)} runs do not reconcile: {listed}", bad)
    return Check("ingest runs", OK, "every run reconciles")


def _quarantine(con) -> Check:
    rows = [{"kind": k, "reason": r, "rows": int(n)} for k, r, n in execute(con, "doctor/quarantine_by_reason")]
    total = sum(r["rows"] for r in rows)
    top = "; ".join(f"{r['kind']}: {r['reason']} ×{r['rows']}" for r in rows[:5])
    return Check("quarantine", INFO, f"{total} rows quarantined" + (f" ({top})" if top else ""), rows)


def _drift(con) -> Check:
    from router.drift import latest

    result = latest(con)
    if result is None:
        return Check("drift", INFO, "no drift checks recorded yet")
    rows = [c.as_json() for c in result.checks]
    if result.breached:
        fired = ", ".join(f"{c.name} {c.statistic:.4g} vs {c.threshold:.4g}" for c in result.checks if c.breached)
        return Check("drift", WARNING, f"night {result.night} drifted: {fired} (`routerctl drift`)", rows)
    ran = sum(c.statistic is not None for c in result.checks)
    if ran == 0:  # nothing was measured: no evidence either way
        return Check("drift", INFO, f"night {result.night}: none of its {len(rows)} checks ran, every one skipped "
                     "(`routerctl drift` says why)", rows)
    return Check("drift", OK, f"night {result.night}: no breach ({ran} of {len(rows)} checks ran)", rows)


def run_checks(settings: Settings, *, check_registry: bool = True, wait: float | None = None) -> DoctorReport:
    """Every check on the store (read-only). Raises :class:`~router.storage.StoreError` if it cannot be opened."""
    con = connect(settings, read_only=True, migrate_schema=False, wait=wait)
    try:
        checks = [_schema(con)]
        if checks[0].status == OK:  # the other queries need the current schema
            checks.append(_orphans(con))
            checks.append(_keys(con))
            checks.extend(_embeddings(con, settings.encoder, Representation.from_settings(settings).key))
            checks.append(_backlog(con))
            checks.extend(_registry_checks(con, settings, check_registry))
            checks.append(_ingest_runs(con))
            checks.append(_quarantine(con))
            checks.append(_drift(con))
    finally:
        con.close()
    return DoctorReport(str(settings.database), checks)




class DoctorFailed(CheckFailed, RuntimeError):
    """The nightly run finished and wrote its report, but the doctor found problems (the run is marked failed;
    exit 1)."""


__all__ = ["INFO", "OK", "PENDING", "PROBLEM", "WARNING", "Check", "DoctorFailed", "DoctorReport", "StoreError",
           "report_lines", "run_checks"]
