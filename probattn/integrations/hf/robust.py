"""``probattn eval-robust --hf-model``: an HF causal LM behind the interface the evaluation uses.

:func:`probattn.robustness.evaluate_robustness` needs ``model(x)[0]`` (logits), ``embed(x)``,
``forward_embeddings(e)`` and ``config.block_size`` / ``vocab_size``. For an HF model the
embedding noise acts on its input embeddings (``inputs_embeds``: token embeddings; learned
position embeddings, as GPT-2's, are added inside the model after the noise).
"""

from __future__ import annotations

from types import SimpleNamespace

from torch import Tensor, nn

from .attention import text_config


class HFCausalLM(nn.Module):
    def __init__(self, model: nn.Module, block_size: int):
        super().__init__()
        self.hf = model
        self.config = SimpleNamespace(block_size=block_size, vocab_size=text_config(model.config).vocab_size)

    def forward(self, idx: Tensor):
        return (self.hf(idx, use_cache=False).logits,)

    def embed(self, idx: Tensor) -> Tensor:
        return self.hf.get_input_embeddings()(idx)

    def forward_embeddings(self, emb: Tensor) -> Tensor:
        return self.hf(inputs_embeds=emb, use_cache=False).logits
