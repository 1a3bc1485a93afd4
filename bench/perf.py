"""Speed and scale benchmarks: every figure is a ratio against a floor measured in the same run, on the same rows.

    routerctl bench [--size small|full] [--only NAME]       # or: python -m bench.perf ...

Each bench runs its phases in **fresh child processes** (``python -m bench.perf child NAME PHASE``): ``setup``
(generate inputs, untimed), ``floor`` (the reference), ``ours`` (the project's code path); the peak RSS is the
``ours`` child's ``ru_maxrss``. Large inputs are synthesised from the shipped rows (``data/demo``,
``data/routerbench_subset``) under a work folder and never committed (see ``docs/performance.md`` for how).
Results go to ``$ROUTER_HOME/reports/bench/latest.json`` as
``{name: {"ratio", "target", "floor_s", "ours_s", "rows", "peak_rss_mb", ...}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from router.settings import PROJECT_ROOT

DATA = PROJECT_ROOT / "data"
SIZES = ("small", "full")


@dataclass(frozen=True)
class Bench:
    name: str
    target: float
    what: str
    sizes: dict[str, int]  # rows per size
    figures: tuple[str, ...] = ()  # several figures from one run (nightly)
    repeats: int = 1  # floor and ours run this many times, interleaved; the fastest of each is the figure


BENCHES: dict[str, Bench] = {
    "embed": Bench("embed", 1.15, "embed step (DuckDB → encode → store) vs plain SentenceTransformer.encode",
                   {"small": 64, "full": 768}, repeats=2),  # two ~30 s encodes move by ±10 % between runs
    # Same texts through each encoder backend in turn (torch, onnx, onnx int8), each in its own process; twice,
    # interleaved: with both sides at one batch size onnx fp32 runs at about torch's speed on some hosts, and one
    # ~60 s encode moves by ±10 % between runs (0.86 and 1.09 in two single runs of the same code).
    "encoder_backends": Bench("encoder_backends", 1.0, "encode the RouterBench subset's prompt texts with the onnx "
                              "(and onnx int8) backend vs the torch backend", {"small": 64, "full": 3_176},
                              ("encoder_onnx", "encoder_int8"), repeats=2),
    "embed_subset": Bench("embed_subset", 0.5, "routerctl embed's step on the ingested RouterBench subset "
                          "(ROUTER_EMBED_TEMPLATES=true, ROUTER_EMBED_MAX_CHUNKS=8, as bench.results; torch "
                          "backend) vs plain SentenceTransformer.encode of the full prompt texts",
                          {"small": 10, "full": 0}, ("embed_subset", "embed_subset_int8")),
    "route": Bench("route", 3.0, "route an embedded backlog end to end vs DuckDB CREATE TABLE AS of the same rows "
                   "(a linear-head predictor: the pipeline's own cost)", {"small": 20_000, "full": 1_000_000}),
    # The three below take seconds per run, so one slow spell of the shared host moves a single run's ratio by
    # ±10 % or more: three interleaved runs each, the fastest of each side.
    "route_attention": Bench("route_attention", 3.0, "the same with the 5-member attention champion (model compute)",
                             {"small": 5_000, "full": 100_000}, repeats=3),
    "ingest_jsonl": Bench("ingest_jsonl", 3.0, "ingest logs JSONL with validation vs DuckDB read_json into a table",
                          {"small": 20_000, "full": 1_000_000}, repeats=3),
    "ingest_parquet": Bench("ingest_parquet", 3.0, "ingest logs Parquet with validation vs DuckDB read_parquet",
                            {"small": 20_000, "full": 1_000_000}, repeats=3),
    "nightly": Bench("nightly", 0.25, "nightly steps after 10% new data / nothing new vs from scratch",
                     {"small": 40, "full": 0}, ("nightly_incremental", "nightly_nothing_new")),
    "train": Bench("train", 1.0, "fit the attention router (default config) at RouterBench size, vs 10 minutes",
                   {"small": 2_000, "full": 36_000}),
}
TARGETS = {"embed_subset_int8": 0.5, "nightly_incremental": 0.25, "nightly_nothing_new": 0.05, "encoder_onnx": 1.0, "encoder_int8": 0.75}
TRAIN_BUDGET_S = 600.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def machine() -> dict[str, Any]:
    """What the figures were measured on (recorded with each figure: ratios move with the CPU, see
    docs/performance.md): the CPU's model name, the cores this process may use, the platform."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "platform": platform.platform()}


def _settings(home: Path, **extra: Any):
    from router.settings import Settings

    for name in [n for n in os.environ if n.startswith("ROUTER_")]:
        del os.environ[name]
    os.environ["ROUTER_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    s = Settings(**extra)
    s.ensure_workspace()
    return s


def _demo_rows(kind: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "demo" / f"{kind}.jsonl").read_text().splitlines() if line]


