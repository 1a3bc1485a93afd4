"""Progress lines (``router.progress``): throttled to one per interval, a last line at the total, thread-safe."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from router import progress


def test_lines_are_throttled_and_the_last_one_always_written(monkeypatch, caplog) -> None:
    clock = iter([0.0, 1.0, 5.0, 12.0, 13.0, 20.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    log = logging.getLogger("router.test")
    lines = progress.Progress(log, "embedding", 100, "prompts")  # started at t=0, interval 10 s
    with caplog.at_level(logging.INFO, logger="router.test"):
        for done in (10, 40, 60, 70, 100):  # at t = 1, 5, 12, 13, 20
            lines.update(done)
    assert [r.getMessage() for r in caplog.records] == [
        "embedding: 60/100 (60%) prompts, 5.0/s, ETA 8s",
        "embedding: 100/100 (100%) prompts, 5.0/s",
    ]


def test_interval_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ROUTER_PROGRESS_SECONDS", "2.5")
    assert progress.interval() == 2.5
    monkeypatch.setenv("ROUTER_PROGRESS_SECONDS", "often")
    assert progress.interval() == progress.DEFAULT_SECONDS


@pytest.mark.parametrize("workers", [1, 4])
def test_advance_counts_every_unit_from_any_thread(monkeypatch, caplog, workers: int) -> None:
    monkeypatch.setenv("ROUTER_PROGRESS_SECONDS", "0")
    lines = progress.Progress(logging.getLogger("router.test"), "training", 200, "epochs")
    with caplog.at_level(logging.INFO, logger="router.test"), ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: lines.advance(note="member"), range(200)))
    assert lines.done == 200
    assert len(caplog.records) == 200 and any(r.getMessage().startswith("training: 200/200 (100%) epochs")
                                              for r in caplog.records)
