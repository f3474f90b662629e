"""Whole processes, timed from start to exit: what a user waits for.

Every process gets its own empty JAX persistent-cache directory unless the
caller passes one (so a run is cold unless a warm cache is what is measured),
and its wall-clock and CPU seconds (all its threads and children) are taken
around ``subprocess.run``. A JAX process can run under
:mod:`benchmarks.compile_events`, which adds where it spent its time compiling.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


@dataclasses.dataclass(frozen=True)
class Process:
    """One finished process.

    Attributes:
      wall: seconds from start to exit.
      cpu: CPU seconds of the process and its children (user + system).
      stdout: what it printed.
      events: :mod:`benchmarks.compile_events`' record, when it ran under it.
    """

    wall: float
    cpu: float
    stdout: str
    events: dict[str, Any] | None = None

    @property
    def compile_wall(self) -> float | None:
        """Seconds during which JAX was tracing, lowering or compiling (None: not recorded)."""
        return None if self.events is None else float(self.events["compile_wall"])

    def json_line(self) -> dict[str, Any]:
        """The last line of stdout that parses as a JSON object (the workers' report)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        raise ValueError(f"no JSON line in the output: {self.stdout[-500:]!r}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] = ROOT,
    cache_dir: str | os.PathLike[str] | None = None,
    compile_events: bool = False,
    timeout: float = 3600.0,
) -> Process:
    """Runs ``python ARGS`` (this interpreter) to completion and times it.

    Args:
      args: the interpreter's arguments, e.g. ``["-m", "jaxstab", "sweep", ...]``.
      env: variables added to this process's environment.
      cwd: the working directory (default the repository root, for ``-m benchmarks.*``).
      cache_dir: the JAX persistent-cache directory; default a fresh empty one.
      compile_events: run ``-m MODULE ...`` under :mod:`benchmarks.compile_events`.
      timeout: seconds before the process is killed (an error).

    Returns:
      The :class:`Process`.

    Raises:
      RuntimeError: the process exited non-zero; the message holds its stderr's end.
    """
    with tempfile.TemporaryDirectory(prefix="jaxstab-bench-proc-") as tmp:
        args = list(args)
        events_path = Path(tmp) / "events.json"
        if compile_events:
            if args[:1] != ["-m"]:
                raise ValueError(f"compile_events needs '-m MODULE ...', got {args[:2]}")
            args = ["-m", "benchmarks.compile_events", str(events_path), *args[1:]]
        full_env = {**os.environ, **(env or {})}
        full_env[CACHE_ENV] = str(cache_dir if cache_dir is not None else Path(tmp) / "cache")
        if compile_events:  # benchmarks.compile_events must import from the repository
            full_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(ROOT), full_env.get("PYTHONPATH", "")) if p
            )
        cmd = [sys.executable, *args]
        cpu0, start = _children_cpu(), time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )
        wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-3000:]}")
        events = json.loads(events_path.read_text()) if compile_events else None
    log.info("  %.1f s wall, %.1f s CPU: %s", wall, cpu, " ".join(args)[:160])
    return Process(wall, cpu, proc.stdout, events)


def help_options(args: Sequence[str]) -> set[str]:
    """The ``--options`` that ``python ARGS --help`` lists (e.g. a command's flags)."""
    out = subprocess.run(
        [sys.executable, *args, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    words = out.stdout.replace(",", " ").replace("[", " ").replace("]", " ").split()
    return {w for w in words if w.startswith("--") and len(w) > 2}
