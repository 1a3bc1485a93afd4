"""The served model's computation, without MLflow: its input, params and output.

``mlflow/router_model.py`` (the pyfunc MLflow executes) is a thin shell over :func:`pool_encoder`,
:func:`prompt_inputs` and :func:`route_frame`, so every check it makes is unit-tested with the library.
:data:`DEFAULT_PARAMS` and the output column prefixes are also the logged signature's
(``router.registry.packaging``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from sentence_transformers import SentenceTransformer

    from router.registry.packaging import ModelPool
    from router.routers.base import Router
    from router.templates import Template

__all__ = ["COST_PREFIX", "DEFAULT_PARAMS", "QUALITY_PREFIX", "embed_prompts", "pool_encoder", "predict",
           "price_factors", "prompt_inputs", "route_frame"]

#: Inference params of the pyfunc and their defaults (also the signature's ``ParamSchema``).
#: ``reward`` picks the reward of ``router.rewards``; ``lambda`` is the linear reward's willingness to pay
#: (dollars per unit of quality), ``tau`` the exponential reward's cost scale (dollars); ``exclude`` names models
#: never chosen (comma-separated; the served model's default is ``ROUTER_POOL_EXCLUDE`` where it runs); ``prices``
#: rescales predicted costs by price factors, ``<model>:<factor>,...`` (the format of ``routerctl prices --json``'s
#: ``label``; the served model's default is ``ROUTER_SERVE_PRICES`` where it runs).
DEFAULT_PARAMS: dict[str, Any] = {"reward": "linear", "lambda": 1.0, "tau": 1e-3, "exclude": "", "prices": ""}

#: Output column prefixes: ``q::<model>`` predicted quality and ``c::<model>`` predicted cost of every model.
QUALITY_PREFIX, COST_PREFIX = "q::", "c::"


def predict(
    router: Router, X: np.ndarray, prompt_chars: np.ndarray, tasks: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``router.predict`` as float64 arrays (task labels go to every router; most ignore them)."""
    q_hat, c_hat = router.predict(X, prompt_chars, tasks)
    return np.asarray(q_hat, dtype=np.float64), np.asarray(c_hat, dtype=np.float64)


def price_factors(text: str, models: Sequence[str]) -> np.ndarray:
    """The factor of every model of ``models`` (pool order) from ``<model>:<factor>,...`` (a model's name ends at
    its last colon; models not named keep factor 1; "" is no change): the inverse of
    :meth:`router.prices.PriceFactors.label`, so the factors batch routing applies can be handed to the served model.

    Raises ``ValueError`` for an item without a factor, a model outside the pool, a model named twice, or a factor
    that is not a finite number ≥ 0 (0: a model that became free, as batch routing applies it)."""
    out = np.ones(len(models), dtype=np.float64)
    column = {m: j for j, m in enumerate(models)}
    seen: set[str] = set()
    for item in (part.strip() for part in str(text or "").split(",")):
        if not item:
            continue
        model, colon, raw = item.rpartition(":")
        model = model.strip()
        if not colon or not model:
            raise ValueError(f"prices: {item!r} is not <model>:<factor>")
        if model not in column:
            raise ValueError(f"prices: unknown model {model!r}; the pool is {', '.join(models)}")
        if model in seen:
            raise ValueError(f"prices: {model!r} is named twice")
        try:
            factor = float(raw)
        except ValueError:
            factor = float("nan")
        if not (np.isfinite(factor) and factor >= 0):  # 0: the model became free, as batch routing applies it
            raise ValueError(f"prices: the factor of {model!r} must be a finite number ≥ 0, got {raw.strip()!r}")
        seen.add(model)
        out[column[model]] = factor
    return out


def pool_encoder(pool: ModelPool) -> SentenceTransformer:
    """The prompt encoder a model's pool names, loaded from local files only, on CPU; its width must be the pool's
    ``embedding_dim`` (:func:`router.encoder.open_encoder`: the one encoder loader) and its files those the
    version was trained with, when the pool recorded them (``encoder_weights``): other weights give other vectors,
    so the version is refused (:class:`~router.encoder.EncoderError`) rather than served on them."""
    from router.encoder import EncoderError, open_encoder, weights_fingerprint  # noqa: PLC0415

    encoder = open_encoder(pool.encoder, "cpu", embedding_dim=pool.embedding_dim, local_only=True)
    if pool.encoder_weights is not None and (found := weights_fingerprint(pool.encoder)) != pool.encoder_weights:
        raise EncoderError(f"encoder {pool.encoder!r} here has other files ({found}) than this version was trained "
                           f"with ({pool.encoder_weights}): its vectors would not be the training vectors; serve it "
                           "with the encoder it was trained with, or train a version on this one")
    return encoder


def embed_prompts(encoder: Any, pool: ModelPool, templates: Sequence[Template], prompts: Sequence[str],
                  batch_size: int) -> np.ndarray:
    """The prompts' vectors as the version's training vectors were computed: its learned ``templates`` stripped
    and long remainders windowed per its pool's ``representation`` (``router.representation``, the store's
    embed step runs the same functions)."""
    from router.representation import Representation, encode_texts, prepare  # noqa: PLC0415

    representation = Representation.from_key(pool.representation)
    remainders, _ = prepare(prompts, templates if representation.templates else ())
    return encode_texts(encoder, remainders, batch_size, representation.max_chunks)


