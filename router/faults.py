"""Test-only fault injection: make a pipeline step die (or fail, or pause) at a named point.

Inert unless ``ROUTER_FAULT_POINT`` is set: :func:`point` then costs one environment lookup. The reliability
tests (``tests/test_faults.py``, ``tests/test_concurrency.py``) use it to kill a real process at a known spot
instead of racing a timer. Never set it in production.

    ROUTER_FAULT_POINT=route.commit#2      # the 2nd time the routing step is about to commit a transaction
    ROUTER_FAULT_ACTION=kill               # kill (SIGKILL itself, the default) | enospc | sleep:SECONDS

Names are ``<step>.<point>``. The step is set by :func:`step` (the nightly steps in ``router.nightly`` wrap
their work in ``faults.step("ingest")`` etc.); ``router.storage.transaction`` calls ``point("commit")`` just
before every ``COMMIT``, so ``ingest.commit``, ``embed.commit`` and ``route.commit`` are "inside a transaction,
everything written, not yet committed". Other points: ``train.fitted`` (routers fitted, report written, nothing
in MLflow), ``register.logged`` (MLflow run logged, no version registered), ``register.gated`` (version
registered and gated, aliases moved, nothing recorded in the store yet), ``onboard.logged`` and ``onboard.gated``
(the same two moments of onboarding a model into the champion). ``#N`` fires on the N-th hit
(default 1) counted within the process. ``enospc`` raises ``OSError(ENOSPC)`` (a full disk) instead of
killing; ``sleep:S`` pauses S seconds (to observe a step while it runs).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

ENV_POINT = "ROUTER_FAULT_POINT"
ENV_ACTION = "ROUTER_FAULT_ACTION"

_step: ContextVar[str] = ContextVar("router_fault_step", default="")
_hits: Counter[str] = Counter()


@contextmanager
def step(name: str) -> Iterator[None]:
    """Name the pipeline step running in this context (prefix of the points hit inside it)."""
    token = _step.set(name)
    try:
        yield
    finally:
        _step.reset(token)


def point(name: str) -> None:
    """A named fault point: does nothing unless ``ROUTER_FAULT_POINT`` names it."""
    wanted = os.environ.get(ENV_POINT)
    if not wanted:
        return
    current = _step.get()
    full = f"{current}.{name}" if current else name
    target, _, nth = wanted.partition("#")
    if full != target:
        return
    _hits[full] += 1
    if _hits[full] != (int(nth) if nth else 1):
        return
    action = os.environ.get(ENV_ACTION, "kill")
    print(f"[router.faults] {action} at {full}#{_hits[full]} (pid {os.getpid()})", file=sys.stderr, flush=True)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {full})")
    elif action.startswith("sleep:"):
        time.sleep(float(action.removeprefix("sleep:")))
    else:
        raise ValueError(f"{ENV_ACTION}={action!r}: expected kill, enospc or sleep:SECONDS")


def reset() -> None:
    """Forget the hit counts (tests running several faulty calls in one process)."""
    _hits.clear()
