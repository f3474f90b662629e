"""Section ``sweep``: wall-clock time of the main job, ``jaxstab sweep`` (``make run``).

The command runs in a fresh subprocess, as a user runs it: start-up, data,
every compile, training, writing results and drawing figures. It runs once
on one JAX CPU device (``--cpu-devices 1``) and once on one device per usable
core (the default), round robin; each run writes into its own temporary
directory. A full run takes minutes, so the full size samples each variant
once per round (``--repeats`` sets the rounds).
"""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.gpu import on_gpu
from benchmarks.report import Section
from benchmarks.settings import Settings
from benchmarks.timing import Stats, ratio, summarize
from jaxstab.devices import usable_cores

log = logging.getLogger("benchmarks")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_sweep(args: list[str], cpu_devices: str) -> tuple[float, float]:
    """Runs ``jaxstab sweep ARGS --cpu-devices N`` once: (wall seconds, CPU seconds)."""
    with tempfile.TemporaryDirectory(prefix="jaxstab-bench-sweep-") as tmp:
        cmd = [sys.executable, "-m", "jaxstab", "sweep", *args, "--quiet"]
        cmd += ["--cpu-devices", cpu_devices, "--out", str(Path(tmp) / "run")]
        cpu0, start = _children_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return wall, cpu


def run(settings: Settings) -> Section:
    """Measures the section."""
    cores = usable_cores()
    variants = {"one CPU device (--cpu-devices 1)": "1"}
    if on_gpu():  # the CPU device count does not matter there
        variants = {"default (on the GPU)": "auto"}
    elif cores > 1:
        variants[f"one CPU device per core (default: {cores})"] = "auto"
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(settings.sweep_repeats):
        for name, choice in variants.items():
            w, c = time_sweep(list(settings.sweep_args), choice)
            log.info("  %s: %.1f s wall, %.1f s CPU", name, w, c)
            wall[name].append(w)
            cpu[name].append(c)
    args = " ".join(settings.sweep_args) or "(the defaults)"
    section = Section(
        key="sweep",
        title="the main job, `jaxstab sweep`, end to end",
        intro=(
            f"`python -m jaxstab sweep {args} --quiet --out TMP` in a fresh subprocess: "
            "start-up, every compile, training, results and figures. Median (min-max) over "
            f"{settings.sweep_repeats} round(s), the variants run one after the other in "
            "each round. CPU time is the subprocess's, all threads."
        ),
        columns=["variant", "wall seconds", "CPU seconds"],
    )
    for name in variants:
        section.rows.append(
            [name, summarize(wall[name]).fmt(unit="s"), summarize(cpu[name]).fmt(unit="s")]
        )
    if len(variants) == 2:
        one, many = variants
        r: Stats = ratio(wall[one], wall[many])
        section.notes.append(
            f"Wall time with one device per core / with one device: {1 / r.median:.2f} "
            f"({r.n} round(s)); speed-up {r.median:.2f}x."
        )
    return section
