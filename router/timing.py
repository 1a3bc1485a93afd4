"""Wall-clock seconds per named part of a job (ingest parts, nightly steps), for reports and benchmarks."""

from __future__ import annotations

import time


class Laps:
    """``laps("read")`` records the seconds since the previous lap (or since creation) under ``"read"``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[part] = round(now - self._clock, 3)
        self._clock = now
