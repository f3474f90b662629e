"""Fixed-size blocks of runs, one compiled program, dispatched device by device.

Why not one SPMD program sharded over devices: XLA compiles a vmapped block of
1-4 runs differently from a block of 8 or more, and an SPMD program for 2 or 4
devices differently from one for 1, so a run's float rounding (which SGD near
the edge of trainability amplifies to visible differences) would depend on the
device count and on the other runs in its program. Here every run is computed
by the same executable on a block of exactly ``block_size`` runs; runs are
independent under ``vmap``, so a run's numbers depend on its own inputs only,
whichever device, block or position it lands in. No collectives are needed.

Each device gets its own executable (XLA binds one to a device). On a CPU they
are copies of one compile (:mod:`jaxstab.engine._executables`); on accelerators
each device compiles its own, in parallel threads (XLA releases the GIL while
compiling). Blocks are dispatched asynchronously, so the devices run
concurrently.
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

from jaxstab.engine import _executables

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
def _lowered(program: Any, device: jax.Device, *sigs: Any) -> Any:
    return program.lower(*(_abstract(sig, device) for sig in sigs))


@functools.lru_cache(maxsize=256)
def _compiled(program: Any, options: Any, device: jax.Device, *sigs: Any) -> Any:
    """The executable of ``program`` for one device (cached: one compile per device)."""
    return _lowered(program, device, *sigs).compile(dict(options) or None)


# The init program runs once per run, so its compile time counts as much as its
# run time: XLA's backend optimization level 1 compiles the threefry draws of a
# deep MLP in a fraction of the default's time and runs them nearly as fast.
INIT_OPTIONS = (("xla_backend_optimization_level", 1),)
TRAIN_OPTIONS: tuple[tuple[str, Any], ...] = ()


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


def _stages(
    program: Any, init_program: Any, sigs: tuple[Any, ...], device: jax.Device
) -> list[tuple[Any, Any, tuple[Any, ...]]]:
    """``(program, options, signatures)`` of each compiled stage: init (if any), then train."""
    stages: list[tuple[Any, Any, tuple[Any, ...]]] = []
    if init_program is not None:
        stages.append((init_program, INIT_OPTIONS, sigs))
        out_info = _lowered(init_program, device, *sigs).out_info
        sigs = (sigs[0], _signature(out_info), sigs[1])
    stages.append((program, TRAIN_OPTIONS, sigs))
    return stages


def layout(
    runs: Any, n_runs: int, devices: Sequence[jax.Device] | None, block_size: int
) -> tuple[list[Any], list[jax.Device]]:
    """This process's blocks of runs, and the devices that run them (round robin)."""
    devices = list(jax.local_devices() if devices is None else devices)
    n_proc, proc = jax.process_count(), jax.process_index()
    n_blocks = -(-n_runs // block_size)
    n_blocks = -(-n_blocks // n_proc) * n_proc  # every process gets the same count
    mine = _pad_blocks(runs, n_runs, block_size, n_blocks)[proc::n_proc]
    return mine, devices[: len(mine)]


def signatures(block: Any, shared: Any) -> tuple[Any, ...]:
    """The signatures the programs are compiled for: a block of runs, and the shared data."""
    return _signature(block), _signature(shared)


def lowered_stages(
    program: Any, init_program: Any, sigs: tuple[Any, ...], device: jax.Device
) -> list[tuple[Any, Any, jax.Device]]:
    """``(lowered, options, device)`` of each stage, as :func:`run_blocks` compiled them."""
    return [
        (_lowered(prog, device, *stage_sigs), opts, device)
        for prog, opts, stage_sigs in _stages(program, init_program, sigs, device)
    ]


@functools.lru_cache(maxsize=256)
def _compiled_all(program: Any, options: Any, devices: tuple[jax.Device, ...], *sigs: Any) -> Any:
    """The executables of ``program`` for ``devices`` (cached: built once per process).

    On a CPU, one XLA compile for all the devices (:mod:`._executables`); on
    accelerators, one per device, in parallel threads (XLA releases the GIL).
    """
    if devices[0].platform == "cpu":
        more = lambda d: _compiled(program, options, d, *sigs)
        lowered = _lowered(program, devices[0], *sigs)
        return tuple(_executables.compile_once(lowered, options, devices, more))
    for d in devices:  # trace and lower in this thread; jax caches the trace
        _lowered(program, d, *sigs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(devices)) as pool:
        return tuple(pool.map(lambda d: _compiled(program, options, d, *sigs), devices))


def _compile_all(
    stages: list[tuple[Any, Any, tuple[Any, ...]]], devices: Sequence[jax.Device]
) -> list[list[Any]]:
    """Every stage's executable for every device; the stages compile in parallel threads.

    Returns:
      ``executables[device][stage]``.
    """
    devices = tuple(devices)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(stages)) as pool:
        done = list(pool.map(lambda st: _compiled_all(st[0], st[1], devices, *st[2]), stages))
    return [[per_device[k] for per_device in done] for k in range(len(devices))]


def _call(executables: list[Any], block: Any, shared: Any, device: jax.Device) -> Any:
    """One block on one device: init (if a stage) then train; the output stays on device."""
    block = jax.device_put(block, device)
    if len(executables) == 1:
        return executables[0](block, shared)
    return executables[1](block, executables[0](block, shared), shared)


def run_blocks(
    program: Callable[..., Any] | None,
    runs: Any,
    shared: Any,
    *,
    n_runs: int,
    init_program: Callable[..., Any] | None = None,
    devices: Sequence[jax.Device] | None = None,
    block_size: int = BLOCK_SIZE,
    timings: dict[str, float] | None = None,
    executables: list[list[Any]] | None = None,
) -> Any:
    """Runs ``program`` on every block of runs; the stacked numpy outputs.

    The blocks go to the devices round robin and are dispatched asynchronously,
    so the devices run concurrently. Which device runs a block never changes
    its numbers.

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
        ``"compile"`` (XLA, and copying the code to the other CPU devices) and
        ``"run"`` entries, and the number of programs newly built in this process
        (compiled, or loaded from the store; an ``init_program`` is counted with
        its program, whatever the device count) to ``"executables"``;
        ``"devices"`` is set to the number of devices that ran blocks.
      executables: ``executables[device][stage]`` for the devices of
        :func:`layout`, already loaded: nothing is traced or compiled, and
        ``program`` and ``init_program`` may be None.

    Returns:
      The outputs for the ``n_runs`` runs, as numpy arrays with a leading runs axis.
    """
    n_proc = jax.process_count()
    mine, used = layout(runs, n_runs, devices, block_size)
    t0 = time.perf_counter()
    misses = _compiled_all.cache_info().misses
    n_stages = 1 if init_program is None else 2
    if executables is None:
        stages = _stages(program, init_program, signatures(mine[0], shared), used[0])
        for prog, _, stage_sigs in stages:  # trace and lower in this thread
            _lowered(prog, used[0], *stage_sigs)
        t_lower = time.perf_counter()
        compiled = _compile_all(stages, used)
    else:
        t_lower, compiled = t0, executables
    t1 = time.perf_counter()
    placed = [jax.device_put(shared, d) for d in used]
    outputs = [
        _call(compiled[i % len(used)], block, placed[i % len(used)], used[i % len(used)])
        for i, block in enumerate(mine)
    ]
    host = [jax.device_get(o) for o in outputs]
    local = jax.tree.map(lambda *a: np.stack(a), *host)  # [my_blocks, block, ...]
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
        # The init and training executables of a device are compiled together:
        # count programs (training executables), not stages.
        new = (_compiled_all.cache_info().misses - misses) // n_stages
        timings["executables"] = timings.get("executables", 0) + new
        timings["compile"] = timings.get("compile", 0.0) + t1 - t_lower
        timings["run"] = timings.get("run", 0.0) + time.perf_counter() - t1
        timings["devices"] = max(timings.get("devices", 0), len(used))
    return out
