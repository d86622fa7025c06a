"""Training throughput (tokens/s, ms/step) and peak memory of the presets.

    python benchmarks/train_throughput.py                        # quick + shakespeare-char, this device
    python benchmarks/train_throughput.py --presets quick --steps 30

Each preset runs in its own process through the real Trainer (AdamW, clipping, autocast and
compile on CUDA) with evaluation and checkpoints pushed out of the timed window. On a GPU the
shakespeare-char line is comparable to nanoGPT's reference: 13.5 ms/step on one H100 (torch 2.11,
compiled), best validation loss 1.4665.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import describe_device, peak_memory_mb, run_isolated, synchronize, write_json  # noqa: E402

NANOGPT_H100_MS = 13.5


def worker(preset: str, steps: int, warmup: int, device: str, data_dirs: list[str]) -> dict:

    from probattn.data import load_corpus
    from probattn.errors import DataError
    from probattn.train import Callback, Trainer, apply_overrides, preset_config

    cfg = preset_config(preset)
    corpus = cfg.data.corpus
    try:
        load_corpus(corpus, data_dirs, download=False)
    except DataError:
        corpus = "default"  # throughput does not depend on which text it is
    total = warmup + steps
    cfg = apply_overrides(cfg, {
        "train": {"max_steps": total, "eval_interval": 10**6, "checkpoint_interval": 10**6,
                  "log_interval": 10**6, "device": device, "eval_batches": 1},
        "data": {"corpus": corpus, "data_dirs": tuple(data_dirs)},
    })

    stamps: list[float] = []

    class Clock(Callback):
        def on_step_end(self, trainer, step, record):
            synchronize(trainer.device)
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", callbacks=[Clock()], progress=False)
        trainer.fit()
        dev = trainer.device
        per_step = sorted(b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:]))
        ms = 1000 * per_step[len(per_step) // 2]
        return {
            "preset": preset, "corpus": corpus, "device": describe_device(dev),
            "ms_per_step": ms, "tokens_per_s": trainer.tokens_per_step / (ms / 1000),
            "peak_memory_mb": peak_memory_mb(dev), "params": trainer.model.num_params(),
            "compiled": cfg.train.compile == "on" or (cfg.train.compile == "auto" and dev.type == "cuda"),
            "amp_bf16": trainer.use_amp,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["quick", "shakespeare-char"])
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 CPU quick, 5 CPU others, 100 GPU)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--device", default="auto")
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    p.add_argument("--data-dir", action="append", default=[str(shared)])
    p.add_argument("--json", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    import torch

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.warmup, args.device, args.data_dir)))
        return
    rows = []
    for preset in args.presets:
        steps = args.steps or (100 if cuda else (20 if preset in ("quick", "tiny") else 5))
        warmup = args.warmup or (20 if cuda else 3)
        rows.append(run_isolated(Path(__file__), ["--worker", preset, "--steps", str(steps),
                                                  "--warmup", str(warmup), "--device", args.device,
                                                  *sum((["--data-dir", d] for d in args.data_dir), [])]))
    print(f"device: {rows[0]['device']}")
    print(f"{'preset':<18}{'params':>10}{'ms/step':>11}{'tokens/s':>12}{'peak MB':>10}  notes")
    for r in rows:
        notes = []
        if r["compiled"]:
            notes.append("compiled")
        if r["amp_bf16"]:
            notes.append("bf16")
        if r["preset"] == "shakespeare-char" and "CPU" not in r["device"]:
            ratio = r["ms_per_step"] / NANOGPT_H100_MS
            notes.append(f"nanoGPT H100 reference {NANOGPT_H100_MS} ms -> ratio {ratio:.2f}x")
        print(f"{r['preset']:<18}{r['params'] / 1e6:>9.2f}M{r['ms_per_step']:>11.1f}{r['tokens_per_s']:>12,.0f}"
              f"{r['peak_memory_mb']:>10.0f}  {', '.join(notes)}")
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
