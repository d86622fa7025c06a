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

_WEIGHT_INDEX = "model.safetensors.index.json"
_WEIGHT_FILE = "model.safetensors"
#: weights as Python pickles: loading them can run code, so they are never read
PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
#: files whose ``auto_map`` names Python code in the folder (or on the hub) to run
CODE_MAPS = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


def check_folder_is_safe(folder: str | Path) -> None:
    """Refuse, with one DataError, a model folder that loading would have to run code for: custom
    model or tokenizer classes (``auto_map``, what ``trust_remote_code`` allows) or weights that
    exist only as pickles (``pytorch_model.bin``). probattn never runs code from a model folder and
    never unpickles; it reads JSON and safetensors."""
    folder = Path(folder)
    for name in CODE_MAPS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise DataError(f"{path} is not valid UTF-8 JSON") from None
        if not isinstance(data, dict):
            raise DataError(f"{path} must be a JSON object, got {type(data).__name__}")
        if data.get("auto_map"):
            classes = ", ".join(sorted(map(str, data["auto_map"])))[:80] if isinstance(data["auto_map"], dict) else ""
            raise DataError(f"{folder} needs custom code ({name} has an auto_map{': ' + classes if classes else ''}); "
                            "probattn never runs code from a model folder (no trust_remote_code): use a model "
                            "whose architecture transformers implements")
    safetensors = list(folder.glob("*.safetensors"))
    pickled = sorted({p.name for pattern in PICKLED for p in folder.glob(pattern)})
    if pickled and not safetensors:
        raise DataError(f"{folder} holds its weights only as pickles ({', '.join(pickled[:3])}); probattn never "
                        "unpickles model files (unpickling can run code): save them as safetensors "
                        "(save_pretrained(..., safe_serialization=True))")


def _weight_files(folder: Path) -> list[Path]:
    if (folder / _WEIGHT_INDEX).is_file():
        try:
            mapping = json.loads((folder / _WEIGHT_INDEX).read_text(encoding="utf-8"))["weight_map"]
            return sorted({folder / name for name in mapping.values()})
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            raise DataError(f"{folder / _WEIGHT_INDEX} is not a safetensors index (JSON with a weight_map)") from None
    if (folder / _WEIGHT_FILE).is_file():
        return [folder / _WEIGHT_FILE]
    raise DataError(f"no model weights ({_WEIGHT_FILE}) in {folder}")


def _read_tensors(path: Path, wanted) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if wanted(k)}


def mechanism_state(folder: str | Path) -> dict:
    """Every saved tensor that belongs to a probattn mechanism, by state-dict key."""
    folder = Path(folder)
    out: dict = {}
    for path in _weight_files(folder):
        out.update(_read_tensors(path, lambda k: f".{MECHANISM_ATTR}." in f".{k}"))
    return out


def load_pretrained(path: str | Path, model_class: Any = None, **kwargs) -> nn.Module:
    """Load a causal LM saved with ``save_pretrained``; restore its probattn mechanism if it had one.

    A folder that needs custom code or holds only pickled weights is refused
    (:func:`check_folder_is_safe`): nothing from it is run or unpickled.

    ``model_class`` defaults to ``AutoModelForCausalLM``; ``kwargs`` go to its ``from_pretrained``.
    """
    transformers, *_ = transformers_modules()
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise DataError(f"{folder} is not a saved model folder (no config.json)")
    check_folder_is_safe(folder)
    kwargs = {"trust_remote_code": False, "use_safetensors": True, **kwargs}
    cls = model_class or transformers.AutoModelForCausalLM
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=False)
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
