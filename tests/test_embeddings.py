"""The embedding cache with the real bundled encoder (all-MiniLM-L6-v2, offline) on a handful of short prompts,
and the pivot of sparse logs into a prompts × models matrix."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from conftest import table
from router import embeddings as emb
from router.dataset import load_routing_data, model_pool
from router.settings import BUNDLED_ENCODER, Settings

DIM = 384


@pytest.fixture(scope="module")
def encoder():
    """The bundled model, loaded once for the module (on CPU: the tests must not depend on a GPU)."""
    return emb.load_encoder(Settings(encoder=BUNDLED_ENCODER), device="cpu")


def _vectors(store) -> dict[str, np.ndarray]:
    frame = table(store, "embeddings")
    assert set(frame["encoder"]) <= {BUNDLED_ENCODER}
    assert set(frame["dim"]) <= {DIM}
    return dict(zip(frame["prompt_id"], emb.stack(frame["vector"]), strict=True))


def test_cache_embeds_each_prompt_once(files, ingest, store, settings, encoder, monkeypatch) -> None:
    ingest("logs", files.logs("l1.jsonl", records=[
        files.log_record(0, prompt="What is two plus two?"),
        files.log_record(1, prompt="What is 2 + 2?"),
        files.log_record(2, prompt="Translate 'cat' into French."),
        files.log_record(3, prompt="What is two plus two?", model="gamma"),  # same prompt, another model
    ]))
    ingest("backlog", files.backlog("b.jsonl", records=[files.backlog_record(0, prompt="Write a haiku about rain.")]))
    assert table(store, "prompts").height == 4

    first = emb.embed_missing(store, settings, model=encoder)
    assert (first.embedded, first.already, first.encoder) == (4, 0, BUNDLED_ENCODER)
    vectors = _vectors(store)
    assert set(vectors) == set(table(store, "prompts")["prompt_id"])  # backlog prompts are embedded too
    matrix = np.stack(list(vectors.values()))
    assert matrix.shape == (4, DIM) and matrix.dtype == np.float32
    assert np.linalg.norm(matrix, axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    # The stored vector is the encoder's own, and the encoder is a real one: paraphrases are closer.
    text_of = dict(zip(*table(store, "prompts").select("text", "prompt_id").to_dict().values(), strict=True))
    two, digits, cat = (vectors[text_of[t]] for t in ("What is two plus two?", "What is 2 + 2?",
                                                       "Translate 'cat' into French."))
    assert emb.encode(encoder, ["What is 2 + 2?"], 8)[0] == pytest.approx(digits, abs=1e-5)
    assert float(two @ digits) > float(two @ cat) + 0.2

    # Re-run: nothing to embed, and the model is not even loaded.
    def no_loading(*args, **kwargs):
        raise AssertionError("the encoder must not be loaded when every prompt is cached")

    monkeypatch.setattr(emb, "load_encoder", no_loading)
    again = emb.embed_missing(store, settings)
    assert (again.embedded, again.already) == (0, 4)
    assert table(store, "embeddings").height == 4

    # New data: only its new prompts are embedded (one repeats a cached prompt).
    ingest("logs", files.logs("l2.jsonl", records=[
        files.log_record(10, prompt="Translate 'cat' into French.", model="beta"),
        files.log_record(11, prompt="Name a prime number."),
        files.log_record(12, prompt="Sort the list [3, 1, 2]."),
    ]))
    before = dict(vectors)
    third = emb.embed_missing(store, settings, model=encoder)
    assert (third.embedded, third.already) == (2, 4)
    after = _vectors(store)
    new_ids = set(after) - set(before)
    prompts = table(store, "prompts")
    assert sorted(prompts.filter(pl.col("prompt_id").is_in(list(new_ids)))["text"]) == [
        "Name a prime number.", "Sort the list [3, 1, 2]."]
    for pid, vec in before.items():  # cached vectors are left as they were
        assert np.array_equal(after[pid], vec)


def test_another_encoder_has_its_own_cache(files, ingest, store, settings, encoder) -> None:
    ingest("backlog", files.backlog(n=2))
    assert emb.embed_missing(store, settings, model=encoder).embedded == 2
    other = settings.model_copy(update={"encoder": "my-other-encoder"})
    result = emb.embed_missing(store, other, model=encoder)  # same weights, stored under the other name
    assert (result.embedded, result.already) == (2, 0)
    frame = table(store, "embeddings")
    assert frame.group_by("encoder").len().sort("encoder").rows() == [(BUNDLED_ENCODER, 2), ("my-other-encoder", 2)]


def test_load_routing_data_pivots_sparse_logs_to_nan(files, ingest, store, settings, encoder) -> None:
    records = [
        files.log_record(0, prompt="P one", model="m1", quality=1.0, cost_usd=0.010, task="qa"),
        files.log_record(1, prompt="P one", model="m1", quality=0.0, cost_usd=0.030, task="qa"),  # repeat: mean
        files.log_record(2, prompt="P one", model="m2", quality=0.25, cost_usd=0.002, task="qa"),
        files.log_record(3, prompt="P two", model="m3", quality=None, cost_usd=0.300, task="code"),  # unscored
        files.log_record(4, prompt="P three", model="m2", quality=0.75, cost_usd=0.004, task="chat"),
    ]
    ingest("logs", files.logs("sparse.jsonl", records))
    emb.embed_missing(store, settings, model=encoder)
    # A prompt ingested after embedding has no vector yet: it is left out, not given a zero vector.
    ingest("logs", files.logs("late.jsonl", [files.log_record(9, prompt="P late", model="m1", quality=1.0)]))

    data = load_routing_data(store, BUNDLED_ENCODER, split="train")
    assert model_pool(store) == ["m1", "m2", "m3"]
    assert data.models == ["m1", "m2", "m3"]
    assert data.X.shape == (3, DIM) and data.quality.shape == (3, 3) and data.cost.shape == (3, 3)
    prompt_text = dict(zip(*table(store, "prompts").select("prompt_id", "text").to_dict().values(), strict=True))
    row = {prompt_text[pid]: i for i, pid in enumerate(data.prompt_ids)}
    assert set(row) == {"P one", "P two", "P three"}
    nan = np.nan
    expected_quality = {"P one": [0.5, 0.25, nan], "P two": [nan, nan, nan], "P three": [nan, 0.75, nan]}
    expected_cost = {"P one": [0.02, 0.002, nan], "P two": [nan, nan, 0.3], "P three": [nan, 0.004, nan]}
    for text, i in row.items():
        np.testing.assert_allclose(data.quality[i], expected_quality[text], rtol=1e-6)
        np.testing.assert_allclose(data.cost[i], expected_cost[text], rtol=1e-6)
        assert data.prompt_chars[i] == len(text)
        assert data.eval_names[i] == {"P one": "qa", "P two": "code", "P three": "chat"}[text]
    vectors = _vectors(store)
    for pid, i in zip(data.prompt_ids, range(data.n), strict=True):
        assert np.array_equal(data.X[i], vectors[pid])
    assert load_routing_data(store, BUNDLED_ENCODER, split="test").n == 0  # logs are training data only


def test_embedding_logs_progress_lines_between_encoder_calls(files, ingest, store, settings, encoder, monkeypatch,
                                                             caplog) -> None:
    """A non-TTY log gets ``done/total (pct), rate, ETA`` lines while embedding (every ROUTER_PROGRESS_SECONDS;
    0 here: one per encoder call of 4 × batch size prompts)."""
    import logging

    monkeypatch.setenv("ROUTER_PROGRESS_SECONDS", "0")
    ingest("logs", files.logs("l.jsonl", [files.log_record(i) for i in range(10)]))
    small = settings.model_copy(update={"embed_batch_size": 2})  # calls of 8 prompts: 8, then 10
    with caplog.at_level(logging.INFO, logger="router.embeddings"):
        assert emb.embed_missing(store, small, model=encoder).embedded == 10
    lines = [r.getMessage() for r in caplog.records if "embedding with" in r.getMessage()]
    assert [line.split(": ")[1].split(" prompts")[0] for line in lines] == ["8/10 (80%)", "10/10 (100%)"], lines
    assert "/s, ETA " in lines[0] and "ETA" not in lines[1]
