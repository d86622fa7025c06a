"""Numeric ranges declared once, checked everywhere: in config dataclasses and on the command line.

A :class:`Range` says what a number means (finite, integer, bounds). Config dataclasses attach
one to a field with :func:`setting` (which also carries the flag's help text); command-line flags
take ``type=number(...)``. Either way a bad value is one error that names the field or the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ConfigError

#: the largest float32 (torch.finfo(torch.float32).max; bfloat16's is about the same): every real
#: number a model or its training sees ends up in float32 tensors, so a larger one overflows to inf
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Range:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded
    hi_open: bool = False
    integer: bool = False

    def _show(self, bound: float) -> str:
        return str(int(bound)) if self.integer else f"{bound:g}"

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.integer and self.lo == 1 and self.hi is None:
            return "a positive integer"
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"{kind} in {left}{self._show(self.lo)}, {self._show(self.hi)}{right}"
        if self.lo == 0 and self.lo_open and not self.integer:
            return "a positive finite number"
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {self._show(self.lo)}"
        if self.hi is not None:
            return f"{kind} {'<' if self.hi_open else '<='} {self._show(self.hi)}"
        return kind

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is in range, else what is wrong with it."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {self.describe()}, got {value!r}"
        if self.integer and not isinstance(value, int):
            return f"must be {self.describe()}, got {value!r}"
        if not math.isfinite(value):
            return f"must be {self.describe()}, got {value!r}"
        if not self.integer and abs(value) > FLOAT32_MAX:
            return (f"must be {self.describe()} of at most {FLOAT32_MAX:.3g} in size (float32, the precision "
                    f"the models compute in), got {value!r}")
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return f"must be {self.describe()}, got {value!r}"
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return f"must be {self.describe()}, got {value!r}"
        return None


FINITE = Range()
POSITIVE = Range(lo=0, lo_open=True)
NON_NEGATIVE = Range(lo=0)
POSITIVE_INT = Range(lo=1, integer=True)
NON_NEGATIVE_INT = Range(lo=0, integer=True)
#: what every random number generator probattn seeds accepts: torch takes 64 bits, NumPy's legacy
#: generator 32, and seeds are offset (seed + 1000 * rank, seed * 7919 + i), so 32 bits
SEED = Range(lo=0, hi=2**32 - 1, integer=True)
UNIT_OPEN = Range(lo=0, hi=1, lo_open=True, hi_open=True)  # (0, 1)


def setting(default: Any = dataclasses.MISSING, help: str = "", range: Range | None = None,
            default_factory: Any = dataclasses.MISSING):
    """A dataclass field with its meaning (``--help``) and its range (checked on construction)."""
    meta = {"help": help, "range": range}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_fields(obj: Any) -> None:
    """Every field with a declared range (``None`` allowed where the default is ``None``)."""
    for f in dataclasses.fields(obj):
        rng = f.metadata.get("range")
        value = getattr(obj, f.name)
        if rng is None or (value is None and f.default is None):
            continue
        if not rng.integer and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # an integer where a real number is expected is fine (JSON "1")
            object.__setattr__(obj, f.name, value)
        problem = rng.problem(value)
        if problem:
            raise ConfigError(f"{f.name} {problem}")


def json_kind(value: Any) -> str:
    """What a JSON value is, in the words of JSON (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _describe_type(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in args if a is not type(None)) + " or null"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if origin is tuple:
        return f"a list of {_describe_type(args[0]).split(' ', 1)[1]}s" if args else "a list"
    if origin is dict:
        return "an object of KEY: VALUE"
    return getattr(tp, "__name__", str(tp))


def type_problem(tp: Any, value: Any) -> str | None:
    """None when a value read from JSON fits the field annotation ``tp`` (str, int, float,
    bool, ``X | None``, ``tuple[X, ...]``, ``dict[str, ...]``), else what is wrong with it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        ok = any(type_problem(a, value) is None for a in inner)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        ok = isinstance(value, (list, tuple)) and all(type_problem(args[0], v) is None for v in value)
    elif origin is dict:
        ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
    else:
        return None  # a type this check does not know: the dataclass's own checks decide
    return None if ok else f"must be {_describe_type(tp)}, got {json_kind(value)} ({value!r:.60})"


def from_fields(cls: type, values: Mapping[str, Any], what: str | None = None, complete: bool = False):
    """``cls(**values)``, refusing with one error that names the field: a name that is not one of
    the dataclass's fields (``unknown <what> field(s): ...``; ``what`` defaults to the class's
    name), a value of the wrong JSON type, and with ``complete`` a field left out (a saved
    configuration holds every field; a preset lists only what it changes)."""
    what = what or cls.__name__
    if not isinstance(values, Mapping):
        raise ConfigError(f"{what} must be a JSON object of fields, got {json_kind(values)}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {what} field(s): {', '.join(map(str, unknown))}")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        problem = type_problem(hints[name], value)
        if problem:
            raise ConfigError(f"{what} field {name} {problem}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values]
    if complete and missing:
        raise ConfigError(f"{what} lacks field(s): {', '.join(missing)}")
    return cls(**values)


class number:
    """argparse ``type=``: parse an int or a float and check it against a :class:`Range`.

    argparse prefixes the message with the flag (``argument --temperature: must be ...``).
    """

    def __init__(self, rng: Range = FINITE):
        self.range = rng
        self.__name__ = "integer" if rng.integer else "number"  # argparse's fallback message

    def __call__(self, text: str):
        try:
            value: Any = int(text) if self.range.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.range.describe()}, got {text!r}") from None
        problem = self.range.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem[: problem.rfind(', got')]}, got {text!r}")
        return value

    def __repr__(self) -> str:
        return f"number({self.range.describe()})"


def flag_range(lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False) -> number:
    return number(Range(lo, hi, lo_open, hi_open, integer))


def _no_constant(name: str):
    raise ValueError(name)


def parse_key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (else the string); NaN and infinities are refused."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a key, got {text!r}")
    try:
        parsed: Any = json.loads(value, parse_constant=_no_constant)
    except ValueError as e:
        if not isinstance(e, json.JSONDecodeError) or value.strip().lower() in NON_FINITE_WORDS:
            raise argparse.ArgumentTypeError(f"{key.strip()} must be a finite number, got {value!r}") from None
        parsed = value
    if isinstance(parsed, float) and not math.isfinite(parsed):  # 1e999
        raise argparse.ArgumentTypeError(f"{key.strip()} must be a finite number, got {value!r}")
    return key.strip(), parsed


class KeyValueList(argparse.Action):
    """argparse ``action=`` for a repeatable ``KEY=VALUE`` flag (with ``type=parse_key_value``):
    the pairs in the order given, and a key given twice is a usage error, not "the last wins"."""

    def __call__(self, parser, namespace, values, option_string=None):
        key, value = values
        items = getattr(namespace, self.dest, None)
        items = [] if items is None or items is argparse.SUPPRESS else list(items)
        for old_key, old_value in items:
            if old_key == key:
                raise argparse.ArgumentError(self, f"{key} given twice ({key}={json.dumps(old_value)} and "
                                                   f"{key}={json.dumps(value)}); give each key once")
        setattr(namespace, self.dest, [*items, (key, value)])


def not_utf8(text: str) -> str | None:
    """None for text that is valid Unicode, else what is wrong: bytes that are not UTF-8 reach
    Python (argv, ``surrogateescape``) as lone surrogates, which no encoder or tokenizer takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start:e.end]
        try:
            shown = "byte(s) " + " ".join(f"0x{b:02x}" for b in bad.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            shown = "a lone surrogate " + " ".join(f"U+{ord(c):04X}" for c in bad)
        return f"is not valid UTF-8: {shown} at character {e.start}"
    return None


def text_flag(text: str) -> str:
    """argparse ``type=`` for text given on the command line (``--text``, ``--prompt``)."""
    problem = not_utf8(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem} (set a UTF-8 locale, or pass the text in a UTF-8 file)")
    return text


NON_FINITE_WORDS = {"nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"}


def device_flag(text: str) -> str:
    """argparse ``type=`` for ``--device``: auto, cpu, cuda, cuda:N or mps, and present here.

    ``auto`` becomes ``cuda`` when CUDA is available, else ``cpu``.
    """
    name = text.strip().lower()
    if name not in ("auto", "cpu", "cuda", "mps") and not re.fullmatch(r"cuda:\d+", name):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r} asked for, but CUDA is not available here")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r} asked for, but this machine has "
                                             f"{torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError("'mps' asked for, but MPS is not available here")
    return name


