"""The embedding cache with the real bundled encoder (all-MiniLM-L6-v2, offline) on a handful of short prompts,
and the pivot of sparse logs into a prompts × models matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import table
from router import embeddings as emb
from router.dataset import load_routing_data, model_pool
from router.encoder import encode, encode_pieces
from router.representation import Representation
from router.settings import BUNDLED_ENCODER, Settings
from router.storage import relation

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
    assert encode(encoder, ["What is 2 + 2?"], 8)[0] == pytest.approx(digits, abs=1e-5)
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


SHOTS = ("Answer with one letter. Question: Which planet is largest? A) Mars B) Jupiter Answer: B\n\n"
         "Question: Which gas do plants take in? A) CO2 B) O2 Answer: A\n\n")
FORMAT = "\nReply with the single letter of your choice and nothing else, no explanation at all."


def _qa(i: int, shots: str = SHOTS) -> str:
    return shots + f"Question: How many legs do {i} spiders and {i + 1} ants have together? A) {14 * i + 6} B) {i}"


def _state(store) -> dict[str, tuple]:
    frame = store.sql("SELECT p.text, e.template_id, e.representation, e.vector FROM embeddings e "
                      "JOIN prompts p USING (prompt_id)").pl()
    return {text: (tid, rep, np.asarray(vec, dtype=np.float32)) for text, tid, rep, vec in frame.iter_rows()}


def test_templates_are_stripped_and_embedding_is_incremental(files, ingest, store, settings, encoder,
                                                             caplog) -> None:
    """Shared blocks are stripped before encoding; a night with new prompts embeds only them; a changed template
    re-embeds only the prompts whose stripped template changed; other settings re-embed what they affect."""
    import logging

    settings = settings.model_copy(update={"embed_templates": True, "embed_max_chunks": 8})

    from router.templates import strip

    def night(name: str, texts: dict[str, list[str]], start: int) -> None:
        records = [files.log_record(start + n, prompt=text, task=task)
                   for n, (task, text) in enumerate((t, x) for t, xs in texts.items() for x in xs)]
        ingest("logs", files.logs(name, records))

    math_texts = [f"Compute {i} * {i + 3} and show the steps." + FORMAT for i in range(4)]
    night("n1.jsonl", {"qa": [_qa(i) for i in range(4)], "math": math_texts, "chat": ["Tell me a joke."]}, 0)
    first = emb.embed_missing(store, settings, model=encoder)
    assert (first.embedded, first.already, first.reembedded) == (9, 0, 0)
    assert (first.templates, first.templates_changed) == (2, ["math", "qa"])
    learned = emb.stored_templates(store)
    assert [(t.group, bool(t.prefix), t.suffix) for t in learned] == [
        ("math", False, " and show the steps." + FORMAT), ("qa", True, "")]
    assert table(store, "prompt_templates")["template_id"].to_list() == [t.id for t in learned]
    state = _state(store)
    for text, (tid, rep, vec) in state.items():
        remainder, expected_tid = strip(text, learned)
        assert tid == expected_tid and rep == "templates(share=0.5,chars=64)+windows(8)"
        assert vec == pytest.approx(encode(encoder, [remainder], 8)[0], abs=1e-5)  # the remainder's vector
    assert state["Tell me a joke."][0] is None and state[_qa(0)][0] is not None
    # without stripping, the qa prompts (mostly shared block) would be near-duplicates; stripped they are not
    raw = encode(encoder, [_qa(0), _qa(1)], 8)
    assert float(state[_qa(0)][2] @ state[_qa(1)][2]) < float(raw[0] @ raw[1])

    # A night with new prompts of the same templates: only they are encoded, the learned templates stay.
    night("n2.jsonl", {"qa": [_qa(i) for i in range(4, 6)]}, 100)
    second = emb.embed_missing(store, settings, model=encoder)
    assert (second.embedded, second.already, second.reembedded, second.templates_changed) == (2, 9, 0, [])
    after = _state(store)
    assert all(np.array_equal(after[t][2], state[t][2]) for t in state)

    # A night whose prompts change the qa template: the qa prompts of the old template (now stripped of nothing)
    # and the new prompts are encoded; math and chat keep their vectors. It is logged and reported.
    other_shots = SHOTS.replace("Which planet is largest?", "Which planet is smallest?").replace(
        "B) Jupiter Answer: B", "B) Mercury Answer: B")
    night("n3.jsonl", {"qa": [_qa(i, other_shots) for i in range(10, 17)]}, 200)
    # a run that learned (and stored) the new templates and stopped before storing a vector: its retry still names
    # the changed group
    assert emb.plan(store, settings).changed_groups == ["qa"]
    with caplog.at_level(logging.INFO, logger="router.embeddings"):
        third = emb.embed_missing(store, settings, model=encoder)
    assert third.templates_changed == ["qa"]
    assert (third.embedded, third.reembedded, third.already) == (7 + 6, 6, 5)
    assert any("templates changed for 1 group(s) (qa): 6 stored vectors to re-embed" in r.getMessage()
               for r in caplog.records)
    final = _state(store)
    assert all(np.array_equal(final[t][2], after[t][2]) for t in math_texts + ["Tell me a joke."])
    assert all(final[_qa(i)][0] is None for i in range(6))  # old qa prompts: their template is gone
    assert len({final[_qa(i, other_shots)][0] for i in range(10, 17)}) == 1
    rows = table(store, "prompt_templates").sort("template_group")
    assert rows["learned_at"][0] < rows["learned_at"][1]  # math kept its learned_at, qa was learned again
    assert table(store, "embeddings").height == 18  # replaced, never duplicated

    # Other settings re-embed exactly what they affect: without templates, every stripped prompt (not "chat").
    raw_settings = settings.model_copy(update={"embed_templates": False, "embed_max_chunks": 1})
    fourth = emb.embed_missing(store, raw_settings, model=encoder)
    assert (fourth.embedded, fourth.already, fourth.templates_changed) == (18, 0, [])  # the key changed for all
    assert _state(store)["Tell me a joke."][2] == pytest.approx(final["Tell me a joke."][2], abs=1e-6)
    assert emb.embed_missing(store, raw_settings, model=encoder).embedded == 0


def test_long_remainders_are_read_in_mean_pooled_windows(encoder) -> None:
    from router.representation import encode_texts

    long = " ".join(f"sentence {i} talks about topic {i % 17} and colour {i % 5}." for i in range(120))
    short = "A short prompt."
    n_tokens = len(encoder.tokenizer(long, add_special_tokens=False)["input_ids"])
    assert n_tokens > 4 * 254
    cut = encode_texts(encoder, [long, short], 8, max_chunks=1)
    pooled = encode_texts(encoder, [long, short], 8, max_chunks=3)
    assert cut[0] == pytest.approx(encode(encoder, [long], 8)[0], abs=1e-6)  # max_chunks 1: the encoder's own cut
    assert pooled[1] == pytest.approx(cut[1], abs=1e-6)  # a text within the window is encoded as is
    assert np.linalg.norm(pooled[0]) == pytest.approx(1.0, abs=1e-5)
    ids = encoder.tokenizer(long, add_special_tokens=False)["input_ids"]
    windows = [ids[:254], ids[254:508], ids[len(ids) - 254:]]  # two head windows, one tail window
    parts = encode_pieces(encoder, windows, 8)
    mean = parts.mean(axis=0)
    assert pooled[0] == pytest.approx(mean / np.linalg.norm(mean), abs=1e-5)
    assert float(pooled[0] @ cut[0]) < 0.999  # the tail is read too
    # a window's pieces are read as they are: a text within the window gives the plain encoder's vector
    assert encode_pieces(encoder, [encoder.tokenizer(short, add_special_tokens=False)["input_ids"]], 8)[0] == \
        pytest.approx(cut[1], abs=1e-5)


def test_a_text_just_over_the_window_keeps_its_vector(encoder) -> None:
    """Every window is full: a text one word piece over the window is read as two windows that overlap almost
    wholly (not a 254-piece window and a 1-piece one, weighing alike), so its vector stays the text's."""
    from router.representation import _windows, encode_texts

    assert _windows(list(range(255)), 254, 8) == [list(range(254)), list(range(1, 255))]
    assert _windows(list(range(600)), 254, 8) == [list(range(254)), list(range(254, 508)), list(range(346, 600))]
    assert _windows(list(range(1200)), 254, 3) == [list(range(254)), list(range(254, 508)), list(range(946, 1200))]
    base = " ".join(f"word{i}" for i in range(400))
    ids = encoder.tokenizer(base, add_special_tokens=False)["input_ids"][:254]
    fits = encoder.tokenizer.decode(ids)
    assert len(encoder.tokenizer(fits + " ?", add_special_tokens=False)["input_ids"]) == 255
    one, over = encode_texts(encoder, [fits, fits + " ?"], 8, max_chunks=8)
    assert float(one @ over) > 0.99


