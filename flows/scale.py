"""Scale-out: the embedding and routing steps on a Dask cluster, through Prefect's ``DaskTaskRunner``.

    python -m flows.scale embed --address tcp://scheduler:8786 --chunks 64
    python -m flows.scale route --address tcp://scheduler:8786 --chunks 64 [--budget 5.0]
    python -m flows.scale route --workers 2                      # a local cluster (threads), for trying it

The work is split by **prompt-hash range**: ``prompt_id`` is hex of sha256, so ``chunks`` equal ranges of its
first 32 bits hold about equal numbers of prompts (``router.routing.hash_ranges``). DuckDB has one writer, so
the flow's own process reads each range's inputs (texts to encode; units and vectors to predict), ships them
to the workers, which only compute (``encode`` / ``predict``) and return arrays; the flow's process writes
the results (vectors per range in one transaction each; decisions in batches, as the single-process path
does). What is computed is what ``routerctl embed`` / ``routerctl route`` compute, in other batches: with the
real encoder and router, floats may differ in the last bits (and a decision only where two models tie to those
bits); with deterministic stand-ins the vectors and decisions are equal to the last bit (``tests/test_scale.py``).

Workers need this project installed (same image) and, for embedding, the encoder on their disk. Process
workers should report to a real Prefect server (``PREFECT_API_URL``): without one each worker process starts
its own ephemeral server. See ``docs/performance.md``.
"""

from __future__ import annotations

from flows.env import configure, expected_errors_without_traceback, stop_ephemeral_server

SETTINGS = configure()

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from router import embeddings as emb  # noqa: E402
from router import routing  # noqa: E402
from router.champion import NO_CHAMPION  # noqa: E402
from router.encoder import variant  # noqa: E402
from router.errors import RouterError, exit_code  # noqa: E402
from router.locking import writer_lock  # noqa: E402
from router.rewards import REWARDS  # noqa: E402
from router.settings import Settings  # noqa: E402
from router.snapshots import refreshed  # noqa: E402
from router.storage import open_store  # noqa: E402

log = logging.getLogger(__name__)
expected_errors_without_traceback()
_ENCODERS: dict[tuple[str, str], Any] = {}  # one encoder per worker process, loaded on its first chunk


def task_runner(address: str | None = None, n_workers: int = 2, threads_per_worker: int = 1,
                processes: bool = False):
    """A ``DaskTaskRunner`` on an existing scheduler (``address``), else on a fresh local cluster."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": n_workers, "threads_per_worker": threads_per_worker,
                                          "processes": processes, "dashboard_address": None})


def _encoder(settings: Settings):
    key = (settings.encoder, settings.device, settings.encoder_backend, settings.encoder_quantize)
    if key not in _ENCODERS:
        _ENCODERS[key] = emb.load_encoder(settings)
    return _ENCODERS[key]


@task(name="encode-chunk", retries=1, cache_policy=NO_CACHE)
def encode_chunk(texts: list[str], settings: Settings, model: Any = None) -> tuple[np.ndarray, str]:
    """Worker side: encode one hash range's remainders (the worker loads the encoder once); the vectors and the
    encoder's variant (``router.encoder.variant``)."""
    model = model or _encoder(settings)
    return emb.encode_texts(model, texts, settings), variant(model)


@task(name="predict-chunk", retries=1, cache_policy=NO_CACHE)
def predict_chunk(predictor: routing.Predictor, units: routing.Units) -> tuple[np.ndarray, np.ndarray]:
    """Worker side: predict one hash range's (prompt, task) units."""
    return routing.predict_units(predictor, units)


@flow(name="embed-distributed")
def embed_distributed(chunks: int = 8, model: Any = None) -> dict[str, Any]:
    """Embed every prompt lacking a current vector, one task per prompt-hash range; the flow's process learns the
    templates (``router.embeddings.plan``) and writes."""
    settings = Settings()
    start = time.perf_counter()
    # the flow's process is the store's writer for the whole run: the workspace lock, as every writing command
    with writer_lock(settings.workspace), refreshed(settings), open_store(settings) as con:
        work = emb.plan(con, settings)
        todo = [work.in_range(lo, hi) for lo, hi in routing.hash_ranges(chunks)]
        todo = [frame for frame in todo if frame.height]
        futures = [encode_chunk.submit(frame["text"].to_list(), settings, model) for frame in todo]
        done = 0
        for frame, future in zip(todo, futures, strict=True):
            vectors, how = future.result()
            emb.store_vectors(con, settings.encoder, frame["prompt_id"], vectors, work.representation.key,
                              frame["template_id"], work.weights, how)
            done += frame.height
    return {"encoder": settings.encoder, "embedded": done, "already": work.already, "chunks": len(todo),
            "representation": work.representation.key, "templates_changed": work.changed_groups,
            "seconds": time.perf_counter() - start}


