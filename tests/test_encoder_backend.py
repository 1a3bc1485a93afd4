"""The ONNX Runtime encoder backend (``ROUTER_ENCODER_BACKEND=onnx``, optionally int8) against the torch path of the
bundled all-MiniLM-L6-v2 on real prompts of both shipped data sets; its export cache; its settings."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, table
from router import embeddings as emb
from router import encoder as enc
from router.settings import BUNDLED_ENCODER, Settings

PER_FILE = 6  # prompts drawn from each shipped CSV: every task of both data sets, short and long


def _real_prompts() -> list[str]:
    """From each CSV of data/routerbench_subset and data/llmrouter_9models: its longest prompts (truncated at the
    encoder's 256 tokens), its shortest, and a few drawn at random."""
    texts: list[str] = []
    for path in sorted([*ROOT.glob("data/routerbench_subset/*.csv"), *ROOT.glob("data/llmrouter_9models/*.csv")]):
        prompts = pl.read_csv(path, infer_schema_length=0, columns=["prompt"])["prompt"].drop_nulls().unique().sort()
        by_length = pl.DataFrame({"p": prompts}).sort(pl.col("p").str.len_chars(), "p")["p"]
        texts += [*by_length.head(1), *by_length.tail(2), *prompts.sample(PER_FILE - 3, seed=7)]
    return list(dict.fromkeys(texts))


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    texts = _real_prompts()
    assert len(texts) >= 40 and max(map(len, texts)) > 2_000  # long enough to be truncated
    return texts


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("encoders")


@pytest.fixture(scope="module")
def torch_vectors(prompts):
    return enc.encode(enc.open_encoder(BUNDLED_ENCODER, "cpu"), prompts, 16)


def _open(cache, quantize: bool = False) -> enc.OnnxEncoder:
    model = enc.open_encoder(BUNDLED_ENCODER, "cpu", backend="onnx", quantize=quantize, cache=cache)
    assert isinstance(model, enc.OnnxEncoder)
    return model


# fp32 (fused) gives torch's vectors to float error; int8 (the first half of the layers' feed-forward
# down-projections kept in fp32) stays ≥ 0.99 (0.993 at the least over 600 RouterBench subset prompts,
# docs/performance.md).
@pytest.mark.parametrize(("quantize", "floor"), [(False, 0.9999), (True, 0.99)])
def test_onnx_vectors_match_torch_per_prompt(prompts, torch_vectors, cache, quantize: bool, floor: float) -> None:
    model = _open(cache, quantize)
    assert model.path.name == ("model_int8.onnx" if quantize else "model_fused.onnx")
    vectors = enc.encode(model, prompts, 16)
    assert vectors.shape == torch_vectors.shape == (len(prompts), 384) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(len(prompts)), abs=1e-5)
    cosine = (vectors * torch_vectors).sum(axis=1)
    assert cosine.min() >= floor, [(prompts[i][:60], float(cosine[i])) for i in np.argsort(cosine)[:3]]
    # Each vector is its own prompt's: the order survives the longest-first batching (long prompts that share
    # their first 256 tokens have one vector, hence "as close as any").
    assert (cosine >= (vectors @ torch_vectors.T).max(axis=1) - 1e-4).all()
    # A batch of one (int8 quantises activations per batch: its vector moves with its batch, within the floor).
    single = enc.encode(model, prompts[:1], 16)[0]
    assert float(single @ torch_vectors[0]) >= floor
    if not quantize:
        assert single == pytest.approx(vectors[0], abs=1e-5)
    assert enc.encode(model, [], 16).shape == (0, 384)
    # Windows of a long prompt, read as word pieces (router.representation), agree with torch's the same way.
    ids = model.tokenizer(max(prompts, key=len), add_special_tokens=False)["input_ids"]
    windows = [ids[:254], ids[len(ids) - 254:]]
    pieces = (enc.encode_pieces(model, windows, 16) * enc.encode_pieces(enc.open_encoder(BUNDLED_ENCODER, "cpu"),
                                                                       windows, 16)).sum(axis=1)
    assert pieces.min() >= floor


def test_export_is_cached_and_reused(cache, monkeypatch) -> None:
    first = _open(cache)
    stamp = first.path.stat().st_mtime_ns
    folder = enc._local_folder(enc.resolve_encoder(BUNDLED_ENCODER))
    assert first.path.parent == cache / f"{folder.name}-{enc.fingerprint(folder)}"

    def no_export(*args, **kwargs):
        raise AssertionError("a cached export must not be exported again")

    monkeypatch.setattr(enc, "_export_graph", no_export)
    monkeypatch.setattr(enc, "_quantize", no_export)
    monkeypatch.setattr(enc, "_fuse", no_export)
    again, int8 = _open(cache), _open(cache, quantize=True)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert int8.path.parent == first.path.parent
    assert not [p for p in first.path.parent.iterdir() if p.suffix == ".tmp"]  # no temporary file left behind


def test_a_failed_export_leaves_no_file_and_the_next_one_completes(tmp_path, monkeypatch) -> None:
    real = enc._export_graph

    def half_then_crash(model, path):
        path.write_bytes(b"half a graph")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(enc, "_export_graph", half_then_crash)
    with pytest.raises(RuntimeError, match="mid-export"):
        _open(tmp_path)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []  # neither a partial model nor a temp file
    monkeypatch.setattr(enc, "_export_graph", real)
    model = _open(tmp_path)
    assert enc.encode(model, ["a prompt"], 4).shape == (1, 384)


