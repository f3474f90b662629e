"""One XLA compile per program for all the CPU devices, and a disk store of its code.

XLA binds an executable to the device it was compiled for, and jax's persistent
cache keys a CPU executable by its device. So with the host's cores split into
several CPU devices, every program used to be compiled (and cached) once per
device, although every device runs the same machine code on the same cores.

Here a program is compiled once, for the first device. Its serialized code is
loaded onto each other device with that device's assignment, as jax's cache
loads a hit: milliseconds instead of a compile, and the same numbers on every
device by construction (the same code).

When jax's persistent cache is on (``jax_compilation_cache_dir``, which
:func:`jaxstab.compile_cache.enable` sets), the serialized code is also kept in
its ``jaxstab-executables/`` folder, keyed by the lowered program, the compile
options, the jax and jaxlib versions, ``XLA_FLAGS`` and the device kind, and a
later process loads it onto all its devices without compiling. Why not jax's
own entries: a CPU executable that jax loaded from its cache cannot be
serialized again (XLA:CPU leaves functions out, "Function ... not found" at run
time), so it could not be copied to the other devices. When jax's cache serves
the first device anyway (an entry it wrote before this store existed), the
other devices compile, and the first fresh compile fills the store.

A caller that names its code (``engine.train(program_id=...)``) also skips the
trace: the stage keys and argument trees are recorded under a key made of that
name, the sizes and the environment (:func:`program_key`), so a later process
loads the executables without tracing or lowering anything.

Like jax's cache, the folder holds machine code that is loaded and run (and the
records are pickles): keep it in a folder only you can write to.

The code uses ``jax.experimental.serialize_executable``, as jax's cache does, and
two of its internals; a failure to serialize falls back to compiling on every
device, and a damaged stored file is removed and compiled afresh.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import pickle
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax._src.lib import xla_client  # what serialize_executable itself uses
from jax.experimental import serialize_executable

__all__ = ["compile_once", "program_key", "read_program", "stage_key", "store_dir", "write_program"]

STORE_FOLDER = "jaxstab-executables"
_HIT_EVENT = "/jax/compilation_cache/cache_hits"


@contextlib.contextmanager
def _cache_hits() -> Iterator[list[bool]]:
    """``[hit]``: whether jax's persistent cache served a compile of this thread in the block."""
    owner, seen = threading.get_ident(), [False]

    def listen(event: str, **kwargs: Any) -> None:
        if event == _HIT_EVENT and threading.get_ident() == owner:
            seen[0] = True

    jax.monitoring.register_event_listener(listen)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_listener(listen)


def store_dir() -> Path | None:
    """The folder of the stored executables, or None when jax's persistent cache is off."""
    path = jax.config.values.get("jax_compilation_cache_dir")
    if not path or not jax.config.values.get("jax_enable_compilation_cache", True):
        return None
    return Path(path) / STORE_FOLDER


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def _environment(device: jax.Device) -> tuple[Any, ...]:
    """Besides the program, what selects its machine code: versions, flags, device kind."""
    import jaxlib

    return (
        jax.__version__,
        jaxlib.__version__,
        os.environ.get("XLA_FLAGS", ""),
        device.platform,
        device.client.platform_version,
        device.device_kind,
    )


def stage_key(lowered: Any, options: Any, device: jax.Device) -> str:
    """The store's key of one compiled program: its lowered text, options and environment."""
    return _hash(lowered.as_text(), repr(options), *_environment(device))


def program_key(program_id: str, parts: Any, device: jax.Device) -> str:
    """The store's key of a traced program (:func:`read_program`), without tracing it.

    Args:
      program_id: the caller's identifier of its callables' code.
      parts: everything else that shapes the program (sizes, signatures, options).
      device: the first device.
    """
    config = sorted((k, repr(v)) for k, v in jax.config.values.items())
    return _hash("program", program_id, repr(parts), config, *_environment(device))


@functools.lru_cache(maxsize=64)
def read_program(key: str, devices: tuple[jax.Device, ...]) -> list[list[Any]] | None:
    """A stored program's ``executables[device][stage]``, or None if absent.

    Loaded once per process. A damaged or incompatible entry is removed and reads
    as absent.
    """
    store = store_dir()
    path = store / f"{key}.program" if store is not None else None
    if path is None or not path.is_file():
        return None
    try:
        stages = pickle.loads(path.read_bytes())
        payloads = [zlib.decompress((path.parent / f"{k}.bin").read_bytes()) for k, _, _ in stages]
        per_stage = [
            [_load(p, in_tree, out_tree, d) for d in devices]
            for p, (_, in_tree, out_tree) in zip(payloads, stages, strict=True)
        ]
    except Exception:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return [list(e) for e in zip(*per_stage, strict=True)]


