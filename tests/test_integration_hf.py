"""probattn mechanisms inside Hugging Face transformers models (the 'hf' extra): every cache in
prefill and decoding against a full recompute, attention weights, the save/load round trip."""

import sys

import pytest
import torch

from probattn.attention import AttentionMechanism
from probattn.errors import ConfigError

transformers = pytest.importorskip("transformers", reason="the Hugging Face integration is the 'hf' extra")

from probattn.integrations.hf import MECHANISM_ATTR, load_pretrained, use_probattn_attention  # noqa: E402
from probattn.integrations.hf.attention import resolve_mask  # noqa: E402

from .hf_models import BUILDERS, CACHE_KW, MECHANISMS, ids, tiny_gpt2, tiny_llama  # noqa: E402

IDS = ids()


@pytest.mark.parametrize("arch", ["llama", "gpt2", "mistral"])
def test_probattn_softmax_reproduces_the_models_own_attention(arch):
    model = BUILDERS[arch]()
    reference = model(IDS).logits
    use_probattn_attention(model, "softmax")
    torch.testing.assert_close(model(IDS).logits, reference, rtol=1e-5, atol=1e-5)


def test_cached_generation_matches_the_models_own():
    """Greedy decoding with the KV cache: one query against all past keys each step."""
    model = tiny_llama()
    expected = model.generate(IDS[:, :5], max_new_tokens=8, do_sample=False)
    use_probattn_attention(model, "softmax")
    assert torch.equal(model.generate(IDS[:, :5], max_new_tokens=8, do_sample=False), expected)


def _caches(model, arch, attention):
    """Every cache transformers offers that runs here: (name, factory, tolerance)."""
    cfg = model.config
    out = [("dynamic", lambda: transformers.DynamicCache(), 1e-5),
           ("dynamic-config", lambda: transformers.DynamicCache(config=cfg), 1e-5),  # sliding layers for mistral
           ("static", lambda: transformers.StaticCache(config=cfg, max_cache_len=16), 1e-5)]
    if arch != "mistral":  # transformers refuses quantized caches for sliding-window layers
        # fp8 (e4m3, 3 mantissa bits) stores past keys and values to ~6 %: close to the recompute, not
        # equal (cog's sign(s) jumps where a score crosses zero, diff's RMSNorm rescales small rows);
        # that the error is the cache's alone is the softmax test below, exact against the model's SDPA
        out.append(("quantized-fp8", lambda: transformers.QuantizedCache("fp8", cfg), 0.15))
    return out


def _decode(model, tokens, cache):
    """Prefill 5 tokens, decode a 2-token chunk (fewer queries than keys), then one at a time."""
    cuts = [0, 5, 7, 8, 9, 10, 11, tokens.shape[1]]
    pieces = [model(tokens[:, a:b], **{CACHE_KW: cache}, use_cache=True).logits for a, b in zip(cuts, cuts[1:])]
    return torch.cat(pieces, dim=1)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "mistral"])