# ================================================================================================== embed
def _embed_texts(n: int) -> list[str]:
    """``n`` real prompts: the demo backlog's (953), then RouterBench train prompts."""
    texts = [r["prompt"] for r in _demo_rows("backlog")]
    if n > len(texts):
        import polars as pl

        from router.coercion import unwrap_prompt

        for path in sorted((DATA / "routerbench_subset").glob("*_train.csv")):
            texts += [unwrap_prompt(t) for t in pl.read_csv(path, columns=["prompt"])["prompt"].to_list()]
    return list(dict.fromkeys(texts))[:n]


def embed_setup(work: Path, n: int) -> dict[str, Any]:
    from router.ingest import ingest_file

    s = _settings(work / "home")
    path = work / "prompts.jsonl"
    with path.open("w") as fh:
        for i, text in enumerate(_embed_texts(n)):
            fh.write(json.dumps({"query_id": f"q{i}", "prompt": text}) + "\n")
    from router.storage import open_store

    with open_store(s) as con:
        r = ingest_file(con, "backlog", path, s)
    return {"rows": r.rows_new}


def _encoder_model(s):
    from router.embeddings import load_encoder
    from router.encoder import batch_size, encode

    model = load_encoder(s)
    encode(model, ["warm up the encoder", "a second sentence"], batch_size(model, s.embed_batch_size))
    return model


def embed_floor(work: Path, n: int) -> dict[str, Any]:
    from router.encoder import batch_size

    s = _settings(work / "home")
    texts = [json.loads(line)["prompt"] for line in (work / "prompts.jsonl").read_text().splitlines()]
    model = _encoder_model(s)
    start = time.perf_counter()
    model.encode(texts, batch_size=batch_size(model, s.embed_batch_size), normalize_embeddings=True,
                 show_progress_bar=False, convert_to_numpy=True)
    return {"seconds": time.perf_counter() - start, "rows": len(texts)}


def embed_ours(work: Path, n: int) -> dict[str, Any]:
    from router.embeddings import embed_missing
    from bench.store import execute
    from router.storage import open_store

    s = _settings(work / "home")
    model = _encoder_model(s)
    with open_store(s) as con:
        execute(con, "delete_embeddings", {"encoder": s.encoder})  # a repeat encodes them again
        execute(con, "checkpoint")
        start = time.perf_counter()
        r = embed_missing(con, s, model=model)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": r.embedded, "device": r.device}


