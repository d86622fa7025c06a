"""Tiny transformers models built from configs (no downloads) for the Hugging Face tests."""

import inspect

import torch
import transformers

from .mechanisms import MODEL_OPTIONS

VOCAB = 40

#: options that make each mechanism differ from softmax everywhere in a 2-layer model
MECHANISMS = MODEL_OPTIONS


def tiny_llama(seed=0, **overrides):
    cfg = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
               bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()


def tiny_gpt2(seed=0, **overrides):
    cfg = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1,
               eos_token_id=2, pad_token_id=0)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).eval()


def tiny_mistral(seed=0, **overrides):
    cfg = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
               sliding_window=4, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return transformers.MistralForCausalLM(transformers.MistralConfig(**cfg)).eval()


BUILDERS = {"gpt2": tiny_gpt2, "llama": tiny_llama, "mistral": tiny_mistral}

#: the keyword that takes a cache (transformers 5.x renamed past_key_values)
CACHE_KW = ("cache" if "cache" in inspect.signature(transformers.LlamaModel.forward).parameters
            else "past_key_values")


def ids(batch=2, length=12, seed=0):
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


CHARS = "abcdefghijklmnopqrstuvwxyz .,;'-!<>\n"  # 3 special tokens + 36 characters + unk = VOCAB


def char_tokenizer():
    """A character-level fast tokenizer saved like any other (no downloads)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}, "<unk>": 3 + len(CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                                eos_token="<eos>", unk_token="<unk>")


def saved_model(folder, build=None, attention=None, options=None):
    """A tiny model and its tokenizer saved in ``folder`` (optionally with a probattn mechanism)."""
    from probattn.integrations.hf import use_probattn_attention

    model = (build or tiny_gpt2)()
    if attention:
        use_probattn_attention(model, attention, options or {})
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return model
