"""Single-head cross-attention router ("One Head, Many Models", arXiv 2509.09782), registered as ``attention``.

Architecture (details and the reasons for them in ``docs/router.md``)::

    x (n, d) ─► query encoder ─► h (n, H)                      E (m, D): one learned row per model
                                  │ q = h W_q                    k = E W_k, v = E W_v
                                  └──► α = softmax(q kᵀ / √A) over the m models   (single head)
                                       g = h + (α v) W_o       (prompt representation in the context of the pool)
    for every (prompt i, model j):
        z_ij = GELU(g_i P + e_j R + (g_i S) ⊙ (e_j T))          (H)
        quality_ij = sigmoid(w_q · z_ij + b_q)
        log_cost_ij = a(e_j) + s(e_j) · ℓ_i + w_c · GELU(z_ij U + ℓ_i u)      ℓ_i = standardised log prompt chars

Quality is trained with binary cross-entropy and cost with a Huber loss on standardised log-dollars, both
masked to the observed (prompt, model) pairs, so sparse logs (one model per prompt) train as well as dense
benchmark rows. Training uses AdamW on mini-batches for a fixed number of epochs (optionally early stopping on
a held-out slice of the training rows); an ensemble of ``n_members`` independently seeded networks, trained in
parallel threads (one member per core, each single-threaded, so the weights do not depend on the core count), is
averaged at prediction time (mean probability, mean log cost).

Prediction does not call ``CrossAttentionNet.forward`` (which training uses) but
:class:`~router.routers.attention_inference.EnsembleInference`, an algebraically identical evaluation-mode pass
that is several times faster on CPU: input-independent terms are computed once per call, the ensemble's encoders
are one matrix product, and rows go through in cache-sized chunks with the large (rows, models, H) activations
updated in place, one chunk per core at a time (data-parallel threads running single-threaded torch operations,
rather than every operation split across the cores).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from router.progress import Progress
from router.routers import register
from router.routers.attention_inference import CHUNK_ELEMENTS, EnsembleInference, on_cores
from router.routers.base import Router, RoutingData

log = logging.getLogger(__name__)

__all__ = ["ARTIFACT_FORMAT", "AttentionConfig", "AttentionRouter", "CrossAttentionNet"]

#: Bumped whenever the artifact layout changes incompatibly.
ARTIFACT_FORMAT = 1
#: Inverse L2 strength of the task classifier (``AttentionConfig.infer_task``).
TASK_CLASSIFIER_C = 10.0


@dataclass(frozen=True)
class AttentionConfig:
    """Hyper-parameters of :class:`AttentionRouter` (defaults chosen by ``bench/tuning.py``; see ``docs/router.md``).

    Attributes:
        hidden: width ``H`` of the prompt encoder and of the pair representation.
        model_dim: width ``D`` of each learned model embedding.
        attn_dim: width ``A`` of attention queries, keys and values.
        dropout: dropout on the prompt encoder and the pair representation.
        weight_decay: AdamW weight decay.
        lr: AdamW learning rate.
        max_epochs: training epochs (an upper bound when early stopping is on).
        patience: with ``val_fraction > 0``, stop after this many epochs without a better validation loss
            (the best weights are restored).
        batch_size: prompts per mini-batch.
        val_fraction: share of training prompts held out for early stopping (stratified by task label);
            ``0`` (the tuned default) trains all rows for exactly ``max_epochs`` epochs.
        cost_weight: weight of the cost loss relative to the quality loss.
        monitor: early-stopping criterion on the held-out prompts: ``"quality"`` (masked BCE only, what routing
            decisions hinge on) or ``"total"`` (BCE + ``cost_weight`` · Huber).
        huber_delta: Huber threshold on standardised log-cost.
        n_members: networks in the ensemble (member ``k`` uses seed ``seed + k`` for split, init and shuffling).
        use_task: feed a one-hot of the task label (``RoutingData.eval_names``) to the prompt encoder (on by
            default: it raised cross-validated AIQ on ``data/llmrouter_9models``, docs/router.md); optional at
            prediction time (see ``infer_task``).
        infer_task: with ``use_task``, a prompt whose task is missing or not in the training vocabulary at
            prediction time gets the task a linear classifier of its embedding predicts (multinomial logistic
            regression fitted on the training prompts with the router); off, it gets an all-zero one-hot (the
            prompt alone). docs/router.md, "A missing task is inferred", compares the two.
        model_init: how the model embeddings start: ``"random"`` (N(0, 0.1²) free vectors) or ``"stats"`` (the
            leading principal components of each model's training statistics, per-task mean quality, overall mean
            quality and mean log cost, scaled to the random init's spread; the remaining columns random). Only
            the starting point changes: the embeddings are trained as before and the artifacts are the same.
        cost_eps: dollars added before taking the log of a cost (a zero cost stays finite).
    """

    hidden: int = 128
    model_dim: int = 32
    attn_dim: int = 32
    dropout: float = 0.1
    weight_decay: float = 1e-4
    lr: float = 2e-3
    max_epochs: int = 10
    patience: int = 20
    batch_size: int = 128
    val_fraction: float = 0.0
    cost_weight: float = 1.0
    monitor: Literal["quality", "total"] = "quality"
    huber_delta: float = 1.0
    n_members: int = 5
    use_task: bool = True
    infer_task: bool = True
    model_init: Literal["random", "stats"] = "random"
    task_dropout: float = 0.0
    cost_eps: float = 1e-7

    def __post_init__(self) -> None:
        for name in ("hidden", "model_dim", "attn_dim", "max_epochs", "batch_size", "n_members"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        if not 0.0 <= self.task_dropout < 1.0:
            raise ValueError("task_dropout must be in [0, 1)")
        if self.model_init not in ("random", "stats"):
            raise ValueError("model_init must be 'random' or 'stats'")
        if self.monitor not in ("quality", "total"):
            raise ValueError("monitor must be 'quality' or 'total'")
        if self.cost_eps <= 0:
            raise ValueError("cost_eps must be > 0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AttentionConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


class _MemberDropout(nn.Module):
    """``nn.Dropout`` drawing from the member's own generator when one is set (during ``fit``), else from torch's
    global one. Same operations as ``F.dropout`` on CPU (a Bernoulli(1 − p) mask divided by 1 − p, multiplied in),
    so a generator holding the global generator's state draws the same masks. Members then train in parallel
    threads without sharing (and racing on) the global generator. No parameters: artifacts are unchanged."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            return F.dropout(x, self.p, training=True)
        noise = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator).div_(1.0 - self.p)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"