def write_program(key: str, stages: Sequence[tuple[Any, Any, jax.Device]]) -> None:
    """Records a compiled program's stages (``(lowered, options, device)``) under ``key``.

    Its code is stored by :func:`compile_once`; this adds what loading it without a
    trace needs: the stage keys and the argument and output trees.
    """
    store = store_dir()
    if store is None:
        return
    try:
        record = [(stage_key(lo, opts, d), lo.in_tree, lo.out_tree) for lo, opts, d in stages]
        blob = pickle.dumps(record)
        # Only trees that come back equal (an equinox module's does not: its static
        # fields are compared by identity), else a later call could not match them.
        if pickle.loads(blob) == record and all(
            (store / f"{k}.bin").is_file() for k, _, _ in record
        ):
            _write(store / f"{key}.program", blob)
    except Exception:
        pass  # not recorded: the next process traces the program again


def _load(payload: bytes, in_tree: Any, out_tree: Any, device: jax.Device) -> Any:
    """A serialized single-device executable, loaded for ``device``."""
    client = device.client
    options = xla_client.CompileOptions()
    options.device_assignment = xla_client.DeviceAssignment.create(np.array([[device.id]]))
    targets = xla_client.DeviceList((device,))

    class Unpickler(serialize_executable._JaxPjrtUnpickler):
        def persistent_load(self, pid: Any) -> Any:
            if pid[0] == "exec":
                return client.deserialize_executable(pid[1], targets, options)
            if pid[0] == "device":  # the one device it was compiled for
                return device
            return super().persistent_load(pid)

    unloaded, args_info, no_kwargs = Unpickler(io.BytesIO(payload), client, [device]).load()
    return jax.stages.Compiled(
        unloaded.load(), [], in_tree.unflatten(args_info), out_tree, no_kwargs=no_kwargs
    )


def _write(path: Path, payload: bytes) -> None:
    """Atomically: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _store(path: Path, compiled: Any, payload: bytes | None = None) -> None:
    """Keeps a freshly compiled executable's code; a failure to write only costs a compile."""
    try:
        if payload is None:
            payload = serialize_executable.serialize(compiled)[0]
        _write(path, zlib.compress(payload, 1))
    except Exception:
        pass


def compile_once(
    lowered: Any, options: Any, devices: Sequence[jax.Device], compile_more: Any
) -> list[Any]:
    """The executable of ``lowered`` (lowered for ``devices[0]``) for every CPU device.

    Args:
      lowered: ``jit(f).lower(...)`` for the first device.
      options: the XLA options of the compile (a tuple of pairs).
      devices: CPU devices; the first is the one ``lowered`` targets.
      compile_more: ``compile_more(device)``: compiles for another device, the
        fallback when the code cannot be copied.

    Returns:
      One executable per device, in order.
    """
    store = store_dir()
    key = stage_key(lowered, options, devices[0]) if store is not None else None
    path = store / f"{key}.bin" if store is not None else None
    payload = None
    if path is not None and path.is_file():
        try:
            payload = zlib.decompress(path.read_bytes())
            return [_load(payload, lowered.in_tree, lowered.out_tree, d) for d in devices]
        except Exception:  # a damaged or incompatible file: removed, compiled afresh
            with contextlib.suppress(OSError):
                path.unlink()
    with _cache_hits() as hit:
        first = lowered.compile(dict(options) or None)
    rest = list(devices[1:])
    if hit[0]:
        # Loaded from jax's cache, so not serializable: every device compiles (or
        # loads its own entry), and the first fresh compile fills the store.
        out = [first]
        for d in rest:
            with _cache_hits() as hit:
                out.append(compile_more(d))
            if not hit[0] and path is not None:
                _store(path, out[-1])
                path = None
        return out
    if not rest and path is None:
        return [first]
    try:
        payload, in_tree, out_tree = serialize_executable.serialize(first)
        copies = [_load(payload, in_tree, out_tree, d) for d in rest]
    except Exception:
        return [first, *(compile_more(d) for d in rest)]
    if path is not None:
        _store(path, first, payload)
    return [first, *copies]
