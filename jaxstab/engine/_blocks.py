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
blocks are dispatched asynchronously, so the devices run concurrently. The
devices of a CPU share the host's cores, so there (by default, with more blocks
than devices) the first device compiles alone and starts training while the
others compile in the background and join as they are ready.
Several hosts: each process computes the blocks ``i`` with
``i % process_count == process_index`` on its own devices, and the results are
all-gathered.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
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


def _compile_all(
    stages: list[tuple[Any, Any, tuple[Any, ...]]], devices: Sequence[jax.Device]
) -> list[list[Any]]:
    """Every stage's executable for every device, compiled in parallel threads.

    Returns:
      ``executables[device][stage]``.
    """
    for d in devices:  # trace and lower in this thread; jax caches the trace
        for prog, _, stage_sigs in stages:
            _lowered(prog, d, *stage_sigs)
    jobs = [(prog, opts, d, sigs) for d in devices for prog, opts, sigs in stages]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        done = list(pool.map(lambda job: _compiled(job[0], job[1], job[2], *job[3]), jobs))
    return [done[k * len(stages) : (k + 1) * len(stages)] for k in range(len(devices))]


def _call(executables: list[Any], block: Any, shared: Any, device: jax.Device) -> Any:
    """One block on one device: init (if a stage) then train; the output stays on device."""
    block = jax.device_put(block, device)
    if len(executables) == 1:
        return executables[0](block, shared)
    return executables[1](block, executables[0](block, shared), shared)


def _run_staggered(
    stages: list[tuple[Any, Any, tuple[Any, ...]]],
    blocks: list[Any],
    shared: Any,
    devices: list[jax.Device],
    clock: dict[str, float],
) -> list[Any]:
    """The first device trains as soon as its own compile is done; the others join.

    The first device compiles alone (so the first block starts after one compile,
    not after all of them competing for the host's cores), then takes blocks from
    a shared queue while the other devices compile in background threads and take
    blocks as they become free (work stealing). Which device runs a block does
    not change its numbers: every device runs the same executable on it.
    """
    t0 = time.perf_counter()
    first = _compile_all(stages, devices[:1])[0]
    clock["compile"] = time.perf_counter() - t0
    outputs: list[Any] = [None] * len(blocks)
    queue = iter(range(len(blocks)))
    lock = threading.Lock()

    def work(device: jax.Device) -> tuple[float, int]:
        start = time.perf_counter()
        executables = first if device == devices[0] else _compile_all(stages, [device])[0]
        compiled, taken = time.perf_counter() - start, 0
        here = jax.device_put(shared, device)
        while True:
            with lock:
                i = next(queue, None)
            if i is None:
                return compiled, taken
            outputs[i] = jax.block_until_ready(_call(executables, blocks[i], here, device))
            taken += 1

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(devices)) as pool:
        done = list(pool.map(work, devices))
    clock["background_compile"] = max(c for c, _ in done[1:])
    clock["devices"] = sum(n > 0 for _, n in done)
    return outputs


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

    How the blocks reach the devices: when ``devices`` are given, on an
    accelerator, or with several processes, each device compiles its executable
    (in parallel threads) and the blocks go round robin. By default on a CPU,
    whose devices share the host's cores, and with more blocks than devices, the
    first device compiles alone and starts, and the others compile in the
    background and take blocks as they free up. The choice changes the time,
    never the numbers.

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
        ``"compile"`` (XLA, before the first block runs) and ``"run"`` entries
        (``"run"`` includes the compiles of devices that join later, which run
        beside the training), and the number of newly compiled programs (one per
        device; an ``init_program`` is counted with its program) to
        ``"executables"``; ``"devices"`` is set to the number of devices that ran blocks.

    Returns:
      The outputs for the ``n_runs`` runs, as numpy arrays with a leading runs axis.
    """
    explicit = devices is not None
    devices = list(jax.local_devices() if devices is None else devices)
    n_proc, proc = jax.process_count(), jax.process_index()
    n_blocks = -(-n_runs // block_size)
    n_blocks = -(-n_blocks // n_proc) * n_proc  # every process gets the same count
    blocks = _pad_blocks(runs, n_runs, block_size, n_blocks)
    mine = blocks[proc::n_proc]
    used = devices[: len(mine)]
    # Staggered only where a device has more than one block to take: with one block
    # each, the others would wait for their compile anyway, and compiling all at
    # once is faster (measured on the default sweep, 2 blocks per program).
    staggered = (
        not explicit and n_proc == 1 and len(mine) > len(devices) > 1 and used[0].platform == "cpu"
    )

    t0 = time.perf_counter()
    misses = _compiled.cache_info().misses
    sigs: tuple[Any, ...] = (_signature(mine[0]), _signature(shared))
    stages = _stages(program, init_program, sigs, used[0])
    for prog, _, stage_sigs in stages:  # trace and lower in this thread
        _lowered(prog, used[0], *stage_sigs)
    t_lower = time.perf_counter()
    clock: dict[str, float] = {}
    if staggered:
        outputs = _run_staggered(stages, mine, shared, used, clock)
        t1 = t_lower + clock["compile"]
    else:
        compiled = _compile_all(stages, used)
        t1 = time.perf_counter()
        placed = [jax.device_put(shared, d) for d in used]
        outputs = [
            _call(compiled[i % len(used)], block, placed[i % len(used)], used[i % len(used)])
            for i, block in enumerate(mine)
        ]
        clock["devices"] = len(used)
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
        # count programs (training executables, one per device), not stages.
        new = (_compiled.cache_info().misses - misses) // len(stages)
        timings["executables"] = timings.get("executables", 0) + new
        timings["compile"] = timings.get("compile", 0.0) + t1 - t_lower
        timings["run"] = timings.get("run", 0.0) + time.perf_counter() - t1
        timings["background_compile"] = timings.get("background_compile", 0.0) + clock.get(
            "background_compile", 0.0
        )
        timings["devices"] = max(timings.get("devices", 0), clock["devices"])
    return out
