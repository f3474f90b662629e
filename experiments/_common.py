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

import jax
import numpy as np

from jaxstab import compile_cache
from jaxstab.sweep import save_figure, write_text

#: XLA options of a measurement program that runs about once per process: there its
#: compile time counts as much as its run time. XLA:CPU's backend optimization level 1
#: compiles the threefry loops of net draws several times faster than the default
#: (a vmapped draw of four depth-6 nets: 0.94 s against 5.5 s) and runs these
#: programs as fast. The float rounding may differ from the default level's in the
#: last bits, so a program keeps one level: its numbers stay a function of its inputs.
#: The engine compiles its init programs the same way (``jaxstab.engine._blocks.INIT_OPTIONS``).
ONCE = {"xla_backend_optimization_level": 1}


def jit_once(fn: Any, **jit_kwargs: Any) -> Any:
    """``jax.jit(fn, **jit_kwargs)`` compiled with :data:`ONCE`, for a measurement run once."""
    return jax.jit(fn, compiler_options=ONCE, **jit_kwargs)


def parse_args(
    name: str, description: str | None, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """The experiment's command line: ``--quick``, ``--workdir``, ``--no-compile-cache``.

    Parsing also turns on jax's persistent compilation cache
    (:func:`jaxstab.compile_cache.enable`, as ``jaxstab sweep`` does) unless
    ``--no-compile-cache`` is given: a rerun loads its programs instead of
    compiling them again.

    Args:
      name: the experiment's name; the default workdir is ``runs/experiments/<name>``.
      description: the ``--help`` text, of which only the first line is used (pass
        the module's ``__doc__``).
      argv: the arguments, without the program name; None reads ``sys.argv``.

    Returns:
      The namespace with ``quick`` (bool), ``workdir`` (a ``Path``) and
      ``no_compile_cache`` (bool).
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
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use jax's persistent compilation cache (default: on, in "
        "$XDG_CACHE_HOME/jaxstab/jax or ~/.cache/jaxstab/jax)",
    )
    args = parser.parse_args(argv)
    compile_cache.enable(not args.no_compile_cache)
    return args


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


# --- claims as code -----------------------------------------------------------------

#: The fields every claim carries (``note`` is optional).
CLAIM_FIELDS = ("claim", "source", "published", "measured", "interval", "n", "rule", "agrees")


def claim(
    claim: str,
    *,
    source: str,
    published: Any,
    measured: Any,
    interval: Sequence[float] | None,
    n: int | None,
    rule: str,
    agrees: bool | None,
    note: str | None = None,
) -> dict[str, Any]:
    """One published claim checked against a measurement: what ``results.json`` records.

    Args:
      claim: the paper's statement, in words.
      source: where it is stated: paper (authors, year), section, figure or equation.
      published: the published value, or the statement's quantitative content as text.
      measured: the measured value (a number; text only for a composite measurement).
      interval: the measured value's 95% interval ``[low, high]``, or None where the
        value is exact (a closed form, a count) -- then ``note`` says why.
      n: the sample size behind ``measured`` (seeds, matrices, runs), or None.
      rule: the rule that decides agreement, stated before looking at the data.
      agrees: the verdict; None marks a claim whose source could not be checked
        (unverified), and ``note`` says why.
      note: anything a reader needs to weigh the verdict.

    Returns:
      The claim as a dict with the keys of :data:`CLAIM_FIELDS` (and ``note``).

    Raises:
      ValueError: an interval that is not two ordered numbers, a verdict that is not
        True, False or None, or a missing note where one is required.
    """
    if agrees is not None and not isinstance(agrees, bool | np.bool_):
        raise ValueError(f"claim {claim!r}: agrees={agrees!r}; use True, False or None")
    if interval is not None:
        lo, hi = (float(v) for v in interval)
        if not lo <= hi:
            raise ValueError(f"claim {claim!r}: interval={interval!r} is not [low, high]")
        interval = [lo, hi]
    if (interval is None or agrees is None) and not note:
        raise ValueError(f"claim {claim!r}: no interval or no verdict needs a note saying why")
    out = {
        "claim": claim,
        "source": source,
        "published": published,
        "measured": measured,
        "interval": interval,
        "n": None if n is None else int(n),
        "rule": rule,
        "agrees": None if agrees is None else bool(agrees),
    }
    if note:
        out["note"] = note
    return out


def check_claims(claims: Sequence[Mapping[str, Any]]) -> None:
    """Raises ValueError naming the first claim that lacks a field of :data:`CLAIM_FIELDS`."""
    if not claims:
        raise ValueError("an experiment records at least one claim")
    for c in claims:
        missing = [f for f in CLAIM_FIELDS if f not in c]
        if missing:
            raise ValueError(f"claim {c.get('claim')!r} lacks {missing}; build it with claim()")


def provenance() -> dict[str, Any]:
    """What produced a result: the library versions, the backend and the git commit."""
    import subprocess

    import jax

    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "jax": jax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "commit": commit,
    }


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
      claims: one dict per published claim, built with :func:`claim`.
      figures: the PNG file names written into ``workdir``.

    Returns:
      ``{"provenance", "experiment", "quick", "config", "measured", "claims", "figures"}``, what
      ``main()`` returns.
    """
    check_claims(claims)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    result = {
        "provenance": provenance(),
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
