"""Timing helpers shared by the benchmark scripts: medians, the PyTorch device, and the
measured matmul peak that achieved TFLOP/s are compared against."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: bool = False) -> float:
    """Median wall time of `repeats` calls of `fn` (after one untimed call if `warmup`)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(*fns: Callable[[], object], repeats: int) -> list[float]:
    """Median wall times of each of `fns`, timed in turn (a, b, ..., a, b, ...), so drift in
    the machine's speed (shared hosts, thermal) hits all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def torch_device() -> str:
    """Where the PyTorch reference runs: the GPU when PyTorch sees one (as ours does)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_synced(fn: Callable[[], object]) -> Callable[[], object]:
    """`fn` followed by a device synchronisation, so wall time covers the GPU work."""
    import torch

    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out

    return run


def matmul_peak_tflops(dtype: str = "bfloat16", size: int = 8192, repeats: int = 5) -> float:
    """Measured TFLOP/s of one (size x size) @ (size x size) matmul in `dtype` with jax on the
    default device: the practical peak that model TFLOP/s are a fraction of."""
    import jax
    import jax.numpy as jnp

    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size), dtype)
    b = jax.random.normal(key_b, (size, size), dtype)
    matmul = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    seconds = median_seconds(lambda: jax.block_until_ready(matmul(a, b)), repeats,
                             warmup=True)
    return 2 * size**3 / seconds / 1e12


def flop_count(jitted: Callable, *args) -> float | None:
    """XLA's FLOP count of `jitted(*args)`, from the lowered program (no second compilation;
    None when the backend gives none)."""
    analysis = jitted.lower(*args).cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None
