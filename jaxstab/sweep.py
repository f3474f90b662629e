"""A sweep on disk: expand the grid, run it group by group, write, resume, report.

Layout of a sweep directory::

    config.json        the sweep, versions and devices
    parts/NAME.npz     one finished configuration's arrays   (atomic: temp + rename)
    parts/NAME.json    its table rows; written last, it marks NAME as finished
    results.csv        one row per configuration x seed
    curves.npz         per-step and per-evaluation metrics, "NAME/field"
    layer_stats.npz    per-layer statistics at init and at the end, "NAME/init/field"
    figures/*.png      loss against depth, per-layer statistics against theory, divergence

A killed sweep rerun with ``resume=True`` skips every configuration whose
``parts/NAME.json`` exists and ends with exactly the rows of an uninterrupted
run: each group is a deterministic program, so rerunning a partly written group
rewrites identical parts.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import io
import itertools
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxstab.experiment import Config, Result, group_configs, run_many

# Settings that must not change when a sweep is resumed (the axes may grow).
FIXED_FIELDS = ("steps", "batch_size", "eval_every", "seeds", "dataset", "seed")
ROW_FIELDS = (
    "depth",
    "width",
    "activation",
    "init",
    "optimizer",
    "lr",
    "clip",
    "seed",
    "final_train_loss",
    "test_loss",
    "test_accuracy",
    "diverged",
    "diverged_step",
    "clip_rate",
    "grad_norm_init",
    "dead_fraction_init",
    "saturated_fraction_init",
    "name",
)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """The grid of a sweep: every combination of the axes, each for ``seeds`` seeds."""

    depths: tuple[int, ...] = (2, 8, 16, 32)
    widths: tuple[int, ...] = (64,)
    activations: tuple[str, ...] = ("sigmoid", "tanh", "relu")
    inits: tuple[str, ...] = ("xavier_normal", "he_normal")
    optimizers: tuple[str, ...] = ("sgd",)
    lrs: tuple[float, ...] = (0.02,)
    clips: tuple[float | None, ...] = (None,)
    seeds: int = 8
    steps: int = 500
    batch_size: int = 128
    eval_every: int = 50
    dataset: str = "digits"
    seed: int = 0

    def configs(self) -> list[Config]:
        """Every configuration, validated (raises ValueError naming a bad value)."""
        fixed = {f: getattr(self, f) for f in FIXED_FIELDS}
        return [
            Config(depth=d, width=w, activation=a, init=i, optimizer=o, lr=lr, clip=c, **fixed)
            for d, w, a, i, o, lr, c in itertools.product(
                self.depths,
                self.widths,
                self.activations,
                self.inits,
                self.optimizers,
                self.lrs,
                self.clips,
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})  # type: ignore[arg-type]


# --- atomic files ------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``, renamed onto it if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig: Any, path: Path, *, dpi: int = 110, tight: bool = True) -> None:
    """Writes a matplotlib figure to ``path`` as PNG, atomically (temp file + rename).

    The figure stays open: closing it (``plt.close(fig)``) is the caller's business.

    Args:
      fig: the ``matplotlib.figure.Figure`` to write.
      path: the PNG file; its directory is created if needed.
      dpi: resolution in dots per inch.
      tight: crop to the drawn content (``bbox_inches="tight"``); False keeps the
        figure's own size (the savefig default).
    """
    extra = {"bbox_inches": "tight"} if tight else {}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", **extra)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


# --- one configuration's results ----------------------------------------------


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def result_rows(result: Result) -> list[dict[str, Any]]:
    """The table rows of a result: one per seed."""
    c = result.config
    rows = []
    for s in range(c.seeds):
        stats = result.layer_stats
        rows.append(
            {
                "depth": c.depth,
                "width": c.width,
                "activation": c.activation,
                "init": c.init,
                "optimizer": c.optimizer,
                "lr": c.lr,
                "clip": c.clip,
                "seed": s,
                "final_train_loss": _finite_or_none(result.eval_train_loss[s, -1]),
                "test_loss": _finite_or_none(result.test_loss[s, -1]),
                "test_accuracy": _finite_or_none(result.test_accuracy[s, -1]),
                "diverged": bool(result.diverged[s]),
                "diverged_step": int(result.diverged_step[s]),
                "clip_rate": float(np.mean(result.clipped[s])),
                "grad_norm_init": float(result.grad_norm[s, 0]),
                "dead_fraction_init": float(np.mean(stats["init/dead_fraction"][s])),
                "saturated_fraction_init": float(np.mean(stats["init/saturated_fraction"][s])),
                "name": c.name,
            }
        )
    return rows


def result_arrays(result: Result) -> dict[str, np.ndarray]:
    arrays = {
        k: np.asarray(getattr(result, k))
        for k in Result._fields
        if k not in ("config", "layer_stats")
    }
    arrays.update({f"stats/{k}": v for k, v in result.layer_stats.items()})
    return arrays


def write_part(out: Path, result: Result) -> None:
    """Writes one finished configuration: arrays first, then the rows that mark it done.

    With several hosts (``jax.distributed``) only process 0 writes.
    """
    if jax.process_index() != 0:
        return
    name = result.config.name
    write_npz(out / "parts" / f"{name}.npz", result_arrays(result))
    payload = {"config": result.config.to_dict(), "rows": result_rows(result)}
    write_text(out / "parts" / f"{name}.json", json.dumps(payload, indent=1))


def finished(out: Path) -> set[str]:
    parts = out / "parts"
    return {p.stem for p in parts.glob("*.json")} if parts.is_dir() else set()


def load_part(out: Path, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    payload = json.loads((out / "parts" / f"{name}.json").read_text())
    with np.load(out / "parts" / f"{name}.npz") as f:
        arrays = {k: f[k] for k in f.files}
    return payload, arrays


# --- the sweep ------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import optax

    return {
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "devices": [str(d) for d in jax.devices()],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def check_resume(out: Path, spec: SweepSpec) -> None:
    """Raises ValueError when ``out`` holds a sweep whose fixed settings differ."""
    path = out / "config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())["sweep"]
    new = spec.to_dict()
    diff = [
        f"{f}: {old.get(f)!r} in {out} vs {new[f]!r} now"
        for f in FIXED_FIELDS
        if old.get(f) != new[f]
    ]
    if diff:
        raise ValueError(
            f"cannot resume {out}: its fixed settings differ ({'; '.join(diff)}); "
            "use a new --out directory or the same settings"
        )


def run_sweep(
    spec: SweepSpec,
    out: Path,
    *,
    data: Any = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) a sweep into ``out`` and assembles its outputs.

    Args:
      spec: the grid.
      out: the sweep directory; finished configurations found there are skipped.
      data: a :class:`jaxstab.data.Dataset`; by default loaded by name.
      progress: ``progress(done, total, label)`` after each group.

    Returns:
      A summary: configurations run and skipped, programs compiled.
    """
    configs = spec.configs()
    check_resume(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").exists():
        write_text(
            out / "config.json", json.dumps({"sweep": spec.to_dict(), **environment()}, indent=1)
        )
    done = finished(out)
    # A group is rerun whole if any of its configurations is unfinished: the
    # same program on the same runs reproduces the finished parts bit for bit,
    # where a smaller group would be a differently batched program.
    todo = [g for g in group_configs(configs) if any(c.name not in done for c in g)]
    total = len(configs)
    count = total - sum(len(g) for g in todo)
    if progress is not None:
        progress(count, total, "resumed" if count else "start")
    if todo and data is None:
        from jaxstab.data import get_dataset

        data = get_dataset(spec.dataset)
    compiled = 0
    for group in todo:

        def save(results: list[Result]) -> None:
            for r in results:
                write_part(out, r)

        _, n = run_many(group, data, on_group_done=save)
        compiled += n
        count += len(group)
        if progress is not None:
            c = group[0]
            progress(count, total, f"depth {c.depth} width {c.width} {c.activation} {c.optimizer}")
    assemble(out, configs)
    skipped = total - sum(len(g) for g in todo)
    return {"configs": total, "skipped": skipped, "programs_compiled": compiled}


def assemble(out: Path, configs: Sequence[Config]) -> None:
    """Writes results.csv, curves.npz, layer_stats.npz and the figures from the parts."""
    rows: list[dict[str, Any]] = []
    curves: dict[str, np.ndarray] = {}
    stats: dict[str, np.ndarray] = {}
    for config in configs:
        payload, arrays = load_part(out, config.name)
        rows += payload["rows"]
        for k, v in arrays.items():
            target = stats if k.startswith("stats/") else curves
            target[f"{config.name}/{k.removeprefix('stats/')}"] = v
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in ROW_FIELDS})
    write_text(out / "results.csv", buffer.getvalue())
    write_npz(out / "curves.npz", curves)
    write_npz(out / "layer_stats.npz", stats)
    from jaxstab import _plots

    _plots.draw_all(out)


