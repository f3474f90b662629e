"""A sweep's tables: rows from parts, their columns and types, and the summary.

Every table is tidy: one row per run (``results.csv``), per run and step
(``curves.csv``) or per run, time and layer (``layer_stats.csv``), keyed by
the same run columns, derived from the sweep's settings (:func:`run_columns`).
Seeds are summarized by their median and a 95% percentile-bootstrap interval
(:func:`bootstrap_ci`), computed with a fixed generator so a table is the
same each time it is printed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxstab.sweep import store
from jaxstab.sweep.spec import settings

__all__ = [
    "CURVE_METRICS",
    "RESULT_METRICS",
    "bootstrap_ci",
    "curve_rows",
    "group_by",
    "read_layer_stats",
    "read_results",
    "result_columns",
    "result_rows",
    "result_types",
    "run_columns",
    "stats_rows",
    "summarize",
    "summary_table",
    "varying",
]


def _bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise ValueError(text)
    return text == "True"


# Per-run metrics of results.csv and their types.
RESULT_METRICS: dict[str, Callable[[str], Any]] = {
    "final_train_loss": float,  # loss on the training set after the last step
    "test_loss": float,
    "test_accuracy": float,
    "diverged": _bool,  # the loss or gradient norm turned non-finite
    "diverged_step": int,  # the first non-finite step, -1 if none
    "clip_rate": float,  # fraction of steps the clip rescaled
    "grad_norm_init": float,  # gradient norm at the first step
    "dead_fraction_init": float,  # mean over layers, at init
    "saturated_fraction_init": float,
}
# Per-step metrics of curves.csv: the minibatch metrics of the step taken from
# parameters after `step` updates, and the evaluations after `step` updates.
TRAIN_METRICS = ("train_loss", "grad_norm", "clipped")
EVAL_METRICS = ("eval_train_loss", "test_loss", "test_accuracy")
CURVE_METRICS = TRAIN_METRICS + EVAL_METRICS


def run_columns() -> list[str]:
    """The columns that identify a run: every setting but the seed count, and the seed."""
    return [s.field for s in settings() if s.role != "seeds"] + ["seed_index", "name"]


def result_columns() -> list[str]:
    return run_columns() + list(RESULT_METRICS)


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda text: None if text == "" else parse(text)


def result_types() -> dict[str, Callable[[str], Any]]:
    """How to read each results.csv column back."""
    types: dict[str, Callable[[str], Any]] = {}
    for s in settings():
        if s.role != "seeds":
            types[s.field] = _optional(s.kind) if s.optional else s.kind
    types["seed_index"] = int
    types["name"] = str
    types.update(RESULT_METRICS)
    return types


def _cell(value: Any) -> str:
    """A value as a CSV cell: exact floats (float32 at its own shortest), None empty."""
    if value is None:
        return ""
    if isinstance(value, np.floating):
        return str(value)  # the shortest text that reads back to the same float32
    if isinstance(value, float):
        return repr(value)
    return str(value.item() if isinstance(value, np.generic) else value)


def _run_prefix(config: Mapping[str, Any], seed: int) -> list[str]:
    fields = [s.field for s in settings() if s.role != "seeds"]
    return [_cell(config[f]) for f in fields] + [str(seed), config["name"]]


def _seeds(config: Mapping[str, Any]) -> range:
    return range(config["first_seed"], config["first_seed"] + config["seeds"])


def result_rows(
    config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], seeds: Sequence[int]
) -> Iterator[list[str]]:
    """results.csv rows of one part (a Config dict with ``name``, its arrays) for ``seeds``."""
    for seed in seeds:
        i = seed - config["first_seed"]
        metrics = [
            arrays["eval_train_loss"][i, -1],
            arrays["test_loss"][i, -1],
            arrays["test_accuracy"][i, -1],
            bool(arrays["diverged"][i]),
            int(arrays["diverged_step"][i]),
            float(np.mean(arrays["clipped"][i])),
            arrays["grad_norm"][i, 0],
            float(np.mean(arrays["stats/init/dead_fraction"][i])),
            float(np.mean(arrays["stats/init/saturated_fraction"][i])),
        ]
        yield _run_prefix(config, seed) + [_cell(m) for m in metrics]


def curve_rows(
    config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], seeds: Sequence[int]
) -> Iterator[list[str]]:
    """curves.csv rows: one per run and step ``0..steps`` (step = updates done)."""
    steps, every = config["steps"], config["eval_every"]
    blank_train = [""] * len(TRAIN_METRICS)
    blank_eval = [""] * len(EVAL_METRICS)
    for seed in seeds:
        i = seed - config["first_seed"]
        prefix = _run_prefix(config, seed)
        train = [arrays[k][i].astype(str).tolist() for k in TRAIN_METRICS]
        evals = [arrays[k][i].astype(str).tolist() for k in EVAL_METRICS]
        for t in range(steps + 1):
            row_train = [c[t] for c in train] if t < steps else blank_train
            row_eval = [c[t // every] for c in evals] if t % every == 0 else blank_eval
            yield [*prefix, str(t), *row_train, *row_eval]


def stats_names(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """The per-layer statistics held in a part (``stats/init/NAME``)."""
    return sorted(k.split("/", 2)[2] for k in arrays if k.startswith("stats/init/"))


def stats_rows(
    config: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    seeds: Sequence[int],
    names: Sequence[str],
) -> Iterator[list[str]]:
    """layer_stats.csv rows: one per run, time (init, final) and hidden layer (from 1)."""
    for seed in seeds:
        i = seed - config["first_seed"]
        prefix = _run_prefix(config, seed)
        for when in ("init", "final"):
            cols = [arrays[f"stats/{when}/{n}"][i].astype(str).tolist() for n in names]
            for layer in range(len(cols[0]) if cols else 0):
                yield [*prefix, when, str(layer + 1), *(c[layer] for c in cols)]


# --- summaries over seeds --------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[..., Any] = np.median,
    *,
    level: float = 0.95,
    n_resamples: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the finite ``values``.

    Resamples the values with replacement ``n_resamples`` times, computes the
    statistic of each resample and returns the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` percentiles of those (Efron & Tibshirani 1993, ch. 13).
    The generator is ``numpy.random.default_rng(seed)``, so the interval is the
    same on every call.

    Args:
      values: one number per seed; NaN and inf (diverged seeds) are left out.
      statistic: ``statistic(array, axis=1)`` reduces each resample (default median).
      level: the interval's coverage.
      n_resamples: number of bootstrap resamples.
      seed: the generator's seed.

    Returns:
      ``(low, high)``; NaN for both with fewer than 2 finite values.

    Example:
      >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
      >>> 2.0 <= lo < 4.5 < hi <= 7.0
      True
    """
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_resamples, v.size))
    stats = np.asarray(statistic(v[idx], axis=1), np.float64)
    alpha = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(stats, [alpha, 100.0 - alpha])
    return float(lo), float(hi)


