"""Trainability of deep tanh MLPs over (sigma_w², depth) against the 6·xi_c depth scale.

Published claim (Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, "Deep Information
Propagation", arXiv 1611.01232): a random network with weights ``N(0, sigma_w2 / n)``
and biases ``N(0, sigma_b2)`` can be trained only if information about its inputs
survives the forward pass, which it does over the correlation depth scale ``xi_c``
(``1 / xi_c = -log chi_c``). Networks train when their depth is below about
``6 xi_c``; ``xi_c`` diverges at the edge of chaos (``chi1 = 1``), where arbitrarily
deep networks train.

What is measured. tanh MLPs ``[64, width x depth, 10]`` on the 8x8 digits
(:func:`jaxstab.data.load_digits`), ``sigma_b2`` fixed, weights and biases drawn
with a traced ``sigma_w2`` (one flat standard-normal draw per run, scaled), trained
with plain SGD for a fixed budget of steps. For each depth one program of
:func:`jaxstab.engine.train` trains every ``(sigma_w2, seed)`` pair at once, with
``sigma_w2``, ``sigma_b2`` and the learning rate as the runs' traced values. A cell
is *trainable* when the median over seeds of the final training accuracy reaches
``trainable_accuracy``.
The prediction ``depth < 6 xi_c(sigma_w2)`` comes from
:func:`jaxstab.theory.depth_scales`, vmapped over the ``sigma_w2`` grid.

Run: ``python experiments/phase_diagram.py [--quick] [--workdir DIR]``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxstab as js
from jaxstab import engine, theory
from jaxstab.data import load_digits

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common

NAME = "phase_diagram"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """What `phase_diagram` runs."""

    sigma_w2: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)  # grid of sigma_w²
    depths: tuple[int, ...] = (10, 25, 40, 55, 70, 85, 100)  # hidden layers (one program each)
    sigma_b2: float = 0.05  # bias variance, fixed
    width: int = 64  # hidden width (the digits have 64 features)
    seeds: int = 2  # runs per cell, vmapped with the sigma_w² grid
    steps: int = 300  # SGD steps (the fixed budget)
    batch_size: int = 64  # examples per step, drawn uniformly with replacement
    lr: float = 0.01  # SGD learning rate, the same for every cell
    trainable_accuracy: float = 0.5  # median final training accuracy of a trainable cell
    theory_points: int = 120  # sigma_w² points of the 6 xi_c curve
    agreement_tolerance: float = 0.8  # claim: at least this fraction of cells agree
    seed: int = 0  # the engine's base PRNG seed


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full configuration, or a shrunk one that runs in seconds (a 3x3 grid)."""
    if quick:
        return ExperimentConfig(
            sigma_w2=(0.5, 1.75, 4.0),
            depths=(4, 12, 30),
            width=32,
            steps=60,
            batch_size=32,
            lr=0.05,
            trainable_accuracy=0.3,
            theory_points=40,
            agreement_tolerance=0.6,
        )
    return ExperimentConfig()


# --------------------------------------------------------------------------------------
# Pure helpers.


def mean_field_params(
    key: jax.Array,
    sizes: tuple[int, ...],
    sigma_w2: jax.Array,
    sigma_b2: jax.Array,
) -> Any:
    """Parameters in :func:`jaxstab.init_mlp`'s layout, weights ``N(0, sigma_w2 / fan_in)``.

    Hidden biases ``N(0, sigma_b2)``, readout bias zero: the distribution of
    ``variance_scaling(sigma_w2, "fan_in", "normal")`` weights and
    ``normal(sqrt(sigma_b2))`` biases. Every entry comes from ONE flat ``normal(1)``
    draw, scaled: ``sigma_w2`` and ``sigma_b2`` may be traced (vmapped over a grid),
    and a single 1-D threefry draw compiles in a fraction of the time of
    ``init_mlp``'s per-layer draws on CPU.

    Args:
      key: PRNG key.
      sizes: ``[d_in, width, ..., width, d_out]`` (equal hidden widths).
      sigma_w2: weight variance times fan-in.
      sigma_b2: bias variance.
    """
    d_in, width, d_out = sizes[0], sizes[1], sizes[-1]
    depth = len(sizes) - 2
    if any(s != width for s in sizes[1:-1]):
        raise ValueError(f"hidden widths must be equal, got sizes {list(sizes)}")
    shapes = [(d_in, width), (depth - 1, width, width), (depth, width), (width, d_out)]
    counts = [int(np.prod(s)) for s in shapes]
    z = js.normal(1.0)(key, (sum(counts),))
    w_in, w_hidden, b, w_out = (
        z[a : a + c].reshape(s) for a, c, s in zip(np.cumsum([0, *counts[:-1]]), counts, shapes)
    )
    sw, sb = jnp.sqrt(sigma_w2), jnp.sqrt(sigma_b2)
    hidden = [{"w": (sw / np.sqrt(d_in)) * w_in[None], "b": sb * b[:1]}]
    if depth > 1:
        hidden.append({"w": (sw / np.sqrt(width)) * w_hidden, "b": sb * b[1:]})
    if d_in == width:  # one group, as init_mlp stacks equal layers
        hidden = [{k: jnp.concatenate([g[k] for g in hidden]) for k in ("w", "b")}]
    output = {"w": (sw / np.sqrt(width)) * w_out, "b": jnp.zeros((d_out,))}
    return {"hidden": hidden, "output": output}


