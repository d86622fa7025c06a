"""Parallel corpora by name or folder, with a deterministic split and filtering.

* ``ding``: the Ding German-English dictionary (Debian ``trans-de-en``, GPL-2+): read from
  ``/usr/share/trans/de-en`` (``apt-get install trans-de-en``) or a copy ``trans/de-en``,
  ``ding/de-en`` or ``de-en`` in the data path. Valid and test are example sentences only,
  assigned by a hash of the English side (the same English sentence never lands in two splits;
  a train pair whose German side is a valid/test sentence is dropped too). Train holds the rest of
  the sentences and, with ``phrases``, the dictionary's phrase pairs.
* ``iwslt14``: IWSLT14 De-En as fairseq's ``prepare-iwslt14.sh`` leaves it (Moses-tokenized,
  lowercased ``train/valid/test.{de,en}``), in ``iwslt14.tokenized.de-en`` of the data path; when
  it is not there (and downloads are allowed), fetched and prepared into the cache by
  :mod:`probattn.nmt.iwslt14`.
* ``multi30k``: Multi30k task 1 (raw captions; en, de, fr, cs), from ``multi30k/`` in the data path
  or downloaded file by file into the cache and checked against pinned digests
  (:mod:`probattn.nmt.multi30k`); valid = ``val``, the test set chosen by name (``test_set``).
  A length filter touches its training split only: valid and test are always scored whole.
* a folder with ``train.{src}``, ``train.{tgt}``, ``valid.*`` and (optional) ``test.*``, one
  sentence per line, the two sides of a split with equally many lines.

The data path is the language-model corpora's: ``--data-dir`` flags, ``$PROBATTN_DATA``, the cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data.corpora import CorpusMissing, data_search_path, read_text_file
from ..errors import DataError

DING_SYSTEM_FILE = Path("/usr/share/trans/de-en")
DING_FOLDERS = ("trans", "ding", ".")
LANGS = ("de", "en")
CORPORA = ("ding", "iwslt14", "multi30k")
SPLITS = ("train", "valid", "test")

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class ParallelCorpus:
    name: str
    src_lang: str
    tgt_lang: str
    train: Pairs
    valid: Pairs
    test: Pairs
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def split(self, name: str) -> Pairs:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; use train, valid or test")
        pairs = getattr(self, name)
        if not pairs:
            raise DataError(f"corpus {self.name!r} has no {name} split")
        return pairs

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, s)) for s in SPLITS}


def check_pair(src_lang: str, tgt_lang: str) -> None:
    if src_lang not in LANGS or tgt_lang not in LANGS or src_lang == tgt_lang:
        raise DataError(f"unknown language pair {src_lang}-{tgt_lang}; available: de-en, en-de")


def load_parallel(name: str, src_lang: str = "de", tgt_lang: str = "en", data_dirs=(), *,
                  phrases: bool = True, max_words: int | None = None, heldout_every: int = 20,
                  phrase_min_words: int = 1, download: bool = True, sha256: str | None = None,
                  test_set: str | None = None) -> ParallelCorpus:
    """Load a corpus, oriented ``src_lang -> tgt_lang``, length-filtered to ``max_words`` words.

    ``phrase_min_words`` (ding): keep only the phrase pairs with at least that many words per side.
    ``download`` / ``sha256`` (iwslt14): fetch the archive when no prepared folder is in the data
    path; the archive digest to insist on (else the one recorded at the first download).
    ``test_set`` (multi30k): which test set is the test split (default test2016).
    """
    if name == "multi30k":
        return _load_multi30k(src_lang, tgt_lang, test_set, data_dirs, download, max_words)
    if test_set is not None:
        raise DataError(f"a test set is chosen by name for multi30k only; {name!r} has one test split")
    check_pair(src_lang, tgt_lang)
    if name == "ding":
        corpus = _load_ding(data_dirs, phrases, heldout_every, phrase_min_words)
    elif name == "iwslt14":
        from .iwslt14 import locate

        folder, notes = locate(data_dirs, download, sha256)
        corpus = _load_folder(folder, "iwslt14")
        corpus = replace(corpus, notes=corpus.notes + notes)
    elif Path(name).is_dir():
        corpus = _load_folder(Path(name), Path(name).name, src_lang, tgt_lang)
    else:
        raise DataError(f"unknown parallel corpus {name!r}; available: {', '.join(CORPORA)} or a folder")
    if (src_lang, tgt_lang) != ("de", "en"):
        corpus = _flip(corpus)
    return _length_filter(corpus, max_words) if max_words else corpus


def _load_multi30k(src_lang: str, tgt_lang: str, test_set: str | None, data_dirs, download: bool,
                   max_words: int | None) -> ParallelCorpus:
    from . import multi30k

    test_set = test_set or multi30k.DEFAULT_TEST
    multi30k.check_request(src_lang, tgt_lang, test_set)
    splits, sources = {}, []
    for split in SPLITS:
        splits[split], where = multi30k.load_pairs(split, src_lang, tgt_lang, test_set, data_dirs, download)
        sources += where
    notes = (f"multi30k: test set {test_set}",)
    if max_words:
        keep = [(s, t) for s, t in splits["train"] if len(s.split()) <= max_words and len(t.split()) <= max_words]
        notes += (f"length filter on train only: {len(splits['train']) - len(keep)} pairs over {max_words} words",)
        splits["train"] = keep
    folder = str(Path(sources[0]).parent)
    return ParallelCorpus("multi30k", src_lang, tgt_lang, splits["train"], splits["valid"], splits["test"],
                          source=folder, notes=notes + tuple(w for w in sources if "not checked" in w))


def _ding_file(data_dirs) -> Path:
    for base in data_search_path(data_dirs):
        for folder in DING_FOLDERS:
            if (base / folder / "de-en").is_file():
                return base / folder / "de-en"
    if DING_SYSTEM_FILE.is_file():
        return DING_SYSTEM_FILE
    raise CorpusMissing("corpus 'ding' not found: install it (apt-get install trans-de-en) or put a copy "
                    "of de-en under trans/ in a --data-dir")


def _bucket(text: str, n: int) -> int:
    return int.from_bytes(hashlib.sha1(text.lower().encode("utf-8")).digest()[:8], "big") % n


def _load_ding(data_dirs, phrases: bool, heldout_every: int, phrase_min_words: int = 1) -> ParallelCorpus:
    from .ding import parse

    path = _ding_file(data_dirs)
    pairs = parse(read_text_file(path))
    if not pairs:
        raise DataError(f"{path} holds no 'German :: English' entries")
    valid, test, train = [], [], []
    for p in pairs:
        if p.sentence:
            b = _bucket(p.en, heldout_every)
            (test if b == 0 else valid if b == 1 else train).append((p.de, p.en))
        elif phrases and min(len(p.de.split()), len(p.en.split())) >= phrase_min_words:
            train.append((p.de, p.en))
    held_de = {de.lower() for de, _ in valid + test}
    train = [(de, en) for de, en in train if de.lower() not in held_de]
    notes = (f"ding: {sum(p.sentence for p in pairs)} example sentences, "
             f"{sum(not p.sentence for p in pairs)} phrase pairs"
             + ("" if not phrases or phrase_min_words == 1
                else f" (those of >= {phrase_min_words} words per side used)")
             + ("" if phrases else " (not used)"),)
    return ParallelCorpus("ding", "de", "en", train, valid, test, source=str(path), notes=notes)


def read_parallel(src_path: Path, tgt_path: Path) -> Pairs:
    """Lines of two aligned files; different line counts or an empty line are errors."""
    src_lines = read_text_file(src_path).splitlines()
    tgt_lines = read_text_file(tgt_path).splitlines()
    if len(src_lines) != len(tgt_lines):
        raise DataError(f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}")
    for i, (s, t) in enumerate(zip(src_lines, tgt_lines), 1):
        if not s.strip() or not t.strip():
            raise DataError(f"empty line {i} in {src_path if not s.strip() else tgt_path}")
    return [(s.strip(), t.strip()) for s, t in zip(src_lines, tgt_lines)]


def _load_folder(folder: Path, name: str, src_lang: str = "de", tgt_lang: str = "en") -> ParallelCorpus:
    """A folder's splits as (de, en) pairs (the caller flips to the requested direction)."""
    splits: dict[str, Pairs] = {}
    for split in SPLITS:
        src, tgt = folder / f"{split}.{src_lang}", folder / f"{split}.{tgt_lang}"
        if not src.exists() and not tgt.exists() and split == "test":
            splits[split] = []
            continue
        if not src.exists() or not tgt.exists():
            raise DataError(f"{folder} needs {split}.{src_lang} and {split}.{tgt_lang}")
        pairs = read_parallel(src, tgt)
        splits[split] = pairs if (src_lang, tgt_lang) == ("de", "en") else [(t, s) for s, t in pairs]
    return ParallelCorpus(name, "de", "en", splits["train"], splits["valid"], splits["test"], source=str(folder))


def _flip(c: ParallelCorpus) -> ParallelCorpus:
    swap = lambda pairs: [(t, s) for s, t in pairs]  # noqa: E731
    return ParallelCorpus(c.name, c.tgt_lang, c.src_lang, swap(c.train), swap(c.valid), swap(c.test),
                          c.source, c.notes)


def _length_filter(c: ParallelCorpus, max_words: int) -> ParallelCorpus:
    keep = lambda pairs: [(s, t) for s, t in pairs if len(s.split()) <= max_words and len(t.split()) <= max_words]  # noqa: E731
    return ParallelCorpus(c.name, c.src_lang, c.tgt_lang, keep(c.train), keep(c.valid), keep(c.test), c.source,
                          c.notes + (f"length filter: <= {max_words} words per side",))
