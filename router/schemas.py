"""What each input source must look like.

Three sources land in the store:

* ``routerbench`` - RouterBench's wide format (one row per prompt, one score column and one
  ``{model}|total_cost`` column per model). The model pool is discovered from the columns.
* ``logs`` - production logs in long format (one row per request: the model that answered it, its quality
  when scored, and what it cost). Sparse: most prompts are seen with one model.
* ``backlog`` - queries waiting to be routed.

And one table of facts about the models: ``prices`` - each model's price from an effective date on (per call, or
per 1,000 input and output tokens), which routing rescales the cost predictions by (``router.prices``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"

#: Columns RouterBench files carry besides the model columns; ignored on ingest.
ROUTERBENCH_REQUIRED = ("sample_id", "prompt", "eval_name")
#: The original row index (first match wins); part of the natural key, see ``router.ingest``.
ROUTERBENCH_INDEX = ("Unnamed: 0", "", "index", "__index_level_0__")
ROUTERBENCH_IGNORED = ("oracle_model_to_route_to", *ROUTERBENCH_INDEX)


@dataclass(frozen=True)
class LongSchema:
    """A long-format source: required and optional columns."""

    kind: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(self.required) | frozenset(self.optional)


LOGS = LongSchema(
    kind="logs",
    required=("request_id", "ts", "prompt", "model", "quality", "cost_usd"),
    optional=("task", "latency_ms", "tokens_in", "tokens_out"),
)

BACKLOG = LongSchema(kind="backlog", required=("query_id", "prompt"), optional=("submitted_at", "task"))

PRICES = LongSchema(kind="prices", required=("model", "effective_from", "pricing"),
                    optional=("input_per_1k", "output_per_1k", "per_call", "currency"))
#: The values of ``pricing``, and the one currency prices are stored in.
PRICINGS = ("per_call", "per_token")
CURRENCY = "USD"

KINDS = ("routerbench", "logs", "backlog", "prices")

#: File suffixes each source accepts (``.pkl`` only for RouterBench, and only when allowed).
SUFFIXES = {
    "routerbench": (".csv", ".parquet", ".pkl"),
    "logs": (".jsonl", ".ndjson", ".parquet"),
    "backlog": (".jsonl", ".ndjson", ".parquet", ".csv"),
    "prices": (".csv", ".json", ".jsonl", ".ndjson"),
}


class SchemaError(ValueError):
    """A file's columns do not match its source's schema (the file is rejected whole)."""


def routerbench_models(columns: list[str], file: str) -> list[str]:
    """Model names of a RouterBench wide file, discovered from its columns.

    A model is a column ``M`` with a ``M|total_cost`` partner. Raises :class:`SchemaError` naming the
    file and the offending columns when required columns are missing, a score column has no cost column
    (or the reverse), or a column is not recognised.
    """
    cols = set(columns)
    missing = [c for c in ROUTERBENCH_REQUIRED if c not in cols]
    cost_models = {c[: -len(COST_SUFFIX)] for c in columns if c.endswith(COST_SUFFIX)}
    response_models = {c[: -len(RESPONSE_SUFFIX)] for c in columns if c.endswith(RESPONSE_SUFFIX)}
    plain = [
        c
        for c in columns
        if c not in ROUTERBENCH_REQUIRED
        and c not in ROUTERBENCH_IGNORED
        and not c.endswith(COST_SUFFIX)
        and not c.endswith(RESPONSE_SUFFIX)
        and not c.startswith("Unnamed:")
    ]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    no_cost = sorted(set(plain) - cost_models)
    if no_cost:
        problems.append(f"score columns without a '{{model}}{COST_SUFFIX}' column: {no_cost}")
    no_score = sorted(cost_models - set(plain))
    if no_score:
        problems.append(f"cost columns without a score column: {[m + COST_SUFFIX for m in no_score]}")
    stray = sorted(response_models - cost_models)
    if stray:
        problems.append(f"response columns for unknown models: {[m + RESPONSE_SUFFIX for m in stray]}")
    if not cost_models and not missing:
        problems.append("no model columns (expected '<model>' and '<model>|total_cost' pairs)")
    if problems:
        raise SchemaError(f"{file}: not a RouterBench wide file: " + "; ".join(problems))
    return [c for c in columns if c in cost_models]  # file order


#: Columns a long-format file may carry that are not data: the index pandas writes into Parquet metadata
#: columns when a frame with a non-default index is saved (``df.to_parquet``). Ignored, never stored.
LONG_IGNORED = ("__index_level_0__",)


def check_long_columns(schema: LongSchema, columns: list[str], file: str) -> None:
    missing = [c for c in schema.required if c not in columns]
    extra = [c for c in columns if c not in schema.allowed and c not in LONG_IGNORED]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if extra:
            parts.append(f"unexpected columns {extra}")
        raise SchemaError(
            f"{file}: wrong schema for {schema.kind}: " + "; ".join(parts)
            + f" (required {list(schema.required)}, optional {list(schema.optional)})"
        )
