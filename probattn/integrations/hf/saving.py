"""``save_pretrained`` / :func:`load_pretrained`: the mechanism survives the round trip.

``use_probattn_attention`` records ``{"attention": name, "options": {...}}`` as
``config.probattn``; ``save_pretrained`` writes it into ``config.json`` and the mechanisms'
parameters and buffers (lambda, W_Q-, RMSNorm gains) into the weights files with the rest of
the state dict. transformers' own ``from_pretrained`` builds the plain model and drops those
tensors (they belong to no module it knows), so loading takes this one call instead::

    model = load_pretrained("out")            # any from_pretrained keyword passes through

It loads the model, rebuilds the recorded mechanism in every layer and loads every mechanism
tensor from the saved weights; a missing one is an error, not a silent re-initialisation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ...errors import ConfigError, DataError
from .attention import CONFIG_KEY, MECHANISM_ATTR, transformers_modules, use_probattn_attention

_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _weight_files(folder: Path) -> list[Path]:
    for index in _WEIGHT_INDEXES:
        if (folder / index).is_file():
            mapping = json.loads((folder / index).read_text())["weight_map"]
            return sorted({folder / name for name in mapping.values()})
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    raise DataError(f"no model weights (model.safetensors or pytorch_model.bin) in {folder}")


def _read_tensors(path: Path, wanted) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if wanted(k)}
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if wanted(k)}


def mechanism_state(folder: str | Path) -> dict:
    """Every saved tensor that belongs to a probattn mechanism, by state-dict key."""
    folder = Path(folder)
    out: dict = {}
    for path in _weight_files(folder):
        out.update(_read_tensors(path, lambda k: f".{MECHANISM_ATTR}." in f".{k}"))
    return out


def load_pretrained(path: str | Path, model_class: Any = None, **kwargs) -> nn.Module:
    """Load a causal LM saved with ``save_pretrained``; restore its probattn mechanism if it had one.

    ``model_class`` defaults to ``AutoModelForCausalLM``; ``kwargs`` go to its ``from_pretrained``.
    """
    transformers, *_ = transformers_modules()
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise DataError(f"{folder} is not a saved model folder (no config.json)")
    cls = model_class or transformers.AutoModelForCausalLM
    config = transformers.AutoConfig.from_pretrained(folder)
    choice = getattr(config, CONFIG_KEY, None)
    quiet = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the mechanism tensors are "unexpected" to it: loaded below
    try:
        model = cls.from_pretrained(folder, **kwargs)
    finally:
        transformers.logging.set_verbosity(quiet)
    if choice is None:
        return model
    if not isinstance(choice, dict) or "attention" not in choice:
        raise ConfigError(f"{folder / 'config.json'}: '{CONFIG_KEY}' must be {{'attention': ..., 'options': ...}}")
    use_probattn_attention(model, choice["attention"], choice.get("options") or {})
    saved = mechanism_state(folder)
    own = {k for k in model.state_dict() if f".{MECHANISM_ATTR}." in f".{k}"}
    missing = sorted(own - set(saved))
    if missing:
        raise DataError(f"{folder}: the saved weights lack {len(missing)} probattn tensor(s), e.g. {missing[0]}; "
                        "was the model saved after use_probattn_attention?")
    unknown = sorted(set(saved) - own)
    if unknown:
        raise DataError(f"{folder}: saved probattn tensor {unknown[0]} has no place in a "
                        f"{choice['attention']!r} model")
    result = model.load_state_dict(saved, strict=False)
    if result.unexpected_keys:  # pragma: no cover - guarded above
        raise DataError(f"{folder}: unexpected tensors {result.unexpected_keys[:3]}")
    return model
