"""The attention router's prediction engine and its use of the cores.

:class:`EnsembleInference` is an evaluation-mode pass of an ensemble of
:class:`~router.routers.attention.CrossAttentionNet` members, algebraically identical to averaging their
``forward`` and several times faster on CPU (``docs/router.md``, "Prediction path"). :func:`on_cores` runs whole
pieces of work (prediction chunks, ensemble members during ``fit``) on worker threads, each with single-threaded
torch operations.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from router.routers.attention import CrossAttentionNet

__all__ = ["CHUNK_ELEMENTS", "EnsembleInference", "on_cores"]


#: Float32 elements of one (rows, models, H) activation per prediction chunk (1 MiB, one core's L2 cache on the
#: AMD EPYC CI host; ~186 prompts for 11 models and H = 128). Each chunk runs on one core (see
#: ``EnsembleInference.__call__``), so its activations stay in that core's cache between the dozen element-wise
#: passes and products over them, where 8 MiB chunks, each operation split across both cores, go to memory
#: (the ``route_attention`` bench measures it: docs/performance.md).
CHUNK_ELEMENTS = 2**18

#: In-place exact (erf) GELU, the same kernel as ``F.gelu(x)`` (which has no in-place or ``out=`` form).
_gelu_ = torch.ops.aten.gelu_


_POOL_LOCK = threading.Lock()
_pool_users = 0
_pool_threads = 1


@contextlib.contextmanager
def _one_thread_per_op() -> Iterator[int]:
    """Set torch's intra-op threads to 1 for the duration and yield the count it had on entry: the number of
    worker threads to run instead (:func:`on_cores`), each doing whole pieces of work (prediction chunks,
    ensemble members) with single-threaded operations.

    ``torch.set_num_threads`` is process-wide, so concurrent callers (predictions in several threads of one
    process, e.g. a threaded Dask worker) share one count: the first one in saves the setting, later ones reuse
    it, and the last one out restores it, also when a prediction raises.
    """
    global _pool_users, _pool_threads
    with _POOL_LOCK:
        if _pool_users == 0:
            _pool_threads = torch.get_num_threads()
            if _pool_threads > 1:
                torch.set_num_threads(1)
        _pool_users += 1
        threads = _pool_threads
    try:
        yield threads
    finally:
        with _POOL_LOCK:
            _pool_users -= 1
            if _pool_users == 0 and _pool_threads > 1:
                torch.set_num_threads(_pool_threads)


_T = TypeVar("_T")
_R = TypeVar("_R")


def on_cores(func: Callable[[_T], _R], items: Sequence[_T], name: str) -> list[_R]:
    """``func`` of every item, in order, with torch single-threaded (:func:`_one_thread_per_op`): by as many
    worker threads (named ``name``) as torch had intra-op threads, at most one per item, or one item after
    another in this thread when that is one. Grad and inference modes are per thread: ``func`` sets its own.

    The first error is raised here once the items already running are done; the items not yet started are
    dropped.
    """
    with _one_thread_per_op() as threads:
        workers = min(threads, len(items))
        if workers <= 1:
            return [func(item) for item in items]
        with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
            futures = [pool.submit(func, item) for item in items]
            try:
                return [future.result() for future in futures]
            finally:
                for future in futures:
                    future.cancel()  # those not started yet (after an error)


class EnsembleInference:
    """Evaluation-mode forward pass of an ensemble, averaged: equal to the members' ``forward`` up to float32 rounding.

    Built from the members' current weights, under ``torch.inference_mode`` or ``torch.no_grad`` (build one per
    prediction call: it does not follow later weight changes). Exact rewrites of ``CrossAttentionNet.forward``
    (dropout is the identity in evaluation mode):

    * every term that depends only on the model embeddings (keys, values, ``pair_model``, ``inter_model``,
      ``cost_affine``) is computed here once, and the attention folds into two (m, H) matrices:
      ``scores = h (W_q^T K^T / √A)`` and ``context W_o^T = α (V W_o^T)``;
    * the members' first encoder layers are one (d_in, n_members · H) matrix product;
    * ``pair_prompt`` and ``inter_prompt`` are one (H, 2H) product;
    * ``cost_hidden([z, ℓ])`` is ``z W_z^T + (b + ℓ w_ℓ)``: a product on z plus a per-prompt bias, instead of
      copying z into an (n, m, H + 1) concatenation;
    * the quality and cost output layers are matrix-vector products into the running member sums, and the
      per-model affine cost term is added once for the whole ensemble:
      mean_k(a_k + s_k ℓ + r_k) = mean(a) + mean(s) ℓ + mean(r).
    """

    def __init__(self, members: Sequence[CrossAttentionNet]) -> None:
        first = members[0]
        self.n_members = len(members)
        self.hidden = first.pair_prompt.out_features
        self.n_models = first.model_emb.shape[0]
        encoders = [net.encoder[0] for net in members]
        norms = [net.encoder[3] for net in members]
        self.enc_weight_t = torch.cat([lin.weight for lin in encoders]).T.contiguous()  # (d_in, K·H), side by side
        self.enc_bias = torch.cat([lin.bias for lin in encoders])  # (K·H,)
        self.ln_eps = norms[0].eps
        self.ln_weight = torch.stack([ln.weight for ln in norms])  # (K, H)
        self.ln_bias = torch.stack([ln.bias for ln in norms])
        self.members: list[dict[str, torch.Tensor]] = []
        intercept = torch.zeros(self.n_models, dtype=first.model_emb.dtype)
        slope = torch.zeros_like(intercept)
        for net in members:
            emb = net.model_emb  # (m, D)
            cost_hidden = net.cost_hidden.weight  # (H, H + 1): z columns, then the log-length column
            self.members.append({
                "score_t": (net.w_k(emb) @ net.w_q.weight * net.scale).contiguous(),  # (m, H): scores = h · this^T
                "value_out": (net.w_v(emb) @ net.w_o.weight.T).contiguous(),  # (m, H)
                "out_bias": net.w_o.bias,
                "prompt_weight_t": torch.cat([net.pair_prompt.weight, net.inter_prompt.weight]).T.contiguous(),
                "prompt_bias": torch.cat([net.pair_prompt.bias, torch.zeros_like(net.pair_prompt.bias)]),
                "pair_model": net.pair_model(emb),  # (m, H)
                "inter_model": net.inter_model(emb),  # (m, H)
                "quality_weight": net.quality_head.weight[0].contiguous(),  # (H,)
                "quality_bias": net.quality_head.bias,  # (1,)
                "hidden_weight_t": cost_hidden[:, :-1].T.contiguous(),  # (H, H)
                "hidden_ell": cost_hidden[:, -1].contiguous(),  # (H,)
                "hidden_bias": net.cost_hidden.bias,
                "cost_weight": net.cost_out.weight[0].contiguous(),  # (H,)
            })
            affine = net.cost_affine(emb)  # (m, 2)
            intercept += affine[:, 0] + net.cost_out.bias
            slope += affine[:, 1]
        self.cost_intercept, self.cost_slope = intercept, slope

    def __call__(
        self, x: torch.Tensor, ell: torch.Tensor, quality: torch.Tensor, log_cost: torch.Tensor, chunk: int
    ) -> None:
        """Write the ensemble's mean probability and mean standardised log cost of ``x`` (n, d_in), ``ell`` (n,)
        into ``quality`` and ``log_cost`` (contiguous (n, m) float32), ``chunk`` rows at a time.

        The chunks are shared out among as many worker threads as torch has intra-op threads, each running
        torch single-threaded (:func:`on_cores`): a chunk's activations then stay in its core's cache, and the
        cores do not synchronise on every one of the ~80 small operations per chunk. Each thread reuses one pair
        of activation buffers for all its chunks (no fresh pages to allocate and fault in per chunk). Rows are
        independent, so this changes no output beyond float32 rounding. A single chunk (up to ~186 prompts, a
        serving call) has nothing to share out: it runs in the caller's thread with torch's intra-op threads as
        they are, without switching the thread count.
        """
        m, H = self.n_models, self.hidden
        size = min(chunk, x.shape[0]) * m * H
        buffers = threading.local()

        def run(start: int) -> None:
            sl = slice(start, start + chunk)
            n = x[sl].shape[0]
            with torch.inference_mode():  # thread-local: a worker thread enters it itself
                if not hasattr(buffers, "z"):
                    buffers.z = torch.empty(size, dtype=x.dtype)
                    buffers.y = torch.empty_like(buffers.z)
                self._chunk(x[sl], ell[sl], quality[sl].view(-1), log_cost[sl].view(-1),
                            buffers.z[: n * m * H].view(n, m, H), buffers.y[: n * m * H].view(n * m, H))

        chunks = range(0, x.shape[0], chunk)
        if len(chunks) > 1:
            on_cores(run, chunks, "attention-predict")
        else:  # zero or one chunk (a serving call): in this thread, on torch's own intra-op threads
            for start in chunks:
                run(start)

    def _chunk(
        self, x: torch.Tensor, ell: torch.Tensor, quality: torch.Tensor, log_cost: torch.Tensor,
        z: torch.Tensor, y: torch.Tensor,
    ) -> None:
        """One chunk of n rows: ``quality``/``log_cost`` are flat (n·m,) views of the outputs, ``z`` (n, m, H) and
        ``y`` (n·m, H) scratch buffers."""
        n, K, H = x.shape[0], self.n_members, self.hidden
        h = torch.addmm(self.enc_bias, x, self.enc_weight_t)  # (n, K·H)
        _gelu_(h)
        h = F.layer_norm(h.view(n, K, H), (H,), eps=self.ln_eps)
        h = torch.addcmul(self.ln_bias, h, self.ln_weight)  # (n, K, H)
        quality.zero_()
        log_cost.zero_()
        for k, c in enumerate(self.members):
            hk = h[:, k]  # (n, H), strided view
            # Softmax over the models as an (m, n) array: over dim 0 it is much faster than over a short last dim.
            attention_t = torch.softmax(c["score_t"] @ hk.T, dim=0)  # (m, n)
            g = torch.addmm(c["out_bias"], attention_t.T, c["value_out"]).add_(hk)  # (n, H)
            prompt = torch.addmm(c["prompt_bias"], g, c["prompt_weight_t"])  # (n, 2H): pair_prompt | inter_prompt
            # z = GELU(pair_prompt(g) + pair_model(e) + inter_prompt(g) ⊙ inter_model(e)), (n, m, H)
            torch.add(prompt[:, None, :H], c["pair_model"], out=z)
            z.addcmul_(prompt[:, None, H:], c["inter_model"])
            _gelu_(z)
            z2 = z.view(-1, H)
            quality.add_(torch.addmv(c["quality_bias"], z2, c["quality_weight"]).sigmoid_())
            # y = GELU(cost_hidden([z, ℓ])) = GELU(z W_z^T + (b + ℓ w_ℓ)), (n·m, H)
            torch.mm(z2, c["hidden_weight_t"], out=y)
            y.view(n, -1, H).add_(torch.addcmul(c["hidden_bias"], ell[:, None], c["hidden_ell"])[:, None, :])
            _gelu_(y)
            log_cost.addmv_(y, c["cost_weight"])
        quality.div_(K)
        log_cost.view(n, -1).add_(self.cost_intercept).addcmul_(ell[:, None], self.cost_slope).div_(K)
