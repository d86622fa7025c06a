"""Shared benchmark helpers: device description, timing, peak memory, subprocess isolation."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from probattn.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Wall time of one ``fn()`` in seconds, the device synchronised before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def median_time(fn, device: torch.device, repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    times = sorted(timed(fn, device) for _ in range(repeats))
    return times[len(times) // 2]


def interleaved_times(fns: dict, device: torch.device | str, rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times (seconds) of ``rounds`` calls of each ``fns[name]()``. The functions take turns
    in every round, so drift on a shared machine hits them alike; ``warmup`` untimed rounds first."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(v) for name, v in times.items()}


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or this process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cuda_extra_peak_mib(fn) -> float:
    """Peak CUDA memory (MiB) one ``fn()`` allocates above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def write_json(path: str | Path, data) -> None:
    """``data`` as indented JSON; its folder is made, and the file is never half-written."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def run_isolated(script: Path, args: list[str]) -> dict:
    """Run one measurement in a fresh process (so peak memory is its own) and read its JSON."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
