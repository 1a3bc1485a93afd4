"""``routerctl``'s exit-code contract (``router.errors``): 0 done, 1 a check failed, 2 bad input or usage, 3 busy,
4 a dependency unreachable, 5 internal error (traceback in a log file, not on the terminal). Expected failures
print one line: no traceback, and nothing at interpreter exit (no DuckDB "nanobind: leaked" lines)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from router import errors

ROUTERCTL = Path(sys.executable).with_name("routerctl")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MLFLOW_", "PREFECT_"))}
    return env | {"ROUTER_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **extra}


def _routerctl(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROUTERCTL), *args], env=_env(home, **extra), capture_output=True, text=True,
                          timeout=300)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_contract_is_printed_by_help_and_the_readme() -> None:
    out = subprocess.run([str(ROUTERCTL), "--help"], capture_output=True, text=True, env={**os.environ,
                         "COLUMNS": "200"}, timeout=60).stdout
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code, meaning in errors.EXIT_CODES.items():
        assert f"{code}  {meaning}" in out, out
        assert f"| {code} | {meaning} |" in readme, meaning
    assert list(errors.EXIT_CODES) == [0, 1, 2, 3, 4, 5]


def test_error_classes_map_to_their_codes() -> None:
    from router.registry import packaging, promotion, tracking
    from router.doctor import DoctorFailed
    from router.ingest import IngestError
    from router.locking import LockBusy
    from router.pipeline import NotEnoughData
    from router.routing import BudgetError
    from router.settings import Settings
    from router.storage import StoreError

    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="device") as invalid:
        Settings(device="gpu")
    expected = {
        tracking.RegistryUnavailable("x"): 4, errors.RegistryError("x"): 2, promotion.PoolMismatchError("x"): 2,
        packaging.ModelPoolError("x"): 2, LockBusy("x"): 3, StoreError("x"): 2, StoreError("x", code=3): 3,
        DoctorFailed("x"): 1, IngestError("x"): 2, NotEnoughData("x"): 2, BudgetError("x"): 2,
        errors.Unreachable("x"): 4, invalid.value: 2, ValueError("x"): 5, KeyError("x"): 5,
    }
    assert {type(e).__name__ + str(getattr(e, "exit_code", "")): errors.exit_code(e) for e in expected} == {
        type(e).__name__ + str(getattr(e, "exit_code", "")): code for e, code in expected.items()}
    assert not errors.is_expected(ValueError("x")) and errors.is_expected(tracking.RegistryUnavailable("x"))


def test_an_internal_error_exits_5_with_its_traceback_in_a_log_file(cli, settings, store, monkeypatch) -> None:
    import router.storage

    def broken(con):
        raise ZeroDivisionError("a bug")

    store.close()
    monkeypatch.setattr(router.storage, "table_counts", broken)
    result = cli("status")
    assert result.exit_code == 5, result.output
    assert "Traceback" not in result.output
    assert "internal error: ZeroDivisionError: a bug" in result.stderr
    logs = list((settings.workspace / "logs").glob("routerctl-*.log"))
    assert len(logs) == 1 and str(logs[0]) in result.stderr.replace("\n", "")
    text = logs[0].read_text()
    assert text.startswith("Traceback") and "ZeroDivisionError: a bug" in text and "def broken" not in text


def test_read_commands_never_create_a_workspace(tmp_path) -> None:
    home = tmp_path / "nothing-here"
    for args in (["status"], ["doctor"], ["drift"], ["models", "list"], ["route"]):
        proc = _routerctl(home, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert f"ROUTER_HOME={home}" in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr
    assert not home.exists()


def test_nightly_on_an_empty_workspace_says_where_files_go_and_exits_2(tmp_path) -> None:
    home = tmp_path / "ws"
    proc = _routerctl(home, "nightly")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    for kind in ("routerbench", "logs", "backlog"):
        assert str(home / "landing" / kind) in err and (home / "landing" / kind).is_dir()
    assert "routerctl nightly --demo" in err and "routerctl embed" not in err
    assert "Traceback" not in proc.stderr + proc.stdout and "nanobind" not in proc.stderr + proc.stdout
    assert not (home / "router.duckdb").exists()


def test_bad_parameters_exit_2_without_a_traceback(tmp_path) -> None:
    proc = _routerctl(tmp_path / "ws", "route", "--lambda", "-1")
    assert proc.returncode == 2 and "must be a positive finite number" in proc.stderr
    assert "Traceback" not in proc.stderr and "nanobind" not in proc.stderr
    bad_env = _routerctl(tmp_path / "ws", "status", ROUTER_DEVICE="gpu")
    assert bad_env.returncode == 2 and "device" in bad_env.stderr and "Traceback" not in bad_env.stderr


def test_an_unreachable_prefect_server_exits_4(tmp_path) -> None:
    home = tmp_path / "ws"
    (home / "landing" / "logs").mkdir(parents=True)
    (home / "landing" / "logs" / "l.jsonl").write_text("{}\n")
    proc = _routerctl(home, "nightly", PREFECT_API_URL=f"http://127.0.0.1:{_closed_port()}/api")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "Prefect server" in proc.stderr and "Traceback" not in proc.stderr


def test_cuda_without_a_gpu_is_bad_input(cli, settings, files, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli("ingest", "logs", files.logs("l.jsonl", [files.log_record(0)])).exit_code == 0
    monkeypatch.setenv("ROUTER_DEVICE", "cuda")
    result = cli("embed")
    assert result.exit_code == 2, result.output
    assert "ROUTER_DEVICE=cuda but torch sees no CUDA device" in result.stderr and result.exception is not None


def test_an_encoder_mismatch_is_bad_input(cli, settings, files, monkeypatch) -> None:
    from types import SimpleNamespace

    from router.registry import promotion

    assert cli("ingest", "logs", files.logs("l.jsonl", [files.log_record(0)])).exit_code == 0
    monkeypatch.setattr(promotion, "champion_version", lambda s: 4)
    monkeypatch.setattr(promotion, "load_version", lambda s, v: SimpleNamespace(
        pool=SimpleNamespace(encoder="another-encoder"), router=None))
    result = cli("route")
    assert result.exit_code == 2, result.output
    assert "champion v4 was trained with encoder 'another-encoder'" in result.stderr


@pytest.mark.slow
def test_a_nightly_that_fails_mid_run_prints_one_line_and_nothing_at_exit(tmp_path) -> None:
    """Logs but no RouterBench data: the night ingests and embeds, then cannot train. The error names the
    RouterBench landing folder; Prefect logs no traceback for it; DuckDB prints nothing at interpreter exit."""
    home = tmp_path / "ws"
    logs = home / "landing" / "logs"
    logs.mkdir(parents=True)
    data = Path(__file__).resolve().parents[1] / "data" / "demo" / "logs.jsonl"
    (logs / "logs.jsonl").write_text("".join(data.read_text().splitlines(keepends=True)[:30]))
    proc = _routerctl(home, "nightly", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-4000:]
    assert str(home / "landing" / "routerbench") in " ".join(proc.stderr.split())
    assert "Traceback" not in out and "nanobind" not in out and "I/O operation on closed file" not in out


def test_unusable_settings_and_workspaces_exit_2_naming_what_to_change(tmp_path, files) -> None:
    """A ROUTER_CONFIG that is no file or no TOML, a ROUTER_HOME of an unknown user's ``~`` or one that cannot be
    created are bad input (exit 2, one line naming the setting), not internal errors."""
    home = tmp_path / "ws"
    cases = [({"ROUTER_CONFIG": str(tmp_path / "missing.toml")}, "which is not a file"),
             ({"ROUTER_CONFIG": str(tmp_path)}, "which is not a file")]
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("seed = [\n")
    cases.append(({"ROUTER_CONFIG": str(bad_toml)}, "is not valid TOML"))
    for extra, needle in cases:
        proc = _routerctl(home, "status", **extra)
        assert proc.returncode == 2 and needle in proc.stderr and str(extra["ROUTER_CONFIG"]) in proc.stderr, proc
        assert "Traceback" not in proc.stderr + proc.stdout and "internal error" not in proc.stderr
    proc = _routerctl(Path("~no-such-user-xattn/ws"), "status")
    assert proc.returncode == 2 and "ROUTER_HOME is '~no-such-user-xattn/ws'" in proc.stderr, proc
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    proc = _routerctl(a_file, "ingest", "logs", str(files.logs()))
    assert proc.returncode == 2 and f"cannot create the folder {a_file}" in " ".join(proc.stderr.split()), proc
    assert "Traceback" not in proc.stderr + proc.stdout


def test_route_and_scenarios_without_a_registry_create_none(tmp_path, files) -> None:
    home = tmp_path / "ws"
    assert _routerctl(home, "ingest", "backlog", str(files.backlog())).returncode == 0
    for command in ("route", "scenarios"):
        proc = _routerctl(home, command)
        assert proc.returncode == 2 and "no champion registered" in proc.stderr, proc
    assert not (home / "mlflow.db").exists()


def test_a_traceback_goes_to_the_temp_folder_when_the_workspace_cannot_hold_it(tmp_path, monkeypatch) -> None:
    import tempfile

    from router.cli.app import _traceback_file

    home = tmp_path / "ws"
    home.mkdir()
    (home / "logs").write_text("a file where the logs folder would be")
    monkeypatch.setenv("ROUTER_HOME", str(home))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    try:
        raise ZeroDivisionError("a bug")
    except ZeroDivisionError as exc:
        path = Path(_traceback_file(exc))
    assert path.parent == tmp_path / "tmp" and "ZeroDivisionError: a bug" in path.read_text()
