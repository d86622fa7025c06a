"""IWSLT14 German-English by name: fairseq's archive, downloaded once, verified, prepared.

The preparation re-implements fairseq's ``examples/translation/prepare-iwslt14.sh`` up to the
tokenized, lowercased text (probattn learns its own joint BPE on the train split afterwards):

* train: ``train.tags.de-en.{de,en}`` without the lines holding ``<url>``, ``<talkid>`` or
  ``<keywords>``, the ``<title>`` / ``<description>`` tags removed (the text kept), Moses-tokenized
  (``sacremoses``, escaping on, as ``tokenizer.perl -l LANG``, with Moses' final-dot rule), cleaned by Moses'
  ``clean-corpus-n.perl`` rule (1 to 175 tokens a side, length ratio at most 1.5), lowercased;
  valid = every 23rd line of that, train = the rest;
* test: the ``<seg id>`` lines of TED dev2010, TEDX dev2012, TED tst2010, tst2011 and tst2012 (in
  the order the script concatenates them), ``’`` replaced by ``'``, tokenized, lowercased.

The cache holds ``iwslt14/de-en.tgz`` (kept, so a re-preparation needs no network), its record
``iwslt14/SOURCE.json`` and the prepared ``iwslt14/iwslt14.tokenized.de-en/`` (written in a
temporary folder and renamed into place). The archive's SHA-256 is not pinned in probattn (it could
not be read from where probattn is developed): a digest the user gives is verified, otherwise the
first download's digest is recorded and every later preparation is checked against it.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from ..data.corpora import CorpusMissing, cache_dir, data_search_path, fetch_verified
from ..errors import ConfigError, DataError
from ..io import _umask, atomic_write_bytes, atomic_write_text, output_error, write_json

URLS = ("http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz",)
HOME = "iwslt14"  # the folder in the cache that holds the archive, its record and the prepared text
ARCHIVE = "de-en.tgz"
RECORD = "SOURCE.json"
PREPARED = "iwslt14.tokenized.de-en"
#: where a prepared folder is looked for under each data-path folder (the first is fairseq's name)
FOLDERS = (PREPARED, "iwslt14", f"{HOME}/{PREPARED}")
RECIPE_VERSION = 1
RECIPE = ("fairseq examples/translation/prepare-iwslt14.sh without BPE: meta lines dropped, sacremoses "
          "(Moses) tokenization, clean-corpus-n 1-175 ratio 1.5, lowercase, valid = every 23rd train line")

LANGS = ("de", "en")
#: a train line that contains one of these is metadata and dropped (the script's ``grep -v``)
DROPPED = ("<url>", "<talkid>", "<keywords>")
#: tags removed from the train lines, their text kept (the script's ``sed``)
STRIPPED = ("<title>", "</title>", "<description>", "</description>")
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
             "IWSLT14.TED.tst2012")
VALID_EVERY = 23
MIN_TOKENS, MAX_TOKENS, MAX_RATIO, MAX_WORD_CHARS = 1, 175, 1.5, 1000

_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_CLOSE = re.compile(r"\s*</seg>\s*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_digest(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _HEX64.fullmatch(digest):
        raise ConfigError(f"--iwslt14-sha256 must be 64 hexadecimal digits (a SHA-256), got {sha256!r}")
    return digest


# -- the recipe ----------------------------------------------------------------------------------
def train_lines(text: str) -> list[str]:
    """The train file's text lines: metadata lines dropped, title / description tags removed."""
    out = []
    for line in text.splitlines():
        if any(tag in line for tag in DROPPED):
            continue
        for tag in STRIPPED:
            line = line.replace(tag, "")
        out.append(line)
    return out


def seg_lines(xml: str) -> list[str]:
    """The segments of a dev/test ``.xml`` file, one per ``<seg id=...>`` line."""
    return [_SEG_CLOSE.sub("", _SEG_OPEN.sub("", line)).replace("\u2019", "'")
            for line in xml.splitlines() if "<seg id" in line]


