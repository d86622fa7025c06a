"""Forward + backward time and peak memory of gpam, diff, cog, and daGPAM's rivals (nap, non, coda,
diff2) over softmax, side by side.

    python benchmarks/gpam_attention.py                       # CPU: B=1, H=4, d=32
    python benchmarks/gpam_attention.py --lengths 256 1024    # fewer contexts
    python benchmarks/gpam_attention.py --device cuda         # GPU: B=16, H=6, d=64, bf16
    python benchmarks/gpam_attention.py --device cuda --compile on   # as training runs it on CUDA

Two levels: the mechanism alone (q, k, v -> y, what the paper's 1.9x / 6.2x numbers measure)
and the whole attention sublayer (qkv projection, mechanism, output projection). Targets from
issue 4 (for daGPAM): at most 2.0x softmax time and 2.2x softmax memory at every length; the
verdict column applies them to every mechanism alike.

Time: median of --repeats runs after a warm-up, mechanisms interleaved in each round so that
drift on a shared machine hits them alike. Memory: on CUDA, ``max_memory_allocated`` above what
the inputs hold; on CPU, each configuration runs in a fresh subprocess that resets the kernel's
peak-RSS counter (/proc/self/clear_refs) once its inputs exist (after a small warm-up) and reads
VmHWM after one forward + backward: the extra resident memory the step needed at its peak, with
glibc's mmap threshold fixed so freed tensors leave RSS (tracemalloc does not see torch's
allocations, so it would be wrong here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cuda_extra_peak_mib, interleaved_times, medians  # noqa: E402
from probattn.attention import AttentionContext, build_attention  # noqa: E402
from probattn.model import GPTConfig  # noqa: E402
from probattn.model.gpt import CausalSelfAttention  # noqa: E402

MECHANISMS = {
    "softmax": ("softmax", {}),
    "gpam": ("gpam", {}),  # default: two SDPA calls
    "gpam-gqa": ("gpam", {"kernel": "gqa"}),  # one SDPA call, 2H query heads over H K/V heads
    "diff": ("diff", {}),
    "cog": ("cog", {"softmax_first_last": False}),
    "nap": ("nap", {}),  # materialised T x T (normalised scores), no softmax kernel applies
    "non": ("non", {}),  # linear attention's chunks, rescaled rows
    "coda": ("coda", {}),  # materialised T x T (tanh x sigmoid of an L1 distance)
    "diff2": ("diff2", {}),  # one SDPA call over 2H query heads
}
TIME_TARGET, MEMORY_TARGET = 2.0, 2.2


def make_step(name: str, level: str, B: int, H: int, D: int, T: int, device: str, dtype: torch.dtype,
              compiled: bool = False):
    """A closure running one forward + backward, and the tensors it keeps alive."""
    mech_name, options = MECHANISMS[name]
    torch.manual_seed(0)
    if level == "mechanism":
        ctx = AttentionContext(n_head=H, head_dim=D, layer_idx=1, n_layer=3, block_size=T, options=options)
        module = build_attention(mech_name, ctx).to(device=device, dtype=dtype)
        run = torch.compile(module) if compiled else module
        inputs = [torch.randn(B, H, T, D, device=device, dtype=dtype, requires_grad=True) for _ in range(3)]

        def step():
            y = run(*inputs)[0]
            y.backward(torch.ones_like(y))
    else:
        config = GPTConfig(vocab_size=1, block_size=T, n_layer=3, n_head=H, n_embd=H * D,
                           attention=mech_name, attention_options=options)
        module = CausalSelfAttention(config, 1).to(device=device, dtype=dtype)
        run = torch.compile(module) if compiled else module
        inputs = [torch.randn(B, T, H * D, device=device, dtype=dtype, requires_grad=True)]

        def step():
            y = run(inputs[0])
            y.backward(torch.ones_like(y))
    return step, (module, inputs)


def time_all(names, level, args, T, device, dtype) -> dict[str, float]:
    steps = {n: make_step(n, level, args.batch, args.heads, args.head_dim, T, device, dtype, args.compiled)[0]
             for n in names}
    return medians(interleaved_times(steps, device, args.repeats))  # one warm-up round (allocator, kernels)


def cuda_memory(name, level, args, T, device, dtype) -> float:
    torch.cuda.empty_cache()
    step, _keep = make_step(name, level, args.batch, args.heads, args.head_dim, T, device, dtype, args.compiled)
    step()  # warm-up: lazily created kernels/workspaces are not the mechanism's memory
    return cuda_extra_peak_mib(step)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cpu_memory_child(name, level, args, T) -> None:
    """Runs in a fresh process: print the peak extra RSS (MiB) of one forward + backward."""
    # a small warm-up loads the kernels' lazily initialised state (thread pools, libraries)
    make_step(name, level, args.batch, args.heads, args.head_dim, 16, "cpu", torch.float32)[0]()
    step, _keep = make_step(name, level, args.batch, args.heads, args.head_dim, T, "cpu", torch.float32)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    step()
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - base) / 1024}))


def cpu_memory(name, level, args, T) -> float:
    cmd = [sys.executable, __file__, "--memory-child", name, level, str(T),
           "--batch", str(args.batch), "--heads", str(args.heads), "--head-dim", str(args.head_dim)]
    # a fixed mmap threshold: large tensors are mapped and unmapped, so RSS follows live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--head-dim", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--levels", nargs="+", default=["mechanism", "layer"], choices=["mechanism", "layer"])
    p.add_argument("--mechanisms", nargs="+", default=list(MECHANISMS), choices=list(MECHANISMS))
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--compile", default="off", choices=["on", "off"],
                   help="torch.compile each mechanism (what training on CUDA does): fuses the glue")
    p.add_argument("--memory-child", nargs=3, metavar=("NAME", "LEVEL", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    gpu = device.startswith("cuda")
    args.batch = args.batch or (16 if gpu else 1)
    args.heads = args.heads or (6 if gpu else 4)
    args.head_dim = args.head_dim or (64 if gpu else 32)
    if args.memory_child:
        name, level, T = args.memory_child
        cpu_memory_child(name, level, args, int(T))
        return
    dtype = torch.bfloat16 if gpu else torch.float32
    args.compiled = args.compile == "on"
    if args.compiled:
        # every mechanism shares AttentionMechanism.forward: one compiled entry per (type, length),
        # beyond dynamo's default limit of 8, after which it would silently run eagerly
        for limit in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, limit):
                setattr(torch._dynamo.config, limit, 256)
    names = ["softmax"] + [n for n in args.mechanisms if n != "softmax"]
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({where}); torch {torch.__version__}; {dtype}; "
          f"B={args.batch}, H={args.heads}, d={args.head_dim}; forward+backward, median of {args.repeats}; "
          f"{'compiled' if args.compiled else 'eager'}")
    print(f"targets: time <= {TIME_TARGET}x softmax, memory <= {MEMORY_TARGET}x softmax")
    for level in args.levels:
        print(f"\n== {level} level ==")
        header = (f"{'T':>6} {'mechanism':<11} {'time ms':>10} {'x softmax':>10} {'peak MiB':>10} "
                  f"{'x softmax':>10}  verdict")
        print(header)
        for T in args.lengths:
            times = time_all(names, level, args, T, device, dtype)
            memory = {}
            if not args.no_memory:
                for n in names:
                    memory[n] = (cuda_memory(n, level, args, T, device, dtype) if gpu
                                 else cpu_memory(n, level, args, T))
            for n in names:
                t_ratio = times[n] / times["softmax"]
                m_text, m_ratio = "", float("nan")
                if memory:
                    m_ratio = memory[n] / max(memory["softmax"], 1e-9)
                    m_text = f"{memory[n]:10.1f} {m_ratio:9.2f}x"
                verdict = ""
                if n != "softmax":
                    ok_t = t_ratio <= TIME_TARGET
                    ok_m = not memory or m_ratio <= MEMORY_TARGET
                    verdict = ("time ok" if ok_t else "time MISS") + (", memory ok" if ok_m else ", memory MISS") \
                        if memory else ("time ok" if ok_t else "time MISS")
                print(f"{T:>6} {n:<11} {times[n] * 1e3:10.2f} {t_ratio:9.2f}x {m_text or ' ' * 21}  {verdict}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
