"""jax's persistent compilation cache, on by default for jaxstab's commands.

A compiled program is kept on disk, keyed by jax from the program's HLO, the
compile options, the devices and the jax/jaxlib versions, so a later process that
builds the same program (another sweep over the same architectures, a rerun of an
experiment) loads it instead of compiling it. ``jaxstab sweep`` and the
experiments' scripts call :func:`enable`; library functions never change jax's
configuration on their own.

The engine keeps its own programs' code in the same folder, under
``jaxstab-executables/`` (one entry for all the CPU devices, and, for programs
named by ``program_id``, what loading them without a trace needs; see
``jaxstab.engine._executables``). Deleting the folder clears both.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "enable"]


def cache_dir() -> Path:
    """Where jaxstab keeps jax's persistent compilation cache.

    ``$XDG_CACHE_HOME/jaxstab/jax``, or ``~/.cache/jaxstab/jax``; delete the folder
    to clear it. ``JAX_COMPILATION_CACHE_DIR``, when set, wins (see :func:`enable`).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jaxstab" / "jax"


def enable(enabled: bool = True) -> str | None:
    """Turns jax's persistent compilation cache on (in :func:`cache_dir`) or off.

    Call it before the first compilation. A directory already configured (by
    ``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is kept.

    Args:
      enabled: False turns the cache off for this process.

    Returns:
      The cache directory in use, or None when the cache is off.
    """
    import jax

    if not enabled:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    current = jax.config.values.get("jax_compilation_cache_dir")
    if current:
        return str(current)
    path = cache_dir()
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        # Also the many small programs (evaluation glue, theory curves of the figures):
        # each is cheap to keep, and together they cost seconds per start.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(path)
