"""Corpora by name or path.

* ``default`` (alias ``python-docs``): the embedded default. Real English documentation text that
  ships with every CPython install (the language-reference topics in ``pydoc_data``), so a fresh
  machine with no network and no user file can train at once.
* named public corpora (``tinyshakespeare``, ``wikitext-2``, ``wikitext-2-raw``): looked up in the
  data-directory search path (``--data-dir`` flags, then ``$PROBATTN_DATA``, then the cache), and
  otherwise downloaded once, checksum-verified, into the cache (``$PROBATTN_CACHE`` or
  ``~/.cache/probattn``).
* a path: a text file (split deterministically: first ``train_fraction`` train, the rest
  validation, as nanoGPT does) or a folder with ``train``/``valid``/``test`` files.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..io import atomic_write_bytes, note_input

DATA_ENV = "PROBATTN_DATA"
CACHE_ENV = "PROBATTN_CACHE"


class CorpusMissing(DataError):
    """A corpus (a named one that may not be downloaded, or a file) that is not on this machine:
    ``--print-config`` reports what it cannot know without it instead of failing."""


@dataclass(frozen=True)
class Corpus:
    name: str
    train: str
    valid: str
    test: str | None = None
    source: str = ""
    notes: tuple[str, ...] = ()

    def split(self, name: str) -> str:
        if name == "train":
            return self.train
        if name in ("valid", "val"):
            return self.valid
        if name == "test":
            if self.test is None:
                raise DataError(f"corpus {self.name!r} has no test split")
            return self.test
        raise DataError(f"unknown split {name!r}; use train, valid or test")

    @property
    def all_text(self) -> tuple[str, ...]:
        return tuple(t for t in (self.train, self.valid, self.test) if t is not None)


@dataclass(frozen=True)
class NamedCorpus:
    """A public corpus: where to find it locally and how to fetch it."""

    name: str
    description: str
    #: split -> candidate file names inside ``<data dir>/<folder>/``
    files: dict[str, tuple[str, ...]]
    folders: tuple[str, ...]
    urls: tuple[str, ...]
    sha256: str
    #: for archives: split -> member path inside the zip; empty for a single text file
    members: dict[str, str] = field(default_factory=dict)

    @property
    def single_file(self) -> bool:
        return not self.members


NAMED_CORPORA: dict[str, NamedCorpus] = {
    c.name: c
    for c in (
        NamedCorpus(
            name="tinyshakespeare",
            description="Tiny Shakespeare (char-rnn / nanoGPT), 1.1 MB, 65 characters",
            files={"all": ("input.txt",)},
            folders=("tinyshakespeare", "shakespeare_char", "shakespeare"),
            urls=(
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            ),
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        ),
        NamedCorpus(
            name="wikitext-2",
            description="WikiText-2, tokenized form with <unk> (train/valid/test)",
            files={
                "train": ("train.txt", "wiki.train.tokens"),
                "valid": ("valid.txt", "wiki.valid.tokens"),
                "test": ("test.txt", "wiki.test.tokens"),
            },
            folders=("wikitext-2",),
            urls=(
                "https://wikitext.smerity.com/wikitext-2-v1.zip",
                "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
            ),
            sha256="92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
            members={
                "train": "wikitext-2/wiki.train.tokens",
                "valid": "wikitext-2/wiki.valid.tokens",
                "test": "wikitext-2/wiki.test.tokens",
            },
        ),
        NamedCorpus(
            name="wikitext-2-raw",
            description="WikiText-2 raw (train/valid/test, no <unk>)",
            files={
                "train": ("train.txt", "wiki.train.raw"),
                "valid": ("valid.txt", "wiki.valid.raw"),
                "test": ("test.txt", "wiki.test.raw"),
            },
            folders=("wikitext-2-raw", "wikitext-2-raw-v1"),
            urls=(
                "https://huggingface.co/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip",
                "https://wikitext.smerity.com/wikitext-2-raw-v1.zip",
            ),
            sha256="ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
            members={
                "train": "wikitext-2-raw/wiki.train.raw",
                "valid": "wikitext-2-raw/wiki.valid.raw",
                "test": "wikitext-2-raw/wiki.test.raw",
            },
        ),
    )
}

DEFAULT_NAMES = ("default", "python-docs")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "probattn")


def data_search_path(data_dirs: tuple[str, ...] | list[str] = ()) -> list[Path]:
    """Folders searched for named corpora, in order: flags, $PROBATTN_DATA, the cache."""
    dirs = [Path(d) for d in data_dirs]
    env = os.environ.get(DATA_ENV, "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d]
    dirs.append(cache_dir())
    return dirs


#: peak bytes of memory per byte of a text file, from reading it to its token tensor (the bytes,
#: the str, the code points, the search positions and the int64 tokens: about 40)
TEXT_MEMORY_PER_BYTE = 40


def read_text_file(path: str | Path) -> str:
    """Read UTF-8 text with one clear error for each way it can fail.

    Only a regular file is read (a device such as /dev/zero, a pipe or a socket could never end),
    and only when the memory it needs, tokens included, fits the machine. Inside a command the
    file is noted as an input, so no output of the command can replace it.
    """
    from ..memory import check_fits, human_bytes

    p = Path(path)
    if not p.exists():
        raise CorpusMissing(f"data file not found: {p}")
    if p.is_dir():
        raise DataError(f"expected a text file but {p} is a folder")
    st = p.stat()
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"expected a text file but {p} is not a regular file (a device, pipe or socket "
                        "never ends): give the path of a text file")
    check_fits(st.st_size * TEXT_MEMORY_PER_BYTE, f"reading {p} ({human_bytes(st.st_size)}) and its tokens",
               "use a smaller corpus file")
    note_input(p, f"the text file {p}")
    raw = p.read_bytes()
    return decode_text(raw, str(p))


def decode_text(raw: bytes, where: str) -> str:
    if not raw.strip():
        raise DataError(f"data file is empty: {where}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{where} is not UTF-8 text (undecodable byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from None
    return text.removeprefix("\ufeff")


def default_text() -> str:
    """The embedded default corpus: CPython's language-reference topic texts."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - stripped Python builds
        raise DataError(
            "this Python lacks pydoc_data (the embedded default corpus); pass --data PATH"
        ) from None
    return "\n\n".join(topics[key].strip() for key in sorted(topics)) + "\n"


