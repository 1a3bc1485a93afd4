"""Derive the demo backlog and production-log sample from the shipped RouterBench test rows.

    .venv/bin/python data/make_demo.py      # rewrites data/demo/backlog.jsonl and data/demo/logs.jsonl

* backlog.jsonl - every test prompt as a query to route: query_id ``rb-<sample_id>#<row index>``, the
  prompt text exactly as the store holds it (so its embedding is shared), task = eval_name, submitted_at
  spread over 2026-11-01 … 2026-11-07 (UTC).
* logs.jsonl - a sparse production-log sample: for each test prompt, ONE model drawn at random (seed 42)
  with its real RouterBench score and cost; request_id = the backlog query_id, so analysts can compare a
  routed query's predicted quality with what production later observed (view ``predicted_vs_realised``).
  Prompts of the test split never train a router (``router.dataset``), so these logs do not leak into
  training.

Deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from router.coercion import unwrap_prompt
from router.schemas import COST_SUFFIX

HERE = Path(__file__).parent
START = datetime(2026, 11, 1, tzinfo=UTC)


def main() -> None:
    frames = [pl.read_csv(p, infer_schema_length=0) for p in sorted((HERE / "routerbench_subset").glob("*_test.csv"))]
    rows = pl.concat(frames, how="diagonal").with_columns(pl.col("").cast(pl.Int64)).sort("")
    models = [c[: -len(COST_SUFFIX)] for c in rows.columns if c.endswith(COST_SUFFIX)]
    rng = np.random.default_rng(42)
    out = HERE / "demo"
    out.mkdir(exist_ok=True)
    with (out / "backlog.jsonl").open("w") as backlog, (out / "logs.jsonl").open("w") as logs:
        for i, row in enumerate(rows.iter_rows(named=True)):
            query_id = f"rb-{row['sample_id']}#{row['']}"
            prompt = unwrap_prompt(row["prompt"])
            at = START + timedelta(minutes=int(rng.integers(0, 7 * 24 * 60)))
            backlog.write(json.dumps({"query_id": query_id, "prompt": prompt, "task": row["eval_name"],
                                      "submitted_at": at.isoformat()}) + "\n")
            model = models[int(rng.integers(len(models)))]
            score = row[model]
            logs.write(json.dumps({
                "request_id": query_id, "ts": (at + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                "prompt": prompt, "model": model,
                "quality": None if score in (None, "", "nan") else float(score),
                "cost_usd": float(row[model + COST_SUFFIX]), "task": row["eval_name"],
            }) + "\n")
    print(f"wrote {i + 1} backlog queries and {i + 1} log lines to {out}")


if __name__ == "__main__":
    main()
