"""Fixed-size blocks of runs, one compiled program, every device a block at a time.

Why fixed blocks: XLA compiles a vmapped block of 1-4 runs differently from a
block of 8 or more, so a run's float rounding (which SGD near the edge of
trainability amplifies to visible differences) would depend on the other runs
in its program, and, if the runs axis were split over devices, on the device
count. Here every run is computed by the same per-device code on a block of
exactly ``block_size`` runs; runs are independent under ``vmap``, so a run's
numbers depend on its own inputs only, whichever device, block or position it
lands in.

The program is compiled once for all devices: a ``shard_map`` over a 1-D mesh
of the devices whose body is the block program, so each device computes one
block per call with no collectives, and one SPMD executable serves every
device (compiling one executable per device cost a compile per device).
Blocks are dispatched ``len(devices)`` at a time, asynchronously.
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


AXIS = "blocks"


def _abstract(signature: tuple[Any, ...], sharding: jax.sharding.Sharding) -> Any:
    treedef, leaves = signature
    return jax.tree.unflatten(
        treedef, [jax.ShapeDtypeStruct(s, d, sharding=sharding) for s, d in leaves]
    )


def _specs(mesh: jax.sharding.Mesh, sharded: tuple[bool, ...]) -> tuple[Any, ...]:
    P = jax.sharding.PartitionSpec
    return tuple(jax.sharding.NamedSharding(mesh, P(AXIS) if s else P()) for s in sharded)


@functools.lru_cache(maxsize=256)
def _spmd(program: Any, mesh: jax.sharding.Mesh, sharded: tuple[bool, ...]) -> Any:
    """``program`` on one block per device: arguments marked ``sharded`` split by block."""
    P = jax.sharding.PartitionSpec
    in_specs = tuple(P(AXIS) if s else P() for s in sharded)
    # No collectives in the body, so no replication types to check (check_vma off).
    body = jax.shard_map(program, mesh=mesh, in_specs=in_specs, out_specs=P(AXIS), check_vma=False)
    return jax.jit(body)


@functools.lru_cache(maxsize=256)
def _lowered(program: Any, mesh: jax.sharding.Mesh, sharded: tuple[bool, ...], *sigs: Any) -> Any:
    shardings = _specs(mesh, sharded)
    return _spmd(program, mesh, sharded).lower(
        *(_abstract(sig, sh) for sig, sh in zip(sigs, shardings, strict=True))
    )


@functools.lru_cache(maxsize=256)
def _compiled(
    program: Any, options: Any, mesh: jax.sharding.Mesh, sharded: tuple[bool, ...], *sigs: Any
) -> Any:
    """The executable of ``program`` for the mesh (cached: one compile per program)."""
    return _lowered(program, mesh, sharded, *sigs).compile(dict(options) or None)


# The init program runs once per run, so its compile time counts as much as its
# run time: XLA's backend optimization level 1 compiles the threefry draws of a
# deep MLP in a fraction of the default's time and runs them nearly as fast.
INIT_OPTIONS = (("xla_backend_optimization_level", 1),)


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
    init_program: Callable[..., Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
    block_size: int = BLOCK_SIZE,
    timings: dict[str, float] | None = None,
) -> Any:
    """Runs ``program`` on every block of runs; the stacked numpy outputs.

    Args:
      program: a jitted function of ``(runs_block, shared)``, or of
        ``(runs_block, init_out, shared)`` with ``init_program``; its outputs
        have a leading axis of ``block_size``.
      runs: the runs pytree (numpy leaves, leading axis ``n_runs``).
      shared: arrays every run reads (data), placed once on each device.
      n_runs: the length of the runs axis.
      init_program: an optional jitted ``(runs_block, shared) -> init_out``,
        compiled at a low optimization level; its output stays on the device.
      devices: this process's devices to use; default ``jax.local_devices()``.
      block_size: runs per block.
      timings: if given, seconds are added to its ``"lower"`` (trace and lower),
        ``"compile"`` (XLA) and ``"run"`` entries, and
        the number of newly compiled programs (one for all devices; an
        ``init_program`` is counted with its program) to ``"executables"``.

    Returns:
      The outputs for the ``n_runs`` runs, as numpy arrays with a leading runs axis.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    n_proc, proc = jax.process_count(), jax.process_index()
    n_blocks = -(-n_runs // block_size)
    n_blocks = -(-n_blocks // n_proc) * n_proc  # every process gets the same count
    blocks = _pad_blocks(runs, n_runs, block_size, n_blocks)
    mine = blocks[proc::n_proc]
    n_dev = min(len(devices), len(mine))
    mesh = jax.sharding.Mesh(np.array(devices[:n_dev]), (AXIS,))
    # A call computes n_dev blocks; the last call is filled up with copies of block 0.
    calls = -(-len(mine) // n_dev)
    filled = mine + [mine[0]] * (calls * n_dev - len(mine))
    groups = [
        jax.tree.map(lambda *a: np.concatenate(a), *filled[c * n_dev : (c + 1) * n_dev])
        for c in range(calls)
    ]

    t0 = time.perf_counter()
    misses = _compiled.cache_info().misses
    sigs: tuple[Any, ...] = (_signature(groups[0]), _signature(shared))
    stages: list[tuple[Any, Any, tuple[bool, ...], tuple[Any, ...]]] = []
    if init_program is not None:
        stages.append((init_program, INIT_OPTIONS, (True, False), sigs))
        out_info = _lowered(init_program, mesh, (True, False), *sigs).out_info
        sigs = (sigs[0], _signature(out_info), sigs[1])
        stages.append((program, (), (True, True, False), sigs))
    else:
        stages.append((program, (), (True, False), sigs))
    for prog, _, sharded, stage_sigs in stages:  # trace and lower; jax caches the trace
        _lowered(prog, mesh, sharded, *stage_sigs)
    t_lower = time.perf_counter()
    # XLA releases the GIL while compiling: the init and training programs compile in
    # parallel threads.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(stages)) as pool:
        compiled = list(pool.map(lambda st: _compiled(st[0], st[1], mesh, st[2], *st[3]), stages))
    t1 = time.perf_counter()
    by_block, replicated = _specs(mesh, (True, False))
    placed = jax.device_put(shared, replicated)
    outputs = []
    for group in groups:
        group = jax.device_put(group, by_block)
        if init_program is None:
            outputs.append(compiled[0](group, placed))
        else:
            outputs.append(compiled[1](group, compiled[0](group, placed), placed))
    host = [jax.device_get(o) for o in outputs]
    local = jax.tree.map(
        lambda *a: np.concatenate(a).reshape(-1, block_size, *a[0].shape[1:])[: len(mine)],
        *host,
    )  # [my_blocks, block, ...]
    if n_proc > 1:
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(local, tiled=False)  # [proc, my, block...]
        # Block i lives at (i % n_proc, i // n_proc): interleave back to block order.
        local = jax.tree.map(
            lambda a: np.swapaxes(np.asarray(a), 0, 1).reshape(-1, *np.shape(a)[2:]), gathered
        )
    out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n_runs], local)
    if timings is not None:
        timings["lower"] = timings.get("lower", 0.0) + t_lower - t0
        # The init and training executables are compiled together: count programs.
        new = (_compiled.cache_info().misses - misses) // len(stages)
        timings["executables"] = timings.get("executables", 0) + new
        timings["compile"] = timings.get("compile", 0.0) + t1 - t_lower
        timings["run"] = timings.get("run", 0.0) + time.perf_counter() - t1
    return out
