"""An encoder-decoder Transformer (Vaswani et al. 2017, fairseq's layout) with pluggable attention.

Source tokens -> scaled embedding + positions -> encoder layers (bidirectional self-attention over
the real source tokens) -> memory. Target tokens (BOS-prefixed) -> decoder layers (causal
self-attention, cross-attention to the memory, ReLU FFN) -> output projection. Each of the three
attention kinds takes its mechanism by name from the registry; Pre-LN or Post-LN; sinusoidal or
learned positions; shared or separate embeddings.

Padding: sequences are right-padded with ``pad_id``. Source padding is a key padding mask for the
encoder and for cross-attention; target padding needs no mask (causal queries never see later
positions, and the loss ignores padded targets).

Hook names follow the GPT's: ``encoder.{l}.attn.hook_pattern``, ``decoder.{l}.attn.hook_q``,
``decoder.{l}.cross_attn.hook_pattern``, ``decoder.{l}.hook_resid_post``...
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import AttentionContext, build_attention
from .hooks import HookedMixin, HookPoint, attend, through
from .seq2seq_config import Seq2SeqConfig

Cache = list[dict[str, dict[str, Tensor]]]


def sinusoidal_positions(n: int, dim: int) -> Tensor:
    """fairseq's table: sin over the first half of the features, cos over the second."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(n, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()


class Attention(nn.Module):
    """Multi-head attention of one kind ("encoder", "decoder" or "cross") over a mechanism."""

    def __init__(self, config: Seq2SeqConfig, kind: str, layer_idx: int, n_layer: int):
        super().__init__()
        C = config.n_embd
        self.kind = kind
        self.causal = kind == "decoder"
        self.n_head, self.head_dim = config.n_head, config.head_dim
        if kind == "cross":
            self.q_proj = nn.Linear(C, C, bias=config.bias)
            self.kv_proj = nn.Linear(C, 2 * C, bias=config.bias)
        else:
            self.qkv_proj = nn.Linear(C, 3 * C, bias=config.bias)
        self.out_proj = nn.Linear(C, C, bias=config.bias)
        ctx = AttentionContext(n_head=config.n_head, head_dim=config.head_dim, layer_idx=layer_idx,
                               n_layer=n_layer, block_size=config.max_len, dropout=config.attn_dropout,
                               options=dict(config.attention_options(kind)))
        self.mechanism = build_attention(config.attention(kind), ctx)
        self.hook_q = HookPoint()  # (batch, pos, head, d_head)
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_pattern = HookPoint()  # (batch, head, query, key); computed only when hooked
        self.hook_z = HookPoint()  # per-head outputs (batch, pos, head, d_head)

    def _heads(self, x: Tensor, hook: HookPoint) -> Tensor:
        B, T, _ = x.shape
        return through(hook, x.view(B, T, self.n_head, self.head_dim)).transpose(1, 2)

    def forward(self, x: Tensor, memory: Tensor | None = None, attn_mask: Tensor | None = None,
                cache: dict[str, Tensor] | None = None) -> Tensor:
        B, T, C = x.shape
        if self.kind == "cross":
            q = self._heads(self.q_proj(x), self.hook_q)
            if cache is not None and "k" in cache:  # the memory's keys/values, projected once
                k, v = cache["k"], cache["v"]
            else:
                k_raw, v_raw = self.kv_proj(memory).split(C, dim=2)
                k, v = self._heads(k_raw, self.hook_k), self._heads(v_raw, self.hook_v)
                if cache is not None:
                    cache["k"], cache["v"] = k, v
        else:
            q_raw, k_raw, v_raw = self.qkv_proj(x).split(C, dim=2)
            q, k, v = self._heads(q_raw, self.hook_q), self._heads(k_raw, self.hook_k), self._heads(v_raw, self.hook_v)
            if cache is not None:  # decoder: append this step's keys/values to the past ones
                if "k" in cache:
                    k, v = torch.cat((cache["k"], k), dim=2), torch.cat((cache["v"], v), dim=2)
                cache["k"], cache["v"] = k, v
        y = attend(self.mechanism, self.hook_pattern, q, k, v, causal=self.causal, attn_mask=attn_mask)
        z = self.hook_z(y.transpose(1, 2))
        return self.out_proj(z.reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.n_embd, config.ffn, bias=config.bias)
        self.fc2 = nn.Linear(config.ffn, config.n_embd, bias=config.bias)
        self.act_dropout = nn.Dropout(config.act_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act_dropout(F.relu(self.fc1(x))))


class _Sublayers(nn.Module):
    """Residual sublayers in Pre-LN (x + f(LN x)) or Post-LN (LN(x + f(x))) arrangement."""

    def __init__(self, config: Seq2SeqConfig, n: int):
        super().__init__()
        self.pre = config.norm == "pre"
        self.norms = nn.ModuleList(nn.LayerNorm(config.n_embd) for _ in range(n))
        self.dropout = nn.Dropout(config.dropout)

    def residual(self, i: int, x: Tensor, f, out_hook: HookPoint) -> Tensor:
        if self.pre:
            return x + out_hook(self.dropout(f(self.norms[i](x))))
        return self.norms[i](x + out_hook(self.dropout(f(x))))


class EncoderLayer(_Sublayers):
    def __init__(self, config: Seq2SeqConfig, layer_idx: int):
        super().__init__(config, 2)
        self.attn = Attention(config, "encoder", layer_idx, config.n_enc_layer)
        self.mlp = FeedForward(config)
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            setattr(self, name, HookPoint())

    def forward(self, x: Tensor, src_mask: Tensor) -> Tensor:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(self.residual(0, x, lambda h: self.attn(h, attn_mask=src_mask), self.hook_attn_out))
        return self.hook_resid_post(self.residual(1, x, self.mlp, self.hook_mlp_out))


