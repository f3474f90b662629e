"""Section ``dispatch``: what per-run result invariance costs (issue 10, item 2).

The engine used to run a group of runs as one SPMD program, its runs axis
sharded over the devices (commit ``489a176``, "old"). Its numbers then
depended on the device count and on the other runs in the program. The new
engine (:mod:`jaxstab.engine._blocks`) compiles one program for a block of 8
runs per device and dispatches the blocks device by device, so every run is
computed by the same executable on the same block shape, whatever the device
count (bit-identical results).

Both engines run the same job (the time-to-result section's 32-seed job) in
fresh processes (``benchmarks/dispatch_job.py``, with ``PYTHONPATH`` set to
the old commit's tree, extracted with ``git archive``, or to this one), on 1
CPU device and on one per usable core. Each process calls ``run_many`` twice:
compile = first call - second call, steady state = the second call. The four
processes run round robin, ``dispatch_repeats`` rounds.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import jaxstab
from benchmarks import processes
from benchmarks.report import Section
from benchmarks.settings import Settings
from benchmarks.time_to_result import jobs
from benchmarks.timing import ratio, summarize
from jaxstab.devices import usable_cores
from jaxstab.engine import BLOCK_SIZE

log = logging.getLogger("benchmarks")

OLD_COMMIT = "489a176"
WORKER = Path(__file__).resolve().parent / "dispatch_job.py"


def extract(commit: str, dest: Path) -> Path:
    """The tree of ``commit`` of this repository, written under ``dest`` (``git archive``)."""
    blob = subprocess.run(
        ["git", "-C", str(processes.ROOT), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


@dataclasses.dataclass(frozen=True)
class Sample:
    """One process: its wall time, the two calls, and the first call's losses."""

    wall: float
    first: float
    second: float
    losses: np.ndarray
    timings: dict[str, Any]

    @property
    def compile(self) -> float:
        """First call - second call: compilation (and first-call costs)."""
        return self.first - self.second


def job_args(settings: Settings) -> list[str]:
    """``dispatch_job.py``'s sizes: the 32-seed job of the time-to-result section."""
    j = jobs(settings.tiny)["32"]
    return [
        *("--depth", str(j.depths[0]), "--width", str(j.widths[0]), "--seeds", str(j.seeds)),
        *("--steps", str(j.steps), "--batch", str(j.batch_size)),
        *("--eval-every", str(j.eval_every), "--lr", f"{j.lrs[0]:g}", "--clip", f"{j.clips[0]:g}"),
    ]


def run_one(tree: Path, devices: int, settings: Settings, tmp: Path) -> Sample:
    """One ``dispatch_job.py`` process on ``tree``'s jaxstab."""
    losses = tmp / f"losses-{tree.name}-{devices}.npy"
    proc = processes.run(
        [str(WORKER), "--devices", str(devices), *job_args(settings), "--losses", str(losses)],
        env={"PYTHONPATH": str(tree)},
        cwd=tmp,
    )
    out = proc.json_line()
    if not Path(out["jaxstab"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the worker imported {out['jaxstab']}, not the tree {tree}")
    timings = out.get("first_timings", {})
    return Sample(proc.wall, out["first"], out["second"], np.load(losses), timings)


def run(settings: Settings) -> Section:
    """Measures the section."""
    counts = sorted({1, usable_cores()})
    new_tree = Path(jaxstab.__file__).resolve().parent.parent
    samples: dict[tuple[str, int], list[Sample]] = {}
    section = Section(
        key="dispatch",
        title="fixed-size blocks dispatched per device (new) against one SPMD program (old)",
        intro=(
            f"The same job on the engine of commit `{OLD_COMMIT}` (one SPMD program, runs "
            "sharded over the devices) and on this tree's (blocks of "
            f"{BLOCK_SIZE} runs, one executable per device), "
            f"each in a fresh process: {jobs(settings.tiny)['32'].describe()}. Compile = "
            "first `run_many` call - second call; steady = the second call; wall = the whole "
            f"process. Median (min-max) over {settings.dispatch_repeats} round(s), the "
            "processes round robin."
        ),
        columns=["devices", "engine", "wall", "compile", "steady", "new / old"],
    )
    with tempfile.TemporaryDirectory(prefix="jaxstab-bench-dispatch-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            old_tree = extract(OLD_COMMIT, tmp / "old")
        except (OSError, subprocess.SubprocessError, tarfile.TarError) as e:
            section.rows.append(["—", f"old engine not available: {e}", "—", "—", "—", "—"])
            return section
        trees = {"old": old_tree, "new": new_tree}
        for i in range(settings.dispatch_repeats):
            log.info("  round %d", i + 1)
            for n in counts:
                for name, tree in trees.items():
                    samples.setdefault((name, n), []).append(run_one(tree, n, settings, tmp))
    for n in counts:
        old, new = samples[("old", n)], samples[("new", n)]
        for name, ss in (("old", old), ("new", new)):
            cells = [
                summarize([getattr(s, f) for s in ss]).fmt(unit="s")
                for f in ("wall", "compile", "second")
            ]
            if name == "old":
                ratios = "—"
            else:
                r = {
                    f: ratio([getattr(s, f) for s in new], [getattr(s, f) for s in old])
                    for f in ("wall", "compile", "second")
                }
                ratios = (
                    f"wall {r['wall'].median:.2f}, compile {r['compile'].median:.2f}, "
                    f"steady {r['second'].median:.2f}"
                )
            section.rows.append([str(n), name, *cells, ratios])
    if len(counts) > 1:
        lines = []
        for name in ("old", "new"):
            a, b = samples[(name, counts[0])][0], samples[(name, counts[-1])][0]
            diff = float(np.nanmax(np.abs(a.losses - b.losses)))
            lines.append(
                f"{name}: max |difference| of the per-seed training-set losses, "
                f"{counts[0]} vs {counts[-1]} devices = {diff:.3g}"
            )
        section.notes.append(
            "Result invariance, from the same processes: " + "; ".join(lines) + "."
        )
    new_timings = [s.timings for n in counts for s in samples[("new", n)]]
    if new_timings and new_timings[0]:
        parts = ", ".join(
            f"{k} {summarize([t[k] for t in new_timings]).median:.2f} s"
            for k in new_timings[0]
            if k != "executables"
        )
        section.notes.append(f"The new engine's own timings of its first call (median): {parts}.")
    section.data = {
        f"{name}/{n}": [
            {"wall": s.wall, "first": s.first, "second": s.second, "timings": s.timings} for s in ss
        ]
        for (name, n), ss in samples.items()
    }
    return section