def summarize(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """``(median, ci_low, ci_high)`` over the finite values (NaN where undefined)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    median = float(np.median(v)) if v.size else math.nan
    return (median, *bootstrap_ci(v))


def varying(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The grid axes whose value differs between rows, in settings order."""
    return [s.field for s in settings() if s.is_axis and len({repr(r[s.field]) for r in rows}) > 1]


def _value(v: Any) -> str:
    """A setting's value, exact (0.1 and 0.1000001 stay apart)."""
    return "none" if v is None else repr(v) if isinstance(v, float) else str(v)


def _fmt(x: float, spec: str) -> str:
    return "-" if not math.isfinite(x) else format(x, spec)


def summary_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per grid point: median and 95% bootstrap interval over seeds, divergence.

    The columns are the axes that vary in ``rows`` (``depth`` if none does).
    """
    if not rows:
        return "(no runs)"
    keys = varying(rows) or ["depth"]
    by_point: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_point.setdefault(r["name"], []).append(r)
    body = []
    for group in by_point.values():
        loss = summarize([r["final_train_loss"] for r in group])
        acc = summarize([r["test_accuracy"] for r in group])
        div = sum(bool(r["diverged"]) for r in group)
        cells = [_value(group[0][k]) for k in keys]
        cells += [
            f"{_fmt(loss[0], '.4f')} [{_fmt(loss[1], '.4f')}, {_fmt(loss[2], '.4f')}]",
            f"{_fmt(acc[0], '.3f')} [{_fmt(acc[1], '.3f')}, {_fmt(acc[2], '.3f')}]",
            f"{div}/{len(group)}",
        ]
        body.append(cells)
    header = [*keys, "train loss [95% CI]", "test acc [95% CI]", "diverged"]
    widths = [max(len(c[i]) for c in [header, *body]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths)).rstrip()
    rule = "-" * len(line(header))
    note = "median over seeds, [95% percentile-bootstrap interval]; diverged seeds left out"
    return "\n".join([line(header), rule, *map(line, body), rule, note])


def group_by(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> Iterator[tuple[Any, list]]:
    """Rows grouped by the values of ``keys``, in increasing order (None first)."""
    key = lambda r: tuple((0, 0) if r[k] is None else (1, r[k]) for k in keys)
    for _, g in itertools.groupby(sorted(rows, key=key), key=key):
        group = list(g)
        yield tuple(group[0][k] for k in keys), group


def read_results(out: Path) -> list[dict[str, Any]]:
    """The typed rows of ``out/results.csv`` (SweepError naming the file if corrupt)."""
    return store.read_csv(out / "results.csv", result_types())


def read_layer_stats(out: Path) -> list[dict[str, Any]]:
    """The typed rows of ``out/layer_stats.csv`` (statistics as floats)."""
    types = {k: v for k, v in result_types().items() if k in run_columns()}
    types.update({"when": str, "layer": int})
    return store.read_csv(out / "layer_stats.csv", types, default=float)