class DecoderLayer(_Sublayers):
    def __init__(self, config: Seq2SeqConfig, layer_idx: int):
        super().__init__(config, 3)
        self.attn = Attention(config, "decoder", layer_idx, config.n_dec_layer)
        self.cross_attn = Attention(config, "cross", layer_idx, config.n_dec_layer)
        self.mlp = FeedForward(config)
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_cross_out",
                     "hook_resid_cross", "hook_mlp_out", "hook_resid_post"):
            setattr(self, name, HookPoint())

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor, cache: dict | None = None) -> Tensor:
        self_cache = cross_cache = None
        if cache is not None:
            self_cache, cross_cache = cache.setdefault("self", {}), cache.setdefault("cross", {})
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(self.residual(0, x, lambda h: self.attn(h, cache=self_cache), self.hook_attn_out))
        x = self.hook_resid_cross(self.residual(
            1, x, lambda h: self.cross_attn(h, memory, attn_mask=src_mask, cache=cross_cache), self.hook_cross_out))
        return self.hook_resid_post(self.residual(2, x, self.mlp, self.hook_mlp_out))


class Seq2Seq(HookedMixin, nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        C, V = config.n_embd, config.vocab_size
        self.tgt_embed = nn.Embedding(V, C, padding_idx=config.pad_id)
        self.src_embed = self.tgt_embed if config.share == "all" else nn.Embedding(V, C, padding_idx=config.pad_id)
        self.embed_scale = math.sqrt(C)
        if config.positions == "learned":
            self.src_pos = nn.Embedding(config.max_len, C)
            self.tgt_pos = nn.Embedding(config.max_len, C)
        else:
            self.register_buffer("pos_table", sinusoidal_positions(config.max_len, C), persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(config, i) for i in range(config.n_enc_layer))
        self.decoder = nn.ModuleList(DecoderLayer(config, i) for i in range(config.n_dec_layer))
        pre = config.norm == "pre"  # Pre-LN stacks end in a LayerNorm; Post-LN layers already end in one
        self.enc_ln = nn.LayerNorm(C) if pre else nn.Identity()
        self.dec_ln = nn.LayerNorm(C) if pre else nn.Identity()
        self.lm_head = nn.Linear(C, V, bias=False)
        self.hook_src_embed = HookPoint()
        self.hook_tgt_embed = HookPoint()
        self.hook_memory = HookPoint()  # encoder output (batch, src pos, d_model)
        self._init_weights()
        if config.share != "none":
            self.lm_head.weight = self.tgt_embed.weight
        self._name_hook_points()

    def _init_weights(self) -> None:
        # fairseq's transformer: Xavier-uniform projections, N(0, d^-1/2) embeddings, zero pad row
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=self.config.n_embd ** -0.5)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()

    def num_params(self, non_embedding: bool = False) -> int:
        """Unique parameters (tied matrices once); ``non_embedding`` drops learned position tables."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once
        if non_embedding and self.config.positions == "learned":
            n -= self.src_pos.weight.numel() + self.tgt_pos.weight.numel()
        return n

    # -- pieces --------------------------------------------------------------------------------
    def _embed(self, tokens: Tensor, embed: nn.Embedding, which: str, start: int, hook: HookPoint) -> Tensor:
        T = tokens.shape[1]
        if start + T > self.config.max_len:
            raise ValueError(f"{which} length {start + T} exceeds max_len {self.config.max_len}")
        pos = torch.arange(start, start + T, device=tokens.device)
        table = getattr(self, f"{which}_pos")(pos) if self.config.positions == "learned" else self.pos_table[pos]
        return self.drop(hook(embed(tokens) * self.embed_scale) + table.to(embed.weight.dtype))

    def source_mask(self, src: Tensor) -> Tensor:
        """(B, 1, 1, S) key padding mask: True on real source tokens."""
        return (src != self.config.pad_id)[:, None, None, :]

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """``(memory (B, S, C), source mask (B, 1, 1, S))``."""
        src_mask = self.source_mask(src)
        x = self._embed(src, self.src_embed, "src", 0, self.hook_src_embed)
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.hook_memory(self.enc_ln(x)), src_mask

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor, cache: Cache | None = None,
               start: int = 0) -> Tensor:
        """Logits for target tokens at positions ``start..``; ``cache`` carries earlier steps."""
        x = self._embed(tgt, self.tgt_embed, "tgt", start, self.hook_tgt_embed)
        for i, layer in enumerate(self.decoder):
            x = layer(x, memory, src_mask, None if cache is None else cache[i])
        return self.lm_head(self.dec_ln(x))

    def new_cache(self) -> Cache:
        return [{} for _ in self.decoder]

    @staticmethod
    def reorder_cache(cache: Cache, index: Tensor) -> Cache:
        """Select batch rows ``index`` of every cached tensor (beam search)."""
        return [{kind: {name: t.index_select(0, index) for name, t in part.items()}
                 for kind, part in layer.items()} for layer in cache]

    def forward(self, src: Tensor, tgt: Tensor, targets: Tensor | None = None):
        """``(logits, loss)``; loss is the mean cross-entropy over non-pad targets (no smoothing)."""
        memory, src_mask = self.encode(src)
        logits = self.decode(tgt, memory, src_mask)
        loss = None
        if targets is not None:
            wide = torch.promote_types(logits.dtype, torch.float32)  # float64 stays float64
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).to(wide), targets.reshape(-1),
                                   ignore_index=self.config.pad_id)
        return logits, loss
