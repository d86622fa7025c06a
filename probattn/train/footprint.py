"""The memory a training run needs, estimated before any weight or batch is allocated.

Weights, gradients and AdamW's two moments are four float32 copies of the parameters (counted
exactly on the ``meta`` device, where building a model allocates nothing). Activations kept for
the backward pass follow Korthikanti et al. (2022), "Reducing activation recomputation in large
transformer models": per token and layer about ``34 h + 5 a s`` bytes in 16-bit precision (width
``h``, ``a`` heads, context ``s``), doubled here for float32, plus the logits over the vocabulary
and their gradient. Evaluation batches are held as int64 tokens. A rough upper estimate: its job
is to refuse a batch or vocabulary a thousand times too large with one line, not to plan memory.
"""

from __future__ import annotations

import torch

from ..memory import available_memory, check_fits, human_bytes

FLOAT = 4  # bytes of a float32
TOKEN = 8  # bytes of an int64 token id


def _shape(model_config) -> tuple[int, int, int, int]:
    """(layers, width, heads, context) of a GPT or an encoder-decoder configuration."""
    layers = getattr(model_config, "n_layer", None)
    if layers is None:
        layers = model_config.n_enc_layer + 2 * model_config.n_dec_layer  # a decoder layer also cross-attends
    context = getattr(model_config, "block_size", None) or model_config.max_len
    return layers, model_config.n_embd, model_config.n_head, context


def count_parameters(build_model, model_config) -> int:
    with torch.device("meta"):
        model = build_model(model_config)
    return sum(p.numel() for p in model.parameters())


def training_bytes(n_params: int, model_config, batch_size: int, eval_batches: int) -> float:
    """Bytes for one micro-batch of ``batch_size`` sequences at full context (the peak)."""
    layers, width, heads, context = _shape(model_config)
    tokens = batch_size * context
    per_token = layers * 2 * (34 * width + 5 * heads * context) + 3 * FLOAT * model_config.vocab_size
    return 4 * FLOAT * n_params + tokens * per_token + 2 * TOKEN * tokens * eval_batches


def fewest_parameters(model_config) -> int:
    """A lower bound on the parameters, from the shape alone: each layer's four attention
    projections, the token embedding and learned positions where the model has them."""
    layers, width, _, context = _shape(model_config)
    positions = context * width if hasattr(model_config, "block_size") else 0
    return layers * 4 * width * width + model_config.vocab_size * width + positions


def check_training_memory(trainer) -> None:
    """Refuse, before allocating, a run that cannot fit (called by each task's ``prepare``).

    The bound from the shape comes first: a model too large to fit is refused before even its
    ``meta`` copy is built (a billion layers would take hours to build, an embedding beyond 2^63
    elements cannot be built at all)."""
    cfg, t = trainer.model_config, trainer.config.train
    n_params = fewest_parameters(cfg)
    if training_bytes(n_params, cfg, t.batch_size, t.eval_batches) <= (available_memory() or float("inf")):
        n_params = count_parameters(trainer.task.build_model, cfg)
    need = training_bytes(n_params, cfg, t.batch_size, t.eval_batches)
    context = "--block-size" if hasattr(cfg, "block_size") else "--max-len"
    vocab = "" if hasattr(cfg, "block_size") else ", --vocab-size"
    check_fits(need, f"training {n_params:,} parameters ({human_bytes(4 * FLOAT * n_params)} with gradients "
               f"and AdamW) on batches of {t.batch_size} x {_shape(cfg)[3]} tokens over {cfg.vocab_size:,} "
               "possible tokens", f"lower --batch-size (--grad-accum keeps the effective batch), {context}, "
               f"--n-embd, --n-layer{vocab} or --eval-batches")