@pytest.mark.parametrize("attention", sorted(MECHANISMS))
def test_every_cache_gives_the_logits_of_a_full_recompute(arch, attention):
    model = use_probattn_attention(BUILDERS[arch](), attention, MECHANISMS[attention])
    full = model(IDS, use_cache=False).logits
    for name, make, tol in _caches(model, arch, attention):
        torch.testing.assert_close(_decode(model, IDS, make()), full, rtol=tol, atol=tol,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_quantized_cache_matches_the_models_own_attention_with_the_same_cache():
    """The fp8 cache's error is the cache's: softmax through probattn equals the model's SDPA."""
    own = tiny_llama()
    expected = _decode(own, IDS, transformers.QuantizedCache("fp8", own.config))
    model = use_probattn_attention(tiny_llama(), "softmax")
    torch.testing.assert_close(_decode(model, IDS, transformers.QuantizedCache("fp8", model.config)), expected,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["quanto", "hqq"])
def test_integer_quantized_caches(backend):
    module = {"quanto": "optimum.quanto", "hqq": "hqq"}[backend]
    pytest.importorskip(module, reason=f"the {backend} KV-cache backend ({module}) is not installed")
    model = use_probattn_attention(tiny_llama(), "gpam", MECHANISMS["gpam"])
    full = model(IDS, use_cache=False).logits
    cache = transformers.QuantizedCache(backend, model.config, nbits=4, residual_length=4)
    torch.testing.assert_close(_decode(model, IDS, cache), full, rtol=0.1, atol=0.1)


def test_offloaded_cache():
    if not torch.cuda.is_available():
        pytest.skip("transformers' offloaded caches move layers between CUDA and the CPU: needs a GPU")
    model = use_probattn_attention(tiny_llama(), "gpam", MECHANISMS["gpam"]).cuda()
    tokens = IDS.cuda()
    full = model(tokens, use_cache=False).logits
    for cache in (transformers.DynamicCache(config=model.config, offloading=True),
                  transformers.StaticCache(config=model.config, max_cache_len=16, offloading=True)):
        torch.testing.assert_close(_decode(model, tokens, cache), full, rtol=1e-4, atol=1e-4)


def test_masks_are_read_not_assumed():
    """No mask with fewer queries than keys is refused; a static cache's empty slots are cut off."""
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve_mask(None, 3, 8)
    assert resolve_mask(None, 1, 8) == (8, None)
    slots = torch.zeros(1, 1, 3, 10, dtype=torch.bool)
    slots[..., :5] = torch.ones(3, 5, dtype=torch.bool).tril(2)  # 3 queries at positions 2..4 of 10 slots
    assert resolve_mask(slots, 3, 10) == (5, None)
    window = torch.ones(6, 6, dtype=torch.bool).tril() & ~torch.ones(6, 6, dtype=torch.bool).tril(-3)
    n, allowed = resolve_mask(window[None, None], 6, 6)
    assert n == 6 and torch.equal(allowed[0, 0], window)
    with pytest.raises(ConfigError, match="bias to the attention scores"):
        resolve_mask(torch.randn(1, 1, 2, 2), 2, 2)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "mistral"])
@pytest.mark.parametrize("attention", ["gpam", "diff"])
def test_output_attentions_returns_the_mechanisms_weights(arch, attention):
    model = BUILDERS[arch]()
    with torch.no_grad():  # sharper scores than at initialisation, so P+ and P- differ
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight", "c_attn.weight")):
                p.mul_(6.0)
    model = use_probattn_attention(model, attention, MECHANISMS[attention])
    short = IDS[:, :4]  # within mistral's window: the causal fast path
    out = model(short, output_attentions=True)
    assert len(out.attentions) == 2
    for layer, weights in zip(attention_layers(model), out.attentions):
        mechanism = getattr(layer, MECHANISM_ATTR)
        assert weights.shape == (2, mechanism.out_heads, 4, 4)
        assert torch.equal(weights.triu(1), torch.zeros_like(weights))  # causal
    if attention == "gpam":  # tied lambda: signed rows that sum to one, some weights negative
        torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 4, 4))
        assert (out.attentions[0] < 0).any()
    torch.testing.assert_close(out.logits, model(short).logits)
    from probattn.integrations.hf.margins import capture_attention

    with capture_attention(model) as modules:  # the weights, recomputed from the layers' own q and k
        model(short)
        for module, weights in zip(modules, out.attentions):
            q, k = module._probattn_record["q"], module._probattn_record["k"]
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            _, expected = getattr(module, MECHANISM_ATTR).reference(q, k, k)
            torch.testing.assert_close(weights, expected)


def attention_layers(model):
    from probattn.integrations.hf import attention_modules

    return attention_modules(model)


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


