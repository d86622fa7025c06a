"""A small GPT in nanoGPT's architecture with a pluggable attention mechanism.

token + position embeddings -> n_layer blocks (attention, GELU MLP) -> tied output head.
Pre-LN (default): ``x + f(LN x)`` per sublayer and a final LayerNorm; Post-LN
(``norm_position="post"``): ``LN(x + f(x))`` and no final LayerNorm (each block already ends in
one). The attention mechanism is chosen by name (``GPTConfig.attention``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import AttentionContext, build_attention
from .config import GPTConfig
from .hooks import HookedMixin, HookPoint, attend, through


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's cannot drop only the bias before 2.1)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        ctx = AttentionContext(
            n_head=config.n_head,
            head_dim=config.head_dim,
            layer_idx=layer_idx,
            n_layer=config.n_layer,
            block_size=config.block_size,
            dropout=config.dropout,
            options=dict(config.attention_options),
        )
        self.mechanism = build_attention(config.attention, ctx)
        self.hook_q = HookPoint()  # (batch, pos, head, d_head)
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_pattern = HookPoint()  # (batch, head, query, key); computed only when hooked
        self.hook_z = HookPoint()  # per-head outputs (batch, pos, head, d_head)

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-head q, k, v in (batch, pos, head, d_head) layout, after their hooks."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        shape = (B, T, self.n_head, self.head_dim)
        pairs = ((self.hook_q, q), (self.hook_k, k), (self.hook_v, v))
        return tuple(through(hook, t.view(shape)) for hook, t in pairs)

    def forward(self, x: Tensor, qk_out: list | None = None) -> Tensor:
        B, T, C = x.shape
        q, k, v = (t.transpose(1, 2) for t in self.project_qkv(x))  # (B, H, T, D)
        if qk_out is not None:
            qk_out.append((q, k))
        y = attend(self.mechanism, self.hook_pattern, q, k, v)
        z = self.hook_z(y.transpose(1, 2))  # (B, T, H, D)
        return self.resid_dropout(self.c_proj(z.reshape(B, T, C)))



class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_width, bias=config.bias)
        self.c_proj = nn.Linear(config.mlp_width, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.pre = config.norm_position == "pre"
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def attention_input(self, resid_pre: Tensor) -> Tensor:
        """What the attention sublayer reads: ``ln_1(x)`` in Pre-LN, ``x`` itself in Post-LN."""
        return self.ln_1(resid_pre) if self.pre else resid_pre

    def forward(self, x: Tensor, qk_out: list | None = None) -> Tensor:
        x = self.hook_resid_pre(x)
        if self.pre:
            x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln_1(x), qk_out)))
            return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln_2(x))))
        x = self.hook_resid_mid(self.ln_1(x + self.hook_attn_out(self.attn(x, qk_out))))
        return self.hook_resid_post(self.ln_2(x + self.hook_mlp_out(self.mlp(x))))


class GPT(HookedMixin, nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        pre = config.norm_position == "pre"
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias) if pre else nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.hook_embed = HookPoint()  # token embeddings (batch, pos, d_model)
        self.hook_pos_embed = HookPoint()  # (batch, pos, d_model)
        self.hook_input = HookPoint()  # token + position, before dropout: what perturbations edit
        self.apply(self._init_weights)
        # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        self._name_hook_points()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def embed(self, idx: Tensor) -> Tensor:
        """Token + position embeddings (the input the residual stream starts from)."""
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device).expand(idx.shape[0], T)  # (batch, pos), as TransformerLens
        return self.hook_input(self.hook_embed(self.wte(idx)) + self.hook_pos_embed(self.wpe(pos)))

    def forward_embeddings(self, x: Tensor, qk_out: list | None = None) -> Tensor:
        """Logits from an input embedding sequence (after :meth:`embed`).

        ``qk_out``: a list that receives each layer's ``(q, k)`` (B, H, T, D), after their hooks.
        """
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, qk_out)
        return self.lm_head(self.ln_f(x))

    def forward(self, idx: Tensor, targets: Tensor | None = None, return_qk: bool = False):
        """Return ``(logits, loss)``; loss is mean cross-entropy when targets are given, over the
        targets that are not -1 (nanoGPT's ignore index), in float32 or the logits' wider dtype.
        Logits cover every position, also without targets (nanoGPT then keeps the last only).

        ``return_qk=True`` returns ``(logits, loss, qk)``, ``qk`` a list of every layer's ``(q, k)``
        of shape (B, H, T, D), after their hooks. This extra return mode is the one deliberate
        departure from nanoGPT's signature: the barrier's layer placement (``studies/support_tokens/gpt.py``)
        needs q and k from the same, possibly ``torch.compile``-d, pass that computes the loss;
        Python hooks would run it eagerly, and a separate method would be a second compiled graph
        of the same model. ``return_qk=False`` (the default) is nanoGPT's two-tuple.
        """
        qk: list[tuple[Tensor, Tensor]] | None = [] if return_qk else None
        logits = self.forward_embeddings(self.embed(idx), qk)
        loss = None
        if targets is not None:
            wide = torch.promote_types(logits.dtype, torch.float32)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).to(wide), targets.reshape(-1), ignore_index=-1)
        return (logits, loss, qk) if return_qk else (logits, loss)

    @torch.no_grad()
    def check_generate_args(self, idx: Tensor, max_new_tokens: int, temperature: float,
                            top_k: int | None) -> None:
        from ..errors import ConfigError
        from ..options import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT

        for name, value, rng in (("max_new_tokens", max_new_tokens, NON_NEGATIVE_INT),
                                 ("temperature", temperature, NON_NEGATIVE),
                                 ("top_k", top_k, None if top_k is None else POSITIVE_INT)):
            problem = rng.problem(value) if rng else None
            if problem:
                raise ConfigError(f"generate: {name} {problem}")
        if not isinstance(idx, Tensor) or idx.dim() != 2 or idx.shape[1] == 0:
            got = tuple(idx.shape) if isinstance(idx, Tensor) else type(idx).__name__
            raise ConfigError(f"generate: idx must be a (batch, time) tensor of token ids with time >= 1, got {got}")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise ConfigError(f"generate: idx must hold integer token ids, got {idx.dtype}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ConfigError(f"generate: token ids must be in [0, {self.config.vocab_size}), got "
                              f"{int(idx.min())}..{int(idx.max())}")

    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample continuations; ``temperature=0`` is greedy decoding.

        The arguments are checked as the command line checks its flags (a
        :class:`~probattn.errors.ConfigError` naming the argument): ``idx`` a (batch, time) tensor of
        token ids in ``[0, vocab_size)`` with time >= 1, ``max_new_tokens`` >= 0,
        ``temperature`` finite and >= 0, ``top_k`` a positive integer or None.
        """
        self.check_generate_args(idx, max_new_tokens, temperature, top_k)
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]
            logits = self(context)[0][:, -1, :].float()
            if temperature < torch.finfo(logits.dtype).tiny:  # the limit T -> 0+; below it T itself underflows
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = (logits - logits.amax(-1, keepdim=True)) / temperature  # <= 0: a tiny T gives -inf, never inf
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = logits.softmax(dim=-1)
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx
