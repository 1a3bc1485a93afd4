"""Prompt embeddings, cached in the store by (prompt_id, encoder).

Only prompts without a vector for the configured encoder are encoded, so a re-run embeds nothing and new
data embeds only its new prompts. Prompts are read shortest first (batches of similar length pad less),
encoded normalised on CUDA when available (fp16 there; ``ROUTER_DEVICE`` forces a device), and each chunk
is committed on its own so an interrupted run keeps what it finished. Prompts are keyed by the hash of their
text, so a text is encoded once however often it occurs. Vectors are stored as binary ``FLOAT[]`` (4 bytes a
dimension, no text encoding). ``flows/scale.py`` runs the same steps distributed: :func:`missing` per
prompt-hash range and :func:`store_vectors` in the flow's process, :func:`encode` on the workers. The encoder
itself (resolved, loaded and run the same way for the served model) is ``router.encoder``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import polars as pl

from router.encoder import OnnxEncoder, encode, open_encoder, resolve_device
from router.progress import Progress
from router.settings import Settings
from router.storage import query, relation, scalar, transaction

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

    @property
    def per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def load_encoder(settings: Settings, device: str | None = None) -> SentenceTransformer | OnnxEncoder:
    """The configured encoder (``settings.encoder``) on ``device`` (default ``settings.device``) and backend
    (``settings.encoder_backend``, ``encoder_quantize``), loaded offline by :func:`router.encoder.open_encoder`
    (never a hub download)."""
    return open_encoder(settings.encoder, device or settings.device, backend=settings.encoder_backend,
                        quantize=settings.encoder_quantize == "int8", cache=settings.encoder_cache)


def missing(con: duckdb.DuckDBPyConnection, encoder: str, lo: str | None = None, hi: str | None = None
            ) -> pl.DataFrame:
    """(prompt_id, text) of the prompts lacking a vector for ``encoder``, shortest first, optionally only
    those whose prompt_id lies in the hash range ``[lo, hi)``."""
    return relation(con, "embed/missing_prompts", {"encoder": encoder, "lo": lo, "hi": hi}).pl()


def store_vectors(con: duckdb.DuckDBPyConnection, encoder: str, prompt_ids: pl.Series | list[str],
                  vectors: np.ndarray) -> None:
    """Insert one chunk of vectors (one transaction); prompts that already have one are left alone."""
    n, dim = vectors.shape
    frame = pl.DataFrame({
        "prompt_id": pl.Series("prompt_id", prompt_ids, dtype=pl.String),
        "encoder": pl.repeat(encoder, n, dtype=pl.String, eager=True),
        "dim": pl.repeat(dim, n, dtype=pl.Int32, eager=True),
        "vector": pl.Series(vectors, dtype=pl.Array(pl.Float32, dim)).cast(pl.List(pl.Float32)),
    })
    with transaction(con):
        con.register("staged_vectors", frame)
        con.execute(query("embed/insert_vectors"), {"now": datetime.now(UTC).replace(tzinfo=None)})
        con.unregister("staged_vectors")


def embed_missing(con: duckdb.DuckDBPyConnection, settings: Settings,
                  progress: Callable[[int, int], None] | None = None, model=None) -> EmbedResult:
    """Embed every stored prompt (outcomes and backlog) lacking a vector for ``settings.encoder``."""
    encoder = settings.encoder
    already = int(scalar(con, "embed/count_embedded", {"encoder": encoder}) or 0)
    todo = missing(con, encoder)
    device = resolve_device(settings.device)
    if todo.height == 0:
        return EmbedResult(encoder, device, 0, already, 0.0)
    model = model or load_encoder(settings, device)
    start = time.perf_counter()
    done = 0
    lines = Progress(log, f"embedding with {encoder} on {device}", todo.height, "prompts")
    step = 4 * settings.embed_batch_size  # progress between the encoder's calls, well under a chunk's minute
    for offset in range(0, todo.height, settings.embed_chunk_size):  # one transaction per chunk
        chunk = todo.slice(offset, settings.embed_chunk_size)
        texts = chunk["text"].to_list()
        parts = []
        for lo in range(0, len(texts), step):
            parts.append(encode(model, texts[lo:lo + step], settings.embed_batch_size))
            lines.update(done + min(lo + step, len(texts)))
        vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
        store_vectors(con, encoder, chunk["prompt_id"], vectors)
        done += chunk.height
        if progress:
            progress(done, todo.height)
    seconds = time.perf_counter() - start
    result = EmbedResult(encoder, device, done, already, seconds)
    log.info("embedded %d prompts with %s on %s in %.1f s (%.1f prompts/s)", done, encoder, device, seconds,
             result.per_second)
    return result


def stack(vectors: pl.Series) -> np.ndarray:
    """A polars list/array column of equal-length vectors → (n, dim) float32."""
    if vectors.len() == 0:
        return np.zeros((0, 0), dtype=np.float32)
    dim = vectors.list.len().max() if vectors.dtype == pl.List else vectors.dtype.size
    return vectors.cast(pl.Array(pl.Float32, dim)).to_numpy().astype(np.float32, copy=False)
