"""The benchmarks never rot: ``routerctl bench --size small`` runs every bench on a small input and writes the
JSON every figure is read from. Only the shape and sanity of the figures are checked, not the targets
(timings on a shared CI machine are not a test)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROUTERCTL = str(Path(sys.executable).with_name("routerctl"))
FIGURES = {"embed", "encoder_onnx", "encoder_int8", "embed_subset", "embed_subset_int8", "route", "route_attention", "ingest_jsonl",
           "ingest_parquet", "nightly_incremental", "nightly_nothing_new", "train"}


@pytest.mark.slow
def test_bench_small_writes_every_figure(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")} | {"ROUTER_HOME": str(home)}
    proc = subprocess.run([ROUTERCTL, "bench", "--size", "small"], capture_output=True, text=True, env=env,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = json.loads((home / "reports" / "bench" / "latest.json").read_text())
    assert set(results) == FIGURES
    for name, rec in results.items():
        for key in ("ratio", "target", "floor_s", "ours_s", "rows", "peak_rss_mb"):
            assert key in rec, (name, key)
        for key in ("ratio", "floor_s", "ours_s", "peak_rss_mb"):
            assert math.isfinite(rec[key]) and rec[key] > 0, (name, key, rec[key])
        assert rec["rows"] > 0, name
        assert name in proc.stdout
    assert results["nightly_nothing_new"]["night"]["trained"] is False
    embed = results["embed"]  # two interleaved runs a side; the fastest is the figure, and it encoded every prompt
    assert len(embed["runs_s"]["floor"]) == len(embed["runs_s"]["ours"]) == 2 and embed["rows"] == 64
    assert embed["ours_s"] == min(embed["runs_s"]["ours"]) and embed["floor_s"] == min(embed["runs_s"]["floor"])
    for name, floor in (("encoder_onnx", 0.9999), ("encoder_int8", 0.98)):  # the same texts as torch, its vectors
        rec = results[name]
        assert rec["rows"] == 64 and rec["tokens"] > rec["rows"] and rec["tokens_per_s"] > 0
        assert rec["tokens_per_s"] == pytest.approx(rec["tokens"] / rec["ours_s"], rel=0.01)
        assert rec["torch_tokens_per_s"] == pytest.approx(rec["tokens"] / rec["floor_s"], rel=0.01)
        assert floor <= rec["cosine_min"] <= rec["cosine_mean"] <= 1.0001
        runs = rec["runs_s"]  # two interleaved runs a side, the fastest of each
        assert len(runs["floor"]) == len(runs["ours"]) == 2
        assert rec["ours_s"] == min(runs["ours"]) and rec["floor_s"] == min(runs["floor"])
    assert results["encoder_onnx"]["runs_s"]["floor"] == results["encoder_int8"]["runs_s"]["floor"]
    assert results["embed_subset"]["rows"] > 0  # the step embedded the landed subset's prompts
    base = results["nightly_incremental"]["base_nights"]  # the nights before reuse the scratch night's vectors
    assert base["vectors_seeded"] > 0 and base["embedded"] == 0
    night = results["nightly_incremental"]["night"]  # seconds per step, which add up to the night's time
    from router.nightly import STEPS

    assert list(night["steps_s"]) == [step.name for step in STEPS]  # the library's step list, in its order
    assert 0.75 * night["seconds"] <= sum(night["steps_s"].values()) <= night["seconds"]
    assert 0 < night["encode_s"] <= night["steps_s"]["embed"] and "fit.attention" in night["fit_s"]
    for name in ("ingest_jsonl", "ingest_parquet"):  # GX validated every record of the small file
        rec = results[name]
        assert rec["rows_gx_validated"] == rec["rows"] and rec["cold_ratio"] > rec["ratio"]
        assert list(rec["parts_s"]) == ["read", "validate", "commit", "docs"]
        assert sum(rec["parts_s"].values()) <= rec["ours_s"] + 5 * HALF_MS  # each figure rounded to the ms
        assert 0 < rec["gx_s"] <= rec["parts_s"]["validate"] + rec["parts_s"]["commit"] + 0.002  # overlapped
        # the schema's lower bound wrote every row to both tables, and is timed against the same floor
        assert rec["bound_rows"] == rec["rows"]
        _assert_ratio_of_rounded(rec["bound_ratio"], rec["bound_s"], rec["floor_s"])


HALF_MS = 0.0005  # the bench prints seconds and ratios rounded to three decimals


def _assert_ratio_of_rounded(ratio: float, num: float, den: float) -> None:
    """``ratio`` is num/den of the unrounded seconds: it lies in the range the rounded ones allow (a small floor
    printed as 0.031 may have been 0.0314, 1.3 % off)."""
    low = (num - HALF_MS) / (den + HALF_MS) - HALF_MS
    high = (num + HALF_MS) / (den - HALF_MS) + HALF_MS
    assert low <= ratio <= high, (ratio, num, den)


def test_bench_only_one_and_unknown(tmp_path: Path) -> None:
    """One cheap bench in process: the JSON shape, and an unknown name is refused."""
    from bench.perf import run_all

    out = tmp_path / "latest.json"
    lines: list[str] = []
    results = run_all("small", ["route"], out, work_root=tmp_path / "work", echo=lines.append)
    rec = json.loads(out.read_text())["route"]
    assert rec == results["route"] and rec["rows"] == 20_000 and rec["ratio"] > 0 and rec["peak_rss_mb"] > 0
    assert any(line.startswith("route") for line in lines)
    where = rec["machine"]  # what the figures were measured on, also the first printed line
    assert where["cores"] >= 1 and where["cpu"] and lines[0].startswith(f"on {where['cpu']}, {where['cores']} cores")
    with pytest.raises(ValueError, match="unknown bench"):
        run_all("small", ["nope"], out, work_root=tmp_path / "work2")


def test_ingest_bound_ids_script_compares_both_id_types(tmp_path: Path, settings) -> None:
    """python -m bench.ingest_bound_ids: both lower-bound variants store every row, with the id type they name, and the
    script prints a ratio for each part. (``settings`` clears ROUTER_* and restores them: the bench sets its own.)"""
    from bench.perf import ingest_bound, ingest_setup

    ingest_setup(tmp_path, 300, "parquet")
    assert ingest_bound(tmp_path, 300, "parquet")["id_type"] == "VARCHAR"
    wide = ingest_bound(tmp_path, 300, "parquet", "uhugeint")
    assert wide["rows"] == 300 and wide["id_type"] == "UHUGEINT"
    with pytest.raises(ValueError, match="ids must be"):
        ingest_bound(tmp_path, 300, "parquet", "blob")
    proc = subprocess.run([sys.executable, "-m", "bench.ingest_bound_ids", "--rows", "500", "--repeats", "1", "--format", "jsonl"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ratios = {line.split(" s ")[0].rsplit(None, 1)[0].strip(): float(line.rsplit(None, 1)[1])
              for line in proc.stdout.splitlines() if "ratio to the floor" in line}
    assert set(ratios) == {"floor", "bound, 32 hex chars", "bound, UHUGEINT", "read prompts",
                           "read and hash prompts", "hashing alone"}
    assert ratios["floor"] == 1.0 and ratios["bound, 32 hex chars"] > 0 and ratios["bound, UHUGEINT"] > 0


def test_ingest_history_script_stores_the_history_and_prints_its_ratio() -> None:
    """python -m bench.ingest_history: the history store holds what was asked, every timed ingest adds only new rows
    (the script refuses otherwise), and the ratio printed is the two figures' quotient."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    proc = subprocess.run([sys.executable, "-m", "bench.ingest_history", "--rows", "150", "--history", "600", "--repeats", "2"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("150 new log rows (parquet); the history store holds 600 outcomes and 600 prompts")
    best = {line.split()[0]: float(line.split()[-5]) for line in lines if "runs" in line}
    assert set(best) == {"fresh", "with"} and all(v > 0 for v in best.values())
    ratio = float(lines[-1].rsplit(None, 1)[1])
    assert ratio == pytest.approx(best["with"] / best["fresh"], abs=0.01)