def predicted_trainable(depths: np.ndarray, xi_c: np.ndarray, factor: float = 6.0) -> np.ndarray:
    """``depth < factor * xi_c``, broadcast to ``[len(depths), len(xi_c)]``."""
    return np.asarray(depths)[:, None] < factor * np.asarray(xi_c)[None, :]


def agreement(trainable: np.ndarray, predicted: np.ndarray) -> float:
    """The fraction of grid cells where measured and predicted trainability agree."""
    return float(np.mean(np.asarray(trainable) == np.asarray(predicted)))


# --------------------------------------------------------------------------------------
# Training: one engine program per depth, its runs every (sigma_w², seed).


class _Task(NamedTuple):
    """The engine's callables of one depth (the same objects each call: one compile)."""

    init: Callable[..., Any]
    loss: Callable[..., Any]
    optimizer: Callable[..., Any]
    evaluate: Callable[..., Any]


@functools.cache
def _task(sizes: tuple[int, ...]) -> _Task:
    """tanh MLP callables over a run's traced ``sigma_w2``, ``sigma_b2`` and ``lr``."""

    def init(key: jax.Array, hp: Any) -> Any:
        return mean_field_params(key, sizes, hp["sigma_w2"], hp["sigma_b2"])

    def loss(params: Any, batch: tuple[jax.Array, jax.Array], hp: Any) -> jax.Array:
        del hp
        return jnp.mean(js.softmax_cross_entropy(js.apply_mlp(params, batch[0], "tanh"), batch[1]))

    def evaluate(params: Any, data: tuple[jax.Array, jax.Array], hp: Any) -> dict[str, jax.Array]:
        del hp
        logits = js.apply_mlp(params, data[0], "tanh")
        return {
            "accuracy": js.accuracy(logits, data[1]),
            "loss": jnp.mean(js.softmax_cross_entropy(logits, data[1])),
            "finite": jnp.all(jnp.isfinite(logits)),
        }

    return _Task(init, loss, lambda hp: optax.sgd(hp["lr"]), evaluate)


def train_grid(cfg: ExperimentConfig) -> dict[str, np.ndarray]:
    """Final training accuracy ``[depths, sigma_w2, seeds]`` (and loss, divergence).

    One :func:`jaxstab.engine.train` call per depth; ``sigma_w2``, ``sigma_b2`` and
    ``lr`` are the runs' traced values. Run ``(sigma_w2, s)`` draws from the engine's
    seed ``s``: every ``sigma_w2`` of a seed shares the initial draw (scaled) and the
    minibatches. A diverged run (non-finite loss, gradient or final logits) counts
    as accuracy 0.
    """
    data = load_digits()
    runs = engine.grid(cfg.seeds, sigma_w2=cfg.sigma_w2, sigma_b2=[cfg.sigma_b2], lr=[cfg.lr])
    out: dict[str, list[np.ndarray]] = {"accuracy": [], "loss": [], "diverged": []}
    for depth in cfg.depths:
        task = _task((data.d_in, *(cfg.width,) * depth, data.num_classes))
        res = engine.train(
            task.init,
            task.loss,
            task.optimizer,
            (data.x_train, data.y_train),
            runs,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            evaluate=task.evaluate,
            eval_data=(data.x_train, data.y_train),
        )
        # The engine's divergence (non-finite loss or gradient), or non-finite final logits.
        diverged = res.diverged | ~res.evals["finite"][:, -1]
        final = {
            "accuracy": np.where(diverged, 0.0, res.evals["accuracy"][:, -1]),
            "loss": res.evals["loss"][:, -1],
            "diverged": diverged,
        }
        for k, v in final.items():
            out[k].append(v.reshape(len(cfg.sigma_w2), cfg.seeds))  # the seed varies fastest
    return {k: np.stack(v) for k, v in out.items()}


def xi_c_grid(sigma_w2: np.ndarray, sigma_b2: float) -> np.ndarray:
    """``xi_c`` of tanh at every ``sigma_w2`` (one vmapped call of theory.depth_scales)."""
    _, xi_c = jax.vmap(lambda s: theory.depth_scales("tanh", s, sigma_b2))(
        jnp.asarray(sigma_w2, jnp.float32)
    )
    return np.asarray(xi_c, np.float64)


# --------------------------------------------------------------------------------------
# Summary, claims, figure.


