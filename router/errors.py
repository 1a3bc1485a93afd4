"""The base of every error that is an expected outcome with a message for the user, and the registry's.

The CLI prints these as one clear line (no traceback; ``--verbose`` shows it) and exits 2. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class RouterError(Exception):
    """An expected failure (bad input, busy store, unreachable registry, ...) whose message says what to do."""


class RegistryError(RouterError, RuntimeError):
    """A registry operation cannot be carried out (unknown version, nothing to roll back to, ...)."""
