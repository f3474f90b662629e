"""The statistics every experiment's claims use: intervals, effect sizes and tests.

Not an experiment (the leading underscore keeps it out of the notebook tests). Every
function wraps scipy.stats, the well-kept implementation, with the conventions the
findings use: 95% intervals, a fixed generator so a rerun writes the same numbers,
and non-finite values (diverged runs) handled explicitly rather than silently.

References:
  Efron & Tibshirani (1993), An Introduction to the Bootstrap (BCa intervals).
  Wilson (1927), Probable inference, the law of succession, and statistical
  inference (the score interval for a proportion).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9999


def _finite(values: Any, name: str) -> np.ndarray:
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size < 2:
        raise ValueError(f"{name}: {v.size} finite values; an interval needs at least 2")
    return v


def _degenerate(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


def bootstrap_ci(
    values: Any,
    statistic: Callable[..., Any] = np.mean,
    *,
    seed: int = 0,
    method: str = "BCa",
) -> tuple[float, float]:
    """95% bootstrap interval of ``statistic`` over the finite ``values``.

    Args:
      values: a sample (NaN and infinities, i.e. diverged runs, are left out).
      statistic: a reduction with an ``axis`` keyword (``np.mean``, ``np.median``).
      seed: the resampling generator's seed, so a rerun gives the same interval.
      method: ``"BCa"`` (bias-corrected and accelerated) or ``"percentile"``.

    Returns:
      ``(low, high)``; a constant sample gives its value twice.
    """
    v = _finite(values, "bootstrap_ci")
    if _degenerate(v):
        return float(v[0]), float(v[0])
    res = stats.bootstrap(
        (v,),
        statistic,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method=method,
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def difference_ci(
    a: Any,
    b: Any,
    statistic: Callable[..., Any] = np.mean,
    *,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Effect size ``statistic(a) - statistic(b)`` with its 95% bootstrap interval.

    The two samples are resampled independently (unpaired seeds).

    Returns:
      ``(difference, low, high)``.
    """
    x, y = _finite(a, "difference_ci a"), _finite(b, "difference_ci b")
    diff = float(statistic(x) - statistic(y))
    if _degenerate(x) and _degenerate(y):
        return diff, diff, diff

    def delta(u: np.ndarray, w: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(u, axis=axis) - statistic(w, axis=axis)

    res = stats.bootstrap(
        (x, y),
        delta,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return diff, float(res.confidence_interval.low), float(res.confidence_interval.high)


def rank_test(a: Any, b: Any, alternative: str = "two-sided") -> float:
    """p-value of the Mann-Whitney U test that ``a`` and ``b`` share a distribution.

    Non-finite values (diverged runs) are ranked as worse than any finite value:
    ``+inf`` stands for a loss that blew up.

    Args:
      a, b: samples, e.g. per-seed final losses of two arms.
      alternative: ``"two-sided"``, ``"less"`` (a tends to be smaller) or ``"greater"``.
    """
    # NaN -> +inf; scipy ranks infinities like any value, so they tie and rank last.
    x, y = (np.asarray(v, np.float64).reshape(-1) for v in (a, b))
    x, y = np.where(np.isnan(x), np.inf, x), np.where(np.isnan(y), np.inf, y)
    return float(stats.mannwhitneyu(x, y, alternative=alternative).pvalue)


def proportion_ci(successes: int, trials: int) -> tuple[float, float, float]:
    """A proportion with its 95% Wilson score interval.

    Returns:
      ``(proportion, low, high)``.
    """
    if trials <= 0:
        raise ValueError(f"proportion_ci: trials={trials}; it must be positive")
    if not 0 <= successes <= trials:
        raise ValueError(f"proportion_ci: successes={successes} not in [0, trials={trials}]")
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(CONFIDENCE, method="wilson")
    return successes / trials, float(ci.low), float(ci.high)


def mean_ci(values: Any) -> tuple[float, float, float]:
    """Mean with its 95% Student-t interval (for means of many independent draws).

    Returns:
      ``(mean, low, high)``.
    """
    v = _finite(values, "mean_ci")
    m = float(v.mean())
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def z_interval(estimate: float, standard_error: float) -> tuple[float, float]:
    """The 95% normal interval ``estimate +- 1.96 standard_error``."""
    half = float(stats.norm.ppf(0.5 + CONFIDENCE / 2) * standard_error)
    return estimate - half, estimate + half


def summary(values: Sequence[float] | np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """Median with its 95% bootstrap interval, the count and the non-finite count.

    Returns:
      ``{"median", "ci": [low, high] or None, "n", "n_nonfinite"}``; ``ci`` is None
      with fewer than 2 finite values.
    """
    v = np.asarray(values, np.float64).reshape(-1)
    finite = v[np.isfinite(v)]
    out: dict[str, Any] = {
        "median": float(np.median(finite)) if finite.size else None,
        "n": int(v.size),
        "n_nonfinite": int(v.size - finite.size),
        "ci": None,
    }
    if finite.size >= 2:
        out["ci"] = list(bootstrap_ci(finite, np.median, seed=seed, method="percentile"))
    return out


def best_lr(final_losses: Mapping[float, np.ndarray]) -> float:
    """The learning-rate rule, fixed in advance: the best cell of the grid.

    Among the learning rates at which no seed diverged, the one with the lowest
    median final loss; if every learning rate lost a seed, the one with the fewest
    diverged seeds, then the lowest median with diverged seeds ranked worst.

    Args:
      final_losses: learning rate -> per-seed final training loss (NaN: diverged).

    Returns:
      The chosen learning rate.
    """
    if not final_losses:
        raise ValueError("best_lr: an empty learning-rate grid")

    def key(lr: float) -> tuple[int, float, float]:
        loss = np.asarray(final_losses[lr], np.float64)
        diverged = int(np.sum(~np.isfinite(loss)))
        return diverged, float(np.median(np.where(np.isfinite(loss), loss, np.inf))), lr

    return min(final_losses, key=key)
