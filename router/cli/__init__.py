"""``routerctl``: the command line. Heavy libraries are imported inside commands so ``--help`` is instant.

Each command group lives in its own module and is mounted here; ``nightly`` and ``bench`` are added by
``flows/cli.py`` (the ``routerctl`` entry point).
"""

from __future__ import annotations

from router.cli.app import app
from router.cli import data as _data  # noqa: F401  (registers ingest/embed/status)
from router.cli import pipeline as _pipeline  # noqa: F401  (registers evaluate)
from router.cli import doctor as _doctor  # noqa: F401  (registers doctor)
from router.cli import drift as _drift  # noqa: F401  (registers drift)
from router.cli import prices as _prices  # noqa: F401  (registers prices)

try:  # command groups added by later modules register themselves on import
    from router.cli import models as _models  # noqa: F401
except ImportError:  # pragma: no cover - only while a group is being written
    pass

__all__ = ["app"]