def prompt_inputs(model_input: Any) -> tuple[list[str], np.ndarray | None]:
    """The pyfunc's input as (prompts, tasks or None): a DataFrame with a ``prompt`` column and an optional
    ``task`` column, or anything ``pandas.DataFrame`` accepts.

    MLflow turns a Python dict of columns (``{"prompt": ["a", "b"]}``) into **one** row whose cells are lists (the
    REST ``inputs`` form arrives as arrays and becomes a proper frame); such a row is expanded back into one row
    per prompt (columns of equal length); empty lists are no prompts. Any other list-valued cell, or a missing or
    null prompt, is refused rather than routed as text. Bytes are read as UTF-8 text (not as their ``repr``).
    """
    import pandas as pd  # noqa: PLC0415

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if "prompt" not in frame.columns:
        raise ValueError(f"input needs a 'prompt' column, got {list(frame.columns)}")
    listed = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any()]
    if listed:
        if len(frame) != 1:
            raise ValueError(f"column(s) {listed} hold lists: pass one prompt per row (a DataFrame), or a dict of "
                             "columns")
        if all(len(frame[c].iloc[0]) == 0 for c in listed):  # ``{"prompt": []}``: nothing to route, not a null
            frame = frame.iloc[0:0]
        try:
            frame = frame.explode(listed, ignore_index=True)
        except ValueError as exc:
            raise ValueError(f"columns {listed} must have the same number of values") from exc
    if frame["prompt"].isna().any():
        raise ValueError("'prompt' must not be null")
    prompts = [_text(p, "prompt") for p in frame["prompt"]]
    tasks = None
    if "task" in frame.columns:
        tasks = np.asarray(["" if pd.isna(t) else _text(t, "task") for t in frame["task"]], dtype=object)
    return prompts, tasks


def _text(value: Any, column: str) -> str:
    """A cell as text: bytes (a binary column) are UTF-8, as ingest reads them; anything else its ``str``."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"'{column}' holds bytes that are not UTF-8 text: {exc}") from exc
    return str(value)


def route_frame(
    router: Router,
    pool: ModelPool,
    X: np.ndarray,
    prompt_chars: np.ndarray,
    params: Mapping[str, Any] | None = None,
    tasks: Sequence[str] | np.ndarray | None = None,
    mix: tuple[float, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Routing decisions as the pyfunc returns them (one row per prompt).

    Columns: ``model`` (chosen), ``quality_hat`` / ``cost_hat`` (predicted for the choice), then
    ``q::<model>`` and ``c::<model>`` for every model of the pool, in pool order. ``params``: ``reward``
    (``linear``/``exponential``) and its parameter (``lambda`` / ``tau``), ``exclude`` (models never chosen,
    comma-separated: their ``q::``/``c::`` columns are still returned), ``prices`` (:func:`price_factors`: the
    predicted costs are multiplied by them before choosing, and returned so); missing ones take
    :data:`DEFAULT_PARAMS`. ``tasks`` (a label per prompt) reach only routers whose ``predict`` takes them.
    ``mix`` (a parameter and a mask of prompts) routes the masked prompts with that parameter instead (the
    version's mixed quality-target policy, ``router.policy``).
    """
    import pandas as pd  # noqa: PLC0415

    from router.rewards import get_reward  # noqa: PLC0415
    from router.routing import available  # noqa: PLC0415

    chosen_params = {**DEFAULT_PARAMS, **{k: v for k, v in (params or {}).items() if v is not None}}
    reward = get_reward(str(chosen_params["reward"]))
    param = float(chosen_params[reward.param_name])
    keep = available(pool.models, [m.strip() for m in str(chosen_params["exclude"] or "").split(",") if m.strip()])
    factors = price_factors(str(chosen_params["prices"] or ""), pool.models)
    q_hat, c_hat = predict(router, np.asarray(X, dtype=np.float32), np.asarray(prompt_chars), tasks)
    c_hat = c_hat * factors[None, :]
    rows = np.arange(q_hat.shape[0])
    if rows.size:
        choice = keep[reward.choose(q_hat[:, keep], c_hat[:, keep], param)]
        if mix is not None and np.any(mix[1]):
            dear = np.flatnonzero(mix[1])
            choice[dear] = keep[reward.choose(q_hat[dear][:, keep], c_hat[dear][:, keep], float(mix[0]))]
    else:
        choice = np.zeros(0, dtype=np.int64)
    columns: dict[str, Any] = {
        "model": np.asarray(pool.models, dtype=object)[choice],
        "quality_hat": q_hat[rows, choice],
        "cost_hat": c_hat[rows, choice],
    }
    for j, m in enumerate(pool.models):
        columns[f"{QUALITY_PREFIX}{m}"] = q_hat[:, j]
    for j, m in enumerate(pool.models):
        columns[f"{COST_PREFIX}{m}"] = c_hat[:, j]
    return pd.DataFrame(columns)
