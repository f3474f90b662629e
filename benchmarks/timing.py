"""Timing helpers: medians over repeats after a warm-up, with their spread.

The machines this runs on are shared and noisy, so nothing here reports a
single measurement: every figure is the median of ``repeats`` samples together
with its spread, and things that are compared are timed side by side, round
robin (A, B, C, A, B, C, ...), so that a slow spell of the machine hits all of
them alike. A ratio is then the median of the per-round ratios.

Each sample records wall-clock seconds and the process's CPU seconds (all its
threads). On a machine that other jobs load, wall-clock time stretches with
the load while CPU time stays close to the work done, so the two together tell
a slow program from a busy machine.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

log = logging.getLogger("benchmarks")


@dataclasses.dataclass(frozen=True)
class Stats:
    """Summary of repeated measurements of one quantity.

    Attributes:
      median: the median of the samples.
      lo: the smallest sample.
      hi: the largest sample.
      q1: the first quartile (linear interpolation, as ``np.percentile``).
      q3: the third quartile.
      n: the number of samples.
    """

    median: float
    lo: float
    hi: float
    q1: float
    q3: float
    n: int

    def scaled(self, factor: float) -> Stats:
        """The same summary of the samples multiplied by ``factor`` (> 0)."""
        return Stats(*(factor * v for v in dataclasses.astuple(self)[:5]), n=self.n)

    def inverse(self, numerator: float = 1.0) -> Stats:
        """The summary of ``numerator / sample`` (e.g. a rate from durations).

        The order statistics swap: the smallest duration is the highest rate.
        """
        inv = lambda v: numerator / v if v > 0 else math.inf
        return Stats(
            inv(self.median), inv(self.hi), inv(self.lo), inv(self.q3), inv(self.q1), self.n
        )

    def fmt(self, digits: int = 3, unit: str = "") -> str:
        """``"1.23 s (1.10-1.40, n=5)"``: the median and the min-max range."""
        unit = f" {unit}" if unit else ""
        if self.n == 1:
            return f"{_num(self.median, digits)}{unit} (n=1)"
        return (
            f"{_num(self.median, digits)}{unit} "
            f"({_num(self.lo, digits)}-{_num(self.hi, digits)}, n={self.n})"
        )


def _num(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits, never in exponent notation."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def summarize(samples: Sequence[float]) -> Stats:
    """Median, min, max and quartiles of at least one sample.

    Example:
      >>> summarize([3.0, 1.0, 2.0, 10.0]).median
      2.5
    """
    if len(samples) == 0:
        raise ValueError("summarize needs at least one sample")
    a = np.asarray(samples, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return Stats(float(med), float(a.min()), float(a.max()), float(q1), float(q3), int(a.size))


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Stats:
    """Summary of the per-round ratios ``numerators[i] / denominators[i]``.

    Rounds are paired: sample ``i`` of both was taken in the same round of an
    interleaved measurement, so drift of the machine's speed cancels.
    """
    if len(numerators) != len(denominators):
        raise ValueError(f"unpaired samples: {len(numerators)} vs {len(denominators)}")
    return summarize([a / b for a, b in zip(numerators, denominators)])


@dataclasses.dataclass
class Timings:
    """Samples of an interleaved measurement, per name, in round order.

    Attributes:
      wall: wall-clock seconds per call.
      cpu: CPU seconds of this process (all threads) per call.
      last: each function's result from its last call.
    """

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    last: dict[str, Any]


def time_call(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and CPU seconds of ``fn()`` until its (jax) result is ready, and the result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = jax.block_until_ready(fn())
    return time.perf_counter() - wall, time.process_time() - cpu, result


def interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int, *, warmup: int = 1) -> Timings:
    """Times every function ``repeats`` times, round robin, after ``warmup`` calls each.

    Args:
      fns: named zero-argument callables; each returns what to wait for.
      repeats: rounds of measurement (>= 1).
      warmup: untimed calls of each function first (compilation, caches).

    Returns:
      The samples; sample ``i`` of every name comes from round ``i``.
    """
    for name, fn in fns.items():
        for _ in range(warmup):
            wall, cpu, _ = time_call(fn)
            log.info("  warm-up %s: %.3f s (CPU %.3f s)", name, wall, cpu)
    out = Timings({name: [] for name in fns}, {name: [] for name in fns}, {})
    for i in range(repeats):
        for name, fn in fns.items():
            wall, cpu, out.last[name] = time_call(fn)
            out.wall[name].append(wall)
            out.cpu[name].append(cpu)
            log.info("  round %d %s: %.3f s (CPU %.3f s)", i + 1, name, wall, cpu)
    return out
