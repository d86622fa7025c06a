"""probattn mechanisms inside Hugging Face transformers models (the 'hf' extra)."""

import sys

import pytest
import torch

from probattn.errors import ConfigError

transformers = pytest.importorskip("transformers", reason="the Hugging Face integration is the 'hf' extra")

from probattn.integrations.hf import MECHANISM_ATTR, use_probattn_attention  # noqa: E402


def tiny_llama(seed=0):
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed=0):
    cfg = transformers.GPT2Config(vocab_size=40, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                  bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(cfg).eval()


IDS = torch.randint(3, 40, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
def test_probattn_softmax_reproduces_the_models_own_attention(build):
    model = build()
    reference = model(IDS).logits
    use_probattn_attention(model, "softmax")
    torch.testing.assert_close(model(IDS).logits, reference, rtol=1e-5, atol=1e-5)


def test_cached_generation_matches_the_models_own():
    """Greedy decoding with the KV cache: one query against all past keys each step."""
    model = tiny_llama()
    expected = model.generate(IDS[:, :5], max_new_tokens=8, do_sample=False)
    use_probattn_attention(model, "softmax")
    assert torch.equal(model.generate(IDS[:, :5], max_new_tokens=8, do_sample=False), expected)


def test_dual_attention_parameters_train_and_travel_with_the_state_dict(tmp_path):
    model = tiny_llama()
    softmax_logits = model(IDS).logits
    use_probattn_attention(model, "gpam", {"trainable": True})
    names = [n for n, _ in model.named_parameters() if MECHANISM_ATTR in n]
    assert any(n.endswith("w_q_neg") for n in names) and any("lam_pos_raw" in n for n in names)
    model.train()
    assert model.model.layers[1].self_attn.probattn_mechanism.training  # follows the model's mode
    out = model(IDS, labels=IDS)
    assert torch.isfinite(out.loss) and not torch.allclose(out.logits, softmax_logits)
    out.loss.backward()
    w = model.model.layers[0].self_attn.probattn_mechanism.w_q_neg
    assert w.grad is not None and w.grad.abs().sum() > 0
    torch.save(model.state_dict(), tmp_path / "m.pt")
    again = use_probattn_attention(tiny_llama(seed=1), "gpam", {"trainable": True})
    again.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    torch.testing.assert_close(again.eval()(IDS).logits, model.eval()(IDS).logits)


def test_padding_and_missing_extra_give_clear_errors(monkeypatch):
    model = use_probattn_attention(tiny_llama(), "softmax")
    mask = torch.ones_like(IDS)
    mask[0, :3] = 0
    with pytest.raises(ConfigError, match="knows no padding"):
        model(IDS, attention_mask=mask)
    with pytest.raises(ConfigError, match="unknown attention 'nope'"):
        use_probattn_attention(tiny_llama(), "nope")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match="needs the 'hf' extra"):
        use_probattn_attention(tiny_llama(), "softmax")
