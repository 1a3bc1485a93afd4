"""Where the files the library ships with live: SQL, the pyfunc model code, the demo data.

Every one is package data of ``router`` and found through :mod:`importlib.resources`, so a wheel installed
without ``-e`` works as a checkout does. In the repository they stay in their top-level folders (``sql/``,
``mlflow/``, ``data/``); ``router/sql``, ``router/pyfunc``, ``router/demo_data`` and ``router/subset_data`` are
links to them, which the wheel build copies as files (``[tool.setuptools.package-data]`` in pyproject.toml).
"""

from __future__ import annotations

import hashlib
from importlib.resources import as_file, files
from pathlib import Path

#: The package-data folders that link to the repository's top-level folders (left out of the model's code copy).
LINKED = ("sql", "pyfunc", "demo_data", "subset_data")


def _path(*parts: str) -> Path:
    resource = files("router").joinpath(*parts)
    # Installed as a plain folder (wheel) or a checkout: already a file-system path, nothing is extracted.
    with as_file(resource) as path:
        return Path(path)


def sql_dir() -> Path:
    """``sql/``: migrations and every query."""
    return _path("sql")


def model_code() -> Path:
    """``mlflow/router_model.py``: the models-from-code pyfunc file."""
    return _path("pyfunc", "router_model.py")


def demo_files() -> dict[str, list[Path]]:
    """The shipped RouterBench subset and the demo backlog and logs, by landing kind."""
    return {
        "routerbench": sorted(_path("subset_data").glob("*.csv")),
        "logs": [_path("demo_data", "logs.jsonl")],
        "backlog": [_path("demo_data", "backlog.jsonl")],
    }


def routers_code() -> str:
    """sha256 of the router implementations' source (``router/routers/*.py``): part of what a fit depends on."""
    code = hashlib.sha256()
    for path in sorted(_path("routers").glob("*.py")):
        code.update(path.read_bytes())
    return code.hexdigest()


def package_dir() -> Path:
    """The ``router`` package's own folder."""
    return _path()


def copy_code(dst: Path) -> Path:
    """Copy the ``router`` package's code (not its linked data folders) to ``dst/router``: what a registered model
    carries so that it loads where the package is not installed."""
    import shutil

    return Path(shutil.copytree(package_dir(), dst / "router", ignore=shutil.ignore_patterns("__pycache__", *LINKED)))
