"""``routerctl``'s exit-code contract and the base of every expected error.

Every expected failure is a :class:`RouterError` carrying its exit code; the CLI prints its message as one line
(no traceback; ``--verbose`` shows it) and exits with that code. Anything else is a bug: exit 5, its traceback
written to a log file under the workspace (the one-line message says which).

Error classes defined elsewhere that cannot carry the attribute themselves (the MLflow registry's, pydantic's
settings validation) are mapped here, by class name, in :data:`CODES_BY_CLASS`: the one place that maps them.
"""

from __future__ import annotations

DONE, CHECK_FAILED, BAD_INPUT, BUSY, UNREACHABLE, INTERNAL = 0, 1, 2, 3, 4, 5

#: The contract, as ``routerctl --help`` and the README print it.
EXIT_CODES: dict[int, str] = {
    DONE: "done",
    CHECK_FAILED: "a check failed (doctor found a problem, a gate rejection where asked)",
    BAD_INPUT: "bad input or usage (the message says what to change)",
    BUSY: "busy: another run holds the workspace lock or the store",
    UNREACHABLE: "a dependency is unreachable or answers with an error (MLflow, Prefect server)",
    INTERNAL: "internal error (traceback written under $ROUTER_HOME/logs/; the message names the file)",
}

#: Exit codes of error classes by class name, for classes whose module must not depend on this one's
#: attribute (checked along each exception's MRO, most specific first).
CODES_BY_CLASS: dict[str, int] = {
    "RegistryUnavailable": UNREACHABLE,  # router.registry
    "ModelPoolError": BAD_INPUT,  # router.registry
    "PoolMismatchError": BAD_INPUT,  # router.registry
    "RegistryError": BAD_INPUT,  # router.registry: unknown version, nothing to roll back to, ...
    "ValidationError": BAD_INPUT,  # pydantic: a ROUTER_* variable or ROUTER_CONFIG value out of range
    "SettingsError": BAD_INPUT,  # pydantic-settings: an unparsable ROUTER_* value
}


class RouterError(Exception):
    """An expected failure (bad input, busy store, unreachable registry, ...) whose message says what to do.

    ``exit_code`` (class attribute, or ``code=`` for one instance) is the process's exit status under the CLI.
    """

    exit_code: int = BAD_INPUT

    def __init__(self, *args: object, code: int | None = None) -> None:
        super().__init__(*args)
        if code is not None:
            self.exit_code = code


class RegistryError(RouterError, RuntimeError):
    """A registry operation cannot be carried out (unknown version, nothing to roll back to, ...)."""


class CheckFailed(RouterError):
    """A check the user asked for failed (the doctor found a problem, ...)."""

    exit_code = CHECK_FAILED


class Unreachable(RouterError):
    """A service the command needs does not answer (a Prefect server, ...)."""

    exit_code = UNREACHABLE


def is_expected(exc: BaseException) -> bool:
    """Whether ``exc`` is an expected failure (printed as one line) rather than a bug."""
    return isinstance(exc, RouterError) or any(cls.__name__ in CODES_BY_CLASS for cls in type(exc).__mro__)


def exit_code(exc: BaseException) -> int:
    """The exit status for ``exc`` under the contract (:data:`EXIT_CODES`)."""
    if "exit_code" in vars(exc):  # set on this instance
        return int(exc.exit_code)  # type: ignore[attr-defined]
    for cls in type(exc).__mro__:
        if "exit_code" in vars(cls) and cls is not RouterError:
            return int(vars(cls)["exit_code"])
        if cls.__name__ in CODES_BY_CLASS:
            return CODES_BY_CLASS[cls.__name__]
    return BAD_INPUT if isinstance(exc, RouterError) else INTERNAL


def contract_text() -> str:
    """The exit codes as lines ``N  meaning`` (``routerctl --help``, README)."""
    return "\n".join(f"{code}  {meaning}" for code, meaning in EXIT_CODES.items())