def split_text(text: str, train_fraction: float) -> tuple[str, str]:
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train fraction must be in (0, 1), got {train_fraction}")
    n = int(len(text) * train_fraction)
    return text[:n], text[n:]


def load_corpus(
    spec: str = "default",
    data_dirs: tuple[str, ...] | list[str] = (),
    valid: str | None = None,
    train_fraction: float = 0.9,
    download: bool = True,
) -> Corpus:
    """Resolve ``spec`` (a name or a path) to a corpus.

    ``valid`` (a path) overrides the validation split, and all of ``spec``'s text that is not a
    test split becomes training text. That is how to train on WikiText-2's valid split and
    validate on its test split when the train split is not available.
    """
    src = _resolve(spec, data_dirs, download, need_train=valid is None)
    if src.whole is not None:
        if valid is None:
            train, valid_text = split_text(src.whole, train_fraction)
        else:
            train, valid_text = src.whole, read_text_file(valid)
        test = None
    else:
        splits = src.splits
        if valid is None:
            train, valid_text = splits["train"], splits["valid"]
        else:
            # without a train split the local valid split is the training text
            train, valid_text = splits.get("train") or splits["valid"], read_text_file(valid)
        test = splits.get("test")
    if valid is not None and valid_text == train:
        raise DataError(f"the validation file {valid} holds the same text as the training data of {spec!r}: "
                        "its loss would measure memorisation; give a held-out file (or leave --valid-data "
                        "out to split the corpus)")
    source = src.source if valid is None else f"{src.source} (validation: {valid})"
    corpus = Corpus(name=src.name, train=train, valid=valid_text, test=test, source=source,
                    notes=src.notes)
    for split_name in ("train", "valid"):
        if not corpus.split(split_name).strip():
            raise DataError(f"corpus {corpus.name!r} has an empty {split_name} split")
    return corpus


@dataclass(frozen=True)
class _Source:
    """A resolved corpus before splitting: one text (``whole``) or named ``splits``."""

    name: str
    source: str
    whole: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _resolve(spec: str, data_dirs, download: bool, need_train: bool) -> _Source:
    if spec in DEFAULT_NAMES:
        return _Source("default", "python stdlib pydoc_data.topics", whole=default_text())
    if spec in NAMED_CORPORA:
        return _resolve_named(NAMED_CORPORA[spec], data_dirs, download, need_train)
    path = Path(spec)
    if path.is_dir():
        return _resolve_folder(path)
    if path.exists() or os.sep in spec or path.suffix:  # read_text_file says what is wrong with it
        return _Source(path.stem, str(path), whole=read_text_file(path))
    names = ", ".join((*DEFAULT_NAMES, *NAMED_CORPORA))
    raise DataError(f"unknown corpus {spec!r}: not a known name ({names}) nor an existing path")