def on_workers(chunks: int) -> routing.Predictions:
    """:data:`router.routing.Predictions` on the flow's task runner: the pending units read by prompt-hash range in
    this process, one ``predict-chunk`` task per range."""
    def predictions(con, predictor, encoder, batch_size):
        units = [routing.read_units(con, encoder, lo, hi) for lo, hi in routing.hash_ranges(chunks)]
        units = [u for u in units if u.n]
        futures = [predict_chunk.submit(predictor, u) for u in units]
        for u, future in zip(units, futures, strict=True):
            yield u, *future.result()

    return predictions


@flow(name="route-distributed")
def route_distributed(reward: str | None = None, reward_param: float | None = None, budget: float | None = None,
                      quality_target: float | None = None, chunks: int = 8, predictor: Any = None,
                      model_version: str | None = None, flow_run_id: str | None = None) -> dict[str, Any]:
    """Route the pending backlog, one predict task per prompt-hash range; the flow's process writes.

    ``predictor``/``model_version`` default to the registry's champion with the policy and prices that
    ``routerctl route`` would use (``router.champion.plan``: the quality target unless a λ or a budget is given);
    an explicit ``predictor`` is routed with ``reward_param``/``budget`` as given (else the quality end)."""
    from router import champion, promotions
    from router.routing import route_backlog

    settings = Settings()
    plan = None
    # the champion is read under the lock, as `routerctl route` does: a run that waited for a night to finish
    # routes with the champion that night promoted
    with writer_lock(settings.workspace):
        if predictor is None:
            plan = champion.plan(settings, reward=reward, reward_param=reward_param, budget=budget,
                                 quality_target=quality_target)
            if plan is None:
                return {"routed": 0, "model_version": None, "reason": "no champion"}
            predictor = plan.router
        with refreshed(settings), open_store(settings) as con:
            if plan is not None:
                promotions.reconcile(con, settings.registered_model, int(plan.version), flow_run_id)
                kwargs = plan.route_kwargs(plan.price_factors(con), settings.pool_exclude)
            else:
                kwargs = {"model_version": model_version, "reward_name": reward or settings.route_reward,
                          "reward_param": reward_param, "budget": budget, "exclude": settings.pool_exclude}
            summary = route_backlog(con, predictor, router_name=settings.registered_model,
                                    encoder=settings.encoder, batch_size=settings.route_batch_size,
                                    flow_run_id=flow_run_id, predictions=on_workers(chunks), **kwargs)
    explicit = {"kind": "budget" if budget is not None else "lambda"}
    return {**asdict(summary), "policy": explicit if plan is None else plan.policy}


def run_embed(address: str | None = None, chunks: int = 8, n_workers: int = 2, model: Any = None,
              processes: bool = False) -> dict[str, Any]:
    runner = task_runner(address, n_workers, processes=processes)
    return embed_distributed.with_options(task_runner=runner)(chunks=chunks, model=model)


def run_route(address: str | None = None, chunks: int = 8, n_workers: int = 2, processes: bool = False,
              **kwargs: Any) -> dict[str, Any]:
    runner = task_runner(address, n_workers, processes=processes)
    return route_distributed.with_options(task_runner=runner)(chunks=chunks, **kwargs)


def _positive(kind: type) -> Any:
    """An argparse type: a positive finite number (``routerctl route`` refuses the others too)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
        if not (np.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="embed or route on a Dask cluster, by prompt-hash range")
    parser.add_argument("step", choices=["embed", "route"])
    parser.add_argument("--address", help="Dask scheduler, e.g. tcp://scheduler:8786 (default: a local cluster)")
    parser.add_argument("--chunks", type=_positive(int), default=8, help="prompt-hash ranges (tasks)")
    parser.add_argument("--workers", type=_positive(int), default=2, help="local cluster only: workers")
    parser.add_argument("--processes", action="store_true", help="local cluster only: worker processes")
    parser.add_argument("--reward", choices=sorted(REWARDS), help="default ROUTER_ROUTE_REWARD")
    policy = parser.add_mutually_exclusive_group()  # one of them, as routerctl route
    policy.add_argument("--lambda", dest="reward_param", type=_positive(float))
    policy.add_argument("--budget", type=_positive(float))
    policy.add_argument("--quality-target", type=_positive(float), help="default ROUTER_ROUTE_QUALITY_TARGET")
    args = parser.parse_args(argv)
    failure = None
    try:
        if args.step == "embed":
            summary = run_embed(args.address, args.chunks, args.workers, processes=args.processes)
        else:
            summary = run_route(args.address, args.chunks, args.workers, processes=args.processes,
                                reward=args.reward, reward_param=args.reward_param, budget=args.budget,
                                quality_target=args.quality_target)
    except RouterError as exc:  # e.g. another run holds the workspace: one line and routerctl's exit status
        failure = exc
    finally:
        stop_ephemeral_server()  # before the last line, and while it can still take the flows' queued logs
    if failure is not None:
        parser.exit(exit_code(failure), f"error: {failure}\n")
    print(summary)
    if args.step == "route" and summary.get("model_version") is None:  # nothing routed: exit 2, as routerctl
        parser.exit(2, f"error: {NO_CHAMPION}\n")


if __name__ == "__main__":
    main()
