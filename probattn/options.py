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


def from_fields(cls: type, values: Mapping[str, Any], what: str | None = None):
    """``cls(**values)``, but a name that is not one of the dataclass's fields is one error
    (``unknown <what> field(s): ...``; ``what`` defaults to the class's name)."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {what or cls.__name__} field(s): {', '.join(unknown)}")
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
    try:
        parsed: Any = json.loads(value, parse_constant=_no_constant)
    except ValueError as e:
        if not isinstance(e, json.JSONDecodeError) or value.strip().lower() in NON_FINITE_WORDS:
            raise argparse.ArgumentTypeError(f"{key.strip()} must be a finite number, got {value!r}") from None
        parsed = value
    if isinstance(parsed, float) and not math.isfinite(parsed):  # 1e999
        raise argparse.ArgumentTypeError(f"{key.strip()} must be a finite number, got {value!r}")
    return key.strip(), parsed


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