def _find_split_file(folder: Path, candidates: tuple[str, ...]) -> Path | None:
    for c in candidates:
        if (folder / c).is_file():
            return folder / c
    return None


FOLDER_SPLITS = {
    "train": ("train.txt", "train", "wiki.train.tokens", "wiki.train.raw"),
    "valid": ("valid.txt", "val.txt", "validation.txt", "valid", "wiki.valid.tokens", "wiki.valid.raw"),
    "test": ("test.txt", "test", "wiki.test.tokens", "wiki.test.raw"),
}


def _read_splits(found: dict[str, Path | None]) -> dict[str, str]:
    return {s: read_text_file(p) for s, p in found.items() if p is not None}


def _resolve_folder(folder: Path) -> _Source:
    note_input(folder, f"the corpus folder {folder}")
    found = {s: _find_split_file(folder, c) for s, c in FOLDER_SPLITS.items()}
    if found["train"] is None or found["valid"] is None:
        present = sorted(p.name for p in folder.iterdir())[:10]
        raise DataError(
            f"folder {folder} needs train.txt and valid.txt (test.txt optional); found: {present or 'nothing'}"
        )
    return _Source(folder.resolve().name, str(folder), splits=_read_splits(found))


def _resolve_named(nc: NamedCorpus, data_dirs, download: bool, need_train: bool) -> _Source:
    for base in data_search_path(data_dirs):
        for folder in nc.folders:
            d = base / folder
            if not d.is_dir():
                continue
            if nc.single_file:
                f = _find_split_file(d, nc.files["all"])
                if f is not None:
                    return _Source(nc.name, str(f), whole=read_text_file(f))
                continue
            found = {s: _find_split_file(d, names) for s, names in nc.files.items()}
            if found["valid"] is None:
                continue
            notes: tuple[str, ...] = ()
            if found["train"] is None:
                if need_train:
                    raise DataError(
                        f"{nc.name} in {d} has no train split; train on its valid split with "
                        f"--data {found['valid']} --valid-data {found['test'] or 'PATH'}"
                    )
                notes = (f"{nc.name}: no train split in {d}; its valid split is the training text",)
            return _Source(nc.name, str(d), splits=_read_splits(found), notes=notes)
    if not download:
        raise CorpusMissing(
            f"corpus {nc.name!r} not found in the data path "
            f"({', '.join(str(p) for p in data_search_path(data_dirs))}) and downloads are off"
        )
    return _download_named(nc)


def _download_named(nc: NamedCorpus) -> _Source:
    target = cache_dir() / nc.folders[0]
    payload = fetch_verified(nc.urls, nc.sha256)
    target.mkdir(parents=True, exist_ok=True)
    if nc.single_file:
        atomic_write_bytes(target / nc.files["all"][0], payload)
        return _Source(nc.name, nc.urls[0], whole=decode_text(payload, nc.name))
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        raw = {s: zf.read(m) for s, m in nc.members.items()}
    for split_name, data in raw.items():
        atomic_write_bytes(target / nc.files[split_name][0], data)
    splits = {s: decode_text(data, f"{nc.name} {s}") for s, data in raw.items()}
    return _Source(nc.name, nc.urls[0], splits=splits)


def fetch_verified(urls: tuple[str, ...], sha256: str | None, timeout: float = 60.0) -> bytes:
    """Download from the first URL that answers and whose content has the expected SHA-256.

    ``sha256=None`` accepts the first answer: for a source whose digest is not pinned, the caller
    records the digest of what it got (trust on first use) and checks later copies against it.
    """
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except Exception as e:  # network failures come in many types
            errors.append(f"{url}: {e}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            errors.append(f"{url}: checksum mismatch (got {digest[:12]}..., want {sha256[:12]}...)")
            continue
        return data
    raise DataError(
        "could not download a verified copy ("
        + "; ".join(errors)
        + f"); put the files in a folder and pass --data-dir or set ${DATA_ENV}"
    )


def local_splits(name: str, data_dirs: tuple[str, ...] | list[str] = ()) -> tuple[str, dict[str, str]] | None:
    """A named multi-split corpus found in the data path (never downloaded): ``(where, splits)``
    with the splits that are there, or None when it is not found."""
    nc = NAMED_CORPORA[name]
    try:
        src = _resolve_named(nc, data_dirs, download=False, need_train=False)
    except DataError:
        return None
    return src.source, dict(src.splits)
