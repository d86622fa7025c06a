"""The GPT: architecture, hook points, generation, configuration checks."""

import pytest
import torch
import torch.nn.functional as F

from probattn.errors import ConfigError
from probattn.model import GPT, GPTConfig


def small(**kw):
    cfg = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg)).eval()


def test_nanogpt_parameter_count_for_shakespeare_char():
    # nanoGPT prints "number of parameters: 10.65M" for config/train_shakespeare_char.py
    model = GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384))
    assert model.num_params() == 10_646_784
    assert model.lm_head.weight is model.wte.weight


def test_forward_loss_is_mean_cross_entropy():
    model = small()
    idx = torch.randint(11, (3, 10))
    tgt = torch.randint(11, (3, 10))
    logits, loss = model(idx, tgt)
    assert logits.shape == (3, 10, 11)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 11), tgt.reshape(-1)))


def test_forward_equals_manual_nanogpt_computation():
    """Recompute the whole forward pass by hand from the parameters (float64)."""
    model = small(bias=True).double()
    idx = torch.randint(11, (2, 9))
    x = model.wte.weight[idx] + model.wpe.weight[:9]
    for blk in model.blocks:
        h = F.layer_norm(x, (8,), blk.ln_1.weight, blk.ln_1.bias, 1e-5)
        qkv = h @ blk.attn.c_attn.weight.T + blk.attn.c_attn.bias
        q, k, v = (t.reshape(2, 9, 2, 4).transpose(1, 2) for t in qkv.split(8, -1))
        att = (q @ k.transpose(-1, -2)) / 2.0
        att = att.masked_fill(torch.ones(9, 9).triu(1).bool(), float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(2, 9, 8)
        x = x + y @ blk.attn.c_proj.weight.T + blk.attn.c_proj.bias
        h = F.layer_norm(x, (8,), blk.ln_2.weight, blk.ln_2.bias, 1e-5)
        m = F.gelu(h @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias)
        x = x + m @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias
    x = F.layer_norm(x, (8,), model.ln_f.weight, model.ln_f.bias, 1e-5)
    expected = x @ model.wte.weight.T
    torch.testing.assert_close(model(idx)[0], expected, rtol=1e-10, atol=1e-10)


def test_hook_points_have_transformerlens_names_and_shapes():
    model = small()
    idx = torch.randint(11, (2, 5))
    _, cache = model.run_with_cache(idx)
    assert cache["blocks.1.attn.hook_q"].shape == (2, 5, 2, 4)  # batch, pos, head, d_head
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 2, 5, 5)  # batch, head, query, key
    assert cache["blocks.0.hook_resid_post"].shape == (2, 5, 8)
    assert cache["hook_embed"].shape == (2, 5, 8)
    pattern = cache["blocks.0.attn.hook_pattern"]
    q = cache["blocks.0.attn.hook_q"].transpose(1, 2)
    k = cache["blocks.0.attn.hook_k"].transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / 2.0
    expected = scores.masked_fill(torch.ones(5, 5).triu(1).bool(), float("-inf")).softmax(-1)
    torch.testing.assert_close(pattern, expected)


def test_pattern_is_only_materialised_when_hooked():
    model = small()
    calls = []
    mech = model.blocks[0].attn.mechanism
    original = mech.reference
    mech.reference = lambda *a, **kw: calls.append(1) or original(*a, **kw)
    model(torch.randint(11, (1, 4)))
    assert calls == []
    model.run_with_cache(torch.randint(11, (1, 4)), names_filter=["blocks.0.attn.hook_pattern"])
    assert calls == [1]


def test_hooks_can_edit_activations_and_are_removed():
    model = small()
    idx = torch.randint(11, (1, 6))
    clean = model(idx)[0]
    with model.hooks([("blocks.0.attn.hook_v", lambda v, hook: torch.zeros_like(v))]):
        edited = model(idx)[0]
    assert not torch.allclose(clean, edited)
    torch.testing.assert_close(model(idx)[0], clean)
    with pytest.raises(KeyError):
        with model.hooks([("blocks.9.attn.hook_q", lambda x, h: x)]):
            pass


def test_reference_attention_path_gives_the_same_model_output():
    model = small()
    idx = torch.randint(11, (2, 12))
    fast = model(idx)[0]
    for blk in model.blocks:
        blk.attn.mechanism.impl = "reference"
    torch.testing.assert_close(model(idx)[0], fast, rtol=1e-5, atol=1e-5)


