"""Router registry: every router module in this package registers its names here.

Adding a router touches one file: drop a module into ``router/routers/`` that decorates its class (or a
factory) with :func:`register`; the package imports every sibling module on first import, so the new
name shows up in :data:`ROUTERS` and :func:`get_router` without editing this file.

>>> from router.routers import ROUTERS, get_router
>>> sorted(ROUTERS)  # doctest: +SKIP
['attention', 'knn10', 'knn40', 'knn5', 'mf', 'mlp']
>>> router = get_router("knn10")  # a fresh, unfitted Router
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from router.routers.base import Router, RoutingData

__all__ = ["ROUTERS", "Router", "RouterFactory", "RoutingData", "get_router", "register"]

#: A zero-argument call builds a router with its registered defaults; keyword arguments override them.
RouterFactory = Callable[..., Router]

#: Name -> factory. Populated by :func:`register` when the router modules are imported (below).
ROUTERS: dict[str, RouterFactory] = {}

_T = TypeVar("_T", bound=type[Router])


def register(name: str, **defaults: Any) -> Callable[[_T], _T]:
    """Class decorator: register ``cls(**defaults)`` under ``name``. Stack it to register variants.

    ``@register("knn5", k=5)`` and ``@register("knn10", k=10)`` on the same class give two names.
    """

    def decorator(cls: _T) -> _T:
        if name in ROUTERS:
            raise ValueError(f"router name {name!r} is already registered")
        ROUTERS[name] = partial(cls, **defaults) if defaults else cls
        return cls

    return decorator


def get_router(name: str, **params: Any) -> Router:
    """A new, unfitted router registered as ``name``; ``params`` override its registered defaults."""
    try:
        factory = ROUTERS[name]
    except KeyError:
        raise KeyError(f"unknown router {name!r}; registered: {sorted(ROUTERS)}") from None
    return factory(**params)


def _import_router_modules() -> None:
    """Import every module of this package so their ``@register`` decorators run."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_router_modules()