def test_snapshot_history_script_exports_the_decisions_it_stored() -> None:
    """python -m bench.snapshot_history: each store holds the decisions asked for, and the figures printed are
    consistent (seconds per million and the ratio are the quotients of what it timed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    proc = subprocess.run([sys.executable, "-m", "bench.snapshot_history", "--small", "2000", "--large", "6000", "--repeats", "1"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if "stored decisions" in line]
    assert [int(r[0].replace(",", "")) for r in rows] == [2000, 6000]
    seconds = [float(r[3]) for r in rows]
    assert all(s > 0 for s in seconds)
    for r, s in zip(rows, seconds, strict=True):
        assert float(r[5]) == pytest.approx(s / int(r[0].replace(",", "")) * 1e6, rel=0.05, abs=0.002)
    ratio_line = proc.stdout.splitlines()[-1]
    assert float(ratio_line.split(":")[1].split()[0]) == pytest.approx(seconds[1] / seconds[0], rel=0.05)
    assert "(rows 3.00 x)" in ratio_line


def test_the_library_imports_nothing_from_bench_nor_prefect() -> None:
    """``bench/`` is developer tooling of a checkout, absent from an install: ``router/`` never imports it."""
    import re

    pattern = re.compile(r"^\s*(from|import)\s+bench(\.|\s|$)", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "router").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    assert not (ROOT / "router" / "bench.py").exists() and not (ROOT / "sql" / "queries" / "bench").exists()
    prefect = re.compile(r"^\s*(from|import)\s+prefect(\.|\s|$)", re.M)  # nor Prefect: flows/ orchestrate it
    assert [str(p.relative_to(ROOT)) for p in (ROOT / "router").rglob("*.py") if prefect.search(p.read_text())] == []


def test_routerctl_bench_refuses_an_unknown_bench_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")} | {"ROUTER_HOME": str(tmp_path)}
    proc = subprocess.run([ROUTERCTL, "bench", "--size", "small", "--only", "nope"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "unknown bench ['nope']" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "reports" / "bench" / "latest.json").exists()


def test_routerctl_bench_without_a_bench_folder_fails_with_one_line(tmp_path: Path, monkeypatch, settings) -> None:
    """An installed wheel has no ``bench/``: the command says so in one line instead of a traceback."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setattr("router.settings.PROJECT_ROOT", tmp_path)
    result = CliRunner().invoke(app, ["bench", "--size", "small"])
    assert result.exit_code == 2, result.output  # bad usage: no bench/ here
    message = " ".join(result.output.split())  # one error message (the console wraps it at its width)
    assert message.startswith("error: routerctl bench runs the benchmarks of a source checkout"), result.output
    assert str(tmp_path / "bench") in message.replace(" ", "") and "Traceback" not in result.output