def _perturb_mechanisms(model, seed=3):
    """Move every mechanism tensor off its initial value, so a re-initialisation would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if MECHANISM_ATTR in name and t.is_floating_point():
                t.add_(0.1 * torch.randn(t.shape, generator=g))


@pytest.mark.parametrize("arch,attention", [("llama", "gpam"), ("gpt2", "diff"), ("mistral", "gpam"),
                                            ("llama", "cog")])
def test_save_pretrained_then_load_pretrained_restores_mechanism_options_and_parameters(tmp_path, arch, attention):
    options = {"gpam": {"trainable": True, "granularity": "head", "lam": 0.7}, "diff": {"lambda_init": 0.3},
               "cog": {"softmax_first_last": False, "chunk": 3}}[attention]
    model = use_probattn_attention(BUILDERS[arch](), attention, options)
    _perturb_mechanisms(model)
    before = model(IDS[:, :4]).logits
    model.save_pretrained(tmp_path / "m")
    saved = (tmp_path / "m" / "config.json").read_text()
    assert '"probattn"' in saved and f'"attention": "{attention}"' in saved
    again = load_pretrained(tmp_path / "m")
    torch.testing.assert_close(again(IDS[:, :4]).logits, before, rtol=0, atol=0)
    layer = attention_layers(again)[1]
    assert getattr(layer, MECHANISM_ATTR).name == attention
    assert again.config.probattn == {"attention": attention, "options": options}
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_load_pretrained_of_a_plain_model_and_missing_tensors(tmp_path):
    plain = tiny_gpt2()
    plain.save_pretrained(tmp_path / "plain")
    torch.testing.assert_close(load_pretrained(tmp_path / "plain")(IDS).logits, plain(IDS).logits)
    model = use_probattn_attention(tiny_gpt2(), "gpam", {"trainable": True})
    model.config.save_pretrained(tmp_path / "plain")  # claims gpam, weights have none
    from probattn.errors import DataError

    with pytest.raises(DataError, match="lack .* probattn tensor"):
        load_pretrained(tmp_path / "plain")
    with pytest.raises(DataError, match="no config.json"):
        load_pretrained(tmp_path / "nowhere")


def test_unsupported_models_and_missing_extra_give_one_clear_error(monkeypatch):
    with pytest.raises(ConfigError, match="scales scores by"):
        model = use_probattn_attention(tiny_gpt2(scale_attn_by_inverse_layer_idx=True), "softmax")
        model(IDS)
    with pytest.raises(ConfigError, match="unknown attention 'nope'"):
        use_probattn_attention(tiny_llama(), "nope")
    with pytest.raises(ConfigError, match="pairs heads"):
        use_probattn_attention(tiny_llama(hidden_size=36, num_attention_heads=3, num_key_value_heads=1), "diff")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match="needs the 'hf' extra"):
        use_probattn_attention(tiny_llama(), "softmax")


def _left_pad(rows, pad=0):
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return tokens, mask


ROWS = [IDS[0, :7].tolist(), IDS[1, :4].tolist(), IDS[0, 2:8].tolist()]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "mistral"])
@pytest.mark.parametrize("attention", sorted(MECHANISMS))
def test_left_padded_batched_generation_equals_each_row_alone(arch, attention):
    model = use_probattn_attention(BUILDERS[arch](), attention, MECHANISMS[attention])
    tokens, mask = _left_pad(ROWS)
    batched = model.generate(tokens, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    for i, row in enumerate(ROWS):
        alone = model.generate(torch.tensor([row]), max_new_tokens=5, do_sample=False, pad_token_id=0)[0, len(row):]
        new = batched[i, tokens.shape[1]:]  # a row that met EOS alone continues with padding in the batch
        assert new[:len(alone)].tolist() == alone.tolist(), (i, attention)
        assert (new[len(alone):] == 0).all()


@pytest.mark.parametrize("arch", ["gpt2", "llama", "mistral"])
@pytest.mark.parametrize("attention", sorted(MECHANISMS))
def test_padded_training_batch_equals_unpadded_rows(arch, attention):
    """Right-padded rows with labels -100 on the padding: logits, loss and gradients of each row."""
    model = use_probattn_attention(BUILDERS[arch](), attention, MECHANISMS[attention]).train()
    for m in model.modules():  # dropout off, the mechanisms in training mode (their fast paths)
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, AttentionMechanism):
            m.dropout = 0.0
    width = max(len(r) for r in ROWS)
    tokens = torch.zeros(len(ROWS), width, dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for i, r in enumerate(ROWS):
        tokens[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    labels = tokens.masked_fill(mask == 0, -100)
    out = model(tokens, attention_mask=mask, labels=labels)
    out.loss.backward()
    padded_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    total, count = 0.0, 0
    for i, r in enumerate(ROWS):
        row = torch.tensor([r])
        alone = model(row, labels=row)
        torch.testing.assert_close(out.logits[i, :len(r)], alone.logits[0], rtol=1e-5, atol=1e-5)
        n = len(r) - 1  # shifted targets per row
        (alone.loss * n).backward()
        total, count = total + alone.loss.item() * n, count + n
    torch.testing.assert_close(out.loss.item(), total / count, rtol=1e-5, atol=1e-6)
    for name, grad in padded_grads.items():  # the batch mean over all targets
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad / count, rtol=1e-4, atol=1e-6)


def test_models_the_mechanisms_cannot_compute_are_refused_with_the_reason():
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=40, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4))
    with pytest.raises(ConfigError, match="encoder-decoder"):
        use_probattn_attention(t5, "softmax")
    gemma2 = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
        vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8))
    with pytest.raises(ConfigError, match="attn_logit_softcapping"):
        use_probattn_attention(gemma2, "softmax")


def test_a_skipped_mask_for_a_static_cache_prefill_is_refused_not_guessed():
    """SDPA's own mask function returns None for a static cache's prefill (trusting is_causal's
    top-left alignment); probattn registers a mask that is never skipped, and refuses a None."""
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    from probattn.integrations.hf.attention import IMPLEMENTATION, materialised_mask

    model = use_probattn_attention(tiny_llama(), "gpam", MECHANISMS["gpam"])
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
    try:
        with pytest.raises(ConfigError, match="5 queries over 16 keys"):
            model(IDS[:, :5], **{CACHE_KW: transformers.StaticCache(config=model.config, max_cache_len=16)},
                  use_cache=True)
    finally:
        AttentionMaskInterface.register(IMPLEMENTATION, materialised_mask)
    cache = transformers.StaticCache(config=model.config, max_cache_len=16)
    torch.testing.assert_close(model(IDS[:, :5], **{CACHE_KW: cache}, use_cache=True).logits,
                               model(IDS[:, :5], use_cache=False).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("thing", [torch.nn.Linear(4, 4), {"config": {}}, None, "gpt2",
                                   "probattn GPT", torch.nn.Sequential()])
def test_use_probattn_attention_on_what_is_not_a_transformers_model_says_so(thing):
    from probattn.errors import UnsupportedModel
    from probattn.model import GPT, GPTConfig

    if thing == "probattn GPT":
        thing = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(UnsupportedModel) as info:
        use_probattn_attention(thing, "gpam")
    message = str(info.value)
    assert "\n" not in message and message.startswith("use_probattn_attention needs a transformers model "
                                                      "(a PreTrainedModel), got ")
    assert isinstance(info.value, ConfigError)  # caught where configuration errors are


def _saved(tmp_path, name):
    folder = tmp_path / name
    tiny_llama().save_pretrained(folder)
    return folder


def test_folders_that_need_custom_code_or_unpickling_are_refused(tmp_path):
    """Nothing from such a folder is run or unpickled: the refusal comes before transformers reads it."""
    import json

    from probattn.errors import DataError

    custom = _saved(tmp_path, "custom")
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling_evil.py").write_text("raise SystemExit('custom code ran')\n")
    tok = _saved(tmp_path, "custom-tokenizer")
    (tok / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["tok.Evil", None]}}))
    pickled = _saved(tmp_path, "pickled")  # the weights as an older transformers pickled them
    torch.save(tiny_llama().state_dict(), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    broken = _saved(tmp_path, "broken")
    (broken / "config.json").write_text("[1, 2]")
    cases = [(custom, "needs custom code (config.json has an auto_map: AutoModelForCausalLM); probattn never "
                      "runs code from a model folder"),
             (tok, "needs custom code (tokenizer_config.json has an auto_map: AutoTokenizer)"),
             (pickled, "holds its weights only as pickles (pytorch_model.bin); probattn never unpickles"),
             (broken, "config.json must be a JSON object, got list")]
    for folder, words in cases:
        with pytest.raises(DataError) as info:
            load_pretrained(folder)
        assert words in str(info.value), str(info.value)
    # safetensors beside a pickle: the pickle is never read
    both = _saved(tmp_path, "both")
    (both / "pytorch_model.bin").write_bytes(b"not even a pickle")
    torch.testing.assert_close(load_pretrained(both)(IDS).logits, tiny_llama()(IDS).logits)