def test_an_encoder_the_fusion_cannot_handle_runs_its_unfused_graph(tmp_path, prompts, torch_vectors, monkeypatch,
                                                                    caplog) -> None:
    def cannot_fuse(model, source, path):
        path.write_bytes(b"half a graph")
        raise ValueError("no fusion pattern for this architecture")

    monkeypatch.setattr(enc, "_fuse", cannot_fuse)
    with caplog.at_level("WARNING", logger="router.encoder"):
        model = _open(tmp_path)
    assert model.path.name == "model.onnx" and not (model.path.parent / "model_fused.onnx").exists()
    assert "could not fuse" in caplog.text and "no fusion pattern" in caplog.text
    assert not [p for p in model.path.parent.iterdir() if p.suffix == ".tmp"]
    cosine = (enc.encode(model, prompts[:8], 8) * torch_vectors[:8]).sum(axis=1)
    assert cosine.min() >= 0.9999


def test_fingerprint_follows_the_weights_not_the_readme(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"hidden_size": 384}')
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    before = enc.fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("notes")
    assert enc.fingerprint(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    assert enc.fingerprint(tmp_path) != before


def test_settings_choose_the_backend_and_refuse_bad_values(settings, cache, prompts, torch_vectors) -> None:
    from pydantic import ValidationError

    assert (settings.encoder_backend, settings.encoder_quantize) == ("torch", "none")
    assert settings.encoder_cache == settings.workspace / "encoders"
    assert not isinstance(emb.load_encoder(settings, "cpu"), enc.OnnxEncoder)
    onnx = Settings(home=settings.home, encoder_backend="onnx", encoder_quantize="int8", encoder_cache_dir=cache)
    model = emb.load_encoder(onnx, "cpu")
    assert isinstance(model, enc.OnnxEncoder) and model.path == cache / model.path.parent.name / "model_int8.onnx"
    with pytest.raises(ValidationError, match="'torch' or 'onnx'"):
        Settings(encoder_backend="tensorrt")
    with pytest.raises(ValidationError, match="ROUTER_ENCODER_QUANTIZE=int8 needs ROUTER_ENCODER_BACKEND=onnx"):
        Settings(encoder_quantize="int8")
    with pytest.raises(enc.EncoderError, match="neither 'torch' nor 'onnx'"):
        enc.open_encoder(BUNDLED_ENCODER, "cpu", backend="openvino")


def test_the_batch_size_follows_the_device_unless_set(settings, cache) -> None:
    """16 prompts per call on CPU (both backends), 64 on CUDA; ``ROUTER_EMBED_BATCH_SIZE`` wins."""
    from types import SimpleNamespace

    assert settings.embed_batch_size is None
    torch_model, onnx_model = emb.load_encoder(settings, "cpu"), _open(cache)
    assert enc.batch_size(torch_model) == enc.batch_size(onnx_model) == enc.CPU_BATCH == 16
    assert enc.batch_size(torch_model, 48) == enc.batch_size(onnx_model, 48) == 48
    assert enc.batch_size(SimpleNamespace(device="cuda:0")) == enc.CUDA_BATCH == 64
    onnx_model.session = SimpleNamespace(get_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert enc.batch_size(onnx_model) == 64
    assert Settings(home=settings.home, embed_batch_size=8).embed_batch_size == 8


def test_bad_backend_in_the_environment_is_a_bad_input_exit(settings, cli, monkeypatch) -> None:
    monkeypatch.setenv("ROUTER_ENCODER_BACKEND", "tensorrt")
    result = cli("embed")
    assert result.exit_code == 2, result.output
    assert "encoder_backend" in result.output and "'torch' or 'onnx'" in result.output


def test_embed_step_on_the_onnx_backend_stores_torch_s_vectors(settings, store, files, ingest, monkeypatch,
                                                               cache) -> None:
    texts = ["What is two plus two?", "Translate 'cat' into French.", "Write a haiku about rain."]
    ingest("logs", files.logs("l.jsonl", records=[files.log_record(i, prompt=t) for i, t in enumerate(texts)]))
    monkeypatch.setenv("ROUTER_ENCODER_BACKEND", "onnx")
    monkeypatch.setenv("ROUTER_ENCODER_CACHE_DIR", str(cache))
    result = emb.embed_missing(store, Settings(), progress=None)
    assert result.embedded == 3
    frame = table(store, "embeddings").join(table(store, "prompts").select("prompt_id", "text"), on="prompt_id")
    stored = emb.stack(frame["vector"])
    expected = enc.encode(enc.open_encoder(BUNDLED_ENCODER, "cpu"), frame["text"].to_list(), 8)
    assert ((stored * expected).sum(axis=1) >= 0.9999).all()
    assert os.listdir(cache)  # the export went to the configured cache


def test_int8_keeps_the_first_half_of_the_feed_forward_down_projections_in_fp32() -> None:
    layer = "/model/model.0/encoder/layer.{}/{}/MatMul"
    parts = ("attention/self/query", "attention/output/dense", "intermediate/dense", "output/dense")
    nodes = [(layer.format(k, part), "MatMul") for k in range(6) for part in parts] + [("/pool/Div", "Div")]
    assert enc._kept_fp32(nodes) == [layer.format(k, "output/dense") for k in range(3)]
    assert enc._kept_fp32([(layer.format(k, "output/dense"), "MatMul") for k in range(5)]) == [
        layer.format(k, "output/dense") for k in range(3)]  # 5 layers: ceil(5 / 2) = 3 kept
    assert enc._kept_fp32([("/other/MatMul", "MatMul")]) == []  # not a BERT-style graph: every MatMul is int8