@pytest.mark.slow
def test_subset_builder_writes_what_tuning_reads(tmp_path: Path, settings) -> None:
    """``python -m bench.subset`` (what ``bench.tuning`` needs): the shipped rows, embedded, split as training
    splits them, with each prompt's scores from its CSV row."""
    import numpy as np
    import polars as pl

    from bench.subset import SOURCE, main
    from bench.tuning import load_npz

    out = tmp_path / "subset.npz"
    assert main([str(out), "--rows", "4", "--home", str(tmp_path / "ws")]) == {"train": 12, "test": 12}
    train, test = load_npz(out)
    assert (train.n, test.n) == (12, 12) and train.X.shape == (12, 384) and train.models == test.models
    assert np.allclose(np.linalg.norm(train.X, axis=1), 1.0, atol=1e-4)
    csv = pl.read_csv(SOURCE / "mbpp_train.csv", infer_schema_length=0).head(4)
    model = "gpt-4-1106-preview"
    mbpp = train.eval_names == "mbpp"
    assert mbpp.sum() == 4 and not np.isnan(train.quality).any() and not np.isnan(train.cost).any()
    assert sorted(train.quality[mbpp, train.models.index(model)].tolist()) == sorted(
        csv[model].cast(pl.Float32).to_list())
    assert (train.prompt_chars > 0).all() and (test.prompt_chars > 0).all()
    # the default vectors are of the prompts without their shared few-shot block; --raw reads the raw prompts, cut at
    # the encoder's window, where every arc-challenge prompt opens with the same block and gets the same vector
    raw = tmp_path / "raw.npz"
    assert main([str(raw), "--rows", "4", "--home", str(tmp_path / "ws_raw"), "--raw"]) == {"train": 12, "test": 12}
    raw_train, raw_test = load_npz(raw)

    def arc_vectors(*splits) -> int:
        X = np.concatenate([d.X[d.eval_names == "arc-challenge"] for d in splits])
        return len(np.unique(X.round(5), axis=0))

    assert arc_vectors(raw_train, raw_test) == 1 and arc_vectors(train, test) == 8


