"""The plumbing every experiment shares: its command line, results.json and figures.

Not an experiment (the leading underscore keeps it out of the notebook tests). The
experiments import it as ``_common``: ``experiments/`` is on ``sys.path`` when one
runs as ``python experiments/<name>.py`` and when the tests and notebooks import
them (they insert ``experiments/`` first); imported as ``experiments.<name>``
(``python -m`` from the repository root) they fall back to ``experiments._common``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxstab.sweep import save_figure, write_text


def parse_args(
    name: str, description: str | None, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """The experiment's command line: ``--quick`` and ``--workdir``.

    Args:
      name: the experiment's name; the default workdir is ``runs/experiments/<name>``.
      description: the ``--help`` text, of which only the first line is used (pass
        the module's ``__doc__``).
      argv: the arguments, without the program name; None reads ``sys.argv``.

    Returns:
      The namespace with ``quick`` (bool) and ``workdir`` (a ``Path``).
    """
    first_line = description.strip().splitlines()[0] if description else None
    parser = argparse.ArgumentParser(description=first_line)
    parser.add_argument("--quick", action="store_true", help="the shrunk config (seconds)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("runs/experiments") / name,
        help="where results.json and the figures go (default: %(default)s)",
    )
    return parser.parse_args(argv)


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend.

    Raises:
      ImportError: matplotlib is missing; the message names the extra that has it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError('the figures need matplotlib: pip install "jaxstab[all]"') from e
    return plt


def save_and_close(fig: Any, path: Path, *, tight: bool = True) -> None:
    """Writes ``fig`` to ``path`` as a 110-dpi PNG, atomically, then closes it.

    Args:
      fig: a figure made with :func:`pyplot`.
      path: the PNG file; its directory is created if needed.
      tight: crop to the drawn content (``bbox_inches="tight"``); False keeps the
        figure's own size (for figures laid out with ``fig.tight_layout()``).
    """
    save_figure(fig, path, tight=tight)
    pyplot().close(fig)


def _strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by None, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def write_results(
    workdir: Path,
    *,
    experiment: str,
    quick: bool,
    config: Any,
    measured: dict[str, Any],
    claims: list[dict[str, Any]],
    figures: Iterable[str],
) -> dict[str, Any]:
    """Writes ``workdir/results.json`` atomically with exactly the conventional keys.

    The file is strict JSON (``allow_nan=False``): a non-finite float anywhere in the
    result is written as ``null``. The returned dict holds the values as given.

    Args:
      workdir: the experiment's output directory, created if needed.
      experiment: the experiment's name.
      quick: whether the quick config ran.
      config: the ``ExperimentConfig`` (stored as ``dataclasses.asdict``) or a dict.
      measured: the measured numbers.
      claims: one dict per published claim (claim, published, measured, tolerance, agrees).
      figures: the PNG file names written into ``workdir``.

    Returns:
      ``{"experiment", "quick", "config", "measured", "claims", "figures"}``, what
      ``main()`` returns.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    result = {
        "experiment": experiment,
        "quick": quick,
        "config": config,
        "measured": measured,
        "claims": claims,
        "figures": list(figures),
    }
    text = json.dumps(_strict_json(result), indent=1, allow_nan=False)
    write_text(Path(workdir) / "results.json", text)
    return result


# --- per-layer probes through the engine's ``evaluate`` (a dict of scalars) -----------


def to_scalars(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Every entry of every array as its own scalar, keyed ``"<name>/<flat index>"``.

    :func:`jaxstab.engine.train` records ``evaluate``'s outputs only when they are
    scalars; a per-layer probe goes through it flattened and comes back with
    :func:`from_scalars`.
    """
    out = {}
    for name, a in arrays.items():
        flat = a.reshape(-1)
        out.update({f"{name}/{i}": flat[i] for i in range(flat.shape[0])})
    return out


def from_scalars(
    evals: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """The inverse of :func:`to_scalars` on the engine's ``[runs, evals]`` outputs.

    Args:
      evals: ``TrainResult.evals``, ``"<name>/<i>" -> [runs, evals]``.
      shapes: each name's array shape (``jax.eval_shape`` of the probe gives them).

    Returns:
      ``name -> [runs, evals, *shape]``.
    """
    out = {}
    for name, shape in shapes.items():
        flat = [np.asarray(evals[f"{name}/{i}"]) for i in range(math.prod(shape))]
        stacked = np.stack(flat, axis=-1)
        out[name] = stacked.reshape(*stacked.shape[:-1], *shape)
    return out
