"""A disk store of compiled block programs, so a later process skips trace, lower and compile.

jax's persistent compilation cache saves XLA's work, but it is keyed by the lowered
program, so every process still traces and lowers before it can look anything up:
for the MLP task that is about 3 s of a 15 s second sweep. A caller that can name
its program (``cache_key``: for jaxstab's MLP task, the config's ``program_key``)
gets the serialized executable back from this store instead, without tracing.

An entry's file name is a sha256 of everything the executable depends on besides
the caller's key: the argument signatures (tree structure, shapes, dtypes), the
devices (platform, kind, count), the compile options, the versions of jax and
jaxlib, the jax flags that change numerics, ``XLA_FLAGS``, and the source of the
jaxstab package itself. A store that cannot be read or written is skipped (the
program is compiled), never an error. It lives beside jax's persistent cache, in
``<jax_compilation_cache_dir>/jaxstab-executables``, off when that cache is off or
the environment sets ``JAXSTAB_EXECUTABLE_STORE=0``; deleting the directory clears it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import jax

__all__ = ["load", "save", "store_dir"]

_FLAGS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_threefry_partitionable",
    "jax_default_prng_impl",
)


def store_dir() -> Path | None:
    """The store's directory, or None when it or jax's persistent cache is off."""
    if os.environ.get("JAXSTAB_EXECUTABLE_STORE") == "0":
        return None
    values = jax.config.values
    cache = values.get("jax_compilation_cache_dir")
    if not cache or not values.get("jax_enable_compilation_cache", True):
        return None
    return Path(cache) / "jaxstab-executables"


@functools.lru_cache(maxsize=1)
def _source_hash() -> str:
    """A hash of the jaxstab package's source: a code change invalidates every entry."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def entry_name(cache_key: str, parts: Any, devices: list[jax.Device]) -> str:
    """The file name of one executable: a sha256 of all it depends on."""
    import jaxlib

    identity = (
        cache_key,
        repr(parts),
        [(d.platform, d.device_kind) for d in devices],
        jax.__version__,
        jaxlib.__version__,
        [(f, str(jax.config.values.get(f))) for f in _FLAGS],
        os.environ.get("XLA_FLAGS", ""),
        _source_hash(),
    )
    return hashlib.sha256(repr(identity).encode()).hexdigest() + ".pkl"


def load(name: str, devices: list[jax.Device]) -> Any | None:
    """The stored executable ``name`` loaded onto ``devices``, or None."""
    root = store_dir()
    if root is None or not (root / name).exists():
        return None
    from jax.experimental import serialize_executable

    try:
        payload, in_tree, out_tree = pickle.loads((root / name).read_bytes())
        return serialize_executable.deserialize_and_load(
            payload, in_tree, out_tree, execution_devices=devices
        )
    except Exception:  # a truncated, foreign or outdated entry: compile instead
        return None


def save(name: str, compiled: Any) -> None:
    """Stores ``compiled`` as ``name``, atomically; silently skipped if it cannot be."""
    root = store_dir()
    if root is None:
        return
    from jax.experimental import serialize_executable

    tmp = None
    try:
        blob = pickle.dumps(serialize_executable.serialize(compiled))
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, root / name)
    except Exception:  # unpicklable trees (custom pytree nodes), a read-only disk
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