def read_rows(out: Path) -> list[dict[str, Any]]:
    """results.csv as typed rows (empty cells become NaN or None)."""
    with open(out / "results.csv", newline="") as f:
        raw = list(csv.DictReader(f))
    rows = []
    for r in raw:
        row: dict[str, Any] = dict(r)
        for k in ("depth", "width", "seed", "diverged_step"):
            row[k] = int(r[k])
        for k in (
            "lr",
            "final_train_loss",
            "test_loss",
            "test_accuracy",
            "clip_rate",
            "grad_norm_init",
            "dead_fraction_init",
            "saturated_fraction_init",
        ):
            row[k] = float(r[k]) if r[k] != "" else math.nan
        row["clip"] = float(r["clip"]) if r["clip"] != "" else None
        row["diverged"] = r["diverged"] == "True"
        rows.append(row)
    return rows


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per configuration: median final loss and accuracy over seeds, divergence."""
    key = lambda r: (
        r["depth"],
        r["width"],
        r["activation"],
        r["init"],
        r["optimizer"],
        r["lr"],
        str(r["clip"]),
    )
    header = (
        f"{'depth':>5} {'width':>5} {'activation':<10} {'init':<15} {'opt':<8} {'lr':>7} "
        f"{'clip':>5} {'train loss':>10} {'test acc':>8} {'diverged':>8}"
    )
    lines = [header, "-" * len(header)]
    for k, group in itertools.groupby(sorted(rows, key=key), key=key):
        g = list(group)
        loss = (
            np.nanmedian([r["final_train_loss"] for r in g])
            if any(math.isfinite(r["final_train_loss"]) for r in g)
            else math.nan
        )
        acc = (
            np.nanmedian([r["test_accuracy"] for r in g])
            if any(math.isfinite(r["test_accuracy"]) for r in g)
            else math.nan
        )
        div = sum(r["diverged"] for r in g)
        depth, width, act, init, opt, lr, clip = k
        lines.append(
            f"{depth:>5} {width:>5} {act:<10} {init:<15} {opt:<8} {lr:>7g} {clip:>5} "
            f"{loss:>10.4f} {acc:>8.3f} {div:>4}/{len(g):<3}"
        )
    return "\n".join(lines)