def test_the_nightly_embed_task_s_cache_follows_the_stored_vectors(files, settings, encoder, monkeypatch,
                                                                    prefect_ephemeral) -> None:
    """The flow's embed task is cached by the store's state: a second night on the first's state reports what it
    did (nothing), not the first night's figures; vectors re-embedded meanwhile under other settings
    (`ROUTER_EMBED_TEMPLATES=false ROUTER_EMBED_MAX_CHUNKS=2 routerctl embed`) are replaced by the next night's step."""
    from prefect import flow

    from flows import nightly as flows_nightly
    from router.storage import open_store

    monkeypatch.setattr(emb, "load_encoder", lambda *args, **kwargs: encoder)  # the module's copy, loaded once
    landing = settings.landing("logs")
    landing.mkdir(parents=True, exist_ok=True)
    files.logs("night.jsonl", [files.log_record(i, prompt=f"Question {i}: what is {i} + {i}?") for i in range(6)]
               ).rename(landing / "night.jsonl")

    @flow
    def ingest_and_embed() -> dict:
        night = flows_nightly._night()
        try:
            flows_nightly.SUBFLOWS["ingest"](night.flow_run_id)
            return flows_nightly.SUBFLOWS["embed"](night.flow_run_id)
        finally:
            flows_nightly._NIGHTS.pop(night.flow_run_id, None)

    def representations() -> list[tuple[str, int]]:
        with open_store(settings, read_only=True) as con:
            return con.execute("SELECT representation, count(*) FROM embeddings GROUP BY 1").fetchall()

    current = Representation.from_settings(settings).key
    nights = [ingest_and_embed() for _ in range(3)]
    assert [n["embedded"] for n in nights] == [6, 0, 0] and [n["already"] for n in nights] == [0, 6, 6]
    assert representations() == [(current, 6)]
    with open_store(settings) as con:
        emb.embed_missing(con, settings.model_copy(update={"embed_templates": False, "embed_max_chunks": 2}),
                          model=encoder)
    assert representations() == [("raw+windows(2)", 6)] != [(current, 6)]
    again = ingest_and_embed()
    assert again["embedded"] == 6 and representations() == [(current, 6)]