def summarize(cfg: ExperimentConfig, runs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Trainable cells, the 6 xi_c prediction on the grid and on a fine curve."""
    lo, hi = min(cfg.sigma_w2), max(cfg.sigma_w2)
    fine = np.linspace(lo, hi, cfg.theory_points)
    xi_all = xi_c_grid(np.concatenate([np.asarray(cfg.sigma_w2), fine]), cfg.sigma_b2)
    xi_cells, xi_fine = xi_all[: len(cfg.sigma_w2)], xi_all[len(cfg.sigma_w2) :]
    median_acc = np.median(runs["accuracy"], axis=-1)  # [depths, sigma_w2]
    trainable = median_acc >= cfg.trainable_accuracy
    predicted = predicted_trainable(np.asarray(cfg.depths), xi_cells)
    critical = float(theory.critical_sigma_w2("tanh", cfg.sigma_b2))
    finite = np.where(np.isfinite(xi_fine), xi_fine, np.inf)
    return {
        "critical_sigma_w2": critical,
        "xi_c_cells": [float(v) for v in xi_cells],
        "six_xi_c_cells": [float(6 * v) for v in xi_cells],
        "median_accuracy": median_acc.tolist(),
        "accuracy": runs["accuracy"].tolist(),
        "diverged_fraction": float(np.mean(runs["diverged"])),
        "trainable": trainable.tolist(),
        "predicted_trainable": predicted.tolist(),
        "agreement_fraction": agreement(trainable, predicted),
        "fine_sigma_w2": fine.tolist(),
        "fine_xi_c": [float(v) if np.isfinite(v) else None for v in xi_fine],
        "xi_c_peak_sigma_w2": float(fine[int(np.argmax(finite))]),
        "xi_c_peak": float(np.max(finite)),
    }


def make_claims(cfg: ExperimentConfig, m: dict[str, Any]) -> list[dict[str, Any]]:
    """The published claims next to the measured numbers."""
    step = (max(cfg.sigma_w2) - min(cfg.sigma_w2)) / max(cfg.theory_points - 1, 1)
    return [
        {
            "claim": "networks train iff depth < 6 xi_c: fraction of (sigma_w2, depth) cells "
            f"where 'median final train accuracy >= {cfg.trainable_accuracy}' agrees",
            "published": 1.0,
            "measured": m["agreement_fraction"],
            "tolerance": f">= {cfg.agreement_tolerance}",
            "agrees": m["agreement_fraction"] >= cfg.agreement_tolerance,
        },
        {
            "claim": "xi_c diverges at criticality: the peak of xi_c over sigma_w2 sits at "
            "critical_sigma_w2(tanh, sigma_b2)",
            "published": m["critical_sigma_w2"],
            "measured": m["xi_c_peak_sigma_w2"],
            "tolerance": f"one grid step ({step:.3f}); peak xi_c {m['xi_c_peak']:.3g}",
            "agrees": abs(m["xi_c_peak_sigma_w2"] - m["critical_sigma_w2"]) <= step,
        },
    ]


def plot(cfg: ExperimentConfig, m: dict[str, Any], workdir: Path) -> list[str]:
    """``phase_diagram_heatmap.png``: median final accuracy with 6 xi_c drawn over it."""
    plt = _common.pyplot()
    sw = np.asarray(cfg.sigma_w2)
    depths = np.asarray(cfg.depths)
    acc = np.asarray(m["median_accuracy"])
    edges = lambda v: np.concatenate(
        [[v[0] - (v[1] - v[0]) / 2], (v[1:] + v[:-1]) / 2, [v[-1] + (v[-1] - v[-2]) / 2]]
    )
    fig, ax = plt.subplots(figsize=(7, 5))
    mesh = ax.pcolormesh(edges(sw), edges(depths), acc, cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(mesh, ax=ax, label="median final training accuracy")
    fine = np.asarray(m["fine_sigma_w2"])
    xi = np.asarray([np.inf if v is None else v for v in m["fine_xi_c"]])
    ax.plot(fine, 6 * xi, "w-", lw=2, label="6 ξ_c (mean-field theory)")
    ax.plot(fine, 3 * xi, "w--", lw=1, label="3 ξ_c")
    ax.axvline(m["critical_sigma_w2"], color="r", ls=":", label="critical σw²")
    trainable = np.asarray(m["trainable"])
    for i, d in enumerate(depths):
        for j, s in enumerate(sw):
            ax.text(s, d, "T" if trainable[i, j] else "·", ha="center", va="center", color="w")
    ax.set_ylim(edges(depths)[0], edges(depths)[-1])
    ax.set_xlabel("σw²")
    ax.set_ylabel("depth (hidden layers)")
    ax.set_title(
        f"tanh, σb²={cfg.sigma_b2}, width {cfg.width}, {cfg.steps} SGD steps: "
        f"agreement {m['agreement_fraction']:.2f}"
    )
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    name = f"{NAME}_heatmap.png"
    _common.save_and_close(fig, workdir / name, tight=False)
    return [name]


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figure into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    cfg = get_config(args.quick)
    start = time.perf_counter()
    measured = summarize(cfg, train_grid(cfg))
    measured["wall_seconds"] = time.perf_counter() - start
    return _common.write_results(
        args.workdir,
        experiment=NAME,
        quick=args.quick,
        config=cfg,
        measured=measured,
        claims=make_claims(cfg, measured),
        figures=plot(cfg, measured, args.workdir),
    )


if __name__ == "__main__":
    out = main()
    for c in out["claims"]:
        print(f"[{'ok' if c['agrees'] else 'NO'}] {c['claim']}: measured {c['measured']}")
