"""A calibration's out-of-fold predictions, kept on disk so that the next calibration can carry them forward.

The quality-target calibration (``router.policy``) fits ``ROUTER_ROUTE_CALIBRATION_FOLDS`` routers on the train
split to predict every dense train row out of fold. A night with a few new rows changes few of those rows, so each
calibration keeps its predictions here, one file per training run (``$ROUTER_HOME/calibration/<run_id>.npz``), and
the next one reuses those of rows whose prompt and vector are unchanged (``router.policy.out_of_fold``).

A file is only read back by a calibration of the same identity (:func:`identity`: encoder, representation, seed,
ensemble members, package version and the routers' code) and the same model pool; anything else starts a full
cross-fit. Files are written atomically; the newest :data:`KEEP` are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["KEEP", "OutOfFold", "identity", "latest", "save", "vector_keys"]

#: Files kept in the folder (the newest by run id); an older run's predictions are never carried.
KEEP = 3
_FORMAT = 1


@dataclass
class OutOfFold:
    """Out-of-fold predictions of one calibration, per dense train row.

    ``added`` marks the rows predicted outside a full cross-fit (new rows fitted as one extra fold, and rows
    carried with that mark): their share decides when the next calibration cross-fits from scratch again."""

    run_id: str
    models: list[str]
    identity: str
    prompt_ids: np.ndarray  # (n,) str
    vector_keys: np.ndarray  # (n,) uint64, :func:`vector_keys` of each row's vector
    q_hat: np.ndarray  # (n, m) float64
    c_hat: np.ndarray  # (n, m) float64
    added: np.ndarray  # (n,) bool
    carried: int = 0  # rows whose predictions came from an earlier calibration
    carried_from: str = ""  # that calibration's run id

    @property
    def n(self) -> int:
        return int(self.prompt_ids.shape[0])


def vector_keys(X: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of ``X`` (blake2b of its bytes): a re-embedded prompt gets a new key."""
    rows = np.ascontiguousarray(X)
    return np.fromiter((int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
                        for row in rows), dtype=np.uint64, count=rows.shape[0])


def identity(**parts: Any) -> str:
    """What a calibration's predictions depend on besides the rows, as one string (sha256 of the sorted parts)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def save(folder: Path, oof: OutOfFold) -> Path:
    """Write ``oof`` as ``folder/<run_id>.npz`` (atomically) and remove all but the newest :data:`KEEP` files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{oof.run_id}.npz"
    meta = {"format": _FORMAT, "run_id": oof.run_id, "models": list(oof.models), "identity": oof.identity}
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)), prompt_ids=np.asarray(oof.prompt_ids, dtype=str),
                                vector_keys=oof.vector_keys, q_hat=oof.q_hat, c_hat=oof.c_hat, added=oof.added)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in sorted(folder.glob("*.npz"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def latest(folder: Path, expected_identity: str, models: list[str]) -> OutOfFold | None:
    """The newest file's predictions when they were made with ``expected_identity`` for ``models`` (same order),
    else ``None`` (with the reason logged). An unreadable file is skipped with a warning, never an error: the
    calibration then cross-fits from scratch."""
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        return None
    path = files[-1]
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            oof = OutOfFold(meta["run_id"], list(meta["models"]), meta["identity"], data["prompt_ids"],
                            data["vector_keys"], data["q_hat"], data["c_hat"], data["added"])
            n, m = oof.n, len(oof.models)
            if (oof.q_hat.shape != (n, m) or oof.c_hat.shape != (n, m) or oof.vector_keys.shape != (n,)
                    or oof.added.shape != (n,)):
                raise ValueError("arrays of inconsistent shapes")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("calibration predictions %s unreadable (%s): cross-fitting from scratch", path, exc)
        return None
    if oof.identity != expected_identity:
        log.info("calibration predictions of run %s were made with other settings or code: not carried", oof.run_id)
        return None
    if oof.models != list(models):
        log.info("calibration predictions of run %s cover other models: not carried", oof.run_id)
        return None
    return oof