def test_the_missing_embedding_warning_counts_the_prompts_left_out(files, ingest, store, caplog) -> None:
    """The train split's warning counts the train prompts without a vector, not a test prompt a log also
    observed (it never trains, embedded or not)."""
    ingest("routerbench", files.routerbench("bench_test.csv", n=2))
    test_prompt = table(store, "prompts")["text"][0]
    ingest("logs", files.logs("l.jsonl", [files.log_record(0, prompt=test_prompt), files.log_record(1)]))
    with caplog.at_level("WARNING", logger="router.dataset"):
        data = load_routing_data(store, BUNDLED_ENCODER, split="train")
    assert data.n == 0
    assert [r.getMessage().split(" prompts")[0] for r in caplog.records if r.name == "router.dataset"] == ["1"]
    # embedded, the test prompt still never trains (split_outcomes): not in training, nor in the drift check's
    # training prompts; the test split keeps it, with its RouterBench outcomes only
    store.execute("INSERT INTO embeddings (prompt_id, encoder, dim, vector, embedded_at) SELECT prompt_id, $enc, 2, "
                  "[1.0, 0.0], now()::TIMESTAMP FROM prompts", {"enc": BUNDLED_ENCODER})
    log_only = set(table(store, "prompts")["prompt_id"]) - set(
        table(store, "outcomes").filter(pl.col("source") == "routerbench")["prompt_id"])
    test_id = table(store, "prompts").filter(pl.col("text") == test_prompt)["prompt_id"][0]
    train = load_routing_data(store, BUNDLED_ENCODER, split="train")
    test = load_routing_data(store, BUNDLED_ENCODER, split="test")
    assert set(train.prompt_ids) == log_only and len(log_only) == 1
    assert test_id in test.prompt_ids and test.n == 2 and int(np.isfinite(test.quality).sum()) == 2 * len(test.models)
    drift = relation(store, "drift/training_prompts", {"encoder": BUNDLED_ENCODER, "trained_at": "9999-01-01"}).pl()
    assert drift["prompt_id"].to_list() == sorted(log_only)


def test_vectors_record_the_encoder_s_files_and_variant_and_other_files_re_embed(
        files, ingest, store, settings, tmp_path) -> None:
    """An encoder folder whose files change (retrained in place) re-embeds every vector its earlier files made,
    and the training data's identity changes with it; vectors stored before the files were recorded adopt the
    files found then (nothing re-embedded); every vector records how the encoder ran."""
    from router.encoder import resolve_encoder, weights_fingerprint
    from router.nightly import data_key

    bundled = Path(resolve_encoder(BUNDLED_ENCODER))
    folder = tmp_path / "my-encoder"
    for path in (p for p in bundled.rglob("*") if p.is_file()):
        (folder / path.relative_to(bundled)).parent.mkdir(parents=True, exist_ok=True)
        (folder / path.relative_to(bundled)).symlink_to(path)
    mine = settings.model_copy(update={"encoder": str(folder), "device": "cpu"})
    ingest("backlog", files.backlog(n=3))
    first = emb.embed_missing(store, mine)
    before = weights_fingerprint(str(folder))
    frame = table(store, "embeddings")
    assert first.embedded == 3 and before is not None
    assert set(frame["encoder_weights"]) == {before} and set(frame["encoder_variant"]) == {"torch-fp32"}
    key = data_key(mine, ["run-1"])

    store.execute("UPDATE embeddings SET encoder_weights = NULL")  # as stored before migration 014
    again = emb.embed_missing(store, mine)
    assert (again.embedded, again.already, again.weights_changed) == (0, 3, 0)
    assert set(table(store, "embeddings")["encoder_weights"]) == {before}

    (folder / "tokenizer_extra.json").write_text("{}")  # the folder's files are no longer those that made them
    after = weights_fingerprint(str(folder))
    assert after != before and data_key(mine, ["run-1"]) != key
    changed = emb.embed_missing(store, mine)
    assert (changed.embedded, changed.reembedded, changed.weights_changed) == (3, 3, 3)
    assert set(table(store, "embeddings")["encoder_weights"]) == {after} and table(store, "embeddings").height == 3
    assert emb.embed_missing(store, mine).embedded == 0