def moses_tokenizer(lang: str):
    """``tokenizer.perl -l LANG`` as fairseq's script runs it (escaping on, no aggressive hyphen
    splitting): sacremoses, plus the rule Moses added in November 2018 (commit 9fc964da7, before
    the script's clones of Moses master) that sacremoses 0.2 lacks: a sentence's last word loses
    its final dot even when it is a non-breaking prefix (German ``Nummer 1.`` -> ``Nummer 1 .``)."""
    try:
        from sacremoses import MosesTokenizer
    except ImportError:
        raise DataError("preparing IWSLT14 needs sacremoses (the 'nmt' extra: pip install 'probattn[nmt]')") from None

    class Tokenizer(MosesTokenizer):
        def handles_nonbreaking_prefixes(self, text: str) -> str:
            words = text.split()
            if words and len(words[-1]) > 1 and words[-1].endswith("."):
                words[-1] = words[-1][:-1] + " ."
            return super().handles_nonbreaking_prefixes(" ".join(words))

    return Tokenizer(lang=lang)


def tokenize(lines: list[str], lang: str) -> list[str]:
    """Moses tokenization of each line (:func:`moses_tokenizer`)."""
    tok = moses_tokenizer(lang)
    # tokenizer.perl passes blank lines through; clean-corpus then drops them
    return [tok.tokenize(line, escape=True, return_str=True) if line.strip() else line for line in lines]


def _squeeze(line: str) -> str:
    return re.sub(r"\s+", " ", line.replace("|", "")).strip()


