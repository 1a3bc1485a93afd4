"""Template detection and stripping (router.templates): shared prefix, shared suffix, no template, a single prompt,
a template that changes; and the representation key (router.representation)."""

from __future__ import annotations

import random

import pytest

from router.representation import LEGACY_KEY, Representation, prepare
from router.templates import (Template, TemplateRules, learn, learn_group, load_templates, strip, template_id,
                              templates_json)

SHOTS = ("Answer each question with a single letter.\nQuestion: What is 1 + 1?\nA) 2\nB) 3\nAnswer: A\n\n"
         "Question: What colour is the sky?\nA) green\nB) blue\nAnswer: B\n\n")
FORMAT = "\nPrint only a single choice from \"A\" or \"B\" without explanation. Answer:"
QUESTIONS = [f"Question: Which number is larger, {i} or {i + 7}?\nA) {i}\nB) {i + 7}" for i in range(10)]


def test_shared_prefix_is_learned_and_stripped() -> None:
    texts = [SHOTS + q for q in QUESTIONS]
    template = learn_group("arc", texts)
    assert template is not None and template.group == "arc"
    # the block ends at a whitespace boundary: "Question: " is shared too, "Which" and the rest are not all shared
    assert template.prefix == SHOTS + "Question: Which number is larger, "
    assert template.suffix == ""
    stripped = [strip(t, [template]) for t in texts]
    assert {tid for _, tid in stripped} == {template.id} and template.id == template_id(template.prefix, "")
    assert [rem for rem, _ in stripped] == [t[len(template.prefix):] for t in texts]
    assert len({rem for rem, _ in stripped}) == len(texts)  # every remainder is distinct


def test_windows_line_ends_share_the_template_of_unix_ones() -> None:
    """The same few-shot block written with CRLF by some clients and LF by others is one template covering both;
    a prompt no template fits comes back exactly as given (its line ends too)."""
    texts = [SHOTS + q for q in QUESTIONS[:5]] + [(SHOTS + q).replace("\n", "\r\n") for q in QUESTIONS[5:]]
    template = learn_group("arc", texts)
    assert template is not None and template.prefix == SHOTS + "Question: Which number is larger, "
    stripped = [strip(t, [template]) for t in texts]
    assert {tid for _, tid in stripped} == {template.id}
    assert [rem for rem, _ in stripped] == [q[len("Question: Which number is larger, "):] for q in QUESTIONS]
    other = "A prompt of\r\nits own"
    assert strip(other, [template]) == (other, None)


def test_a_shared_block_is_found_beside_longer_text_without_spaces() -> None:
    """Two prompts sharing a long run without spaces (here CJK text) cut to no block at all: they must not hide the
    block other prompts share up to a space."""
    block = "Answer the question below in one word, and give no explanation of any kind whatsoever. "
    cjk = "请用一个词回答下面的问题并且不要给出任何解释这是一个很长的共享前缀没有空格" * 4  # longer than the block
    texts = [block + "Q: two plus two?", block + "Q: the capital of France?", cjk + "问题一", cjk + "问题二"]
    template = learn_group("mixed", texts, TemplateRules(min_share=0.5, min_prompts=2))
    assert template is not None and template.prefix == block + "Q: "


def test_shared_suffix_is_learned_and_stripped() -> None:
    texts = [f"Sentence {i}: the {w} sat on the mat number {i * 13}." + FORMAT
             for i, w in enumerate(["cat", "dog", "bird", "fox", "cow", "owl"])]
    template = learn_group("wino", texts, TemplateRules(min_chars=40))
    assert template is not None
    assert template.prefix == ""
    assert template.suffix == FORMAT  # starts at the newline, the whitespace boundary
    rem, tid = strip(texts[2], [template])
    assert rem == "Sentence 2: the bird sat on the mat number 26." and tid == template.id


def test_prefix_and_suffix_together_and_the_share_rule() -> None:
    texts = [SHOTS + q + FORMAT for q in QUESTIONS]
    others = [f"An unrelated prompt about topic {i} that shares nothing in particular." for i in range(12)]
    # the templated prompts are 10 of 22 distinct prompts: below a share of 0.5, no template
    assert learn_group("mixed", texts + others) is None
    template = learn_group("mixed", texts + others, TemplateRules(min_share=0.4))
    assert template is not None and template.prefix.startswith(SHOTS) and template.suffix == FORMAT
    rem, tid = strip(texts[3], [template])
    assert rem == QUESTIONS[3][len(template.prefix) - len(SHOTS):] and tid == template.id
    assert strip(others[0], [template]) == (others[0], None)  # a prompt without the blocks keeps its text