def test_quality_search_scores_every_tau_grid_and_resumes_from_its_log(tmp_path: Path, monkeypatch) -> None:
    """``bench.tuning --grid quality``: each configuration is cross-validated once, scored with the linear reward
    and every τ grid, appended to the log, and read back from it (not refitted) on the next run."""
    import numpy as np

    import bench.tuning as tuning
    from router.routers.base import RoutingData

    rng = np.random.default_rng(0)
    n = 90
    X = rng.normal(size=(n, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    quality = (rng.random((n, 3)) < [0.3, 0.6, 0.8]).astype(np.float32)
    cost = np.tile(np.array([1e-5, 4e-5, 2e-4], dtype=np.float32), (n, 1))
    train = RoutingData(X, quality, cost, rng.integers(50, 500, size=n), ["a", "b", "c"],
                        np.array(["t1", "t2", "t3"] * 30, dtype=object))
    small = {**tuning.QUALITY_BASE, "hidden": 8, "model_dim": 4, "attn_dim": 4, "max_epochs": 2, "n_members": 1}
    monkeypatch.setattr(tuning, "QUALITY_GRID", (small, {**small, "use_task": True}))
    log = tmp_path / "cv.jsonl"
    rows = tuning.quality_search(train, n_folds=2, seed=1, log_path=log)
    assert [(r["router"], r["params"]) for r in rows] == [("knn40", {}), ("attention", small),
                                                          ("attention", {**small, "use_task": True})]
    for r in rows:
        assert set(r["reward_aiq"]) == {"linear", *tuning.TAU_GRIDS}
        assert r["reward_aiq"]["linear"] == r["aiq"] and 0.0 < r["aiq"] <= 1.0
        # A denser τ grid holds every point of the sparser one (12/decade ⊃ 6 ⊃ 3): its hull can only be higher.
        assert r["reward_aiq"]["exp_3"] <= r["reward_aiq"]["exp_6"] + 1e-12 <= r["reward_aiq"]["exp_12"] + 2e-12
    assert len(log.read_text().splitlines()) == 3

    def refit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a logged configuration was fitted again")

    monkeypatch.setattr(tuning, "cross_validate", refit)
    assert tuning.quality_search(train, n_folds=2, seed=1, log_path=log) == rows


def test_calibration_variants_run_the_members_and_folds_asked_for(tmp_path: Path) -> None:
    """``bench.tuning --calibration --variants 1x2,1x3``: one calibration per (members, folds), each target's
    choice on the train side and the test side, ratios against the best single model; a malformed value is a
    usage error."""
    import numpy as np

    import bench.tuning as tuning

    rng = np.random.default_rng(3)
    n, m = 120, 3
    X = rng.normal(size=(n, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q = (rng.random((n, m)) < [0.4, 0.6, 0.8]).astype(np.float32)
    C = np.tile(np.array([1e-5, 5e-5, 3e-4], dtype=np.float32), (n, 1))
    npz = tmp_path / "tiny.npz"
    np.savez(npz, X=X, Q=Q, C=C, chars=rng.integers(50, 500, size=n), models=np.array(["a", "b", "c"]),
             split=np.array(["train", "test"] * (n // 2)), eval_name=np.array(["t1", "t2"] * (n // 2)))
    rows = tuning.main([str(npz), "--calibration", "--variants", "1x2,1X3", "--threads", "1"])
    assert [(r["members"], r["folds"], r["target"]) for r in rows] == [
        (1, 2, 1.0), (1, 2, 0.95), (1, 3, 1.0), (1, 3, 0.95)]
    for half in (slice(0, n, 2), slice(1, n, 2)):  # "c", the dearest model, is the best single model of both splits
        assert Q[half].mean(axis=0).argmax() == 2
    for r in rows:
        # So every policy's cost ratio lies in (0, 1] (all on "c" is 1).
        assert 0.0 < r["train_cost"] <= 1.0 + 1e-9 and 0.0 < r["test_cost"] <= 1.0 + 1e-9
        assert 0.0 < r["train_quality"] and 0.0 < r["test_quality"] and r["seconds"] >= 0.0
    with pytest.raises(SystemExit):
        tuning.main([str(npz), "--calibration", "--variants", "5,10"])


def _tiny_routing_data(seed: int, n: int = 90, shift: float = 0.0):
    """``n`` prompts × 3 models: random unit vectors (``shift`` added before normalising: a direction they share,
    as sentence embeddings have), Bernoulli scores, costs 1:4:20 scaled per prompt, tasks t1/t2/t3 in turn."""
    import numpy as np

    from router.routers.base import RoutingData

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32) + shift
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    quality = (rng.random((n, 3)) < [0.3, 0.6, 0.8]).astype(np.float32)
    cost = np.tile(np.array([1e-5, 4e-5, 2e-4], dtype=np.float32), (n, 1)) * rng.uniform(0.5, 2.0, size=(n, 1))
    return RoutingData(X, quality, cost.astype(np.float32), rng.integers(50, 500, size=n), ["a", "b", "c"],
                       np.array(["t1", "t2", "t3"] * (n // 3), dtype=object))


def test_knn_blend_ends_are_the_two_routers_alone() -> None:
    """``bench.tuning --blend``: weight 1 scores the attention router's own predictions, weight 0 (quality and
    cost) the kNN router's, each equal to that router cross-validated alone on the same folds."""
    import bench.tuning as tuning

    train = _tiny_routing_data(5)
    scores = tuning.knn_blend(train, n_folds=2, seed=1, k=5, weights=(1.0, 0.5, 0.0))
    assert set(scores) == {f"{kind} {reward}" for kind in ("quality", "quality+cost")
                           for reward in ("linear", "exponential")}
    attention = tuning.cross_validate("attention", {}, train, n_folds=2, seed=1)
    knn = tuning.cross_validate("knn5", {}, train, n_folds=2, seed=1)
    assert scores["quality linear"][1.0] == pytest.approx(attention.aiq, abs=1e-12)
    assert scores["quality+cost linear"][1.0] == pytest.approx(attention.aiq, abs=1e-12)
    assert scores["quality+cost linear"][0.0] == pytest.approx(knn.aiq, abs=1e-12)
    for by in scores.values():
        assert all(0.0 < v <= 1.0 for v in by.values())


def test_ablations_score_each_variant_on_the_default_folds(capsys) -> None:
    """``bench.ablations``: the ``default`` variant is the attention router cross-validated as ``bench.tuning``
    does it; every other variant changes the predictions, and the table has a row per variant."""
    import numpy as np

    import bench.ablations as ablations
    import bench.tuning as tuning

    train = _tiny_routing_data(5, shift=0.5)
    small = {"n_members": 1, "max_epochs": 2}
    scores = ablations.ablations(train, n_folds=2, seed=1, **small)
    assert list(scores) == list(ablations.VARIANTS)
    alone = tuning.cross_validate("attention", small, train, n_folds=2, seed=1)
    assert np.mean(scores["default"]["linear"]) == pytest.approx(alone.aiq, abs=1e-12)
    for name, by in scores.items():
        assert len(by["linear"]) == len(by["exponential"]) == len(by["pooled"]) == 2
        assert all(0.0 < v <= 1.0 for v in by["linear"] + by["exponential"]), name

    fit = train.subset(np.arange(60))
    args = (train.X[60:], train.prompt_chars[60:], train.eval_names[60:])
    base, _ = ablations.make("default", **small).fit(fit, seed=1).predict(*args)
    for name in ("length", "centred", "cosine", "knn_inputs"):
        q, _ = ablations.make(name, **small).fit(fit, seed=1).predict(*args)
        assert not np.allclose(q, base), f"{name} predicts what the default does"
    # knn_inputs: a fitted prompt's neighbours leave it out (k = 1: its nearest other prompt's quality, less the
    # model's mean); a new prompt's include every fitted one
    knn = ablations.make("knn_inputs", **small)
    knn.k = 1
    knn.fit(fit, seed=1)
    unit = fit.X / np.linalg.norm(fit.X, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.argmax(axis=1)
    knn._leave_one_out = True
    seen = ~np.isnan(fit.quality)
    expected = np.where(seen[nearest], np.nan_to_num(fit.quality)[nearest], knn.means) - knn.means
    assert np.allclose(knn._neighbour_quality(fit.X), expected, atol=1e-6)
    knn._leave_one_out = False
    assert np.allclose(knn._neighbour_quality(fit.X), np.where(seen, np.nan_to_num(fit.quality), knn.means)
                       - knn.means, atol=1e-6)  # itself, when not fitting
    ablations.print_table(scores, 2)
    table = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == [f"| `{name}`" for name in ablations.VARIANTS]
    with pytest.raises(ValueError, match="unknown variant"):
        ablations.ablations(train, n_folds=2, seed=1, names=["default", "wider"])


def test_cosine_schedule_decays_the_learning_rate_to_zero_and_restores_adamw() -> None:
    """``bench.ablations``' cosine variant: the optimiser's learning rate before step ``k`` of ``T`` is
    ``lr · ½(1 + cos(πk/T))``, zero from step ``T`` on, and ``torch.optim.AdamW`` is the plain one afterwards."""
    import math

    import torch

    import bench.ablations as ablations

    plain = torch.optim.AdamW
    weight = torch.nn.Parameter(torch.ones(3))
    seen = []
    with ablations._cosine_adamw(4):
        optimiser = torch.optim.AdamW([weight], lr=0.1)
        for _ in range(5):
            optimiser.zero_grad()
            (weight ** 2).sum().backward()
            optimiser.step()
            seen.append(optimiser.param_groups[0]["lr"])
    assert seen == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3, 4, 4)])
    assert torch.optim.AdamW is plain
