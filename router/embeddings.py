"""Prompt embeddings, cached in the store by (prompt_id, encoder), tagged with how they were computed.

Before encoding, the blocks many prompts of a task or source share (few-shot demonstrations, instructions) are
learned from the stored prompts (``router.templates``; table ``prompt_templates``) and stripped; a remainder longer
than the encoder's window is read as mean-pooled windows (``router.representation``). Every vector records the
representation settings (``representation``), the template stripped from its prompt (``template_id``), the hash of
the encoder's files (``encoder_weights``, :func:`router.encoder.weights_fingerprint`) and how the encoder ran
(``encoder_variant``: torch or onnx, fp32, fp16 or int8; provenance only, the variants agree to a cosine of 0.99).
A prompt is encoded when it has no vector for the configured encoder, or one under other settings, another
template or other weights (an encoder folder retrained in place). So a re-run embeds nothing, new data embeds only
its new prompts, and a night whose learned templates change re-embeds only the prompts whose stripped template
changed (logged, and in :class:`EmbedResult`).

Prompts are encoded shortest remainder first (batches of similar length pad less), normalised on CUDA when
available (fp16 there; ``ROUTER_DEVICE`` forces a device), and each chunk is committed on its own so an
interrupted run keeps what it finished. Prompts are keyed by the hash of their text, so a text is encoded once
however often it occurs. Vectors are stored as binary ``FLOAT[]`` (4 bytes a dimension, no text encoding).
``flows/scale.py`` runs the same steps distributed: :func:`plan` and :func:`store_vectors` in the flow's process,
:func:`encode_texts` on the workers. The encoder itself (resolved, loaded and run the same way for the served
model) is ``router.encoder``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import polars as pl

from router import representation as rep
from router.encoder import OnnxEncoder, batch_size, open_encoder, resolve_device, variant, weights_fingerprint
from router.progress import Progress
from router.settings import Settings
from router.storage import query, relation, transaction
from router.templates import Template, learn

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


@dataclass
class EmbedResult:
    encoder: str
    device: str
    embedded: int
    already: int
    seconds: float
    representation: str = ""
    templates: int = 0  # groups with a learned template
    templates_changed: list[str] = field(default_factory=list)  # groups whose template appeared, changed or went
    reembedded: int = 0  # of ``embedded``: prompts whose stored vector was replaced (template or settings changed)
    weights_changed: int = 0  # of ``reembedded``: vectors made by other encoder weights than the encoder's files now

    @property
    def per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EmbedPlan:
    """What an embed run has to do: the prompts to encode (``prompt_id``, ``text`` = the remainder to encode,
    ``template_id``, ``replaces`` = it has a stale vector), under ``representation`` with ``templates``."""

    representation: rep.Representation
    templates: tuple[Template, ...]
    todo: pl.DataFrame
    already: int
    changed_groups: list[str]
    weights: str | None = None  # the encoder's files now (:func:`router.encoder.weights_fingerprint`)
    weights_changed: int = 0  # stored vectors made by other weights (all re-embedded)

    def in_range(self, lo: str | None, hi: str | None) -> pl.DataFrame:
        """The prompts to encode whose prompt_id lies in the hash range ``[lo, hi)`` (a distributed chunk)."""
        keep = pl.lit(True)
        if lo is not None:
            keep &= pl.col("prompt_id") >= lo
        if hi is not None:
            keep &= pl.col("prompt_id") < hi
        return self.todo.filter(keep)


def load_encoder(settings: Settings, device: str | None = None) -> SentenceTransformer | OnnxEncoder:
    """The configured encoder (``settings.encoder``) on ``device`` (default ``settings.device``) and backend
    (``settings.encoder_backend``, ``encoder_quantize``), loaded offline by :func:`router.encoder.open_encoder`
    (never a hub download)."""
    return open_encoder(settings.encoder, device or settings.device, backend=settings.encoder_backend,
                        quantize=settings.encoder_quantize == "int8", cache=settings.encoder_cache)


def encode_texts(model: Any, texts: list[str], settings: Settings) -> np.ndarray:
    """``texts`` (remainders) read as the configured representation says
    (:func:`router.representation.encode_texts`)."""
    return rep.encode_texts(model, texts, batch_size(model, settings.embed_batch_size), settings.embed_max_chunks)


def stored_templates(con: duckdb.DuckDBPyConnection) -> tuple[Template, ...]:
    """The templates learned at the last embed step (``prompt_templates``)."""
    frame = relation(con, "embed/stored_templates").pl()
    return tuple(Template(g, p, s) for g, p, s in frame.select("template_group", "prefix", "suffix").iter_rows())


def _learn_and_store(con: duckdb.DuckDBPyConnection, state: pl.DataFrame, representation: rep.Representation
                     ) -> tuple[tuple[Template, ...], list[str]]:
    """Learn the templates of the stored prompts; store them when they differ; return them and the changed groups."""
    groups = {g: texts for g, texts in state.group_by("template_group").agg("text").iter_rows() if g is not None}
    templates = learn(groups, representation.rules)
    old = relation(con, "embed/stored_templates").pl()
    old_ids = dict(zip(old["template_group"], old["template_id"], strict=True))
    new_ids = {t.group: t.id for t in templates}
    changed = sorted(g for g in set(old_ids) | set(new_ids) if old_ids.get(g) != new_ids.get(g))
    if changed:
        now = datetime.now(UTC).replace(tzinfo=None)
        learned_at = dict(zip(old["template_group"], old["learned_at"], strict=True))
        sizes = {g: len(set(texts)) for g, texts in groups.items()}
        staged = pl.DataFrame(
            [(t.group, t.id, t.prefix, t.suffix, sizes[t.group], now if t.group in changed else learned_at[t.group])
             for t in templates],
            schema={"template_group": pl.String, "template_id": pl.String, "prefix": pl.String, "suffix": pl.String,
                    "n_prompts": pl.Int64, "learned_at": pl.Datetime("us")}, orient="row")
        with transaction(con):
            con.register("staged_templates", staged)
            con.execute(query("embed/replace_templates"))
            con.unregister("staged_templates")
    return templates, changed


def plan(con: duckdb.DuckDBPyConnection, settings: Settings) -> EmbedPlan:
    """Learn (and store) tonight's templates when the settings strip them, and list the prompts lacking a current
    vector for ``settings.encoder``: none, or one under other representation settings or another template."""
    representation = rep.Representation.from_settings(settings)
    weights = weights_fingerprint(settings.encoder)
    if weights is not None:  # one statement, atomic on its own (the step's transactions are its vector chunks)
        con.execute(query("embed/adopt_weights"), {"encoder": settings.encoder, "weights": weights})
    state = relation(con, "embed/prompt_state", {"encoder": settings.encoder}).pl()
    templates, changed = (), []
    if representation.templates:
        templates, changed = _learn_and_store(con, state, representation)
    remainders, ids = rep.prepare(state["text"].to_list(), templates)
    state = state.with_columns(pl.Series("remainder", remainders, dtype=pl.String),
                               pl.Series("new_template_id", ids, dtype=pl.String))
    # an encoder no local folder holds (weights None) has nothing to compare with
    other_weights = (pl.lit(False) if weights is None
                     else pl.col("embedded") & pl.col("encoder_weights").ne_missing(pl.lit(weights, dtype=pl.String)))
    stale = (~pl.col("embedded") | (pl.col("representation") != representation.key).fill_null(True)
             | pl.col("template_id").ne_missing(pl.col("new_template_id")) | other_weights)
    weights_changed = int(state.select(other_weights.sum()).item())
    # groups whose stored vectors (under tonight's settings) were stripped of another template than tonight's: the
    # templates table already holds tonight's when an earlier run learned them and stopped before storing them all
    moved = state.filter(pl.col("embedded") & (pl.col("representation") == representation.key)
                         & pl.col("template_id").ne_missing(pl.col("new_template_id")))
    changed = sorted(set(changed) | {g for g in moved["template_group"].to_list() if g is not None})
    todo = (state.filter(stale)
            .select("prompt_id", pl.col("remainder").alias("text"), pl.col("new_template_id").alias("template_id"),
                    pl.col("embedded").alias("replaces"))
            .sort(pl.col("text").str.len_chars(), "prompt_id"))
    if changed:
        log.info("templates changed for %d group(s) (%s): %d stored vectors to re-embed", len(changed),
                 ", ".join(changed), int(todo["replaces"].sum()))
    if weights_changed:
        log.warning("the files of encoder %s changed since %d of its stored vectors were made: re-embedding them",
                    settings.encoder, weights_changed)
    return EmbedPlan(representation, templates, todo, state.height - todo.height, changed, weights, weights_changed)


def store_vectors(con: duckdb.DuckDBPyConnection, encoder: str, prompt_ids: pl.Series | list[str],
                  vectors: np.ndarray, representation: str, template_ids: pl.Series | list[str | None],
                  weights: str | None = None, how: str | None = None) -> None:
    """Store one chunk of vectors (one transaction), replacing the chunk's prompts' stale vectors; ``weights`` and
    ``how`` are the encoder's files and variant (:func:`router.encoder.weights_fingerprint`, :func:`variant`)."""
    n, dim = vectors.shape
    frame = pl.DataFrame({
        "prompt_id": pl.Series("prompt_id", prompt_ids, dtype=pl.String),
        "encoder": pl.repeat(encoder, n, dtype=pl.String, eager=True),
        "dim": pl.repeat(dim, n, dtype=pl.Int32, eager=True),
        "vector": pl.Series(vectors, dtype=pl.Array(pl.Float32, dim)).cast(pl.List(pl.Float32)),
        "representation": pl.repeat(representation, n, dtype=pl.String, eager=True),
        "template_id": pl.Series("template_id", template_ids, dtype=pl.String),
        "encoder_weights": pl.repeat(weights, n, dtype=pl.String, eager=True),
        "encoder_variant": pl.repeat(how, n, dtype=pl.String, eager=True),
    })
    with transaction(con):
        con.register("staged_vectors", frame)
        con.execute(query("embed/delete_replaced"))
        con.execute(query("embed/insert_vectors"), {"now": datetime.now(UTC).replace(tzinfo=None)})
        con.unregister("staged_vectors")