# -- options of mechanisms and objectives ---------------------------------------------------------
# A mechanism or objective declares its options once, as a frozen dataclass of :func:`option`
# fields: the default, one line of help (``probattn list --options NAME``) and the check.

def option(default: Any, help: str, check: Any = None):
    """An options field: ``check`` is a :class:`Range`, a tuple of allowed values, ``bool``
    (true or false) or None (anything); None as a value is allowed where it is the default."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


def value_problem(check: Any, value: Any) -> str | None:
    """None when ``value`` passes ``check`` (see :func:`option`), else what is wrong with it."""
    if check is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if isinstance(check, tuple):
        return None if value in check else f"must be one of {', '.join(map(str, check))}, got {value!r}"
    if isinstance(check, Range):
        return check.problem(value)
    return None


@dataclass(frozen=True)
class Options:
    """Base of the options dataclasses: each field is checked on construction, then :meth:`check`
    (relations between fields). ``label`` starts every error ("gpam option lam must be ...")."""

    label: ClassVar[str] = "option"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check, value = f.metadata.get("check"), getattr(self, f.name)
            if value is None and f.default is None:
                continue
            problem = value_problem(check, value)
            if problem:
                raise ConfigError(f"{self.label} {f.name} {problem}")
            if isinstance(check, Range) and not check.integer and isinstance(value, int) \
                    and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))  # JSON "1" where a real number is meant
        self.check()

    def check(self) -> None:
        """Relations between fields (override); single fields are checked already."""

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None, what: str):
        """Build from a config's dict; an unknown name is one error listing the allowed ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options or {}) - set(names))
        if unknown:
            raise ConfigError(f"{what} has no option(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(names) or 'none'}")
        return cls(**dict(options or {}))


@dataclass(frozen=True)
class NoOptions(Options):
    """For a mechanism or objective that takes no options."""


def describe_options(cls: type[Options]) -> list[str]:
    """One line per field: name, default and help (what ``probattn list --options`` prints)."""
    rows = [(f.name, json.dumps(f.default), f.metadata.get("help", "")) for f in dataclasses.fields(cls)]
    if not rows:
        return ["(no options)"]
    width = max(len(n) + len(d) for n, d, _ in rows) + 3
    return [f"{f'{n} = {d}':<{width}} {h}" for n, d, h in rows]
