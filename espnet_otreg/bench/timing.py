"""Timing and peak memory of a callable, for the benchmark scripts (``espnet_otreg.bin``)."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

import torch


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable, device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_mb(fn: Callable, device) -> Optional[float]:
    """Peak tensor memory of one call, in MB."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Replay the allocation trace: ops carry the bytes they allocate themselves,
    # "[memory]" events the bytes freed (negative), in time order.
    trace = []
    for e in prof.events():
        amount = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if amount:
            trace.append((e.time_range.start, amount))
    cur = peak = 0
    for _, amount in sorted(trace):
        cur += amount
        peak = max(peak, cur)
    return peak / 2**20
