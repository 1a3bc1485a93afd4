"""A workspace lock so two pipeline runs never interleave their writes.

``flock`` on ``$ROUTER_HOME/<name>.lock``: released by the kernel when the holder exits, even on kill -9, so a
crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockBusy(RuntimeError):
    """Another run holds the workspace lock."""


@contextmanager
def workspace_lock(workspace: Path, name: str = "pipeline", wait_seconds: float = 0.0) -> Iterator[Path]:
    workspace.mkdir(parents=True, exist_ok=True)
    path = workspace / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text().strip() or "unknown"
                    raise LockBusy(f"another run holds {path} ({holder}); try again when it finishes") from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}".encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