def test_generation_greedy_topk_and_seeded_sampling():
    model = small()
    start = torch.tensor([[1, 2]])
    greedy = model.generate(start, 20, temperature=0)
    assert greedy.shape == (1, 22)  # longer than block_size: context is cropped
    idx = start
    for _ in range(5):
        idx = torch.cat([idx, model(idx[:, -16:])[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(greedy[:, :7], idx)
    top1 = model.generate(start, 10, temperature=1.0, top_k=1)
    assert torch.equal(top1, greedy[:, :12])
    a = model.generate(start, 10, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = model.generate(start, 10, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw, message", [
    ({"n_head": 0}, "n_head must be a positive integer"),
    ({"n_embd": 10, "n_head": 4}, "divisible by n_head"),
    ({"dropout": -0.1}, "dropout must be a finite number in"),
    ({"dropout": 1.0}, "dropout must be a finite number in"),
    ({"attention": "bogus"}, "unknown attention"),
    ({"mlp_hidden": 0}, "mlp_hidden"),
])
def test_invalid_configs_are_rejected(kw, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**kw)


def test_mlp_hidden_sets_the_mlp_width():
    model = small(mlp_hidden=20)
    assert model.blocks[0].mlp.c_fc.weight.shape == (20, 8)


def _manual_blocks(model, idx, post: bool):
    """The whole forward pass by hand (float64): Pre-LN x + f(LN x) with a final LN, or Post-LN
    LN(x + f(x)) with none."""
    B, T = idx.shape
    C, H = model.config.n_embd, model.config.n_head
    ln = lambda x, m: F.layer_norm(x, (C,), m.weight, m.bias, 1e-5)  # noqa: E731
    causal = torch.ones(T, T).triu(1).bool()

    def attn(h, blk):
        qkv = h @ blk.attn.c_attn.weight.T + blk.attn.c_attn.bias
        q, k, v = (t.reshape(B, T, H, C // H).transpose(1, 2) for t in qkv.split(C, -1))
        att = ((q @ k.transpose(-1, -2)) / (C // H) ** 0.5).masked_fill(causal, float("-inf")).softmax(-1)
        return (att @ v).transpose(1, 2).reshape(B, T, C) @ blk.attn.c_proj.weight.T + blk.attn.c_proj.bias

    def mlp(h, blk):
        return F.gelu(h @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias) @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias

    x = model.wte.weight[idx] + model.wpe.weight[:T]
    for blk in model.blocks:
        if post:
            x = ln(x + attn(x, blk), blk.ln_1)
            x = ln(x + mlp(x, blk), blk.ln_2)
        else:
            x = x + attn(ln(x, blk.ln_1), blk)
            x = x + mlp(ln(x, blk.ln_2), blk)
    if not post:
        x = ln(x, model.ln_f)
    return x @ model.wte.weight.T


@pytest.mark.parametrize("position", ["pre", "post"])
def test_norm_positions_equal_hand_written_blocks(position):
    model = small(bias=True, norm_position=position, n_layer=3).double()
    for p in model.parameters():  # move gains and biases off 1 and 0 so every term shows
        p.data.add_(0.1 * torch.randn_like(p))
    idx = torch.randint(11, (2, 9))
    expected = _manual_blocks(model, idx, post=position == "post")
    torch.testing.assert_close(model(idx)[0], expected, rtol=1e-10, atol=1e-10)


def test_post_ln_differs_from_pre_ln_and_drops_the_final_norm():
    pre, post = small(), small(norm_position="post")
    assert isinstance(post.ln_f, torch.nn.Identity)
    assert pre.num_params() - post.num_params() == pre.config.n_embd  # the final LN's gain
    idx = torch.randint(11, (2, 9))
    assert not torch.allclose(pre(idx)[0], post(idx)[0])
    with pytest.raises(ConfigError, match="norm_position"):
        GPTConfig(norm_position="middle")


def test_pre_ln_is_bit_identical_to_the_original_block_code():
    """The default arrangement runs exactly the operations it ran before norm_position existed."""
    model = small(bias=True)
    idx = torch.randint(11, (2, 9))
    x = model.embed(idx)
    for blk in model.blocks:  # the former Block.forward, verbatim
        x = x + blk.attn(blk.ln_1(x))
        x = x + blk.mlp(blk.ln_2(x))
    expected = model.lm_head(model.ln_f(x))
    assert torch.equal(model(idx)[0], expected)
    assert GPT(GPTConfig()).state_dict().keys() == GPT(GPTConfig(norm_position="pre")).state_dict().keys()


@pytest.mark.parametrize("args, kwargs, words", [
    ((torch.tensor([[1, 2]]), -1), {}, "max_new_tokens must be an integer >= 0, got -1"),
    ((torch.tensor([[1, 2]]), 2.5), {}, "max_new_tokens must be an integer >= 0, got 2.5"),
    ((torch.tensor([[1, 2]]), 3), {"temperature": -0.1}, "temperature must be a finite number >= 0"),
    ((torch.tensor([[1, 2]]), 3), {"temperature": float("nan")}, "temperature must be a finite number >= 0"),
    ((torch.tensor([[1, 2]]), 3), {"temperature": float("inf")}, "temperature must be a finite number >= 0"),
    ((torch.tensor([[1, 2]]), 3), {"top_k": 0}, "top_k must be a positive integer, got 0"),
    ((torch.tensor([[1, 2]]), 3), {"top_k": 1.5}, "top_k must be a positive integer"),
    ((torch.tensor([1, 2]), 3), {}, "idx must be a (batch, time) tensor of token ids with time >= 1, got (2,)"),
    ((torch.zeros(1, 0, dtype=torch.long), 3), {},
     "idx must be a (batch, time) tensor of token ids with time >= 1, got (1, 0)"),
    (([[1, 2]], 3), {}, "idx must be a (batch, time) tensor of token ids with time >= 1, got list"),
    ((torch.tensor([[1.0, 2.0]]), 3), {}, "idx must hold integer token ids, got torch.float32"),
    ((torch.tensor([[1, 11]]), 3), {}, "token ids must be in [0, 11), got 1..11"),
    ((torch.tensor([[-1, 2]]), 3), {}, "token ids must be in [0, 11), got -1..2"),
])
def test_generate_checks_its_arguments_as_the_command_line_does(args, kwargs, words):
    from probattn.errors import ConfigError

    model = small()
    with pytest.raises(ConfigError) as info:
        model.generate(*args, **kwargs)
    assert f"generate: {words}" in str(info.value), str(info.value)
    assert model.generate(torch.tensor([[1, 2]]), 0).tolist() == [[1, 2]]  # nothing asked, nothing added
