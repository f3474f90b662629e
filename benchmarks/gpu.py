"""Section ``gpu``: what only a GPU machine can measure; a placeholder row elsewhere.

On a GPU every other section runs there too (jax's default device, and torch
on CUDA when it can), so this section adds only the GPU's own reference
numbers: its device, memory, and float32 / bfloat16 matmul FLOP/s.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from benchmarks.report import Section
from benchmarks.settings import Settings
from benchmarks.timing import interleaved, summarize

GPU_PLATFORMS = ("gpu", "cuda", "rocm")


def on_gpu() -> bool:
    """Whether jax's default device is a GPU."""
    return jax.devices()[0].platform in GPU_PLATFORMS


def run(settings: Settings) -> Section:
    """Measures the section (only on a GPU)."""
    section = Section(
        key="gpu",
        title="GPU",
        intro=(
            "Filled in when the suite runs on a GPU machine (jax's default device is a GPU): "
            "`python -m benchmarks --out BENCHMARKS_gpu.md` there runs every section on the "
            "GPU, and this one adds the GPU's reference numbers."
        ),
        columns=["quantity", "value"],
    )
    device = jax.devices()[0]
    if not on_gpu():
        section.rows.append(["GPU", f"not measured: no GPU on this machine ({device.platform})"])
        return section
    section.rows.append(["device", f"{device.device_kind} ({len(jax.devices())} visible)"])
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # Not every backend reports it.
        limit = None
    if limit:
        section.rows.append(["memory available to jax", f"{limit / 2**30:.1f} GiB"])
    n = 1024 if settings.tiny else 8192
    for dtype in (jnp.float32, jnp.bfloat16):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        matmul = functools.partial(jax.jit(jnp.matmul), a, b)
        t = summarize(interleaved({"mm": matmul}, settings.repeats, warmup=2).wall["mm"])
        rate = t.inverse(2 * n**3 / 1e12)
        name = jnp.dtype(dtype).name
        section.rows.append([f"{n}x{n} {name} matmul TFLOP/s (default precision)", rate.fmt()])
    return section