def embed_missing(con: duckdb.DuckDBPyConnection, settings: Settings,
                  progress: Callable[[int, int], None] | None = None, model=None) -> EmbedResult:
    """Embed every stored prompt (outcomes and backlog) lacking a current vector for ``settings.encoder``
    (:func:`plan`)."""
    encoder = settings.encoder
    work = plan(con, settings)
    todo = work.todo
    device = resolve_device(settings.device)
    key = work.representation.key
    result = EmbedResult(encoder, device, 0, work.already, 0.0, key, len(work.templates), work.changed_groups,
                         weights_changed=work.weights_changed)
    if todo.height == 0:
        return result
    model = model or load_encoder(settings, device)
    how = variant(model)
    start = time.perf_counter()
    done = 0
    lines = Progress(log, f"embedding with {encoder} on {device}", todo.height, "prompts")
    # progress between the encoder's calls, well under a chunk's minute
    step = 4 * batch_size(model, settings.embed_batch_size)
    for offset in range(0, todo.height, settings.embed_chunk_size):  # one transaction per chunk
        chunk = todo.slice(offset, settings.embed_chunk_size)
        texts = chunk["text"].to_list()
        parts = []
        for lo in range(0, len(texts), step):
            parts.append(encode_texts(model, texts[lo:lo + step], settings))
            lines.update(done + min(lo + step, len(texts)))
        vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
        store_vectors(con, encoder, chunk["prompt_id"], vectors, key, chunk["template_id"], work.weights, how)
        done += chunk.height
        if progress:
            progress(done, todo.height)
    result.seconds = time.perf_counter() - start
    result.embedded, result.reembedded = done, int(todo["replaces"].sum())
    log.info("embedded %d prompts (%d re-embedded) with %s on %s in %.1f s (%.1f prompts/s)", done,
             result.reembedded, encoder, device, result.seconds, result.per_second)
    return result


def stack(vectors: pl.Series) -> np.ndarray:
    """A polars list/array column of equal-length vectors → (n, dim) float32."""
    if vectors.len() == 0:
        return np.zeros((0, 0), dtype=np.float32)
    dim = vectors.list.len().max() if vectors.dtype == pl.List else vectors.dtype.size
    return vectors.cast(pl.Array(pl.Float32, dim)).to_numpy().astype(np.float32, copy=False)