@pytest.mark.parametrize(("share", "n"), [(0.55, 100), (0.07, 100), (0.14, 50), (0.28, 25), (0.56, 25)])
def test_exactly_the_minimum_share_is_enough(share: float, n: int) -> None:
    """share × n prompts (a whole number whose floating-point product lands just above it) carry the block: that is
    at least the share, so the template is learned; one fewer is not."""
    k = round(share * n)
    head = "Answer the multiple-choice question below with the letter of the right option and nothing else. "
    for carrying, learned in ((k, True), (k - 1, False)):
        texts = [head + f"Question {i}: pick one." for i in range(carrying)]
        texts += [f"Free-form request number {i} about topic {i * 7}." for i in range(n - carrying)]
        template = learn_group("t", texts, TemplateRules(min_share=share, min_prompts=2))
        assert (template is not None) is learned, (share, n, carrying)


def test_no_template() -> None:
    texts = ["Write a function that reverses a string.", "Translate 'cat' into French.",
             "Name three prime numbers.", "Summarise the plot of Hamlet in one sentence."]
    assert learn_group("mbpp", texts) is None
    assert learn({"mbpp": texts}) == ()
    assert prepare(texts, ()) == (texts, [None] * 4)
    # a shared block shorter than min_chars is not a template
    short = [f"Question: {q}" for q in texts]
    assert learn_group("short", short) is None


def test_a_single_prompt_has_no_template() -> None:
    assert learn_group("one", [SHOTS + QUESTIONS[0]]) is None
    assert learn_group("repeated", [SHOTS + QUESTIONS[0]] * 5) is None  # one distinct text, however often
    assert learn_group("none", []) is None


def test_a_template_that_changes_gets_a_new_id() -> None:
    old = [SHOTS + q for q in QUESTIONS[:4]]
    before = learn({"arc": old, "other": ["x " * 40 + str(i) for i in range(3)]})
    shots_v2 = SHOTS.replace("What is 1 + 1?", "What is 2 + 2?").replace("A) 2", "A) 4")
    new = [shots_v2 + q for q in QUESTIONS]
    after = learn({"arc": old + new, "other": ["x " * 40 + str(i) for i in range(3)]})
    by_group_before = {t.group: t for t in before}
    by_group_after = {t.group: t for t in after}
    assert by_group_before["other"] == by_group_after["other"]  # unchanged group, same template and id
    assert by_group_after["arc"].id != by_group_before["arc"].id
    assert by_group_after["arc"].prefix.startswith(shots_v2)
    # the old prompts no longer carry the (new) learned prefix: they keep their text and lose their template id
    assert strip(old[0], after) == (old[0], None)
    assert strip(new[0], after)[1] == by_group_after["arc"].id


def test_learning_is_deterministic_and_round_trips() -> None:
    texts = [SHOTS + q + FORMAT for q in QUESTIONS]
    shuffled = list(texts)
    random.Random(7).shuffle(shuffled)
    groups = {"b": texts, "a": ["p " * 40 + q for q in QUESTIONS]}
    learned = learn(groups)
    assert learned == learn({"a": groups["a"], "b": shuffled})
    assert [t.group for t in learned] == ["a", "b"]
    assert load_templates(templates_json(learned)) == learned


def test_strip_picks_the_longest_fitting_blocks_and_never_leaves_nothing() -> None:
    short, long = Template("g1", "Intro text ", ""), Template("g2", "Intro text with more words ", "")
    assert strip("Intro text with more words and a question?", [short, long]) == (
        "and a question?", template_id(long.prefix, ""))
    assert strip("Intro text with a question?", [long, short]) == ("with a question?", template_id(short.prefix, ""))
    # a text that is its template (or only blanks besides it) keeps its text
    assert strip("Intro text ", [short]) == ("Intro text ", None)
    both = Template("g3", "Head block ", " tail block")
    assert strip("Head block  tail block", [both]) == (" tail block", template_id("Head block ", ""))
    assert strip("Head block Q? tail block", [both]) == ("Q?", both.id)


def test_representation_keys() -> None:
    assert Representation().key == "templates(share=0.5,chars=64)+windows(8)"
    assert Representation(False, TemplateRules(), 1).key == LEGACY_KEY
    # a pool of the earlier windowing reads today's windows
    assert Representation.from_key("templates(share=0.5,chars=64)+chunks(8)") == Representation()
    for r in (Representation(), Representation(False, TemplateRules(), 3),
              Representation(True, TemplateRules(0.3, 100), 1)):
        assert Representation.from_key(r.key) == r
    with pytest.raises(ValueError):
        Representation(max_chunks=0)
    with pytest.raises(ValueError):
        TemplateRules(min_share=0)