class CrossAttentionNet(nn.Module):
    """One ensemble member: prompt features + log length → (quality logit, standardised log cost), each (n, m)."""

    def __init__(self, d_in: int, n_models: int, cfg: AttentionConfig) -> None:
        super().__init__()
        H, D, A = cfg.hidden, cfg.model_dim, cfg.attn_dim
        self.scale = 1.0 / math.sqrt(A)
        self.encoder = nn.Sequential(nn.Linear(d_in, H), nn.GELU(), _MemberDropout(cfg.dropout), nn.LayerNorm(H))
        self.model_emb = nn.Parameter(torch.randn(n_models, D) * 0.1)
        # Single-head cross-attention: the prompt (one token) queries the pool of model embeddings.
        self.w_q = nn.Linear(H, A, bias=False)
        self.w_k = nn.Linear(D, A, bias=False)
        self.w_v = nn.Linear(D, A, bias=False)
        self.w_o = nn.Linear(A, H)
        # Pair fusion: additive terms + a multiplicative (factorisation-style) interaction.
        self.pair_prompt = nn.Linear(H, H)
        self.pair_model = nn.Linear(D, H, bias=False)
        self.inter_prompt = nn.Linear(H, H, bias=False)
        self.inter_model = nn.Linear(D, H, bias=False)
        self.dropout = _MemberDropout(cfg.dropout)
        self.quality_head = nn.Linear(H, 1)
        # Cost: per-model affine in log length (from the model embedding) + a non-linear residual.
        self.cost_affine = nn.Linear(D, 2)
        self.cost_hidden = nn.Linear(H + 1, H)
        self.cost_out = nn.Linear(H, 1)

    def use_generator(self, generator: torch.Generator | None) -> None:
        """Draw the dropout masks from ``generator`` (``None``: torch's global generator)."""
        for module in self.modules():
            if isinstance(module, _MemberDropout):
                module.generator = generator

    def attention(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights (n, m) of each prompt over the model pool (``emb``, default ``model_emb``)."""
        keys = self.w_k(self.model_emb if emb is None else emb)  # (m, A)
        return torch.softmax(self.w_q(h) @ keys.T * self.scale, dim=-1)

    def forward(self, x: torch.Tensor, loglen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (n, d_in), ``loglen`` (n,) standardised → ``(quality_logit, log_cost_std)``, each (n, m)."""
        emb = self.model_emb  # (m, D)
        return self.heads(self.in_context(self.encoder(x), emb), emb, loglen)

    def in_context(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``g`` (n, H): the encoded prompts ``h`` (n, H) in the context of the pool ``emb`` (m, D)."""
        context = self.attention(h, emb) @ self.w_v(emb)  # (n, A)
        return h + self.w_o(context)

    def heads(self, g: torch.Tensor, emb: torch.Tensor, loglen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(quality_logit, log_cost_std)``, each (n, m), of prompts ``g`` (n, H) for the models ``emb`` (m, D)."""
        z = (
            self.pair_prompt(g)[:, None, :]
            + self.pair_model(emb)[None, :, :]
            + self.inter_prompt(g)[:, None, :] * self.inter_model(emb)[None, :, :]
        )
        z = self.dropout(F.gelu(z))  # (n, m, H)
        quality_logit = self.quality_head(z).squeeze(-1)  # (n, m)

        n, m = quality_logit.shape
        ell = loglen[:, None, None].expand(n, m, 1)
        affine = self.cost_affine(emb)  # (m, 2): intercept and slope per model
        residual = self.cost_out(F.gelu(self.cost_hidden(torch.cat([z, ell], dim=-1)))).squeeze(-1)
        log_cost = affine[None, :, 0] + affine[None, :, 1] * loglen[:, None] + residual
        return quality_logit, log_cost




#: Held while a fit seeds torch's global generator and draws its members' initial weights from it, so fits running
#: in several threads at once (the calibration's cross-fitted folds, ``router.policy``) each draw their own seeds'
#: weights.
_INIT_LOCK = threading.Lock()
_DETERMINISTIC_LOCK = threading.Lock()
_deterministic_users = 0
_deterministic_before = False


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Run torch with deterministic algorithms, restoring the caller's setting afterwards. The setting is
    process-wide: concurrent fits share it, the first one in saves the caller's and the last one out restores it."""
    global _deterministic_users, _deterministic_before
    with _DETERMINISTIC_LOCK:
        if _deterministic_users == 0:
            _deterministic_before = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(True)
        _deterministic_users += 1
    try:
        yield
    finally:
        with _DETERMINISTIC_LOCK:
            _deterministic_users -= 1
            if _deterministic_users == 0:
                torch.use_deterministic_algorithms(_deterministic_before)


def _stratified_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of a held-out ``fraction`` of rows, drawn per label (at least one row of labels with ≥ 2)."""
    held = np.zeros(labels.shape[0], dtype=bool)
    if fraction <= 0:
        return held
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        k = int(round(fraction * rows.size))
        if rows.size >= 2:
            k = min(max(k, 1), rows.size - 1)
            held[rng.choice(rows, size=k, replace=False)] = True
    return held


def _model_statistics(
    q: torch.Tensor, qm: torch.Tensor, c: torch.Tensor, cm: torch.Tensor, labels: np.ndarray
) -> np.ndarray:
    """Per model (rows): mean observed quality on each task label, overall mean quality and mean standardised log
    cost (a model never observed on a task gets its overall mean there), each column standardised over models."""
    q, qm, c, cm = (t.double().numpy() for t in (q, qm, c, cm))

    def mean(values: np.ndarray, mask: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        count = mask[rows].sum(axis=0)
        return np.where(count > 0, (values[rows] * mask[rows]).sum(axis=0) / np.maximum(count, 1), np.nan)

    overall = np.nan_to_num(mean(q, qm))
    columns = [mean(q, qm, labels == label) for label in np.unique(labels)]
    columns = [np.where(np.isnan(col), overall, col) for col in columns]
    features = np.column_stack([*columns, overall, np.nan_to_num(mean(c, cm))])
    std = features.std(axis=0)
    return (features - features.mean(axis=0)) / np.where(std > 1e-9, std, 1.0)


def _stats_embedding(stats: np.ndarray, random_init: torch.Tensor) -> torch.Tensor:
    """Model embeddings (m, D) whose leading columns are the principal components of ``stats`` (m, f), scaled to
    the spread of ``random_init``; the remaining columns keep ``random_init``'s values."""
    u, s, _ = np.linalg.svd(stats, full_matrices=False)
    components = (u * s)[:, s > 1e-9 * max(float(s.max(initial=0.0)), 1.0)]
    out = random_init.detach().clone()
    k = min(components.shape[1], out.shape[1])
    if k:
        block = components[:, :k]
        scale = float(out.std(correction=0)) / max(float(block.std()), 1e-12)
        out[:, :k] = torch.as_tensor(block * scale, dtype=out.dtype)
    return out


def _shared_tensor(array: np.ndarray) -> torch.Tensor:
    """``array`` as a tensor sharing its memory. Vectors streamed from DuckDB/Arrow are read-only; nothing here
    writes to its inputs (every in-place op works on tensors it allocated), so they are shared without a copy and
    without torch's warning about non-writable arrays."""
    if array.flags.writeable:
        return torch.as_tensor(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.as_tensor(array)


@register("attention")
class AttentionRouter(Router):
    """Cross-attention router: learned model embeddings, one attention head, quality and cost heads.

    Args:
        config: an :class:`AttentionConfig`; keyword arguments override its fields
            (``AttentionRouter(hidden=64)``).
    """

    name: ClassVar[str] = "attention"
    artifact_format: ClassVar[int] = ARTIFACT_FORMAT

    def __init__(self, config: AttentionConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or AttentionConfig(), **overrides)
        self.members: list[CrossAttentionNet] = []
        self.models = []
        self.tasks: list[str] = []
        #: (weight (T, d), bias (T,)) of the task classifier (``infer_task``), rows in ``self.tasks`` order.
        self.task_classifier: tuple[np.ndarray, np.ndarray] | None = None
        self.d_embed = 0
        self.stats: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []  # per member: epochs run, best epoch, loss curves by epoch

    # ---------------------------------------------------------------------------------------------- features

    def _features(
        self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Model inputs: embedding (+ task one-hot when ``use_task``) and standardised log prompt length."""
        x = _shared_tensor(np.asarray(X, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.d_embed:
            raise ValueError(f"X must be (n, {self.d_embed}), got {tuple(x.shape)}")
        if self.config.use_task:
            onehot = np.zeros((x.shape[0], len(self.tasks)), dtype=np.float32)
            if tasks is not None:
                lookup = {t: i for i, t in enumerate(self.tasks)}
                idx = np.array([lookup.get(str(t), -1) for t in np.asarray(tasks)], dtype=np.int64)
            else:
                idx = np.full(x.shape[0], -1, dtype=np.int64)
            if self.task_classifier is not None and (idx < 0).any():
                unknown = np.flatnonzero(idx < 0)
                idx[unknown] = self.infer_tasks(np.asarray(X)[unknown])
            known = idx >= 0
            onehot[np.flatnonzero(known), idx[known]] = 1.0
            x = torch.cat([x, torch.from_numpy(onehot)], dim=1)
        loglen = np.log1p(np.asarray(prompt_chars, dtype=np.float64))
        loglen = (loglen - self.stats["loglen_mean"]) / self.stats["loglen_std"]
        return x, torch.as_tensor(loglen, dtype=torch.float32)

    def infer_tasks(self, X: np.ndarray) -> np.ndarray:
        """Index into ``self.tasks`` of the task the classifier (``infer_task``) predicts for each row of ``X``."""
        if self.task_classifier is None:
            raise RuntimeError("this router has no task classifier")
        weight, bias = self.task_classifier
        return np.argmax(np.asarray(X, dtype=np.float32) @ weight.T + bias, axis=1).astype(np.int64)

    def _fit_task_classifier(self, X: np.ndarray, labels: np.ndarray) -> None:
        """The multinomial logistic regression of the task on the embedding (rows with a task; ``infer_task``)."""
        from sklearn.linear_model import LogisticRegression

        self.task_classifier = None
        named = np.flatnonzero(labels != "")
        if not (self.config.use_task and self.config.infer_task) or len(self.tasks) < 2 or named.size == 0:
            return
        clf = LogisticRegression(C=TASK_CLASSIFIER_C, max_iter=1000).fit(np.asarray(X)[named], labels[named])
        weight, bias = clf.coef_, clf.intercept_
        if weight.shape[0] == 1:  # two classes: one logit for the second; the first class scores 0
            weight, bias = np.vstack([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
        order = [list(clf.classes_).index(t) for t in self.tasks]
        self.task_classifier = (weight[order].astype(np.float32), bias[order].astype(np.float32))

    def _new_member(self) -> CrossAttentionNet:
        d_in = self.d_embed + (len(self.tasks) if self.config.use_task else 0)
        return CrossAttentionNet(d_in, len(self.models), self.config)

    # -------------------------------------------------------------------------------------------------- fit

    def fit(self, data: RoutingData, seed: int = 42) -> AttentionRouter:
        cfg = self.config
        self.models = list(data.models)
        self.d_embed = int(data.X.shape[1])
        labels = np.asarray(data.eval_names).astype(str)
        self.tasks = sorted({t for t in labels if t}) if cfg.use_task else []

        quality = np.asarray(data.quality, dtype=np.float64)
        cost = np.asarray(data.cost, dtype=np.float64)
        q_mask = ~np.isnan(quality)
        c_mask = ~np.isnan(cost)
        rows = np.flatnonzero(q_mask.any(axis=1) | c_mask.any(axis=1))
        if rows.size == 0:
            raise ValueError("no observed (prompt, model) pair to train on")

        loglen = np.log1p(np.asarray(data.prompt_chars, dtype=np.float64)[rows])
        log_cost = np.log(np.where(c_mask, np.maximum(cost, 0.0), 1.0) + cfg.cost_eps)[rows]
        observed_log_cost = log_cost[c_mask[rows]]
        self.stats = {
            "loglen_mean": float(loglen.mean()),
            "loglen_std": float(max(loglen.std(), 1e-6)),
            "logcost_mean": float(observed_log_cost.mean()) if observed_log_cost.size else 0.0,
            "logcost_std": float(max(observed_log_cost.std(), 1e-6)) if observed_log_cost.size else 1.0,
        }
        self._fit_task_classifier(data.X[rows], labels[rows])
        x, ell = self._features(data.X[rows], data.prompt_chars[rows], labels[rows])
        tensors = {
            "x": x,
            "ell": ell,
            "q": torch.as_tensor(np.nan_to_num(quality[rows]).clip(0.0, 1.0), dtype=torch.float32),
            "qm": torch.as_tensor(q_mask[rows], dtype=torch.float32),
            "c": torch.as_tensor((log_cost - self.stats["logcost_mean"]) / self.stats["logcost_std"], dtype=torch.float32),
            "cm": torch.as_tensor(c_mask[rows], dtype=torch.float32),
        }
        # Members are initialised one after another from torch's global generator (seeded per member), then
        # trained in parallel, one per worker thread running torch single-threaded, each drawing its dropout
        # masks from its own generator, started where the global one stood after its initialisation. Every
        # member's arithmetic is then single-threaded and its own, whatever the number of threads: the fitted
        # weights do not depend on the core count or on the threads' timing.
        model_stats = (_model_statistics(tensors["q"], tensors["qm"], tensors["c"], tensors["cm"], labels[rows])
                       if cfg.model_init == "stats" else None)
        with _INIT_LOCK:
            members = [self._new_seeded_member(seed + k, model_stats) for k in range(cfg.n_members)]
        lines = Progress(log, f"training attention ({cfg.n_members} members × ≤{cfg.max_epochs} epochs)",
                         cfg.n_members * cfg.max_epochs, "epochs")

        def train(k: int) -> tuple[CrossAttentionNet, dict[str, Any]]:
            return self._fit_member(*members[k], tensors, labels[rows], seed + k,
                                    on_epoch=lambda epoch, loss: lines.advance(
                                        note=f"member {k + 1}/{cfg.n_members} at epoch {epoch}, loss {loss:.4f}"))

        with _deterministic():
            fitted = on_cores(train, range(cfg.n_members), "attention-fit")
        self.members = [net for net, _ in fitted]
        self.history = [info for _, info in fitted]
        return self

    def _loss(
        self, net: CrossAttentionNet, t: Mapping[str, torch.Tensor], idx: torch.Tensor, cost_weight: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Masked BCE (quality) + ``cost_weight`` × masked Huber (standardised log cost) on rows ``idx``. With a
        ``generator`` and ``task_dropout > 0`` (training), the task one-hot of that share of the rows is zeroed."""
        cfg = self.config
        cost_weight = cfg.cost_weight if cost_weight is None else cost_weight
        x = t["x"][idx]
        if generator is not None and cfg.use_task and cfg.task_dropout > 0 and self.tasks:
            drop = torch.rand(x.shape[0], generator=generator) < cfg.task_dropout
            x[drop, self.d_embed:] = 0.0  # x is a copy (advanced indexing)
        logit, log_cost = net(x, t["ell"][idx])
        qm, cm = t["qm"][idx], t["cm"][idx]
        bce = F.binary_cross_entropy_with_logits(logit, t["q"][idx], reduction="none")
        huber = F.huber_loss(log_cost, t["c"][idx], reduction="none", delta=cfg.huber_delta)
        q_loss = (bce * qm).sum() / qm.sum().clamp_min(1.0)
        c_loss = (huber * cm).sum() / cm.sum().clamp_min(1.0)
        return q_loss + cost_weight * c_loss

    def _new_seeded_member(
        self, seed: int, model_stats: np.ndarray | None = None
    ) -> tuple[CrossAttentionNet, torch.Generator]:
        """A member initialised from torch's global generator seeded with ``seed`` (its model embeddings from
        ``model_stats`` when given: :func:`_stats_embedding`), and the generator for its dropout masks: a copy of
        the global one's state after the initialisation."""
        torch.manual_seed(seed)
        net = self._new_member()
        if model_stats is not None:
            with torch.no_grad():
                net.model_emb.copy_(_stats_embedding(model_stats, net.model_emb))
        dropout = torch.Generator()
        dropout.set_state(torch.get_rng_state())
        return net, dropout

    def _fit_member(
        self, net: CrossAttentionNet, dropout: torch.Generator, t: Mapping[str, torch.Tensor], labels: np.ndarray,
        seed: int, on_epoch: Callable[[int, float], None] | None = None,
    ) -> tuple[CrossAttentionNet, dict[str, Any]]:
        cfg = self.config
        rng = np.random.default_rng(seed)
        held = _stratified_holdout(labels, cfg.val_fraction, rng)
        train_idx = torch.as_tensor(np.flatnonzero(~held))
        val_idx = torch.as_tensor(np.flatnonzero(held))

        generator = torch.Generator().manual_seed(seed)
        net.use_generator(dropout)
        optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(net.state_dict())
        epoch = 0
        train_curve: list[float] = []  # mean training loss per epoch (logged to MLflow as a curve)
        val_curve: list[float] = []
        for epoch in range(1, cfg.max_epochs + 1):
            net.train()
            order = train_idx[torch.randperm(train_idx.numel(), generator=generator)]
            total = torch.zeros(())
            for batch in order.split(cfg.batch_size):
                optimiser.zero_grad(set_to_none=True)
                loss = self._loss(net, t, batch, generator=generator)
                loss.backward()
                optimiser.step()
                total += loss.detach() * batch.numel()
            train_curve.append(float(total) / max(train_idx.numel(), 1))
            if on_epoch is not None:
                on_epoch(epoch, train_curve[-1])
            if val_idx.numel() == 0:
                best_epoch, best_state = epoch, None
                continue
            net.eval()
            with torch.no_grad():
                val_loss = float(self._loss(net, t, val_idx, 0.0 if cfg.monitor == "quality" else None))
            val_curve.append(val_loss)
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
            elif epoch - best_epoch >= cfg.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.use_generator(None)
        net.eval()
        info: dict[str, Any] = {"seed": float(seed), "epochs": float(epoch), "best_epoch": float(best_epoch),
                                "val_loss": best_loss, "train_loss_curve": train_curve}
        if val_curve:
            info["val_loss_curve"] = val_curve
        return net, info

    # ---------------------------------------------------------------------------------------------- predict

    def _check_fitted(self) -> None:
        if not self.members:
            raise RuntimeError("AttentionRouter is not fitted")

    @torch.inference_mode()
    def predict(
        self,
        X: np.ndarray,
        prompt_chars: np.ndarray,
        tasks: np.ndarray | Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality in (0, 1) and cost in dollars (> 0), each (n, m), in ``self.models`` order.

        ``tasks`` (task label per row) is used only by a router fitted with ``use_task=True``. ``batch_size``:
        prompts per forward chunk (default: as many as keep a (rows, m, hidden) activation at about 1 MiB); it
        does not change the result beyond float32 rounding.
        """
        self._check_fitted()
        x, ell = self._features(X, prompt_chars, None if tasks is None else np.asarray(tasks))
        n, m = x.shape[0], len(self.models)
        if batch_size is None:
            batch_size = max(1, CHUNK_ELEMENTS // (m * self.config.hidden))
        quality = torch.empty(n, m, dtype=torch.float32)
        log_cost = torch.empty(n, m, dtype=torch.float32)
        EnsembleInference(self.members)(x, ell, quality, log_cost, batch_size)
        log_cost = log_cost.numpy().astype(np.float64) * self.stats["logcost_std"] + self.stats["logcost_mean"]
        # exp(log(c + eps)) - eps could reach 0 for tiny costs; keep cost_eps as the floor so cost > 0.
        cost = np.maximum(np.exp(log_cost) - self.config.cost_eps, self.config.cost_eps)
        return quality.numpy().astype(np.float64), cost

    @torch.no_grad()
    def attention_weights(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None = None) -> np.ndarray:
        """Mean over ensemble members of each prompt's attention (n, m) over the model pool (for inspection)."""
        self._check_fitted()
        x, _ = self._features(X, prompt_chars, tasks)
        return torch.stack([net.attention(net.encoder(x)) for net in self.members]).mean(0).double().numpy()

    # ----------------------------------------------------------------------------------------- persistence

    def to_artifacts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Weights and a JSON-able config from which :meth:`from_artifacts` rebuilds an identical predictor.

        Tensors are named ``members.<k>.<parameter>``, plus ``task_classifier.weight``/``.bias`` when the router
        infers missing tasks (contiguous CPU tensors, ready for ``safetensors.torch.save_file``); the config holds
        the architecture, the model pool, the task vocabulary and the normalisation statistics.
        """
        self._check_fitted()
        tensors = {
            f"members.{k}.{name}": value.detach().cpu().contiguous().clone()
            for k, net in enumerate(self.members)
            for name, value in net.state_dict().items()
        }
        if self.task_classifier is not None:
            for name, value in zip(("weight", "bias"), self.task_classifier, strict=True):
                tensors[f"task_classifier.{name}"] = torch.from_numpy(np.ascontiguousarray(value))
        config = self.artifact_config(asdict(self.config), tasks=list(self.tasks), d_embed=self.d_embed,
                                      n_members=len(self.members), stats=dict(self.stats))
        return tensors, config

    @classmethod
    def from_artifacts(cls, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> AttentionRouter:
        """Rebuild a fitted router from :meth:`to_artifacts` output (e.g. after a safetensors/JSON round trip)."""
        cls.check_artifact_config(config)
        router = cls(AttentionConfig.from_dict(config["hyperparameters"]))
        router.models = [str(m) for m in config["models"]]
        router.tasks = [str(t) for t in config["tasks"]]
        router.d_embed = int(config["d_embed"])
        router.stats = {k: float(v) for k, v in config["stats"].items()}
        if "task_classifier.weight" in tensors:  # versions registered before task inference have none
            router.task_classifier = (tensors["task_classifier.weight"].numpy().astype(np.float32),
                                      tensors["task_classifier.bias"].numpy().astype(np.float32))
        router.members = []
        for k in range(int(config["n_members"])):
            prefix = f"members.{k}."
            state = {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
            net = router._new_member()
            net.load_state_dict(state, strict=True)
            net.eval()
            router.members.append(net)
        return router
