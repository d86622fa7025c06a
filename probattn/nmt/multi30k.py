"""Multi30k task 1 (Elliott et al. 2016) by name: image-caption translation, raw and untokenized.

The files are those of the dataset's repository (``data/task1/raw/<split>.<lang>.gz``). A folder
``multi30k/`` in the data path (``--data-dir``, ``$PROBATTN_DATA``, the cache) that holds them is
used as it is; otherwise each file the run needs is downloaded once from the repository into
``<cache>/multi30k/``. Every ``.gz`` file, found or downloaded, must match the upstream digest
pinned below (a changed file is refused, never silently trained on); ungzipped copies
(``train.de``) are accepted with a note that they are unverified.

Splits: train (29,000 pairs), valid = ``val`` (1,014) and one test set chosen by name. Every
language is in every split except Czech, which has train, val, test2016 and test2018 only.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from ..data.corpora import CorpusMissing, cache_dir, data_search_path, decode_text, fetch_verified
from ..errors import DataError
from ..io import atomic_write_bytes

FOLDER = "multi30k"
URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{}"
LANGS = ("en", "de", "fr", "cs")
#: test sets by the name users type -> the upstream file stem
TEST_SETS = {"test2016": "test_2016_flickr", "test2017": "test_2017_flickr",
             "test2018": "test_2018_flickr", "mscoco2017": "test_2017_mscoco"}
DEFAULT_TEST = "test2016"
STEMS = {"train": "train", "valid": "val", **TEST_SETS}
#: the stems that have no Czech side
NO_CZECH = ("test_2017_flickr", "test_2017_mscoco")

# SHA-256 of the upstream files (multi30k/dataset, data/task1/raw, master at a3d2e0d)
SHA256 = {
    "test_2016_flickr.cs.gz": "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "test_2017_flickr.de.gz": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
    "test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
    "test_2017_flickr.fr.gz": "3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496",
    "test_2017_mscoco.de.gz": "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338",
    "test_2017_mscoco.en.gz": "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58",
    "test_2017_mscoco.fr.gz": "754f3072ba9f124569ba5258b32730fc1d214bbf8e0c6dfb2b74401676220db0",
    "test_2018_flickr.cs.gz": "7d0a9db904f94c554a8c58049a9f3a5357c27f46cc3d710d70cb0b4a2585b8c2",
    "test_2018_flickr.de.gz": "ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608",
    "test_2018_flickr.en.gz": "ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d",
    "test_2018_flickr.fr.gz": "fb2b83fcceb937a4f7e3e93c1c51c22aba92f1e342391e6b5ba392b16a920501",
    "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}


def check_request(src_lang: str, tgt_lang: str, test_set: str) -> None:
    """One error line naming what exists, for a language or test set that does not."""
    for lang in (src_lang, tgt_lang):
        if lang not in LANGS:
            raise DataError(f"multi30k has no language {lang!r}; available: {', '.join(LANGS)}")
    if src_lang == tgt_lang:
        raise DataError(f"source and target language are both {src_lang!r}")
    if test_set not in TEST_SETS:
        raise DataError(f"multi30k has no test set {test_set!r}; available: {', '.join(TEST_SETS)}")
    if "cs" in (src_lang, tgt_lang) and TEST_SETS[test_set] in NO_CZECH:
        with_cs = [n for n, stem in TEST_SETS.items() if stem not in NO_CZECH]
        raise DataError(f"multi30k's {test_set} has no Czech side; Czech test sets: {', '.join(with_cs)}")


def file_name(split: str, lang: str, test_set: str = DEFAULT_TEST) -> str:
    stem = TEST_SETS[test_set] if split == "test" else STEMS[split]
    return f"{stem}.{lang}.gz"


def load_lines(split: str, lang: str, test_set: str, data_dirs=(), download: bool = True) -> tuple[list[str], str]:
    """The sentences of one side of one split, and where they came from (a note)."""
    name = file_name(split, lang, test_set)
    for base in data_search_path(data_dirs):
        folder = base / FOLDER
        if (folder / name).is_file():
            return _lines(_verified(folder / name), folder / name), str(folder / name)
        plain = folder / name.removesuffix(".gz")
        if plain.is_file():
            return _lines(plain.read_bytes(), plain), f"{plain} (ungzipped, not checked against the digest)"
    if not download:
        raise CorpusMissing(f"multi30k file {name} not found in the data path "
                        f"({', '.join(str(p) for p in data_search_path(data_dirs))}) and downloads are off")
    payload = fetch_verified((URL.format(name),), SHA256[name])
    target = cache_dir() / FOLDER / name
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, payload)
    return _lines(payload, target), str(target)


def _verified(path: Path) -> bytes:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[path.name]:
        raise DataError(f"{path} is not the published Multi30k file (SHA-256 {digest[:12]}..., expected "
                        f"{SHA256[path.name][:12]}...); remove it to download a fresh copy")
    return raw


def _lines(raw: bytes, path: Path) -> list[str]:
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path} is not a readable gzip file ({e})") from None
    lines = decode_text(raw, str(path)).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline is not a sentence
    return lines


def load_pairs(split: str, src_lang: str, tgt_lang: str, test_set: str, data_dirs=(),
               download: bool = True) -> tuple[list[tuple[str, str]], list[str]]:
    """Aligned (source, target) pairs of a split, and where each side came from."""
    src, src_from = load_lines(split, src_lang, test_set, data_dirs, download)
    tgt, tgt_from = load_lines(split, tgt_lang, test_set, data_dirs, download)
    if len(src) != len(tgt):
        raise DataError(f"{src_from} has {len(src)} lines but {tgt_from} has {len(tgt)}")
    for i, (s, t) in enumerate(zip(src, tgt), 1):
        if not s.strip() or not t.strip():
            raise DataError(f"empty line {i} in {src_from if not s.strip() else tgt_from}")
    return [(s.strip(), t.strip()) for s, t in zip(src, tgt)], [src_from, tgt_from]
