"""The package installed from its wheel, without ``-e``, works from a folder outside the checkout.

The wheel is built from this repository and installed with ``--no-deps`` into a fresh virtual environment whose
dependencies come from the test's own environment (a ``.pth`` line naming its site-packages: the registries are
not needed and the test's time goes to the project's code). Every command then runs from an empty folder, so a
path into the checkout (SQL, validation suites, the pyfunc model code, the demo data) would fail here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import polars as pl
import pytest

from router.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

SUBSET = PROJECT_ROOT / "data" / "routerbench_subset"


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
          str(PROJECT_ROOT)], cwd=root, env=dict(os.environ))
    (wheel,) = dist.glob("xattn_router-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=dict(os.environ))
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
         cwd=root, env=dict(os.environ))
    return {"root": root, "wheel": wheel, "venv": venv, "site": site}


def test_the_wheel_holds_what_the_library_reads_at_run_time(installed: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    migrations = {p.name for p in (PROJECT_ROOT / "sql" / "migrations").glob("*.sql")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("router/sql/migrations/")} == migrations
    queries = {p.relative_to(PROJECT_ROOT / "sql").as_posix() for p in (PROJECT_ROOT / "sql").rglob("*.sql")}
    assert {n.removeprefix("router/sql/") for n in names if n.startswith("router/sql/")} == queries
    suites = {p.name for p in (PROJECT_ROOT / "router" / "suites").glob("*.json")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("router/suites/")} == suites
    assert "router/pyfunc/router_model.py" in names and "flows/prefect.yaml" in names
    assert {n for n in names if n.startswith("router/subset_data/")} == {
        f"router/subset_data/{p.name}" for p in SUBSET.glob("*.csv")}
    assert {"router/demo_data/backlog.jsonl", "router/demo_data/logs.jsonl"} <= names


def test_commands_run_from_an_empty_folder_outside_the_checkout(installed: dict[str, Path]) -> None:
    root, venv = installed["root"], installed["venv"]
    work = root / "work"
    slice_dir = root / "slice"
    work.mkdir()
    slice_dir.mkdir()
    for path in sorted(SUBSET.glob("*.csv")):
        df = pl.read_csv(path, infer_schema_length=0).head(16 if "train" in path.name else 8)
        df.select([c for c in df.columns if not c.endswith("|model_response")]).write_csv(slice_dir / path.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MLFLOW_", "PREFECT_", "PYTHON"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", ROUTER_HOME=str(work / "home"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    python = str(venv / "bin" / "python")

    where = json.loads(_run([python, "-c", "import json, flows, router; from router import resources; "
                             "print(json.dumps([router.__file__, flows.__file__, str(resources.sql_dir()), "
                             "str(resources.model_code()), [str(p) for ps in resources.demo_files().values() "
                             "for p in ps]]))"], cwd=work, env=env))
    files = [*where[:4], *where[4]]
    assert all(p.startswith(str(installed["site"])) for p in files), files
    assert all(Path(p).exists() for p in files), files

    routerctl = str(venv / "bin" / "routerctl")
    out = _run([routerctl, "ingest", "routerbench", str(slice_dir)], cwd=work, env=env)
    assert "winograde_train.csv" in out and "ingested" in out
    out = _run([routerctl, "embed"], cwd=work, env=env)
    n_prompts = sum(pl.read_csv(p, infer_schema_length=0).height for p in slice_dir.glob("*.csv"))
    assert f"embedded {n_prompts} prompts" in out, out
    out = _run([routerctl, "evaluate", "--data", str(slice_dir)], cwd=work, env=env)
    metrics = json.loads((work / "home" / "reports" / "latest" / "metrics.json").read_text())
    assert {"attention", "knn10", "oracle", "zero_router"} <= set(metrics["routers"]), metrics.keys()
    _run([routerctl, "doctor"], cwd=work, env=env)

    # The nightly on files landed by hand: migrations, ingest, training, the pyfunc model logged from the installed
    # package's code, routing; the model's code copy carries the package's code, not its data folders.
    landing = work / "home" / "landing"
    (landing / "backlog").mkdir(parents=True, exist_ok=True)
    backlog = (PROJECT_ROOT / "data" / "demo" / "backlog.jsonl").read_text().splitlines()[:20]
    (landing / "backlog" / "b.jsonl").write_text("\n".join(backlog) + "\n")
    _run([routerctl, "nightly"], cwd=work, env=env, timeout=900)
    (code,) = (work / "home" / "mlartifacts").rglob("code/router")
    assert (code / "routers" / "attention.py").is_file() and (code / "resources.py").is_file()
    assert not any((code / name).exists() for name in ("sql", "pyfunc", "demo_data", "subset_data"))
    assert sorted(p.name for p in work.iterdir()) == ["home"]  # nothing written beside the workspace
