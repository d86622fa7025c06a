"""The Ding German-English dictionary (Debian package ``trans-de-en``) as parallel text.

One entry per line, ``German :: English``; both sides list the same sub-entries separated by
`` | `` (headword, inflections, phrases, example sentences), each a ``;``-separated list of
alternatives. Sub-entries are paired by position (lines whose sides list different numbers are
skipped); alternatives are paired one-to-one when both sides list as many, else the first of each.
Grammar and domain annotations ({f}, [Br.], (of sth.)) are removed. Pairs with placeholders
(``…``, slashes offering alternatives) are dropped.

An example sentence is a pair whose two sides both start with a capital and end in ``.``, ``!``
or ``?`` and have at least three words; everything else is a phrase pair. The licence is GPL-2+:
the text is read from the installed package or a copy in a data directory, never redistributed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANNOTATION = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|\([^()]*\)")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = (".", "!", "?")


@dataclass(frozen=True)
class Pair:
    de: str
    en: str
    sentence: bool


def clean(text: str) -> str:
    previous = None
    while previous != text:  # nested annotations: strip innermost first
        previous, text = text, _ANNOTATION.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return re.sub(r"\s+([.,!?;:])", r"\1", text)


def _usable(text: str) -> bool:
    return bool(text) and "…" not in text and "..." not in text and "/" not in text and "::" not in text


def is_sentence(text: str) -> bool:
    return text[:1].isupper() and text.endswith(_SENTENCE_END) and len(text.split()) >= 3


def parse_line(line: str) -> list[Pair]:
    """Every (German, English) pair of one dictionary line (empty for comments and odd lines)."""
    line = line.strip()
    if not line or line.startswith("#"):
        return []
    sides = line.split(" :: ")
    if len(sides) != 2:
        return []
    de_parts, en_parts = sides[0].split(" | "), sides[1].split(" | ")
    if len(de_parts) != len(en_parts):
        return []
    pairs = []
    for de_part, en_part in zip(de_parts, en_parts):
        de_alts, en_alts = de_part.split("; "), en_part.split("; ")
        if len(de_alts) != len(en_alts):
            de_alts, en_alts = de_alts[:1], en_alts[:1]
        for de_raw, en_raw in zip(de_alts, en_alts):
            de, en = clean(de_raw), clean(en_raw)
            if _usable(de) and _usable(en):
                pairs.append(Pair(de, en, is_sentence(de) and is_sentence(en)))
    return pairs


def parse(text: str) -> list[Pair]:
    """All distinct pairs of the dictionary, in file order."""
    seen: set[tuple[str, str]] = set()
    out = []
    for line in text.splitlines():
        for pair in parse_line(line):
            key = (pair.de, pair.en)
            if key not in seen:
                seen.add(key)
                out.append(pair)
    return out
