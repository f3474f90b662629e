"""Figures of a sweep directory, drawn from its files alone (matplotlib, an extra)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxstab import sweep


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError('figures need matplotlib: pip install "jaxstab[all]"') from e
    return plt


def _label(init: str, clip: Any, lr: float, many_lr: bool, many_clip: bool) -> str:
    label = init
    if many_lr:
        label += f" lr={lr:g}"
    if many_clip:
        label += f" clip={clip if clip is not None else 'none'}"
    return label


def _quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    v = np.asarray([x for x in values if math.isfinite(x)])
    if v.size == 0:
        return math.nan, math.nan, math.nan
    q25, q50, q75 = np.percentile(v, [25, 50, 75])
    return float(q25), float(q50), float(q75)


def loss_vs_depth(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Median final training loss against depth per activation/init, with the seed IQR."""
    plt = _pyplot()
    activations = sorted({r["activation"] for r in rows})
    many_lr = len({r["lr"] for r in rows}) > 1
    many_clip = len({r["clip"] for r in rows}) > 1
    fig, axes = plt.subplots(
        1, len(activations), figsize=(4.2 * len(activations), 3.6), squeeze=False
    )
    for ax, act in zip(axes[0], activations):
        sub = [r for r in rows if r["activation"] == act]
        key = lambda r: (r["init"], r["lr"], str(r["clip"]), r["optimizer"], r["width"])
        for k, group in itertools.groupby(sorted(sub, key=key), key=key):
            g = list(group)
            depths = sorted({r["depth"] for r in g})
            q = [_quantiles([r["final_train_loss"] for r in g if r["depth"] == d]) for d in depths]
            lo, mid, hi = (np.asarray(x) for x in zip(*q))
            label = _label(k[0], g[0]["clip"], k[1], many_lr, many_clip)
            (line,) = ax.plot(depths, mid, "o-", label=label)
            ax.fill_between(depths, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(act)
        ax.set_xlabel("hidden layers")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final training loss (median, IQR over seeds)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Trainability against depth", y=1.03)
    sweep.save_figure(fig, path)
    plt.close(fig)


def divergence(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Fraction of diverged seeds against depth (or learning rate, when it varies)."""
    plt = _pyplot()
    by_lr = len({r["lr"] for r in rows}) > 1
    x_field = "lr" if by_lr else "depth"
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    key = lambda r: (r["activation"], r["init"], str(r["clip"]), r["optimizer"])
    for k, group in itertools.groupby(sorted(rows, key=key), key=key):
        g = list(group)
        xs = sorted({r[x_field] for r in g})
        rate = [np.mean([r["diverged"] for r in g if r[x_field] == x]) for x in xs]
        ax.plot(xs, rate, "o-", label=f"{k[0]} {k[1]} clip={k[2]}")
    ax.set_xscale("log", base=10 if by_lr else 2)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("learning rate" if by_lr else "hidden layers")
    ax.set_ylabel("diverged fraction of seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    sweep.save_figure(fig, path)
    plt.close(fig)


def _sigma_w2(init: str, width: int) -> float:
    """sigma_w² = fan_in * Var(w) of a square hidden layer under ``init``."""
    import jax

    from jaxstab._initializers import get_initializer

    # Estimated from 256 draws: relative error about sqrt(2 / (256 width²)), < 2%.
    keys = jax.random.split(jax.random.key(0), 256)
    w = jax.vmap(lambda k: get_initializer(init)(k, (width, width)))(keys)
    return float(np.mean(np.asarray(w, np.float64) ** 2) * width)


def layer_stats_vs_theory(
    rows: Sequence[dict[str, Any]], stats: dict[str, np.ndarray], path: Path
) -> None:
    """Per-layer q^l and back-propagated signal at init, measured against mean-field theory.

    For the deepest network of each activation/init: the measured median over
    seeds (band: IQR) and, dashed, ``theory.q_profile`` started from the
    measured q^1, and the backward signal predicted from the measured last
    layer through ``theory.gradient_profile``.
    """
    from jaxstab import theory

    plt = _pyplot()
    activations = sorted({r["activation"] for r in rows})
    depth = max(r["depth"] for r in rows)
    fig, axes = plt.subplots(
        2, len(activations), figsize=(4.2 * len(activations), 6.4), squeeze=False
    )
    for col, act in enumerate(activations):
        names = sorted(
            {
                (r["init"], r["name"], r["width"])
                for r in rows
                if r["activation"] == act and r["depth"] == depth
            }
        )
        seen = set()
        for init, name, width in names:
            if init in seen:
                continue
            seen.add(init)
            q = stats[f"{name}/init/second_moment"]
            signal = stats[f"{name}/init/signal_second_moment"]
            layers = np.arange(1, q.shape[1] + 1)
            sw2 = _sigma_w2(init, width)
            q0 = float(np.median(q[:, 0]))
            for row, (measured, predicted) in enumerate(
                [
                    (q, np.asarray(theory.q_profile(act, sw2, 0.0, q0, depth))),
                    (signal, _predicted_signal(theory, act, sw2, q0, depth, signal)),
                ]
            ):
                ax = axes[row][col]
                lo, mid, hi = np.percentile(measured, [25, 50, 75], axis=0)
                (line,) = ax.plot(layers, mid, label=f"{init} (σw²={sw2:.2f})")
                ax.fill_between(layers, lo, hi, color=line.get_color(), alpha=0.2)
                ax.plot(layers, predicted, "--", color=line.get_color(), alpha=0.9)
        for row, ylabel in enumerate(["q^l = mean z² (forward)", "mean (dℓ/dz^l)² (backward)"]):
            axes[row][col].set_yscale("log")
            axes[row][col].grid(alpha=0.3)
            axes[row][0].set_ylabel(ylabel)
        axes[0][col].set_title(f"{act}, {depth} layers at init")
        axes[1][col].set_xlabel("layer")
        axes[0][col].legend(fontsize=7)
    fig.suptitle("Measured (median, IQR over seeds) vs mean-field theory (dashed)")
    sweep.save_figure(fig, path)
    plt.close(fig)


def _predicted_signal(
    theory: Any, act: str, sw2: float, q0: float, depth: int, measured: np.ndarray
) -> np.ndarray:
    """Back-propagated signal predicted from the measured last layer by chi1 factors.

    ``gradient_profile`` gives chi(q^l) per layer; s^l = s^(l+1) chi(q^l), so
    s^l = s^L prod_{k=l}^{L-1} chi(q^k), anchored at the measured median s^L.
    """
    chi = np.asarray(theory.gradient_profile(act, sw2, 0.0, q0, depth), np.float64)
    log_tail = np.concatenate([np.cumsum(np.log(chi[:-1])[::-1])[::-1], [0.0]])
    return float(np.median(measured[:, -1])) * np.exp(log_tail)


def draw_all(out: Path) -> list[Path]:
    """Draws every figure of a sweep directory from its files; returns their paths."""
    rows = sweep.read_rows(out)
    figures = out / "figures"
    paths = [
        figures / "loss_vs_depth.png",
        figures / "divergence.png",
        figures / "layer_stats_init.png",
    ]
    loss_vs_depth(rows, paths[0])
    divergence(rows, paths[1])
    with np.load(out / "layer_stats.npz") as f:
        stats = {k: f[k] for k in f.files}
    layer_stats_vs_theory(rows, stats, paths[2])
    return paths