# ======================================================================================= encoder backends
def _subset_texts(n: int | None = None) -> list[str]:
    """The shipped RouterBench subset's distinct prompt texts (3,176), as its files hold them; ``n`` of them
    spread evenly over the files (so a small run sees every task)."""
    import polars as pl

    texts: list[str] = []
    for path in sorted((DATA / "routerbench_subset").glob("*.csv")):
        texts += pl.read_csv(path, columns=["prompt"], infer_schema_length=0)["prompt"].drop_nulls().to_list()
    texts = list(dict.fromkeys(texts))
    return texts[::max(1, len(texts) // n)][:n] if n else texts


def _token_count(model, texts: list[str], batch_size: int = 256) -> int:
    """Tokens the encoder reads for ``texts`` (after its truncation, padding not counted)."""
    from router.encoder import OnnxEncoder

    st = model.model if isinstance(model, OnnxEncoder) else model
    return sum(int(st.preprocess(texts[i:i + batch_size])["attention_mask"].sum())
               for i in range(0, len(texts), batch_size))


def backends_setup(work: Path, n: int) -> dict[str, Any]:
    texts = _subset_texts(n)
    (work / "texts.json").write_text(json.dumps(texts))
    return {"rows": len(texts)}


def backend_encode(work: Path, n: int, backend: str = "torch", quantize: str = "none") -> dict[str, Any]:
    """Encode the setup's texts on CPU with one backend (loaded, exported if need be and warmed up untimed);
    the vectors are kept for the parity figures."""
    import numpy as np

    from router.embeddings import load_encoder
    from router.encoder import batch_size, encode

    texts = json.loads((work / "texts.json").read_text())
    s = _settings(work / "home", device="cpu", encoder_backend=backend, encoder_quantize=quantize,
                  encoder_cache_dir=work / "encoders")
    model = load_encoder(s)
    batch = batch_size(model, s.embed_batch_size)
    encode(model, ["warm up the encoder", "a second sentence"], batch)
    start, cpu = time.perf_counter(), time.process_time()
    vectors = encode(model, texts, batch)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(work / f"{backend}-{quantize}.npy", vectors)
    tokens = _token_count(model, texts)
    return {"seconds": seconds, "rows": len(texts), "cpu_s": round(cpu, 3), "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1)}


def _cosines(work: Path, variant: str) -> dict[str, float]:
    import numpy as np

    ref, other = np.load(work / "torch-none.npy"), np.load(work / f"{variant}.npy")
    cosine = (ref * other).sum(axis=1)
    return {"cosine_min": round(float(cosine.min()), 5), "cosine_mean": round(float(cosine.mean()), 5)}


def embed_subset_setup(work: Path, n: int) -> dict[str, Any]:
    """The subset's CSVs (the first ``n`` rows of each; all when 0) landed and ingested as the nightly does."""
    from bench.subset import land
    from router import nightly

    s = _settings(work / "home")
    land(s.workspace, n or None)
    ingested = nightly.ingest_landing(s)
    if ingested.rejected:
        raise RuntimeError(f"the shipped RouterBench files were rejected: {ingested.rejected}")
    return {"rows": len(_landed_texts(s))}


def _landed_texts(s) -> list[str]:
    import polars as pl

    texts: list[str] = []
    for path in sorted(s.landing("routerbench").glob("*.csv")):
        texts += pl.read_csv(path, columns=["prompt"], infer_schema_length=0)["prompt"].drop_nulls().to_list()
    return list(dict.fromkeys(texts))


def embed_subset_floor(work: Path, n: int) -> dict[str, Any]:
    """Plain sentence-transformers (torch) on the full prompt texts of the landed files."""
    from router.encoder import batch_size

    s = _settings(work / "home", device="cpu")
    texts = _landed_texts(s)
    model = _encoder_model(s)
    start = time.perf_counter()
    model.encode(texts, batch_size=batch_size(model, s.embed_batch_size), normalize_embeddings=True,
                 show_progress_bar=False, convert_to_numpy=True)
    return {"seconds": time.perf_counter() - start, "rows": len(texts), "tokens": _token_count(model, texts)}


def embed_subset_ours(work: Path, n: int, backend: str = "torch", quantize: str = "none") -> dict[str, Any]:
    """``routerctl embed``'s step on the ingested store with template stripping and windowed long prompts on (the
    representation ``bench.results`` reports), on the given encoder backend."""
    from bench.store import execute
    from router.embeddings import embed_missing
    from router.storage import open_store

    s = _settings(work / "home", device="cpu", encoder_backend=backend, encoder_quantize=quantize,
                  embed_templates=True, embed_max_chunks=8)
    model = _encoder_model(s)  # an onnx backend is exported on the first run (untimed), reused after
    with open_store(s) as con:
        execute(con, "delete_embeddings", {"encoder": s.encoder})
        execute(con, "checkpoint")
        start = time.perf_counter()
        r = embed_missing(con, s, model=model)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": r.embedded, "backend": f"{backend}-{quantize}", "templates": True}


# ================================================================================================== route
def _attention_predictor(work: Path, fit_rows: int = 2_000):
    """An attention router with the default architecture (5 members), briefly fitted on the shipped
    RouterBench rows' real scores/costs (random unit vectors: routing cost does not depend on their values)."""
    from router.routers import get_router

    data = _routerbench_matrix(fit_rows, dim=384, seed=1)
    return get_router("attention", max_epochs=1).fit(data, seed=42)


def _routerbench_matrix(n: int, dim: int = 384, seed: int = 0):
    """``n`` prompts × 11 models with the real scores/costs/lengths/evals of the shipped RouterBench rows
    (tiled), and a seeded random unit vector per row."""
    import numpy as np
    import polars as pl

    from router.routers.base import RoutingData

    frames = [pl.read_csv(p, infer_schema_length=0) for p in sorted((DATA / "routerbench_subset").glob("*.csv"))]
    frame = pl.concat([f.select(sorted(set(f.columns) & set(frames[0].columns))) for f in frames], how="vertical")
    models = [c for c in frame.columns if f"{c}|total_cost" in frame.columns]
    quality = frame.select([pl.col(m).cast(pl.Float32, strict=False) for m in models]).to_numpy()
    cost = frame.select([pl.col(f"{m}|total_cost").cast(pl.Float32, strict=False) for m in models]).to_numpy()
    chars = frame["prompt"].str.len_chars().to_numpy().astype(np.int64)
    evals = frame["eval_name"].to_numpy().astype(object)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, frame.height, size=n)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return RoutingData(X, quality[idx], cost[idx], chars[idx], models, evals[idx])


def route_setup(work: Path, n: int) -> dict[str, Any]:
    """A store whose backlog holds ``n`` queries, each with its own prompt (the worst case: no prompt is
    shared, so deduplication saves nothing) and a stored 384-dim vector. Prompt texts are the demo backlog's
    real prompts, clipped to 200 characters plus a serial number (``n_chars`` keeps the real length)."""
    import numpy as np
    import polars as pl
    from safetensors.numpy import save_file

    from bench.store import execute
    from router.storage import open_store

    s = _settings(work / "home")
    rows = _demo_rows("backlog")
    base = pl.DataFrame({"prompt": [r["prompt"] for r in rows], "task": [r.get("task") for r in rows]})
    rng = np.random.default_rng(0)
    now = datetime.now(UTC).replace(tzinfo=None)
    chunk = 200_000
    with open_store(s) as con:
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            serial = np.arange(start, start + size)
            src = base[(serial % base.height).tolist()]
            hi_bits, lo_bits = rng.integers(0, 2**63, size=(2, size))
            prompt_id = pl.Series([f"{a:016x}{b:016x}" for a, b in zip(hi_bits, lo_bits, strict=True)])
            X = rng.normal(size=(size, 384)).astype(np.float32)
            X /= np.linalg.norm(X, axis=1, keepdims=True)
            prompts = pl.DataFrame({
                "prompt_id": prompt_id,
                "text": src["prompt"].str.slice(0, 200) + pl.Series([f" #{x}" for x in serial]),
                "n_chars": src["prompt"].str.len_chars().cast(pl.Int32),
                "task": src["task"], "source": pl.repeat("backlog", size, eager=True),
                "first_seen": pl.repeat(now, size, eager=True),
            })
            backlog = pl.DataFrame({
                "query_id": pl.Series([f"bench-{x:09d}" for x in serial]), "prompt_id": prompt_id,
                "task": src["task"], "submitted_at": pl.repeat(now, size, eager=True).dt.replace_time_zone("UTC"),
                "ingest_run_id": pl.repeat("bench", size, eager=True), "ingested_at": pl.repeat(now, size, eager=True),
            })
            vectors = pl.DataFrame({
                "prompt_id": prompt_id, "encoder": pl.repeat(s.encoder, size, eager=True),
                "dim": pl.repeat(384, size, dtype=pl.Int32, eager=True),
                "vector": pl.Series(X, dtype=pl.Array(pl.Float32, 384)).cast(pl.List(pl.Float32)),
                "embedded_at": pl.repeat(now, size, eager=True),
            })
            for table, frame in (("prompts", prompts), ("backlog", backlog), ("embeddings", vectors)):
                con.register("bench_frame", frame)
                execute(con, f"insert_{table}")
                con.unregister("bench_frame")
    tensors, config = _attention_predictor(work).to_artifacts()
    save_file({k: v.numpy() for k, v in tensors.items()}, str(work / "router.safetensors"))
    (work / "router.json").write_text(json.dumps(config))
    return {"rows": n}


def route_floor(work: Path, n: int) -> dict[str, Any]:
    from bench.store import execute, scalar
    from router.storage import open_store

    s = _settings(work / "home")
    with open_store(s) as con:
        start = time.perf_counter()
        execute(con, "route_floor_copy")  # the floor: copy the rows routing reads into a new table
        seconds = time.perf_counter() - start
        rows = scalar(con, "floor_count")
        execute(con, "floor_drop")
    return {"seconds": seconds, "rows": rows}


class LinearHead:
    """A cheap stand-in champion (one 384 × 11 matrix per head): isolates the routing pipeline's own cost
    (stage, stream, decide, write) from the model's compute, which ``route_attention`` measures."""

    def __init__(self, models: list[str], dim: int = 384) -> None:
        import numpy as np

        rng = np.random.default_rng(7)
        self.models = models
        self.wq = rng.normal(size=(dim, len(models))).astype(np.float32)
        self.wc = rng.normal(scale=0.3, size=(dim, len(models))).astype(np.float32)

    def predict(self, X, prompt_chars, tasks=None):
        import numpy as np

        q = 1.0 / (1.0 + np.exp(-(X @ self.wq).astype(np.float64)))
        c = np.exp((X @ self.wc).astype(np.float64) - 7.0) * (np.asarray(prompt_chars)[:, None] / 1000.0 + 0.1)
        return q, c


def route_ours(work: Path, n: int, attention: bool = False) -> dict[str, Any]:
    from safetensors.torch import load_file

    from router.routers.attention import AttentionRouter
    from router.routing import route_backlog
    from bench.store import execute
    from router.storage import open_store

    s = _settings(work / "home")
    router = AttentionRouter.from_artifacts(load_file(str(work / "router.safetensors")),
                                            json.loads((work / "router.json").read_text()))
    if not attention:
        router = LinearHead(list(router.models))
    with open_store(s) as con:
        start = time.perf_counter()
        summary = route_backlog(con, router, model_version="bench", router_name="bench", encoder=s.encoder,
                                batch_size=s.route_batch_size)
        seconds = time.perf_counter() - start
        execute(con, "delete_decisions", {"version": "bench"})
    return {"seconds": seconds, "rows": summary.routed}


# ================================================================================================= ingest
def ingest_setup(work: Path, n: int, fmt: str) -> dict[str, Any]:
    """``n`` log rows from the 953 demo log rows (real models, qualities, costs, tasks, latencies, tokens), each
    with a new request_id, a timestamp one second apart, and its own prompt: the real prompt clipped to 200
    characters plus the serial number (full prompts would make 1M rows 1.7 GB)."""
    import numpy as np
    import polars as pl

    rows = _demo_rows("logs")
    base = pl.DataFrame(rows)
    serial = np.arange(n)
    src = base[(serial % base.height).tolist()]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    frame = src.with_columns(
        (pl.col("request_id") + pl.Series([f"~{x}" for x in serial])).alias("request_id"),
        pl.Series([(start + timedelta(seconds=int(x))).strftime("%Y-%m-%dT%H:%M:%SZ") for x in serial]).alias("ts"),
        (pl.col("prompt").str.slice(0, 200) + pl.Series([f" [{x}]" for x in serial])).alias("prompt"),
    )
    path = work / f"logs.{fmt}"
    if fmt == "jsonl":
        frame.write_ndjson(path)
    else:
        frame.write_parquet(path)
    return {"rows": n, "bytes": path.stat().st_size}


def ingest_floor(work: Path, n: int, fmt: str) -> dict[str, Any]:
    import duckdb

    from bench.store import execute, scalar

    path = work / f"logs.{fmt}"
    db = work / "floor.duckdb"
    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    start = time.perf_counter()
    execute(con, f"ingest_floor_{'json' if fmt == 'jsonl' else 'parquet'}", {"path": str(path)})
    seconds = time.perf_counter() - start
    rows = scalar(con, "floor_count")
    con.close()
    db.unlink(missing_ok=True)
    return {"seconds": seconds, "rows": rows}


def ingest_bound(work: Path, n: int, fmt: str, ids: str = "hex") -> dict[str, Any]:
    """What any ingest into the store's schema must at least do, in DuckDB alone: read the file, hash every
    prompt, write ``prompts`` and ``outcomes`` in one transaction; no validation, no duplicate or conflict
    checks, no quarantine. Its ratio to the floor is a lower bound for ``ours``' (``bound_ratio``).

    ``ids="uhugeint"`` measures the same with 16-byte ids (the same 128 bits as a ``UHUGEINT`` instead of 32
    hex characters) in both tables: ``bench/ingest_bound_ids.py`` compares the two."""
    from bench.store import execute, scalar
    from router.storage import open_store

    if ids not in ("hex", "uhugeint"):
        raise ValueError(f"ids must be 'hex' or 'uhugeint', not {ids!r}")
    home = work / f"bound-{fmt}-{ids}"
    shutil.rmtree(home, ignore_errors=True)
    s = _settings(home)
    reader = "read_json" if fmt == "jsonl" else "read_parquet"
    with open_store(s) as con:  # a migrated store: the real tables and constraints
        if ids == "uhugeint":
            execute(con, "ingest_bound_ids_uhugeint")
        execute(con, "checkpoint")
        start = time.perf_counter()
        con.begin()
        stage = f"ingest_bound_stage_{reader}" + ("_uhugeint" if ids == "uhugeint" else "")
        execute(con, stage, {"path": str(work / f"logs.{fmt}")})
        execute(con, "ingest_bound_write_prompts")
        execute(con, "ingest_bound_write_outcomes")
        con.commit()
        seconds = time.perf_counter() - start
        rows = scalar(con, "ingest_bound_count")
        id_type = scalar(con, "ingest_bound_id_types")
    shutil.rmtree(home, ignore_errors=True)
    return {"seconds": seconds, "rows": rows, "id_type": id_type}


def ingest_ours(work: Path, n: int, fmt: str) -> dict[str, Any]:
    """The library's ``ingest_file`` on the file. Like the floor's process, which imports DuckDB before its
    clock starts, this one imports what the ingest uses first, Great Expectations included (GX is otherwise
    imported on first use, in a background thread: a few seconds, once per process, whatever the number of
    files or rows); that one-time cost is reported as ``gx_import_s``, and ``cold_ratio`` counts it in."""
    from router import validation
    from router.ingest import ingest_file
    from router.storage import open_store

    home = work / f"home-{fmt}"
    shutil.rmtree(home, ignore_errors=True)
    s = _settings(home)
    start = time.perf_counter()
    validation.prepare(s.gx_docs, "logs").join()
    gx_import = time.perf_counter() - start
    with open_store(s) as con:
        start = time.perf_counter()
        r = ingest_file(con, "logs", work / f"logs.{fmt}", s)
        seconds = time.perf_counter() - start
    shutil.rmtree(home, ignore_errors=True)
    return {"seconds": seconds, "rows": r.rows_in, "rows_new": r.rows_new, "quarantined": r.rows_quarantined,
            "rows_gx_validated": r.rows_gx_validated, "gx_import_s": round(gx_import, 3), "parts_s": r.seconds,
            "gx_s": r.gx_seconds}


# ================================================================================================ nightly
def _split_shipped(root: Path, keep_rows: int) -> tuple[Path, Path, Path]:
    """Shipped data into ``all`` (every row), ``base`` (90% of each file's rows) and ``new`` (the other 10%,
    under new file names). ``keep_rows`` > 0 clips every file to that many rows first (small size)."""
    import polars as pl

    out = {k: root / k for k in ("all", "base", "new")}
    for kind, files in (("routerbench", sorted((DATA / "routerbench_subset").glob("*.csv"))),
                        ("logs", [DATA / "demo" / "logs.jsonl"]), ("backlog", [DATA / "demo" / "backlog.jsonl"])):
        for path in files:
            frame = pl.read_csv(path, infer_schema=False) if path.suffix == ".csv" else pl.read_ndjson(path)
            if keep_rows:
                frame = frame.head(keep_rows)
            cut = int(round(frame.height * 0.9))
            stem, suffix = path.stem, path.suffix
            for part, rows, name in (("all", frame, path.name), ("base", frame.head(cut), path.name),
                                     ("new", frame.slice(cut), f"{stem}_new{suffix}")):
                folder = out[part] / kind
                folder.mkdir(parents=True, exist_ok=True)
                if suffix == ".csv":
                    rows.write_csv(folder / name)
                else:
                    rows.write_ndjson(folder / name)
    return out["all"], out["base"], out["new"]


def _land(src: Path, home: Path) -> None:
    for kind_dir in src.iterdir():
        target = home / "landing" / kind_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for f in kind_dir.iterdir():
            shutil.copy2(f, target / f.name)


def _night(home: Path) -> dict[str, Any]:
    """One night: every step of ``router.nightly.STEPS`` in order (what the Prefect flow runs), without Prefect
    (its ephemeral server start-up would dominate a nothing-new night: see docs/performance.md)."""
    from router import nightly as steps
    from router.timing import Laps

    s = _settings(home)
    started = datetime.now(UTC).replace(tzinfo=None)
    lap = Laps()
    night = steps.run_night(steps.Night(s, f"bench-{started:%H%M%S%f}", started), after_step=lap)
    r = night.results
    step = r["train"]
    return {"rows_new": r["ingest"]["rows_new"], "embedded": r["embed"]["embedded"], "trained": not step.skipped,
            "routed": r["route"].get("routed", 0), "steps_s": lap.seconds, "encode_s": round(r["embed"]["seconds"], 3),
            "fit_s": {k: round(v, 3) for k, v in step.run.seconds.items()} if not step.skipped else {}}


def nightly_setup(work: Path, n: int) -> dict[str, Any]:
    all_, _, _ = _split_shipped(work / "data", n)
    rows = sum(1 for f in all_.rglob("*") if f.is_file() for _ in f.open())
    return {"rows": rows}


def nightly_base(work: Path, n: int) -> dict[str, Any]:
    """The nights before (untimed): 90% of every file, ingested, embedded, trained on, promoted, routed.

    Runs after the scratch night (the floor) and takes the vectors of its prompts from the scratch store
    instead of encoding them again (the same encoder on the same text gives the same vector): that is most of
    a night's work on 2 CPU cores, and it would only make the bench longer, not change its figures."""
    from router import nightly as steps
    from bench.store import execute, relation
    from router.storage import open_store

    home = work / "incremental"
    shutil.rmtree(home, ignore_errors=True)
    _land(work / "data" / "base", home)
    s = _settings(home)
    ingested = steps.ingest_landing(s)
    with open_store(_settings(work / "scratch"), read_only=True) as scratch:
        vectors = relation(scratch, "all_embeddings").pl()
    with open_store(s) as con:
        con.register("seed_frame", vectors)
        seeded = execute(con, "seed_embeddings")[0][0]
        con.unregister("seed_frame")
    info = _night(home)  # embeds what the scratch store lacked (nothing), trains, promotes, routes, reports
    return {**info, "rows_new": ingested.rows_new, "vectors_seeded": int(seeded)}


def nightly_floor(work: Path, n: int) -> dict[str, Any]:
    home = work / "scratch"
    shutil.rmtree(home, ignore_errors=True)
    _land(work / "data" / "all", home)
    start = time.perf_counter()
    info = _night(home)
    return {"seconds": time.perf_counter() - start, "rows": info["rows_new"], **info}


def nightly_ours(work: Path, n: int) -> dict[str, Any]:
    home = work / "incremental"
    _land(work / "data" / "new", home)
    start = time.perf_counter()
    info = _night(home)
    return {"seconds": time.perf_counter() - start, "rows": info["rows_new"], **info}


def nightly_ours2(work: Path, n: int) -> dict[str, Any]:
    start = time.perf_counter()
    info = _night(work / "incremental")
    return {"seconds": time.perf_counter() - start, "rows": info["rows_new"], **info}


# ================================================================================================== train
def train_ours(work: Path, n: int) -> dict[str, Any]:
    """Fit the attention router with its default config on ``n`` prompts × 11 models (the shipped RouterBench
    rows' real scores, costs, lengths and evals, tiled; seeded random unit vectors)."""
    import torch

    from router.routers import get_router

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data = _routerbench_matrix(n)
    overrides = {} if n >= 36_000 else {"n_members": 1, "max_epochs": 2}
    router = get_router("attention", **overrides)
    cfg = router.config
    start = time.perf_counter()
    router.fit(data, seed=42)
    seconds = time.perf_counter() - start
    epochs = cfg.max_epochs * cfg.n_members
    return {"seconds": seconds, "rows": data.n, "models": len(data.models), "epochs": cfg.max_epochs,
            "members": cfg.n_members, "s_per_epoch": seconds / epochs}


# ================================================================================================ runner
PHASES: dict[str, dict[str, Callable[..., dict[str, Any]]]] = {
    "embed": {"setup": embed_setup, "floor": embed_floor, "ours": embed_ours},
    "encoder_backends": {"setup": backends_setup, "floor": backend_encode,
                         "ours": lambda w, n: backend_encode(w, n, "onnx"),
                         "int8": lambda w, n: backend_encode(w, n, "onnx", "int8")},
    "embed_subset": {"setup": embed_subset_setup, "floor": embed_subset_floor, "ours": embed_subset_ours,
                     "int8": lambda w, n: embed_subset_ours(w, n, "onnx", "int8")},
    "route": {"setup": route_setup, "floor": route_floor, "ours": route_ours},
    "route_attention": {"setup": route_setup, "floor": route_floor,
                        "ours": lambda w, n: route_ours(w, n, attention=True)},
    "ingest_jsonl": {"setup": lambda w, n: ingest_setup(w, n, "jsonl"),
                     "floor": lambda w, n: ingest_floor(w, n, "jsonl"),
                     "bound": lambda w, n: ingest_bound(w, n, "jsonl"),
                     "ours": lambda w, n: ingest_ours(w, n, "jsonl")},
    "ingest_parquet": {"setup": lambda w, n: ingest_setup(w, n, "parquet"),
                       "floor": lambda w, n: ingest_floor(w, n, "parquet"),
                       "bound": lambda w, n: ingest_bound(w, n, "parquet"),
                       "ours": lambda w, n: ingest_ours(w, n, "parquet")},
    "nightly": {"setup": nightly_setup, "floor": nightly_floor, "base": nightly_base, "ours": nightly_ours,
                "ours2": nightly_ours2},
    "train": {"ours": train_ours},
}


def _child(name: str, phase: str, work: Path, n: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.perf", "child", name, phase, str(work), str(n)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, env=os.environ.copy())
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench {name} {phase} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("BENCH "):])


def _record(target: float, floor: dict[str, Any], ours: dict[str, Any], extra: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    return {"ratio": ours["seconds"] / floor["seconds"], "target": target, "floor_s": round(floor["seconds"], 3),
            "ours_s": round(ours["seconds"], 3), "rows": int(ours["rows"]), "peak_rss_mb": round(ours["rss_mb"], 1),
            **(extra or {})}


def run_bench(name: str, size: str, work_root: Path, echo: Callable[[str], None] = print) -> dict[str, dict]:
    bench = BENCHES[name]
    n = bench.sizes[size]
    work = work_root / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    phases = PHASES[name]
    setup = _child(name, "setup", work, n) if "setup" in phases else {}
    out: dict[str, dict] = {}
    if name == "train":
        ours = _child(name, "ours", work, n)
        floor = {"seconds": TRAIN_BUDGET_S}
        out[name] = _record(bench.target, floor, ours, {k: ours[k] for k in ("s_per_epoch", "epochs", "members",
                                                                            "models")})
        out[name]["floor_is"] = "the 10-minute budget"
    elif name == "encoder_backends":  # torch, onnx, onnx int8 on the same texts, one after the other, repeated
        runs: dict[str, list[dict]] = {"floor": [], "ours": [], "int8": []}
        for _ in range(bench.repeats):
            for phase, done in runs.items():
                done.append(_child(name, phase, work, n))
        floor, onnx, int8 = (min(done, key=lambda run: run["seconds"]) for done in runs.values())
        for figure, run, variant, phase in (("encoder_onnx", onnx, "onnx-none", "ours"),
                                            ("encoder_int8", int8, "onnx-int8", "int8")):
            out[figure] = _record(TARGETS[figure], floor, run, {
                "tokens": run["tokens"], "tokens_per_s": run["tokens_per_s"],
                "torch_tokens_per_s": floor["tokens_per_s"], "cpu_ratio": round(run["cpu_s"] / floor["cpu_s"], 3),
                "runs_s": {"floor": [round(r["seconds"], 3) for r in runs["floor"]],
                           "ours": [round(r["seconds"], 3) for r in runs[phase]]},
                **_cosines(work, variant)})
    elif name == "embed_subset":  # the same store embedded from scratch on torch, then on onnx int8
        floor, ours, int8 = (_child(name, phase, work, n) for phase in ("floor", "ours", "int8"))
        out["embed_subset"] = _record(bench.target, floor, ours, {"backend": ours["backend"]})
        out["embed_subset_int8"] = _record(TARGETS["embed_subset_int8"], floor, int8, {"backend": int8["backend"]})
    elif name == "nightly":
        floor = _child(name, "floor", work, n)
        base = _child(name, "base", work, n)
        ours = _child(name, "ours", work, n)
        ours2 = _child(name, "ours2", work, n)
        out["nightly_incremental"] = _record(TARGETS["nightly_incremental"], floor, ours,
                                             {"rows_all": setup.get("rows"), "scratch": floor, "base_nights": base,
                                              "night": ours})
        out["nightly_nothing_new"] = _record(TARGETS["nightly_nothing_new"], floor, ours2, {"night": ours2})
        for figure in ("nightly_incremental", "nightly_nothing_new"):
            # rows = input rows the night covers (all landed data); what was new is in night.rows_new
            out[figure]["rows"] = int(setup.get("rows") or 0)
    else:
        floor_runs, ours_runs = [], []
        bound = None
        for _ in range(bench.repeats):  # interleaved, so that a slow spell of the machine hits both sides
            floor_runs.append(_child(name, "floor", work, n))
            if bound is None and "bound" in phases:
                bound = _child(name, "bound", work, n)
            ours_runs.append(_child(name, "ours", work, n))
        floor = min(floor_runs, key=lambda run: run["seconds"])
        ours = min(ours_runs, key=lambda run: run["seconds"])
        extra = {k: v for k, v in ours.items() if k not in ("seconds", "rows", "rss_mb")}
        if bench.repeats > 1:
            extra["runs_s"] = {"floor": [round(r["seconds"], 3) for r in floor_runs],
                               "ours": [round(r["seconds"], 3) for r in ours_runs]}
        if "gx_import_s" in ours:
            extra["cold_ratio"] = round((ours["seconds"] + ours["gx_import_s"]) / floor["seconds"], 3)
        if bound is not None:
            extra.update(bound_s=round(bound["seconds"], 3), bound_rows=bound["rows"],
                         bound_ratio=round(bound["seconds"] / floor["seconds"], 3))
        out[name] = _record(bench.target, floor, ours, extra)
    for figure, rec in out.items():
        verdict = "meets" if rec["ratio"] <= rec["target"] else "MISSES"
        echo(f"{figure:22s} ratio {rec['ratio']:7.3f} (target ≤ {rec['target']}, {verdict})  "
             f"floor {rec['floor_s']:8.2f} s  ours {rec['ours_s']:8.2f} s  rows {rec['rows']:>9,}  "
             f"peak RSS {rec['peak_rss_mb']:7.0f} MB"
             + (f"  (cold, GX import {rec['gx_import_s']:.1f} s counted: {rec['cold_ratio']:.3f})"
                if "cold_ratio" in rec else "")
             + (f"  (schema lower bound: {rec['bound_ratio']:.2f})" if "bound_ratio" in rec else "")
             + (f"  tokens/s {rec['tokens_per_s']:,.0f} vs torch {rec['torch_tokens_per_s']:,.0f}, CPU-time ratio "
                f"{rec['cpu_ratio']:.3f}, cosine to torch min {rec['cosine_min']:.4f} mean {rec['cosine_mean']:.4f}"
                if "tokens_per_s" in rec else ""))
    shutil.rmtree(work, ignore_errors=True)
    return out


def run_all(size: str = "full", only: list[str] | None = None, out: Path | None = None,
            work_root: Path | None = None, echo: Callable[[str], None] = print) -> dict[str, dict]:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    names = list(BENCHES)
    if only:
        wanted = set(only)
        names = [n for n in names if n in wanted or set(BENCHES[n].figures) & wanted]
        unknown = wanted - set(names) - {f for n in names for f in BENCHES[n].figures}
        if unknown:
            raise ValueError(f"unknown bench {sorted(unknown)}; choose from {list(BENCHES)}")
    from router.settings import Settings

    out = out or Settings().reports / "bench" / "latest.json"
    where = machine()
    echo(f"on {where['cpu']}, {where['cores']} cores ({where['platform']})")
    results: dict[str, dict] = {}
    own_tmp = work_root is None
    work_root = work_root or Path(tempfile.mkdtemp(prefix="router-bench-"))
    try:
        for name in names:
            results.update(run_bench(name, size, work_root, echo))
    finally:
        if own_tmp:
            shutil.rmtree(work_root, ignore_errors=True)
    for rec in results.values():
        rec["machine"] = where
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() and only else {}
    out.write_text(json.dumps({**previous, **results}, indent=2, default=str))
    echo(f"wrote {out}")
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        name, phase, work, n = argv[1], argv[2], Path(argv[3]), int(argv[4])
        result = PHASES[name][phase](work, n)
        result["rss_mb"] = _peak_rss_mb()
        print("BENCH " + json.dumps(result, default=str), flush=True)
        return
    parser = argparse.ArgumentParser(description="speed and scale benchmarks (ratios against same-run floors)")
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--only", action="append", help="bench name (repeatable)")
    parser.add_argument("--out", type=Path, help="JSON output (default $ROUTER_HOME/reports/bench/latest.json)")
    args = parser.parse_args(argv)
    try:
        run_all(args.size, args.only, args.out)
    except ValueError as exc:  # an unknown bench name: one line, exit 2
        parser.error(str(exc))


if __name__ == "__main__":
    main()
