"""What of a prompt is embedded, and how: template stripping (``router.templates``) and chunked encoding.

A :class:`Representation` names the settings that decide a prompt's vector besides the encoder: whether learned
templates are stripped (and the rules that learn them), and how a remainder longer than the encoder's window
(its ``max_seq_length`` less the two special tokens) is read: cut at the window (``max_chunks`` 1, the
encoder's own truncation), else split into full windows of word pieces (consecutive from the start, the last one
ending at the text's end, overlapping its neighbour), the first ``ceil(max_chunks / 2)`` and the last
``floor(max_chunks / 2)`` kept when there are more, each window's pieces encoded as they are
(:func:`router.encoder.encode_pieces`), mean-pooled and L2-normalised. A text that fits one window is encoded as
is, so its vector is the plain encoder's. Its :attr:`Representation.key` is stored
with every vector (``embeddings.representation``); the store, the scale-out flow and the served model all call
:func:`encode_texts`, so a prompt gets the same vector everywhere (of the same encoder files; backends agree to a
cosine of 0.99, ``router.encoder.variant``). No store imports: the served model uses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from router.encoder import encode, encode_pieces
from router.templates import Template, TemplateRules, strip

if TYPE_CHECKING:
    from router.settings import Settings

__all__ = ["LEGACY_KEY", "Representation", "encode_texts", "prepare"]

#: The representation of vectors stored before it was recorded: the raw text, cut at the encoder's window.
LEGACY_KEY = "raw+chunks(1)"


@dataclass(frozen=True)
class Representation:
    templates: bool = True
    rules: TemplateRules = TemplateRules()
    max_chunks: int = 8

    def __post_init__(self) -> None:
        if self.max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1, got {self.max_chunks}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Representation:
        return cls(settings.embed_templates,
                   TemplateRules(settings.template_min_share, settings.template_min_chars),
                   settings.embed_max_chunks)

    @classmethod
    def from_key(cls, key: str) -> Representation:
        """The representation a :attr:`key` names (a registered model's ``pool.json`` stores the key). A key
        ``+chunks(N)`` with N > 1 was written before the windows were read as they are now (a last window of a few
        pieces, decoded to text): it reads today's windows."""
        sep = "+windows(" if "+windows(" in key else "+chunks("
        head, _, chunks = key.partition(sep)
        max_chunks = int(chunks.rstrip(")"))
        if head == "raw":
            return cls(False, TemplateRules(), max_chunks)
        if not (head.startswith("templates(") and head.endswith(")")):
            raise ValueError(f"not a representation key: {key!r}")
        fields = dict(part.split("=") for part in head[len("templates("):-1].split(","))
        return cls(True, TemplateRules(float(fields["share"]), int(fields["chars"])), max_chunks)

    @property
    def key(self) -> str:
        """``templates(share=0.5,chars=64)+windows(8)``, or ``raw+...`` without templates; ``+chunks(1)`` when a
        remainder is cut at the window (``+windows(N)``: read in up to N windows, as :func:`_windows` cuts them;
        vectors of the earlier ``+chunks(N)`` windowing are re-embedded)."""
        head = (f"templates(share={self.rules.min_share:g},chars={self.rules.min_chars})" if self.templates
                else "raw")
        return f"{head}+chunks(1)" if self.max_chunks == 1 else f"{head}+windows({self.max_chunks})"


def prepare(texts: Sequence[str], templates: Sequence[Template]) -> tuple[list[str], list[str | None]]:
    """(remainders, template ids) of ``texts`` under the learned ``templates`` (empty: texts unchanged)."""
    if not templates:
        return list(texts), [None] * len(texts)
    pairs = [strip(text, templates) for text in texts]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _windows(ids: list[int], window: int, max_chunks: int) -> list[list[int]]:
    """Full windows of ``ids`` (longer than one window): consecutive from the start, the last one ending at the
    end (overlapping its neighbour rather than a stub of a few pieces weighing as much as a full window); of more
    than ``max_chunks``, the first ``ceil(max_chunks / 2)`` and the last ``floor(max_chunks / 2)``."""
    count = math.ceil(len(ids) / window)
    if count <= max_chunks:
        starts = [i * window for i in range(count - 1)] + [len(ids) - window]
    else:
        head, tail = math.ceil(max_chunks / 2), max_chunks // 2
        starts = [i * window for i in range(head)] + [len(ids) - j * window for j in range(tail, 0, -1)]
    return [ids[start:start + window] for start in starts]


def encode_texts(model: Any, texts: Sequence[str], batch_size: int, max_chunks: int = 1) -> np.ndarray:
    """L2-normalised float32 vectors of ``texts`` (:func:`router.encoder.encode`), a text longer than the encoder's
    window read as up to ``max_chunks`` windows, mean-pooled (see the module docstring). An encoder without a
    word-piece tokenizer (a test stand-in) reads every text whole."""
    tokenizer = getattr(model, "tokenizer", None)
    limit = getattr(model, "max_seq_length", None)
    if max_chunks == 1 or tokenizer is None or not limit or len(texts) == 0:
        return encode(model, texts, batch_size)
    window = int(limit) - 2  # [CLS] and [SEP]
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    long = [row for row, tokens in enumerate(ids) if len(tokens) > window]
    if not long:
        return encode(model, texts, batch_size)
    short = [row for row, tokens in enumerate(ids) if len(tokens) <= window]
    out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    out[short] = encode(model, [texts[row] for row in short], batch_size)  # as the plain encoder reads them
    windows = [(row, piece) for row in long for piece in _windows(ids[row], window, max_chunks)]
    vectors = encode_pieces(model, [piece for _, piece in windows], batch_size)
    rows = np.searchsorted(long, [row for row, _ in windows])
    pooled = np.zeros((len(long), vectors.shape[1]), dtype=np.float64)
    np.add.at(pooled, rows, vectors.astype(np.float64))
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    out[long] = pooled.astype(np.float32)
    return out
