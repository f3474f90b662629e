"""Runs a Python module as ``__main__`` and records where JAX spent its time compiling.

Usage (a whole process, as the time-to-result section starts it)::

    python -m benchmarks.compile_events OUT.json MODULE [ARGS...]

is ``python -m MODULE ARGS...`` (e.g. ``jaxstab sweep ...``: ``MODULE`` =
``jaxstab``) with listeners on ``jax.monitoring``'s compile events. At exit it
writes ``OUT.json``: for each phase (``trace``, ``lower``, ``compile``: XLA or
a persistent-cache read) the number of events and their summed seconds, the
persistent cache's hits and misses, the seconds from this module's start to
the end of the target, ``top``: the functions that took longest per phase,
and ``compile_wall``: the wall-clock seconds during
which at least one phase was in progress (the union of the events' time spans,
so compilations running in parallel threads count once). The listeners cost a
function call per event; nothing else differs from running the module itself.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from typing import Any

PHASES = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
}
COUNTERS = {
    "/jax/compilation_cache/cache_hits": "cache_hits",
    "/jax/compilation_cache/cache_misses": "cache_misses",
}


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Total length of the union of ``(start, end)`` intervals.

    Example:
      >>> union_seconds([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)])
      4.0
    """
    total, end = 0.0, -float("inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def summarize(
    spans: dict[str, list[tuple[float, float]]],
    counts: dict[str, int],
    by_name: dict[tuple[str, str], float] | None = None,
    top: int = 12,
) -> dict[str, Any]:
    """The JSON record: per phase the count and summed seconds; the union; the counters.

    ``by_name`` maps ``(phase, function name)`` to summed seconds; the ``top``
    largest become ``"top"``, a list of ``[phase, name, seconds]``.
    """
    out: dict[str, Any] = {}
    for phase in PHASES.values():
        s = spans.get(phase, [])
        out[phase] = {"events": len(s), "seconds": sum(b - a for a, b in s)}
    out["compile_wall"] = union_seconds([span for s in spans.values() for span in s])
    out.update({name: counts.get(name, 0) for name in COUNTERS.values()})
    ranked = sorted((by_name or {}).items(), key=lambda kv: -kv[1])[:top]
    out["top"] = [[phase, name, seconds] for (phase, name), seconds in ranked]
    return out


def main(argv: list[str]) -> None:
    """Runs ``argv[1]`` as ``__main__`` with ``argv[2:]``; writes the record to ``argv[0]``."""
    start = time.time()
    out_path, module, args = argv[0], argv[1], argv[2:]
    from jax import monitoring

    lock = threading.Lock()
    spans: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, int] = {}
    by_name: dict[tuple[str, str], float] = {}

    def on_span(event: str, start_time: float, end_time: float, **kwargs: str | int) -> None:
        if event in PHASES:
            key = (PHASES[event], str(kwargs.get("fun_name", "?")))
            with lock:
                spans.setdefault(PHASES[event], []).append((start_time, end_time))
                by_name[key] = by_name.get(key, 0.0) + end_time - start_time

    def on_event(event: str, **kwargs: str | int) -> None:
        if event in COUNTERS:
            with lock:
                counts[COUNTERS[event]] = counts.get(COUNTERS[event], 0) + 1

    monitoring.register_event_time_span_listener(on_span)
    monitoring.register_event_listener(on_event)
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        record = summarize(spans, counts, by_name)
        record["process_seconds"] = time.time() - start
        tmp = f"{out_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, out_path)


if __name__ == "__main__":
    main(sys.argv[1:])