def clean(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """clean-corpus-n.perl's rule: whitespace squeezed, no empty side, 1-175 tokens a side, neither
    side more than 1.5 times as long as the other, no token over 1000 characters."""
    kept = []
    for a, b in pairs:
        a, b = _squeeze(a), _squeeze(b)
        if not a or not b:
            continue
        na, nb = len(a.split(" ")), len(b.split(" "))
        if not (MIN_TOKENS <= na <= MAX_TOKENS and MIN_TOKENS <= nb <= MAX_TOKENS):
            continue
        if na / nb > MAX_RATIO or nb / na > MAX_RATIO:
            continue
        if max(map(len, a.split(" ") + b.split(" "))) > MAX_WORD_CHARS:
            continue
        kept.append((a, b))
    return kept


def prepare_texts(files: dict[str, str]) -> dict[str, list[str]]:
    """The recipe on the archive's texts (``files``: file name -> text): ``{"train.de": lines, ...}``."""
    def need(name: str) -> str:
        if name not in files:
            raise DataError(f"the IWSLT14 archive has no {name}")
        return files[name]

    train = {lang: train_lines(need(f"train.tags.de-en.{lang}")) for lang in LANGS}
    if len(train["de"]) != len(train["en"]):
        raise DataError(f"the IWSLT14 train files do not align: {len(train['de'])} German and "
                        f"{len(train['en'])} English lines after the metadata lines are dropped")
    tok = {lang: tokenize(train[lang], lang) for lang in LANGS}
    pairs = [(a.lower(), b.lower()) for a, b in clean(list(zip(tok["de"], tok["en"])))]
    out: dict[str, list[str]] = {}
    for i, lang in enumerate(LANGS):
        out[f"valid.{lang}"] = [p[i] for n, p in enumerate(pairs, 1) if n % VALID_EVERY == 0]
        out[f"train.{lang}"] = [p[i] for n, p in enumerate(pairs, 1) if n % VALID_EVERY != 0]
    for lang in LANGS:
        out[f"test.{lang}"] = []
    for name in TEST_SETS:
        segs = {lang: seg_lines(need(f"{name}.de-en.{lang}.xml")) for lang in LANGS}
        if len(segs["de"]) != len(segs["en"]):
            raise DataError(f"{name}: {len(segs['de'])} German but {len(segs['en'])} English segments")
        for lang in LANGS:
            out[f"test.{lang}"] += [s.lower() for s in tokenize(segs[lang], lang)]
    return out


def archive_texts(payload: bytes) -> dict[str, str]:
    """The archive's train and dev/test files by base name, decoded (read in memory: nothing is
    extracted, so no member path can reach outside the cache)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
            files = {}
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and (name.startswith("train.tags.") or name.endswith(".xml")):
                    files[name] = tar.extractfile(member).read().decode("utf-8")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"the IWSLT14 archive is not a readable .tgz: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"the IWSLT14 archive holds a file that is not UTF-8 ({e.reason})") from None
    return files


# -- finding, fetching, verifying ----------------------------------------------------------------
def find_prepared(data_dirs=()) -> Path | None:
    for base in data_search_path(data_dirs):
        for folder in FOLDERS:
            if (base / folder / "train.de").is_file():
                return base / folder
    return None


def read_record(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        check_digest(record["sha256"])
    except (ValueError, KeyError, TypeError, ConfigError):
        raise DataError(f"{path} is not a valid IWSLT14 source record (delete it to record a new download)") \
            from None
    return record


def locate(data_dirs=(), download: bool = True, sha256: str | None = None) -> tuple[Path, tuple[str, ...]]:
    """The prepared folder (found in the data path, else fetched and prepared into the cache) and
    notes on where it came from; ``sha256``: the archive digest to insist on."""
    want = check_digest(sha256)
    folder = find_prepared(data_dirs)
    if folder is not None:
        record = read_record(folder.parent / RECORD) if folder.parent.name == HOME else None
        if record is None:
            note = "iwslt14: a folder prepared outside probattn" + (
                " (the given sha256 applies to downloads; this folder has no record to check it against)"
                if want else "")
            return folder, (note,)
        if want and record["sha256"] != want:
            raise DataError(f"{folder} was prepared from an archive with sha256 {record['sha256']}, not the "
                            f"given {want} (delete {folder.parent} to download again)")
        return folder, (_provenance(record),)
    if not download:
        raise CorpusMissing(f"corpus 'iwslt14' not found: looked for {PREPARED}/train.de in "
                        f"{', '.join(str(p) for p in data_search_path(data_dirs))} and downloads are off "
                        "(allow them with --download, or put the folder fairseq's prepare-iwslt14.sh writes "
                        "in a --data-dir)")
    home = cache_dir() / HOME
    return prepare(home, want), (_provenance(read_record(home / RECORD)),)


def _provenance(record: dict) -> str:
    how = "the digest given" if record.get("pinned") else "trust on first use: the digest recorded at first download"
    return (f"iwslt14: {record.get('url', '?')} sha256 {record['sha256']} ({how}), "
            f"recipe version {record.get('recipe_version', '?')}")


def prepare(home: Path, want: str | None = None) -> Path:
    """Fetch (or reuse the kept archive), verify, record, and write ``home/PREPARED`` atomically."""
    record_path, archive_path = home / RECORD, home / ARCHIVE
    record = read_record(record_path) or {}
    kept = archive_path.is_file()
    if kept:
        payload, url = archive_path.read_bytes(), record.get("url", str(archive_path))
    else:
        print(f"probattn: downloading {URLS[0]} into {home}", file=sys.stderr)
        try:
            payload, url = fetch_verified(URLS, want), URLS[0]
        except DataError as e:
            raise DataError(f"{e}; or put fairseq's {ARCHIVE} at {archive_path}") from None
    digest = hashlib.sha256(payload).hexdigest()
    for expected, by in ((want, "the given sha256"), (record.get("sha256"), f"the digest recorded in {record_path}")):
        if expected and digest != expected:
            raise DataError(f"IWSLT14 archive checksum mismatch: {archive_path if kept else url} has sha256 "
                            f"{digest}, not {expected} ({by}); if the source really changed, delete {home} "
                            "to start over")
    if not kept:
        atomic_write_bytes(archive_path, payload)
    if not record or (want and not record.get("pinned")):
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = {"url": url, "sha256": digest, "bytes": len(payload), "pinned": want is not None,
                  "date": record.get("date", now), "recipe": RECIPE, "recipe_version": RECIPE_VERSION}
        write_json(record_path, record, indent=2)
    print(f"probattn: preparing IWSLT14 de-en in {home / PREPARED} (Moses tokenization of about 350k lines: "
          "a minute or two)", file=sys.stderr)
    splits = prepare_texts(archive_texts(payload))
    return _write_folder(home / PREPARED, splits)


def _write_folder(target: Path, splits: dict[str, list[str]]) -> Path:
    """Write the split files into a temporary folder beside ``target``, then rename it into place."""
    try:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as e:
        raise output_error(e, target) from None
    try:
        for name, lines in splits.items():
            atomic_write_text(tmp / name, "".join(line + "\n" for line in lines))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only
        try:
            os.rename(tmp, target)
        except OSError as e:
            if not (target / "train.de").is_file():  # another process finishing first is fine
                raise output_error(e, target) from None
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
