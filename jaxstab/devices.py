"""One JAX CPU device per core, so the engine's blocks of runs fill the CPU.

XLA:CPU runs one program on one device with a shared intra-op thread pool, and
the small matmuls of an MLP training step (``[batch, width] @ [width, width]``
per seed, batched over seeds by ``vmap``) leave much of it idle: on the 2-core
development machine a vmapped depth-8, width-128 training run used 1.3 cores.
Split into as many devices as cores, :func:`jaxstab.engine.train` dispatches
its fixed-size blocks of runs to every device, which run concurrently
(BENCHMARKS.md measures the gain); a run's numbers do not depend on the
device count. The count must be fixed before JAX creates its CPU backend,
i.e. before the first JAX operation, so this is a set-up call for scripts,
not something the library does on import.
"""

from __future__ import annotations

import os

import jax

__all__ = ["set_cpu_devices", "usable_cores"]

_XLA_FLAG = "--xla_force_host_platform_device_count"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def set_cpu_devices(count: int | None = None) -> int:
    """Makes JAX's CPU backend expose ``count`` devices; call before any JAX operation.

    Does nothing when ``XLA_FLAGS`` already sets
    ``--xla_force_host_platform_device_count`` (the user's choice wins). Only the
    CPU backend is affected, so it is harmless on a GPU or TPU machine, where
    the accelerators stay the default devices.

    Args:
      count: number of CPU devices; default :func:`usable_cores`.

    Returns:
      The number of CPU devices that JAX will use (or uses).

    Raises:
      ValueError: ``count`` is not a positive int.
      RuntimeError: JAX's backends are already initialized with another count.

    Example (a script's first lines)::

        import jaxstab
        jaxstab.set_cpu_devices()          # one device per core
        results, _ = jaxstab.experiment.run_many(configs)
    """
    if count is None:
        count = usable_cores()
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int or None, got {count!r}")
    if _XLA_FLAG in os.environ.get("XLA_FLAGS", ""):
        return _flag_count()
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backends exist already: only the same count is accepted
        current = len(jax.devices("cpu"))
        if current == count:
            return count
        raise RuntimeError(
            f"JAX is already initialized with {current} CPU device(s), so it cannot be "
            f"set to {count}: call set_cpu_devices before any JAX operation, or set "
            f"XLA_FLAGS={_XLA_FLAG}={count} in the environment"
        ) from None
    return count


def _flag_count() -> int:
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith(_XLA_FLAG + "="):
            return int(flag.split("=", 1)[1])
    return 1  # pragma: no cover - the flag without a value
