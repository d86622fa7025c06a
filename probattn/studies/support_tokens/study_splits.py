"""Three-way splits of the convergence scale: train, an early-stopping validation split, and the
scored test text, so that the checkpoint the stopping rule selects never saw the text it is scored on.

* WikiText-2 (only its valid and test files are in this workplace): train on the first 90 % of
  ``valid.txt``, stop on its last 10 %, score ``test.txt``.
* Tiny Shakespeare (one file): train on the first 72 %, stop on the next 8 %, score the last 20 %
  (223k characters: nanoGPT's last 10 % would be 111k, under the 200k the study scores).

The splits are cut at character positions and written once, atomically, to a folder in the cache
(``train.txt``, ``valid.txt``, ``test.txt``: the layout ``load_corpus`` reads), never into the repo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...data.corpora import cache_dir, read_text_file
from ...errors import DataError
from ...io import atomic_write_text
from .experiment import find_data_file


@dataclass(frozen=True)
class SplitSpec:
    label: str
    #: (folder, file) of the text that is cut into train and early-stopping validation
    source: tuple[str, str]
    #: train's share of ``source``; validation gets the rest up to ``test_from``
    train_until: float
    #: (folder, file) of a separate scored text, or None: the tail of ``source`` from ``test_from``
    test_file: tuple[str, str] | None = None
    test_from: float = 1.0
    note: str = ""


WIKITEXT_SPLITS = SplitSpec(
    "wikitext-2 (char)", ("wikitext-2", "valid.txt"), 0.9, test_file=("wikitext-2", "test.txt"),
    note="WikiText-2 has only its valid and test splits here: trained on the first 90 % of valid.txt, "
         "early-stopped on its last 10 %, scored on test.txt (not the usual train/test protocol)")
SHAKESPEARE_SPLITS = SplitSpec(
    "tinyshakespeare", ("tinyshakespeare", "input.txt"), 0.72, test_from=0.8,
    note="first 72 % train, next 8 % early-stopping validation, last 20 % scored")


def cut(text: str, spec: SplitSpec, test_text: str | None = None) -> dict[str, str]:
    """{"train", "valid", "test"} texts of ``spec`` (``test_text``: the separate scored file)."""
    n = len(text)
    a = int(n * spec.train_until)
    b = int(n * spec.test_from)
    splits = {"train": text[:a], "valid": text[a:b], "test": test_text if spec.test_file else text[b:]}
    for name, part in splits.items():
        if part is None or not part.strip():
            raise DataError(f"{spec.label}: the {name} split is empty")
    return splits


def split_folder(spec: SplitSpec, data_dirs=()) -> Path:
    """The cached folder holding ``spec``'s three splits (written on first use)."""
    source = find_data_file(*spec.source, data_dirs)
    test = find_data_file(*spec.test_file, data_dirs) if spec.test_file else None
    name = f"{spec.source[0]}-{spec.train_until:g}-{spec.test_from:g}" + ("-test" if spec.test_file else "")
    folder = cache_dir() / "support-study-splits" / name
    if all((folder / f"{s}.txt").is_file() for s in ("train", "valid", "test")):
        return folder
    splits = cut(read_text_file(source), spec, read_text_file(test) if test else None)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        atomic_write_text(folder / f"{name}.txt", part)
    return folder
