"""Prompt templates: the leading and trailing blocks many prompts of a group share, learned and stripped.

RouterBench prompts of one eval (and production prompts of one task) often open with the same few-shot
demonstrations or system prompt and close with the same answer-format instruction. A 256-word-piece encoder
then sees only the shared block and gives the whole eval one vector. :func:`learn` finds, per group (a task or
source), the longest prefix and the longest suffix that at least ``min_share`` of the group's distinct prompts
share, cut back to a whitespace boundary and kept only when at least ``min_chars`` long; :func:`strip` removes
the longest learned prefix and suffix a text carries and names what it removed (:func:`template_id`).

Pure and deterministic: inputs are de-duplicated and sorted, nothing here reads the store or loads a model
(the served model imports it with only its pip requirements).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

__all__ = ["Template", "TemplateRules", "learn", "learn_group", "load_templates", "strip", "template_id",
           "templates_json"]


@dataclass(frozen=True)
class TemplateRules:
    """When a shared block counts as a template."""

    min_share: float = 0.5  # of a group's distinct prompts that must carry the block
    min_chars: int = 64  # shorter blocks (after the whitespace cut) are not stripped
    min_prompts: int = 2  # a block one prompt "shares" with itself is no template

    def __post_init__(self) -> None:
        if not 0 < self.min_share <= 1:
            raise ValueError(f"min_share must be in (0, 1], got {self.min_share}")
        if self.min_chars < 1 or self.min_prompts < 2:
            raise ValueError("min_chars must be >= 1 and min_prompts >= 2")


@dataclass(frozen=True, order=True)
class Template:
    """A group's shared prefix and suffix (either may be empty, not both)."""

    group: str
    prefix: str
    suffix: str

    @property
    def id(self) -> str:
        return template_id(self.prefix, self.suffix)


def template_id(prefix: str, suffix: str) -> str | None:
    """Short stable name of a stripped (prefix, suffix) pair; ``None`` when nothing was stripped."""
    if not prefix and not suffix:
        return None
    digest = hashlib.sha256(json.dumps([prefix, suffix]).encode()).hexdigest()
    return f"t{digest[:11]}"


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _shared_prefix(texts: Sequence[str], k: int, boundaries: tuple[str, ...]) -> str:
    """The longest block, cut at its last boundary (:func:`_cut`), that at least ``k`` of the sorted distinct
    ``texts`` start with (texts sharing a prefix are contiguous once sorted, so it is the common prefix of some
    window of ``k`` neighbours). Each window's prefix is cut before the lengths are compared: a longer raw prefix
    without a boundary (text without spaces) must not hide a shorter one that has one."""
    best = ""
    for i in range(len(texts) - k + 1):
        n = _common_prefix(texts[i], texts[i + k - 1])
        if n > len(best):
            cut = _cut(texts[i][:n], boundaries)
            if len(cut) > len(best):
                best = cut
    return best


#: Where a block may end: after whitespace, or after an escaped newline (``\\n`` written out, as in prompts stored
#: as a Python or JSON string literal); reversed, for suffixes.
_BOUNDARIES = (" ", "\n", "\t", "\r", "\\n")
_REVERSED_BOUNDARIES = tuple(b[::-1] for b in _BOUNDARIES)


def normal_newlines(text: str) -> str:
    """``text`` with Windows line ends (``\\r\\n``) as ``\\n``: a template is the same block whichever line ends a
    client wrote (the encoder reads both as whitespace, so the vectors do not change)."""
    return text.replace("\r\n", "\n") if "\r" in text else text


def _cut(prefix: str, boundaries: tuple[str, ...]) -> str:
    """Back to the end of the last boundary: the block never ends inside a word."""
    cut = max((prefix.rfind(b) + len(b) if b in prefix else 0) for b in boundaries)
    return prefix[:cut]


def learn_group(group: str, texts: Iterable[str], rules: TemplateRules = TemplateRules()) -> Template | None:
    """The template of one group's prompts, or ``None`` when no block of ``rules.min_chars`` is shared by
    ``rules.min_share`` of its distinct prompts (and at least ``rules.min_prompts`` of them)."""
    distinct = sorted({normal_newlines(t) for t in texts})
    # rounded first: 0.55 * 100 is 55.00000000000001 in floating point, and 55 prompts are at least 55%
    k = max(rules.min_prompts, math.ceil(round(rules.min_share * len(distinct), 9)))
    if len(distinct) < k:
        return None
    prefix = _shared_prefix(distinct, k, _BOUNDARIES)
    reversed_texts = sorted(t[::-1] for t in distinct)
    suffix = _shared_prefix(reversed_texts, k, _REVERSED_BOUNDARIES)[::-1]
    prefix = prefix if len(prefix) >= rules.min_chars else ""
    suffix = suffix if len(suffix) >= rules.min_chars else ""
    if not prefix and not suffix:
        return None
    return Template(group, prefix, suffix)


def learn(groups: Mapping[str, Iterable[str]], rules: TemplateRules = TemplateRules()) -> tuple[Template, ...]:
    """The templates of every group that has one, sorted by group."""
    found = (learn_group(group, groups[group], rules) for group in sorted(groups))
    return tuple(t for t in found if t is not None)


def strip(text: str, templates: Sequence[Template]) -> tuple[str, str | None]:
    """``(remainder, template id)``: ``text`` without the longest learned prefix it starts with and the longest
    learned suffix it ends with (whatever group learned them, so the result depends on the text alone, as it must
    when serving a prompt of unknown task). Nothing is stripped (``(text, None)``) when no template fits or the
    remainder would be blank; when prefix and suffix together would leave nothing, only the longer one goes.
    Line ends are compared as :func:`normal_newlines` writes them (the remainder too)."""
    original, text = text, normal_newlines(text)
    prefix = max((t.prefix for t in templates if t.prefix and text.startswith(t.prefix)), key=len, default="")
    suffix = max((t.suffix for t in templates if t.suffix and text.endswith(t.suffix)), key=len, default="")
    candidates = [(prefix, suffix)]
    candidates += sorted([(prefix, ""), ("", suffix)], key=lambda c: -len(c[0] + c[1]))
    for pre, suf in candidates:
        if not pre and not suf:
            continue
        remainder = text[len(pre):len(text) - len(suf)]
        if len(pre) + len(suf) < len(text) and remainder.strip():
            return remainder, template_id(pre, suf)
    return original, None


def templates_json(templates: Sequence[Template]) -> str:
    """The learned set as JSON (the served model's ``templates.json``)."""
    return json.dumps({"templates": [asdict(t) for t in sorted(templates)]}, indent=1, sort_keys=True)


def load_templates(text: str) -> tuple[Template, ...]:
    """The set written by :func:`templates_json`."""
    return tuple(sorted(Template(**row) for row in json.loads(text)["templates"]))
