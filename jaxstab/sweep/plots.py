"""Figures of a sweep, drawn from its tables alone (matplotlib, an optional extra).

Drawing never fails a sweep: a panel that cannot be drawn (every seed
diverged, no theory for an activation, ...) says why on the figure, and
:func:`draw_all` reports a figure it could not write instead of raising.
Lines are medians over seeds and bands 95% percentile-bootstrap intervals
(:func:`jaxstab.sweep.report.bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxstab.sweep import report, store

__all__ = ["FIGURES", "draw_all", "layer_stats_vs_theory", "loss_vs_depth", "divergence"]

Rows = Sequence[Mapping[str, Any]]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _say(ax: Any, text: str) -> None:
    """Writes why a panel is empty in its middle."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=8,
            transform=ax.transAxes, color="0.3")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def _panel(ax: Any, draw: Callable[[], None]) -> None:
    """Runs ``draw``; if it raises, the panel says so instead."""
    try:
        draw()
    except KeyboardInterrupt:
        raise
    except Exception as e:
        ax.cla()
        _say(ax, f"cannot draw this panel:\n{type(e).__name__}: {str(e)[:120]}")


def _label(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    return " ".join(f"{k}={report._value(row[k])}" for k in keys) or "all runs"


def _positive(values: np.ndarray) -> bool:
    v = np.asarray(values, np.float64)
    return bool(np.any(np.isfinite(v) & (v > 0)))


def loss_vs_depth(rows: Rows, ax_grid: Any) -> None:
    """Final training loss against depth, a panel per activation, a line per other setting."""
    activations = sorted({r["activation"] for r in rows})
    others = [k for k in report.varying(rows) if k not in ("depth", "activation")]
    for ax, act in zip(ax_grid, activations):

        def draw(ax: Any = ax, act: str = act) -> None:
            sub = [r for r in rows if r["activation"] == act]
            lines = list(report.group_by(sub, others))
            one_depth = len({r["depth"] for r in sub}) == 1
            drawn = []
            for k, (_, line_rows) in enumerate(lines):
                xs, mid, lo, hi = [], [], [], []
                for (depth,), point in report.group_by(line_rows, ["depth"]):
                    m, a, b = report.summarize([r["final_train_loss"] for r in point])
                    xs.append(depth)
                    mid.append(m)
                    lo.append(a)
                    hi.append(b)
                if not _positive(np.asarray(mid)):
                    continue
                if one_depth:  # side by side, so the intervals do not hide each other
                    xs = [x * 2 ** (0.08 * (k - (len(lines) - 1) / 2)) for x in xs]
                (line,) = ax.plot(xs, mid, "o-", label=_label(line_rows[0], others))
                if len(xs) > 1:
                    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
                elif np.isfinite(lo[0]) and np.isfinite(hi[0]):  # one depth: a bar, not a band
                    ax.vlines(xs, lo, hi, color=line.get_color(), alpha=0.6, linewidth=3)
                drawn.append(line)
            if not drawn:
                _say(ax, "every seed diverged:\nno finite loss to plot")
            else:
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
            ax.set_xlabel("hidden layers")

        _panel(ax, draw)
        ax.set_title(act)
    ax_grid[0].set_ylabel("final training loss\n(median, 95% CI over seeds)")


def divergence(rows: Rows, ax: Any) -> None:
    """Fraction of diverged seeds against the learning rate (when it varies) or depth."""
    x_field = "lr" if "lr" in report.varying(rows) else "depth"
    others = [k for k in report.varying(rows) if k != x_field]

    def draw() -> None:
        for _, line_rows in report.group_by(rows, others):
            xs, rate = [], []
            for (x,), point in report.group_by(line_rows, [x_field]):
                xs.append(x)
                rate.append(np.mean([bool(r["diverged"]) for r in point]))
            ax.plot(xs, rate, "o-", label=_label(line_rows[0], others))
        ax.set_xscale("log", base=10 if x_field == "lr" else 2)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        ax.set_xlabel("learning rate" if x_field == "lr" else "hidden layers")
        ax.set_ylabel("diverged fraction of seeds")

    _panel(ax, draw)


def sigma_w2(init: str, gain: float) -> float:
    """sigma_w² = fan_in · Var(w) of a square hidden layer, in closed form.

    ``variance_scaling(scale, mode)`` gives ``Var(w) = scale / fan`` and every
    fan of a square layer is its width, so sigma_w² = scale · gain²; an
    orthogonal square matrix has entries of variance gain² / width.
    """
    from jaxstab.experiment import INIT_FORMS

    distribution, scale, _ = INIT_FORMS[init]
    return gain**2 * (1.0 if distribution == "orthogonal" else scale)


def _predicted_signal(
    theory: Any, act: str, sw2: float, sb2: float, q0: float, depth: int, last: float
) -> np.ndarray:
    """Back-propagated signal predicted from the measured last layer by chi factors.

    ``gradient_profile`` gives chi(q^l) per layer; s^l = s^(l+1) chi(q^l), so
    s^l = s^L prod_{k=l}^{L-1} chi(q^k), anchored at the measured median s^L.
    """
    chi = np.asarray(theory.gradient_profile(act, sw2, sb2, q0, depth), np.float64)
    log_tail = np.concatenate([np.cumsum(np.log(chi[:-1])[::-1])[::-1], [0.0]])
    return last * np.exp(log_tail)


def layer_stats_vs_theory(rows: Rows, stats: Rows, axes: Any) -> None:
    """Per-layer q^l and back-propagated signal at init against mean-field theory.

    For the deepest network of each activation, one line per initialization
    (init, gain, bias variance): the measured median over seeds (band: 95% CI)
    and, dashed, ``theory.q_profile`` started from the measured q^1 and the
    backward signal predicted through ``theory.gradient_profile``.
    """
    activations = sorted({r["activation"] for r in rows})
    depth = max(r["depth"] for r in rows)
    init_stats = [s for s in stats if s["when"] == "init"]
    for col, act in enumerate(activations):
        names: dict[tuple[Any, ...], str] = {}
        for r in rows:
            if r["activation"] == act and r["depth"] == depth:
                names.setdefault((r["init"], r["init_gain"], r["bias_var"]), r["name"])

        def draw(col: int = col, act: str = act, names: dict = names) -> None:
            from jaxstab import theory

            for (init, gain, bias_var), name in names.items():
                mine = [s for s in init_stats if s["name"] == name]
                by_seed: dict[int, dict[int, tuple[float, float]]] = {}
                for s in mine:
                    by_seed.setdefault(s["seed_index"], {})[s["layer"]] = (
                        s["second_moment"],
                        s["signal_second_moment"],
                    )
                if not by_seed:
                    raise ValueError(f"no per-layer statistics for {name}")
                q = np.asarray([[v[layer][0] for layer in sorted(v)] for v in by_seed.values()])
                signal = np.asarray(
                    [[v[layer][1] for layer in sorted(v)] for v in by_seed.values()]
                )
                layers = np.arange(1, q.shape[1] + 1)
                sw2 = sigma_w2(init, gain)
                q0 = float(np.nanmedian(q[:, 0]))
                predictions = [
                    np.asarray(theory.q_profile(act, sw2, bias_var, q0, depth)),
                    _predicted_signal(
                        theory, act, sw2, bias_var, q0, depth, float(np.nanmedian(signal[:, -1]))
                    ),
                ]
                for row, (measured, predicted) in enumerate(zip((q, signal), predictions)):
                    ax = axes[row][col]
                    summary = [report.summarize(measured[:, i]) for i in range(q.shape[1])]
                    mid, lo, hi = (np.asarray(x) for x in zip(*summary))
                    label = f"{init} gain={gain:g} σb²={bias_var:g} (σw²={sw2:.2f})"
                    (line,) = ax.plot(layers, mid, label=label)
                    ax.fill_between(layers, lo, hi, color=line.get_color(), alpha=0.2)
                    ax.plot(layers, predicted, "--", color=line.get_color(), alpha=0.9)
            for row in range(2):
                if _positive(
                    np.concatenate(
                        [np.ravel(line.get_ydata()) for line in axes[row][col].get_lines()]
                    )
                ):
                    axes[row][col].set_yscale("log")  # fmt: skip
                axes[row][col].grid(alpha=0.3)
            axes[0][col].legend(fontsize=6)

        try:
            draw()
        except KeyboardInterrupt:
            raise
        except Exception as e:
            for row in range(2):
                axes[row][col].cla()
                _say(axes[row][col], f"cannot draw this panel:\n{type(e).__name__}: {str(e)[:120]}")
        axes[0][col].set_title(f"{act}, {depth} layers at init")
        axes[1][col].set_xlabel("layer")
    axes[0][0].set_ylabel("q^l = mean z² (forward)")
    axes[1][0].set_ylabel("mean (dℓ/dz^l)² (backward)")


FIGURES = ("loss_vs_depth.png", "divergence.png", "layer_stats_init.png")


def draw_all(rows: Rows, stats: Rows | None, folder: Path) -> list[tuple[Path, str | None]]:
    """Draws every figure into ``folder``; never raises for a figure.

    Args:
      rows: the typed rows of results.csv (:func:`jaxstab.sweep.read_results`).
      stats: the typed rows of layer_stats.csv, or None if it could not be read
        (the per-layer figure then says so).
      folder: where the PNG files go.

    Returns:
      ``(path, None)`` for each figure written, ``(path, reason)`` for one that
      was not.
    """
    try:
        plt = _pyplot()
    except ImportError:
        reason = 'figures need matplotlib: pip install "jaxstab[all]"'
        return [(folder / name, reason) for name in FIGURES]
    activations = sorted({r["activation"] for r in rows}) or ["-"]
    n = len(activations)
    made: list[tuple[Path, Callable[[], Any]]] = []

    def fig_loss() -> Any:
        fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
        loss_vs_depth(rows, axes[0])
        fig.suptitle("Trainability against depth", y=1.03)
        return fig

    def fig_divergence() -> Any:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        divergence(rows, ax)
        return fig

    def fig_layers() -> Any:
        fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 6.4), squeeze=False)
        if stats is None:
            for ax in axes.ravel():
                _say(ax, "layer_stats.csv could not be read")
        else:
            layer_stats_vs_theory(rows, stats, axes)
        fig.suptitle("Measured (median, 95% CI over seeds) vs mean-field theory (dashed)")
        return fig

    made = [
        (folder / FIGURES[0], fig_loss),
        (folder / FIGURES[1], fig_divergence),
        (folder / FIGURES[2], fig_layers),
    ]
    out: list[tuple[Path, str | None]] = []
    for path, build in made:
        fig = None
        try:
            fig = build()
            store.save_figure(fig, path)
            out.append((path, None))
        except KeyboardInterrupt:
            raise
        except Exception as e:
            out.append((path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
        finally:
            if fig is not None:
                plt.close(fig)
    return out
