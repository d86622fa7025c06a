"""Hugging Face ``transformers`` models with probattn (the ``hf`` extra: ``pip install 'probattn[hf]'``).

    from transformers import AutoModelForCausalLM
    from probattn.integrations.hf import use_probattn_attention, load_pretrained

    model = AutoModelForCausalLM.from_pretrained("...")
    use_probattn_attention(model, "gpam", {"trainable": True})   # every attention layer
    model(**batch).loss.backward()                                # W_Q- and lambda train with it
    model.save_pretrained("out")                                  # records the mechanism in config.json
    model = load_pretrained("out")                                # the one call that restores it

Modules: ``attention`` (the attention swap, masks and caches), ``saving`` (save / load round
trip), ``margins`` (margins and support tokens of any causal LM), ``training`` (barrier loss,
Trainer), ``convert`` (pretrained softmax -> daGPAM / diff at unchanged output), ``pretrained``
(the offline SmolLM2 wheel). transformers is imported only when a function needs it.
"""

from .attention import (
    CONFIG_KEY,
    IMPLEMENTATION,
    MECHANISM_ATTR,
    attention_modules,
    probattn_attention_forward,
    register_probattn_implementation,
    use_probattn_attention,
)
from .saving import load_pretrained

__all__ = ["CONFIG_KEY", "IMPLEMENTATION", "MECHANISM_ATTR", "attention_modules", "load_pretrained",
           "probattn_attention_forward", "register_probattn_implementation", "use_probattn_attention"]
