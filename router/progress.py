"""Progress lines for long steps, in the logs operators read (a Prefect run's log, a cron job's file).

:class:`Progress` logs ``<what>: done/total (pct), rate/s, ETA`` at most every ``ROUTER_PROGRESS_SECONDS``
(default 10 s) and once at the end; it draws nothing, so it reads the same in a terminal and in a log file.
"""

from __future__ import annotations

import logging
import os
import threading
import time

DEFAULT_SECONDS = 10.0


def interval() -> float:
    """``ROUTER_PROGRESS_SECONDS`` (seconds between progress lines), else 10."""
    try:
        return max(0.0, float(os.environ.get("ROUTER_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Throttled progress lines on ``log`` (thread-safe: members trained in parallel report to one)."""

    def __init__(self, log: logging.Logger, what: str, total: int | None = None, unit: str = "") -> None:
        self.log, self.what, self.total, self.unit = log, what, total, unit
        self.every = interval()
        self.start = self.last = time.monotonic()
        self.done = 0
        self._lock = threading.Lock()

    def advance(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more units done (from any thread) and :meth:`update`."""
        with self._lock:
            self.done += n
            done = self.done
        self.update(done, note=note)

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """Log where the step stands if the interval has passed (always when ``done`` reaches the total)."""
        total = self.total if total is None else total
        now = time.monotonic()
        with self._lock:
            if now - self.last < self.every and (total is None or done < total):
                return
            self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.what}: {done:,}" + (f"/{total:,} ({100 * done / total:.0f}%)" if total else "") +
                 (f" {self.unit}" if self.unit else "")]
        if rate:
            parts.append(f"{rate:,.1f}/s")
        if total and rate and done < total:
            parts.append(f"ETA {_duration((total - done) / rate)}")
        if note:
            parts.append(note)
        self.log.info(", ".join(parts))
