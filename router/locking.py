"""A workspace lock so two pipeline runs never interleave their writes.

``flock`` on ``$ROUTER_HOME/<name>.lock``: released by the kernel when the holder exits, even on kill -9, so a
crashed run never leaves a stale lock behind. ``routerctl nightly`` probes it with :func:`holder` before
starting Prefect and exits 3 at once when another run holds it; the flow itself then takes it for the whole
run. ``wait_seconds`` makes a caller wait (polling every 0.5 s) instead of failing at once.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from router.errors import BUSY, RouterError


class LockBusy(RouterError, RuntimeError):
    """Another run holds the workspace lock (exit 3)."""

    exit_code = BUSY


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
                    raise LockBusy(f"another run holds {path} ({holder}); nothing was done: try again when it "
                                   "finishes") from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}".encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def writer_lock(workspace: Path, say: Callable[[str], None] | None = None) -> AbstractContextManager[Path]:
    """The pipeline lock for one write outside the nightly (a command, an on-demand or distributed flow): waits up
    to ``ROUTER_STORE_WAIT_SECONDS`` (default 0: :class:`LockBusy` at once); ``say`` hears who holds it when it
    has to wait."""
    from router.storage import wait_seconds  # noqa: PLC0415 - the store's settings, not its driver

    wait = wait_seconds()
    busy = holder(workspace) if say is not None and wait else None
    if busy:
        say(f"waiting up to {wait:.0f} s for the workspace lock ({busy})")
    return workspace_lock(workspace, wait_seconds=wait)


def holder(workspace: Path, name: str = "pipeline") -> str | None:
    """Who holds the lock (its ``pid ... since ...`` line), or ``None`` if it is free right now.

    A cheap probe (take and release at once) so a command can refuse before starting anything expensive; the
    run itself still takes the lock with :func:`workspace_lock`."""
    path = workspace / f"{name}.lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return path.read_text().strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
