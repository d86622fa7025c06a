"""The translation study's variants (shared by every scale): which mechanism each attention
kind uses, the lambdas, the parameter-matched softmax's FFN width, and the paired verdict."""

from __future__ import annotations

from typing import Any

from ...model.seq2seq import Seq2Seq
from ...model.seq2seq_config import Seq2SeqConfig

KINDS = ("enc", "dec", "cross")
TRAINABLE = {"lam": 1.0, "trainable": True}


def mechanism_in(name: str, options: dict | None = None, kinds=KINDS) -> dict:
    out: dict[str, Any] = {}
    for kind in KINDS:
        chosen = kind in kinds
        out[f"{kind}_attention"] = name if chosen else "softmax"
        out[f"{kind}_attention_options"] = dict(options or {}) if chosen else {}
    return out


def lam_options(lam_pos: float, lam_neg: float) -> dict:
    if lam_pos == lam_neg:
        return {"lam": lam_pos}
    return {"lam": lam_pos, "tied": False, "lam_neg": lam_neg}


# key -> (label, model overrides); the matched FFN width and the tuned lambdas are filled in later
VARIANTS: dict[str, tuple[str, dict]] = {
    "softmax": ("softmax", mechanism_in("softmax")),
    "gpam_self": ("daGPAM in self-attention (trainable lam)", mechanism_in("gpam", TRAINABLE, ("enc", "dec"))),
    "gpam_all": ("daGPAM everywhere (trainable lam)", mechanism_in("gpam", TRAINABLE)),
    "gpam_tuned": ("daGPAM everywhere (lam+/lam- tuned on valid)", {}),
    "diff": ("Diff attention everywhere", mechanism_in("diff")),
    "softmax_matched": ("softmax, params matched to daGPAM everywhere", mechanism_in("softmax")),
}


def count_params(model: dict, vocab_size: int) -> int:
    return Seq2Seq(Seq2SeqConfig(**{**model, "vocab_size": vocab_size})).num_params()


def matched_ffn(model: dict, target: int, vocab_size: int) -> int:
    """The FFN width whose softmax model is closest to ``target`` parameters (affine in the width)."""
    width = model["ffn"]
    at = count_params({**model, "ffn": width}, vocab_size)
    slope = count_params({**model, "ffn": width + 1}, vocab_size) - at
    return max(1, width + round((target - at) / slope))


def interval_verdict(ci: dict[str, float], higher_is_better: bool = True) -> str:
    """Plain words for a paired 95 % t interval of per-seed differences (variant - baseline): a
    verdict needs the whole interval on one side of zero."""
    if ci["n"] < 2:
        return "one seed: no verdict"
    lo, hi = (ci["mean"], ci["mean"]) if ci["std"] == 0 else (ci["lo"], ci["hi"])  # identical diffs: a point
    if not (lo > 0 or hi < 0):
        return "within seed noise"
    return "better (95 % interval)" if (lo > 0) == higher_is_better else "worse (95 % interval)"
