"""The runs pytree: per-run hyperparameters with a leading runs axis.

A run is one seed at one point of a grid. The engine vmaps over runs, so every
leaf of ``runs`` is an array whose first axis has one entry per run, and each
run sees its own slice as ``hparams`` (``hparams["lr"]`` is a scalar). The
integer leaf ``"seed"`` selects the run's PRNG stream.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["grid", "num_runs", "run_at", "as_runs"]


def _as_array(name: str, values: Any) -> np.ndarray:
    try:
        a = np.asarray(values)
    except (TypeError, ValueError) as e:
        raise TypeError(f"runs[{name!r}] must be numeric, got {values!r} ({e})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(
            f"runs[{name!r}] must hold numbers or booleans (a traced value), got dtype "
            f"{a.dtype} from {values!r}; map names to numbers first"
        )
    # Traced values are float32/int32, as jax's default (x64 off) would make them.
    if a.dtype.kind == "f":
        return a.astype(np.float32)
    if a.dtype.kind in "iu":
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise ValueError(f"runs[{name!r}] has values outside int32: {values!r}")
        return a.astype(np.int32)
    return a


def grid(seeds: int | Sequence[int], **axes: Sequence[Any]) -> dict[str, np.ndarray]:
    """Every combination of the axes' values, each for every seed, as a runs pytree.

    The seed varies fastest, then the last axis, so the runs of one grid point
    are contiguous.

    Args:
      seeds: a number of seeds ``n`` (seeds ``0 .. n-1``) or the seed indices.
      **axes: ``name=values`` for each hyperparameter; a value may be a number or
        an array (e.g. per-layer scales), equal in shape along one axis.

    Returns:
      ``{"seed": [runs] int32, name: [runs, ...], ...}``.

    Example:
      >>> runs = grid(2, lr=[0.1, 0.01])
      >>> runs["seed"].tolist(), runs["lr"].astype(str).tolist()
      ([0, 1, 0, 1], ['0.1', '0.1', '0.01', '0.01'])
    """
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be a positive number of seeds, got {seeds!r}")
        seed_list = list(range(int(seeds)))
    else:
        seed_list = [int(s) for s in seeds]  # type: ignore[union-attr]
        if not seed_list or len(set(seed_list)) != len(seed_list):
            raise ValueError(f"seeds must be distinct seed indices, got {seeds!r}")
    if "seed" in axes:
        raise ValueError("'seed' is set by the seeds argument, not as an axis")
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise TypeError(f"axis {name!r} must be a sequence of values, got {values!r}")
        if len(values) == 0:
            raise ValueError(f"axis {name!r} has no values")
    names = list(axes)
    points = list(itertools.product(*(axes[n] for n in names)))
    out: dict[str, Any] = {"seed": [s for _ in points for s in seed_list]}
    for i, name in enumerate(names):
        out[name] = [p[i] for p in points for _ in seed_list]
    return {k: _as_array(k, v) for k, v in out.items()}


def as_runs(runs: Mapping[str, Any]) -> dict[str, Any]:
    """Checks a runs pytree and returns it with numpy leaves (float32/int32).

    Raises:
      TypeError: ``runs`` is not a mapping with an integer ``"seed"`` leaf, or a
        leaf is not numeric.
      ValueError: the leaves disagree in their number of runs.
    """
    if not isinstance(runs, Mapping) or "seed" not in runs:
        raise TypeError(
            "runs must be a mapping of per-run arrays with an integer 'seed' entry "
            f"(see jaxstab.engine.grid), got {type(runs).__name__}"
        )
    flat, treedef = jax.tree_util.tree_flatten_with_path(dict(runs))
    leaves = [_as_array(jax.tree_util.keystr(p), v) for p, v in flat]
    lengths = {
        jax.tree_util.keystr(p): (a.shape[0] if a.ndim else None) for (p, _), a in zip(flat, leaves)
    }
    if any(n is None for n in lengths.values()) or len(set(lengths.values())) != 1:
        raise ValueError(
            "every leaf of runs needs the same leading runs axis; got lengths "
            + ", ".join(f"{k}: {'scalar' if n is None else n}" for k, n in lengths.items())
        )
    out = jax.tree_util.tree_unflatten(treedef, leaves)
    if out["seed"].dtype.kind not in "iu" or out["seed"].ndim != 1:
        raise TypeError(f"runs['seed'] must be a 1-D integer array, got {out['seed'].dtype}")
    if next(iter(lengths.values())) == 0:
        raise ValueError("runs holds no runs")
    return out


def num_runs(runs: Mapping[str, Any]) -> int:
    """The length of the runs axis."""
    return int(np.shape(runs["seed"])[0])


def run_at(runs: Any, index: int) -> Any:
    """One run's hyperparameters (the slice ``index`` of every leaf)."""
    return jax.tree.map(lambda a: a[index], runs)
