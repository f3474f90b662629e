"""Fixed-size blocks of runs, one compiled program, dispatched device by device.

Why not one SPMD program sharded over devices: XLA compiles a vmapped block of
1-4 runs differently from a block of 8 or more, and an SPMD program for 2 or 4
devices differently from one for 1, so a run's float rounding (which SGD near
the edge of trainability amplifies to visible differences) would depend on the
device count and on the other runs in its program. Here every run is computed
by the same executable on a block of exactly ``block_size`` runs; runs are
independent under ``vmap``, so a run's numbers depend on its own inputs only,
whichever device, block or position it lands in. No collectives are needed.

Each device gets its own executable (XLA binds one to a device); they are
compiled in parallel threads (XLA releases the GIL while compiling), and
blocks are dispatched asynchronously, so the devices run concurrently.
Several hosts: each process computes the blocks ``i`` with
``i % process_count == process_index`` on its own devices, and the results are
all-gathered.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["BLOCK_SIZE", "run_blocks"]

BLOCK_SIZE = 8
"""Runs per block. XLA:CPU gives bit-identical per-run results for blocks of 8
and 16 and different ones below 8; 8 keeps padding small."""


def _signature(tree: Any) -> tuple[Any, ...]:
    """A hashable description of a pytree's structure, shapes and dtypes."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((np.shape(a), np.dtype(a.dtype)) for a in leaves)


def _abstract(signature: tuple[Any, ...], device: jax.Device) -> Any:
    treedef, leaves = signature
    sharding = jax.sharding.SingleDeviceSharding(device)
    return jax.tree.unflatten(
        treedef, [jax.ShapeDtypeStruct(s, d, sharding=sharding) for s, d in leaves]
    )


@functools.lru_cache(maxsize=256)
def _lowered(program: Any, runs_sig: Any, shared_sig: Any, device: jax.Device) -> Any:
    return program.lower(_abstract(runs_sig, device), _abstract(shared_sig, device))


@functools.lru_cache(maxsize=256)
def _compiled(program: Any, runs_sig: Any, shared_sig: Any, device: jax.Device) -> Any:
    """The executable of ``program`` for one device (cached: one compile per device)."""
    return _lowered(program, runs_sig, shared_sig, device).compile()


def _pad_blocks(runs: Any, n: int, block_size: int, n_blocks: int) -> list[Any]:
    """Splits the runs axis into ``n_blocks`` blocks, padding by repeating run 0."""
    total = n_blocks * block_size

    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.repeat(a[:1], total - n, axis=0)]) if total > n else a

    padded = jax.tree.map(pad, runs)
    return [
        jax.tree.map(lambda a, i=i: a[i * block_size : (i + 1) * block_size], padded)
        for i in range(n_blocks)
    ]


def run_blocks(
    program: Callable[..., Any],
    runs: Any,
    shared: Any,
    *,
    n_runs: int,
    devices: Sequence[jax.Device] | None = None,
    block_size: int = BLOCK_SIZE,
    timings: dict[str, float] | None = None,
) -> Any:
    """Runs ``program(block_of_runs, shared)`` on every block; the stacked numpy outputs.

    Args:
      program: a jitted function of ``(runs_block, shared)``; its outputs have a
        leading axis of ``block_size``.
      runs: the runs pytree (numpy leaves, leading axis ``n_runs``).
      shared: arrays every run reads (data), placed once on each device.
      n_runs: the length of the runs axis.
      devices: this process's devices to use; default ``jax.local_devices()``.
      block_size: runs per block.
      timings: if given, seconds are added to its ``"lower"`` (trace and lower),
        ``"compile"`` (XLA, all devices in parallel) and ``"run"`` entries, and
        the number of newly compiled executables to ``"executables"``.

    Returns:
      The outputs for the ``n_runs`` runs, as numpy arrays with a leading runs axis.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    n_proc, proc = jax.process_count(), jax.process_index()
    n_blocks = -(-n_runs // block_size)
    n_blocks = -(-n_blocks // n_proc) * n_proc  # every process gets the same count
    blocks = _pad_blocks(runs, n_runs, block_size, n_blocks)
    mine = blocks[proc::n_proc]
    used = devices[: len(mine)]

    t0 = time.perf_counter()
    misses = _compiled.cache_info().misses
    sigs = (_signature(mine[0]), _signature(shared))
    for d in used:  # trace and lower in this thread; jax caches the trace
        _lowered(program, *sigs, d)
    t_lower = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(used)) as pool:
        compiled = list(pool.map(lambda d: _compiled(program, *sigs, d), used))
    t1 = time.perf_counter()
    placed = [jax.device_put(shared, d) for d in used]
    outputs = []
    for i, block in enumerate(mine):
        j = i % len(used)
        outputs.append(compiled[j](jax.device_put(block, used[j]), placed[j]))
    host = [jax.device_get(o) for o in outputs]
    local = jax.tree.map(lambda *a: np.stack(a), *host)  # [my_blocks, block, ...]
    if n_proc > 1:
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(local, tiled=False)  # [proc, my, block...]
        # Block i lives at (i % n_proc, i // n_proc): interleave back to block order.
        local = jax.tree.map(lambda a: np.swapaxes(np.asarray(a), 0, 1), gathered)
    out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n_runs], local)
    if timings is not None:
        timings["lower"] = timings.get("lower", 0.0) + t_lower - t0
        new = _compiled.cache_info().misses - misses
        timings["executables"] = timings.get("executables", 0) + new
        timings["compile"] = timings.get("compile", 0.0) + t1 - t_lower
        timings["run"] = timings.get("run", 0.0) + time.perf_counter() - t1
    return out
