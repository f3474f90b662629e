"""Deep ReLU MLPs at 22 and 30 layers: Xavier stalls at 30, He initialization trains.

Published claim (He, Zhang, Ren & Sun 2015, "Delving Deep into Rectifiers:
Surpassing Human-Level Performance on ImageNet Classification", arXiv 1502.01852,
Sec. 2.2 and Figs. 2-3): with ReLU the forward signal's second moment
scales by ``n Var W / 2`` per layer, so Xavier's ``n Var W = 1`` halves it at every
layer while He's ``Var W = 2/n_in`` keeps it; a 22-layer net converges with both
(He faster), a 30-layer net converges with He and stalls with Xavier.

Here: ReLU MLPs of width 64 on the digits, our stand-in for the paper's
convolutional nets on ImageNet, at the paper's depths of 22 and 30 hidden layers.
Xavier (``xavier_normal``) and He (``he_normal``) are each trained with plain SGD
for 16 seeds at every learning rate of a grid, by ``jaxstab.experiment.run_many``
(init and learning rate are traced, so every init, learning rate and seed of one
depth is one compiled program). Per (depth, init) the learning rate is chosen by a
rule fixed in advance: the lowest median final training loss among the learning
rates at which no seed diverged. At that learning rate: the fraction of stalled
seeds (final loss still near the chance loss ``ln 10``) and of converged seeds,
with Wilson intervals, and the final-loss difference He - Xavier with a bootstrap
interval and a rank test. At init, on many independent nets: the ratio
``q^L / q^1`` of the pre-activation second moment (mean field: ``(n Var W / 2)^(L-1)``)
and its typical value per input, which finite width lowers (Hanin 2018,
arXiv 1801.03744).

    python experiments/he2015_depth.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

import jaxstab as js
from jaxstab.data import Dataset, load_digits
from jaxstab.experiment import DIAGNOSTIC_BATCH, Config, Result, run_many

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
    import _findings
    import _stats
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common, _findings, _stats

NAME = "he2015_depth"
TITLE = "Xavier stalls and He trains: ReLU nets of 22 and 30 layers"
CHANCE_LOSS = math.log(10.0)  # cross-entropy of the uniform prediction over 10 classes
CONVERGED_LOSS = CHANCE_LOSS / 2  # "converged": at least half of the chance loss gone
# sigma_w^2 = n Var W of a square layer: Xavier 2/(n + n) = 1/n, He 2/n.
SIGMA_W2 = {"xavier_normal": 1.0, "he_normal": 2.0}
LABEL = {"xavier_normal": "Xavier", "he_normal": "He"}
SOURCE = "He et al. 2015 (arXiv 1502.01852)"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The experiment's settings (see :func:`get_config`)."""

    depths: tuple[int, ...] = (22, 30)  # hidden layers (the paper's); one program per depth
    width: int = 64  # units per hidden layer (64 = the digits' input size: all layers square)
    inits: tuple[str, ...] = ("xavier_normal", "he_normal")  # Xavier vs He, plain Gaussians
    # SGD learning-rate grid of each init (in the order of ``inits``), the same at every
    # depth, log-spaced by about 3. A first full run with Xavier (0.03, 0.1, 0.3) and He
    # (0.01, 0.03, 0.1) chose lower edges; these grids extend them down (its cells are
    # reproduced bit for bit here), and every chosen value is now interior.
    lr_grids: tuple[tuple[float, ...], ...] = ((0.01, 0.03, 0.1), (0.003, 0.01, 0.03, 0.1))
    batch_size: int = 64  # examples per step, drawn with replacement
    steps: int = 2000  # SGD steps (95 epochs of the 1347 training digits)
    eval_every: int = 200  # steps between evaluations of the full training loss
    seeds: int = 16  # seeds per (depth, init, lr); both inits and all lrs share the draws
    stall_margin: float = 0.05  # a seed has stalled if its final loss is > ln 10 - this
    init_nets: int = 2048  # independent He nets for the at-init signal claims
    seed: int = 0  # base PRNG seed (training seed i folds in i; init nets use seed + 1)


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full config, or with ``quick`` a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(
            depths=(3, 8),
            width=32,
            lr_grids=((0.03, 0.1), (0.03, 0.1)),
            steps=120,
            eval_every=40,
            seeds=4,
            init_nets=64,
        )
    return ExperimentConfig()


def lr_grid(config: ExperimentConfig, init: str) -> tuple[float, ...]:
    """The learning-rate grid of ``init``."""
    if len(config.lr_grids) != len(config.inits):
        raise ValueError(
            f"lr_grids has {len(config.lr_grids)} grids for {len(config.inits)} inits "
            f"{config.inits}; give one grid per init"
        )
    return config.lr_grids[config.inits.index(init)]


def engine_configs(config: ExperimentConfig) -> list[Config]:
    """One engine config per (depth, init, lr), in that order."""
    if config.seeds < 2:
        raise ValueError(f"seeds={config.seeds}: the intervals need at least 2 seeds")
    return [
        Config(
            depth=depth,
            width=config.width,
            activation="relu",
            init=init,
            optimizer="sgd",
            lr=lr,
            batch_size=config.batch_size,
            steps=config.steps,
            eval_every=config.eval_every,
            seeds=config.seeds,
            dataset="digits",
            seed=config.seed,
        )
        for depth in config.depths
        for init in config.inits
        for lr in lr_grid(config, init)
    ]


# --- per-arm statistics --------------------------------------------------------------


def outcomes(final_loss: np.ndarray, stall_margin: float) -> dict[str, int]:
    """Counts of seeds that stalled, converged and diverged, from their final losses.

    Stalled: a finite final loss above ``ln 10 - stall_margin`` (still at chance).
    Converged: a finite final loss below ``ln 10 / 2``. Diverged: non-finite.
    """
    loss = np.asarray(final_loss, np.float64).reshape(-1)
    finite = np.isfinite(loss)
    with np.errstate(invalid="ignore"):
        return {
            "n": int(loss.size),
            "stalled": int(np.sum(finite & (loss > CHANCE_LOSS - stall_margin))),
            "converged": int(np.sum(finite & (loss < CONVERGED_LOSS))),
            "diverged": int(np.sum(~finite)),
        }


def arm_summary(final_loss: np.ndarray, stall_margin: float) -> dict[str, Any]:
    """One cell's final losses: median with its bootstrap interval, outcome counts, seeds."""
    loss = np.asarray(final_loss, np.float64).reshape(-1)
    out: dict[str, Any] = {"median_final_loss": _stats.summary(loss)}
    out.update(outcomes(loss, stall_margin))
    out["per_seed"] = [float(v) if math.isfinite(v) else None for v in loss]
    return out


def compare(he: np.ndarray, xavier: np.ndarray) -> dict[str, Any]:
    """He - Xavier median final loss with its 95% bootstrap interval, and a rank test.

    The p-value is the one-sided Mann-Whitney test that He's losses tend to be lower
    (diverged seeds ranked worst). The interval is None where either arm has fewer
    than two finite losses.
    """
    p = _stats.rank_test(he, xavier, "less")
    try:
        diff, lo, hi = _stats.difference_ci(he, xavier, np.median)
        interval: list[float] | None = [lo, hi]
    except ValueError:  # fewer than two finite values in an arm
        diff, interval = float("nan"), None
    return {"median_difference": diff, "interval": interval, "p_less": p}


def _quantile_curve(loss: np.ndarray, q: float) -> list[float | None]:
    """Per evaluation: the ``q`` quantile over the seeds that have not diverged."""
    out: list[float | None] = []
    for column in np.asarray(loss, np.float64).T:
        finite = column[np.isfinite(column)]
        out.append(float(np.quantile(finite, q)) if finite.size else None)
    return out


def summarize_training(results: Sequence[Result], config: ExperimentConfig) -> dict[str, Any]:
    """Per (depth, init): every learning rate's summary, the chosen one and its curves."""
    cells: dict[tuple[int, str], dict[float, Result]] = {}
    for r in results:
        cells.setdefault((r.config.depth, r.config.init), {})[r.config.lr] = r
    arms: dict[str, Any] = {}
    for (depth, init), by_lr in cells.items():
        finals = {lr: r.eval_train_loss[:, -1] for lr, r in by_lr.items()}
        chosen = _stats.best_lr(finals)
        r = by_lr[chosen]
        grid = lr_grid(config, init)
        arms[f"d{depth}/{init}"] = {
            "depth": depth,
            "init": init,
            "lr": chosen,
            "lr_at_grid_edge": chosen in (min(grid), max(grid)),
            "grid": {repr(lr): arm_summary(finals[lr], config.stall_margin) for lr in grid},
            "best": arm_summary(finals[chosen], config.stall_margin),
            "test_accuracy_median": float(np.nanmedian(r.test_accuracy[:, -1])),
            "curve_median": _quantile_curve(r.eval_train_loss, 0.5),
            "curve_q25": _quantile_curve(r.eval_train_loss, 0.25),
            "curve_q75": _quantile_curve(r.eval_train_loss, 0.75),
        }
    comparisons = {}
    for depth in config.depths:
        he = arms[f"d{depth}/he_normal"]["best"]["per_seed"]
        xavier = arms[f"d{depth}/xavier_normal"]["best"]["per_seed"]
        nan = lambda v: np.array([np.nan if x is None else x for x in v], np.float64)
        comparisons[f"d{depth}"] = compare(nan(he), nan(xavier))
    return {
        "eval_steps": np.asarray(results[0].eval_steps).tolist(),
        "arms": arms,
        "he_minus_xavier": comparisons,
    }


# --- the signal at init ----------------------------------------------------------------


def init_profiles(
    key: jax.Array, x: jax.Array, width: int, depth: int, nets: int, init: str = "he_normal"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer pre-activation second moments of ``nets`` independent ReLU nets at init.

    Args:
      key: PRNG key; net ``i`` uses the ``i``-th of ``nets`` keys split from it.
      x: inputs ``[batch, d_in]``.
      width: units per hidden layer.
      depth: hidden layers.
      nets: independent networks (zero biases, ``init`` weights via :func:`jaxstab.init_mlp`).
      init: a weight initializer name of :data:`jaxstab.INITIALIZERS`.

    Returns:
      ``(q, log_ratio)``, both ``[nets, depth]`` float64: ``q[i, l]`` the second moment
      of layer ``l + 1``'s pre-activations over the batch and the units (what
      ``diagnostics.forward_stats`` reports), and ``log_ratio[i, l]`` the mean over the
      inputs of ``ln(q_b^(l+1) / q_b^1)``, each input's own second-moment ratio.
    """
    sizes = [x.shape[1], *[width] * depth, 10]
    weight_init = js.get_initializer(init)

    def one(k: jax.Array) -> tuple[jax.Array, jax.Array]:
        params = js.init_mlp(k, sizes, weight_init=weight_init)
        _, pre = js.apply_mlp(params, x, "relu", capture=True)
        q_input = jnp.mean(jnp.square(pre), axis=-1)  # [depth, batch]: per input
        log_ratio = jnp.mean(jnp.log(q_input / q_input[:1]), axis=-1)
        return jnp.mean(q_input, axis=-1), log_ratio

    keys = jax.random.split(key, nets)
    q, log_ratio = _common.jit_once(lambda ks: jax.lax.map(one, ks, batch_size=min(nets, 64)))(keys)
    return np.asarray(q, np.float64), np.asarray(log_ratio, np.float64)


def finite_width_log_ratio(width: int) -> float:
    """Exact per-layer ``E ln R`` of a zero-bias He ReLU net of ``width`` at one input.

    With ``R = ||z^(l+1)||^2 / ||z^l||^2`` and Gaussian weights of variance ``2/n``,
    ``R = (2/n) chi2_n B``, where ``B ~ Beta(k/2, (n-k)/2)`` is the share of the
    squared norm on the ``k ~ Binomial(n, 1/2)`` positive units (derived here from the
    Gaussian law behind Hanin 2018; ``k = 0``, probability ``2^-n``, is left out), so
    ``E ln R = ln(4/n) + E[psi(k/2)]``, which is ``-2.5/n + O(1/n^2)``.

    References:
      Hanin (2018), Which neural net architectures give rise to exploding and
      vanishing gradients?, arXiv 1801.03744.
    """
    k = np.arange(1, width + 1)
    p = stats.binom.pmf(k, width, 0.5)
    return float(math.log(4 / width) + np.sum(p * special.digamma(k / 2)) / np.sum(p))


def per_net_slopes(log2_q: np.ndarray) -> np.ndarray:
    """Least-squares slope over layers of each row of ``log2_q`` (``[nets, layers]``)."""
    y = np.asarray(log2_q, np.float64)
    layers = np.arange(y.shape[1], dtype=np.float64)
    return np.polyfit(layers, y.T, 1)[0]


def summarize_signal(q: np.ndarray, log_ratio: np.ndarray, config: ExperimentConfig) -> dict:
    """The at-init measurements of He nets, with their intervals, per depth.

    Only He is measured: with shared draws a Xavier net is the He net with every
    weight divided by sqrt 2, and ReLU is positively homogeneous, so its ``q^l`` is
    exactly ``2^-l`` times He's (``q^L / q^1`` times ``2^-(L-1)``): one measurement.
    """
    out: dict[str, Any] = {"nets": int(q.shape[0]), "per_depth": {}}
    for depth in config.depths:
        ratio = q[:, depth - 1] / q[:, 0]
        mean, lo, hi = ratio.mean(), *_stats.bootstrap_ci(ratio)
        typical = log_ratio[:, depth - 1] / ((depth - 1) * math.log(2))  # log2 per layer
        slopes = per_net_slopes(np.log2(q[:, :depth]))
        out["per_depth"][f"d{depth}"] = {
            "ratio_mean": float(mean),
            "ratio_interval": [lo, hi],
            "ratio_median": float(np.median(ratio)),
            "log2_per_layer_per_input": list(_stats.mean_ci(typical)),
            "log2_slope_batch_q": list(_stats.mean_ci(slopes)),
        }
    exact = finite_width_log_ratio(config.width) / math.log(2)
    out["hanin_leading_log2_per_layer"] = -2.5 / (config.width * math.log(2))
    out["exact_log2_per_layer"] = exact
    deep = max(config.depths)
    # Profiles for the figure: log2 of the mean q, and the mean per-input log2 ratio
    # (over the nets in which no input's signal died: a dead layer gives log 0).
    alive = np.all(np.isfinite(log_ratio), axis=1)
    out["nets_with_a_dead_input"] = int(np.sum(~alive))
    out["log2_mean_q_over_q1"] = np.log2(q.mean(0) / q[:, 0].mean()).tolist()
    out["mean_log2_ratio_per_input"] = (log_ratio[alive].mean(0) / math.log(2)).tolist()
    out["deepest"] = deep
    return out


# --- claims --------------------------------------------------------------------------


def _wilson(counts: Mapping[str, int], field: str) -> tuple[float, float, float]:
    return _stats.proportion_ci(counts[field], counts["n"])


def claims(measured: dict[str, Any], config: ExperimentConfig) -> list[dict[str, Any]]:
    """The published claims against the measurements, each with its rule."""
    arms, diffs = measured["arms"], measured["he_minus_xavier"]
    shallow, deep = min(config.depths), max(config.depths)
    lr_rule = "at each arm's best learning rate (lowest median final loss without divergence)"
    converge_rule = (
        "Wilson 95% lower bound of the fraction of seeds with final training loss "
        f"< ln 10 / 2 = {CONVERGED_LOSS:.3f} above 1/2, {lr_rule}"
    )
    stall_rule = (
        "Wilson 95% lower bound of the fraction of seeds with final training loss "
        f"> ln 10 - {config.stall_margin} = {CHANCE_LOSS - config.stall_margin:.3f} above 1/2, "
        f"{lr_rule}"
    )
    diff_rule = (
        "He - Xavier median final loss < 0: the 95% bootstrap interval below 0 and the "
        f"one-sided Mann-Whitney p < 0.05, {lr_rule}"
    )
    setting = (
        f"ReLU MLP of width {config.width} on the digits, our stand-in for the paper's "
        f"conv nets; SGD, {config.steps} steps"
    )
    out = []

    def fraction_claim(depth: int, init: str, field: str, text: str, published: str) -> None:
        arm = arms[f"d{depth}/{init}"]
        p, lo, hi = _wilson(arm["best"], field)
        fig = "Fig. 2" if depth == shallow else "Fig. 3"
        out.append(
            _common.claim(
                text,
                source=f"{SOURCE}, Sec. 2.2, {fig}",
                published=published,
                measured=p,
                interval=[lo, hi],
                n=arm["best"]["n"],
                rule=converge_rule if field == "converged" else stall_rule,
                agrees=bool(lo > 0.5),
                note=f"{setting}; learning rate {arm['lr']:g} chosen from "
                f"{', '.join(f'{v:g}' for v in lr_grid(config, init))}"
                + (" (an edge of the grid)" if arm["lr_at_grid_edge"] else ""),
            )
        )

    def diff_claim(depth: int, text: str, published: str) -> None:
        d = diffs[f"d{depth}"]
        ok = d["interval"] is not None and d["interval"][1] < 0 and d["p_less"] < 0.05
        out.append(
            _common.claim(
                text,
                source=f"{SOURCE}, Sec. 2.2, {'Fig. 2' if depth == shallow else 'Fig. 3'}",
                published=published,
                measured=d["median_difference"],
                interval=d["interval"],
                n=arms[f"d{depth}/he_normal"]["best"]["n"],
                rule=diff_rule,
                agrees=bool(ok),
                note=f"one-sided Mann-Whitney p = {d['p_less']:.2g}; n seeds per arm; "
                "the loss after a fixed budget of steps stands for the speed of convergence"
                + ("" if d["interval"] is not None else "; no interval: an arm diverged"),
            )
        )

    fraction_claim(
        shallow,
        "xavier_normal",
        "converged",
        f"{shallow} hidden layers: Xavier converges",
        "22 layers: Xavier converges (Fig. 2)",
    )
    fraction_claim(
        shallow,
        "he_normal",
        "converged",
        f"{shallow} hidden layers: He converges",
        "22 layers: He converges (Fig. 2)",
    )
    diff_claim(
        shallow, f"{shallow} hidden layers: He converges faster than Xavier", "He faster (Fig. 2)"
    )
    fraction_claim(
        deep,
        "xavier_normal",
        "stalled",
        f"{deep} hidden layers: Xavier stalls at the chance loss",
        "30 layers: Xavier does not learn at all (Fig. 3)",
    )
    fraction_claim(
        deep,
        "he_normal",
        "converged",
        f"{deep} hidden layers: He converges",
        "30 layers: He converges (Fig. 3)",
    )
    diff_claim(
        deep,
        f"{deep} hidden layers: He reaches a lower loss than Xavier",
        "He converges, Xavier stalls (Fig. 3)",
    )

    signal = measured["signal"]
    d = signal["per_depth"][f"d{deep}"]
    lo, hi = d["ratio_interval"]
    out.append(
        _common.claim(
            f"at init the forward signal's second moment scales by n Var W / 2 per layer: "
            f"E[q^{deep} / q^1] = 1 for He (and 2^-{deep - 1} for Xavier)",
            source=f"{SOURCE}, Sec. 2.2, Eq. 10",
            published=1.0,
            measured=d["ratio_mean"],
            interval=[lo, hi],
            n=signal["nets"],
            rule="the 95% bootstrap (BCa) interval of the mean over independent He nets contains 1",
            agrees=bool(lo <= 1.0 <= hi),
            note=f"q: pre-activation second moment over {DIAGNOSTIC_BATCH} training digits; "
            "Xavier shares the draws (its nets are the He nets scaled by 2^-1/2 per layer), "
            f"so its ratio is exactly 2^-{deep - 1} times He's: one measurement, not two",
        )
    )
    lead, exact = signal["hanin_leading_log2_per_layer"], signal["exact_log2_per_layer"]
    mean, lo, hi = d["log2_per_layer_per_input"]
    resolved = hi < 0
    out.append(
        _common.claim(
            "finite width lowers the typical signal of He nets: per input, E log2 of each "
            "layer's second-moment ratio is -2.5 / (n ln 2) at width n",
            source="Hanin 2018 (arXiv 1801.03744); project REFERENCE.md",
            published=lead,
            measured=mean,
            interval=[lo, hi],
            n=signal["nets"],
            rule="resolved if the 95% t interval over nets excludes 0; agrees if it also "
            f"contains the exact finite-width value {exact:.4f} (ln(4/n) + E psi(k/2), "
            "of which -2.5 / (n ln 2) is the leading order)",
            agrees=bool(resolved and lo <= exact <= hi),
            note=f"log2(q_b^{deep} / q_b^1) / {deep - 1} averaged over "
            f"{DIAGNOSTIC_BATCH} inputs b per net, n = {config.width}; nets in which an input's "
            f"signal died (log 0; the formula's k >= 1) left out: "
            f"{signal['nets_with_a_dead_input']}; the exact value is derived in "
            "finite_width_log_ratio (chi-square and Beta laws)",
        )
    )
    return out


# --- figures -----------------------------------------------------------------------


def plot_loss_curves(measured: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Per depth: training loss against step at each init's best lr, median and quartiles."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(
        1,
        len(config.depths),
        sharey=True,
        layout="constrained",
        figsize=(3.8 * len(config.depths), 3.3),
        squeeze=False,
    )
    steps = np.asarray(measured["eval_steps"])
    nan = lambda v: np.array([np.nan if x is None else x for x in v], np.float64)
    for ax, depth in zip(axes[0], config.depths):
        for k, init in enumerate(config.inits):
            arm = measured["arms"][f"d{depth}/{init}"]
            ax.plot(
                steps,
                nan(arm["curve_median"]),
                color=f"C{k}",
                label=f"{LABEL.get(init, init)}, lr {arm['lr']:g}",
            )
            ax.fill_between(
                steps, nan(arm["curve_q25"]), nan(arm["curve_q75"]), color=f"C{k}", alpha=0.25
            )
        ax.axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":", label="ln 10")
        ax.set_title(f"{depth} hidden ReLU layers, {config.seeds} seeds", fontsize=9)
        ax.set_xlabel("SGD step")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("training loss (median, quartiles)")
    _common.save_and_close(fig, path)


def plot_final_loss(measured: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Per depth: final training loss against the learning rate, every seed and the median."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(
        1,
        len(config.depths),
        sharey=True,
        layout="constrained",
        figsize=(3.8 * len(config.depths), 3.3),
        squeeze=False,
    )
    for ax, depth in zip(axes[0], config.depths):
        for k, init in enumerate(config.inits):
            arm = measured["arms"][f"d{depth}/{init}"]
            lrs = lr_grid(config, init)
            medians = []
            for j, lr in enumerate(lrs):
                cell = arm["grid"][repr(lr)]
                seeds = np.array([np.nan if v is None else v for v in cell["per_seed"]])
                shift = lr * 1.12 ** (k - 0.5)  # side by side on the log axis
                ax.scatter(np.full(seeds.size, shift), seeds, s=8, alpha=0.45, color=f"C{k}")
                if cell["diverged"]:
                    ax.scatter([shift], [CHANCE_LOSS + 0.25], marker="x", color=f"C{k}")
                medians.append(np.nan if cell["diverged"] else cell["median_final_loss"]["median"])
                if lr == arm["lr"]:
                    ax.scatter([shift], [medians[j]], s=90, facecolors="none", edgecolors="k")
            ax.plot(lrs, medians, "o-", color=f"C{k}", ms=3, label=LABEL.get(init, init))
        ax.axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":", label="ln 10")
        ax.set_xscale("log")
        ax.set_title(f"{depth} hidden layers (x: a seed diverged; ring: best lr)", fontsize=8)
        ax.set_xlabel("learning rate")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel(f"training loss after {config.steps} steps")
    _common.save_and_close(fig, path)


def plot_signal(
    q: np.ndarray, signal: dict[str, Any], config: ExperimentConfig, path: Path
) -> None:
    """At init: log2 q^l per layer for He and Xavier nets, and He's mean and typical ratio."""
    plt = _common.pyplot()
    fig, (left, right) = plt.subplots(1, 2, layout="constrained", figsize=(9.0, 3.4))
    depth = q.shape[1]
    layers = np.arange(1, depth + 1)
    shown = q[: min(40, q.shape[0])]
    for k, init in enumerate(config.inits):
        shift = math.log2(SIGMA_W2[init] / 2) * layers  # Xavier's q^l is He's times 2^-l
        left.plot(layers, (np.log2(shown) + shift).T, color=f"C{k}", lw=0.5, alpha=0.35)
        mean_field = np.log2(q[:, 0].mean()) + math.log2(SIGMA_W2[init] / 2) * (layers - 1)
        left.plot(layers, mean_field + shift[0], "--", color=f"C{k}", label=f"{LABEL[init]}")
    left.set_xlabel("hidden layer")
    left.set_ylabel("log2 q (pre-activation second moment)")
    left.set_title(f"{shown.shape[0]} nets at init; dashed: mean field", fontsize=9)
    left.legend(fontsize=8)
    right.plot(layers, signal["log2_mean_q_over_q1"], color="C1", label="log2 E[q^l] / E[q^1]")
    right.plot(
        layers,
        signal["mean_log2_ratio_per_input"],
        color="C2",
        label="E log2(q_b^l / q_b^1), per input",
    )
    right.plot(
        layers,
        signal["exact_log2_per_layer"] * (layers - 1),
        "--",
        color="k",
        lw=0.8,
        label="finite width (Hanin)",
    )
    right.axhline(0.0, color="gray", lw=0.8, ls=":", label="mean field")
    right.set_xlabel("hidden layer")
    right.set_title(f"He, {q.shape[0]} nets of width {config.width}", fontsize=9)
    right.legend(fontsize=8)
    _common.save_and_close(fig, path)


# --- findings ------------------------------------------------------------------------


def findings(result: dict[str, Any]) -> str:
    """The section's prose and tables, every number formatted from ``result``."""
    f = _findings.fmt
    config, measured = result["config"], result["measured"]
    arms, diffs, signal = measured["arms"], measured["he_minus_xavier"], measured["signal"]
    depths = config["depths"]
    grids = dict(zip(config["inits"], config["lr_grids"]))
    shallow, deep = min(depths), max(depths)
    inits = config["inits"]
    lines = [
        f"He et al. (2015) train convolutional nets of 22 and 30 layers on ImageNet; "
        f"the stand-in here is a ReLU MLP of width {config['width']}"
        + (" (all layers square: the digits have 64 inputs) " if config["width"] == 64 else " ")
        + f"on the digits with {', '.join(str(d) for d in depths)} hidden layers, "
        f"`xavier_normal` (`n Var W = 1`) against `he_normal` (`2`), zero biases, plain "
        "SGD (no momentum or weight decay, unlike the paper) with minibatches of "
        f"{config['batch_size']} for {config['steps']} steps, "
        f"{config['seeds']} seeds per (depth, init, learning rate) over a learning-rate grid "
        "per init, the same at both depths ("
        + "; ".join(f"{LABEL.get(i, i)}: {', '.join(f(v) for v in g)}" for i, g in grids.items())
        + "). Each depth is one compiled program "
        f"(`jaxstab.experiment.run_many`; {measured['programs_compiled']} executables in "
        "all). The learning rate of each (depth, init) is the one with the lowest median "
        "final training loss among those at which no seed diverged, a rule fixed before "
        "the run. The final loss is the full training-set cross-entropy after the last "
        f"step; a seed has *stalled* above ln 10 - {f(config['stall_margin'])} = "
        f"{f(CHANCE_LOSS - config['stall_margin'], 4)} and *converged* below ln 10 / 2 = "
        f"{f(CONVERGED_LOSS, 4)}.",
        "",
        "| depth | init | lr | median final loss [95% CI] | stalled | converged | diverged |",
        "|---|---|---|---|---|---|---|",
    ]
    for depth in depths:
        for init in inits:
            arm = arms[f"d{depth}/{init}"]
            for lr in grids[init]:
                cell = arm["grid"][repr(lr)]
                s = cell["median_final_loss"]
                ci = f" [{f(s['ci'][0])}, {f(s['ci'][1])}]" if s["ci"] else ""
                best = "**" if lr == arm["lr"] else ""
                n = cell["n"]
                lines.append(
                    f"| {depth} | {LABEL.get(init, init)} | {best}{f(lr)}{best} | "
                    f"{f(s['median'])}{ci} | {cell['stalled']}/{n} | "
                    f"{cell['converged']}/{n} | {cell['diverged']}/{n} |"
                )
    lines += ["", "The chosen learning rate of each arm is in bold."]
    edges = [
        f"{LABEL.get(a['init'], a['init'])} at {a['depth']} layers ({f(a['lr'])})"
        for a in arms.values()
        if a["lr_at_grid_edge"]
    ]
    if edges:
        lines.append(
            "The rule picked an edge of the grid for "
            + ", ".join(edges)
            + ": a value beyond the grid might do better there."
        )
    xs, hs = arms[f"d{shallow}/xavier_normal"], arms[f"d{shallow}/he_normal"]
    xd, hd = arms[f"d{deep}/xavier_normal"], arms[f"d{deep}/he_normal"]
    ds, dd = diffs[f"d{shallow}"], diffs[f"d{deep}"]
    stalled_lrs = sum(2 * c["stalled"] > c["n"] for c in xd["grid"].values())
    lines += [
        "",
        f"**Training.** At {shallow} layers, {xs['best']['converged']} of {xs['best']['n']} "
        f"Xavier seeds and {hs['best']['converged']} of {hs['best']['n']} He seeds converged "
        f"(median final loss {f(xs['best']['median_final_loss']['median'])} against "
        f"{f(hs['best']['median_final_loss']['median'])}; He - Xavier "
        f"{f(ds['median_difference'])}, one-sided rank-test p = {f(ds['p_less'], 2)}). "
        f"At {deep} layers, {xd['best']['stalled']} of {xd['best']['n']} Xavier seeds "
        f"stalled at the chance loss at Xavier's best learning rate ({f(xd['lr'])}), while "
        f"{hd['best']['converged']} of {hd['best']['n']} He seeds converged (He - Xavier "
        f"{f(dd['median_difference'])}, p = {f(dd['p_less'], 2)}). Choosing each arm's best "
        "learning rate on the same seeds that are then scored favours every arm alike; "
        f"Xavier at {deep} layers had a majority of stalled seeds at {stalled_lrs} of "
        f"{len(xd['grid'])} learning rates of its grid. Test accuracy (median, at the chosen "
        "learning rate): "
        + ", ".join(
            f"{LABEL.get(a['init'], a['init'])} {a['depth']} layers {f(a['test_accuracy_median'])}"
            for a in arms.values()
        )
        + ".",
    ]
    steps = measured["eval_steps"]
    left = {key: _left_chance(a["curve_median"], steps, config) for key, a in arms.items()}
    lines += [
        "",
        "First evaluation at which the median loss is below the stall threshold, at the "
        "chosen learning rate (evaluations every "
        f"{config['eval_every']} steps): "
        + ", ".join(
            f"{LABEL.get(a['init'], a['init'])} {a['depth']} layers "
            + ("never" if left[key] is None else f"step {left[key]}")
            for key, a in arms.items()
        )
        + ".",
    ]
    disagree = [c for c in result.get("claims", []) if c["agrees"] is False]
    if disagree:
        lines += [
            "",
            "**What does not agree.** " + "; ".join(c["claim"] for c in disagree) + ".",
        ]
        if any("stalls" in c["claim"] for c in disagree):
            lines[-1] += (
                f" At {deep} layers and its best learning rate, Xavier's median loss "
                + (
                    f"is still at the chance loss at step {xleft - config['eval_every']} "
                    f"and below it by step {xleft}; by the end "
                    if (xleft := left[f"d{deep}/xavier_normal"]) is not None
                    else "never leaves the chance loss, yet "
                )
                + f"{xd['best']['n'] - xd['best']['stalled']} of "
                f"{xd['best']['n']} seeds have left it ({xd['best']['converged']} converge): "
                f"with {config['steps']} steps the stall is a long delay, as the 22-layer "
                "Xavier net's slower start in the paper's Fig. 2, rather than a net that "
                "never learns. Likely reasons: an MLP on 8x8 digits is not the paper's "
                "conv net on ImageNet, and the budget here is many passes over a small "
                "data set; the paper's statement is about its own training run, and "
                "stopped before the median left the chance loss this run would have "
                "looked like the paper's Fig. 3."
            )
            if xd["lr_at_grid_edge"]:
                lines[-1] += (
                    f" The rule chose an edge of Xavier's grid ({f(xd['lr'])}); a value beyond "
                    "it could only have been chosen with a lower median final loss."
                )
    d = signal["per_depth"][f"d{deep}"]
    typical = d["log2_per_layer_per_input"]
    slope = d["log2_slope_batch_q"]
    resolved = typical[2] < 0
    lines += [
        "",
        f"**At init** ({signal['nets']} independent He nets per measurement, "
        f"{DIAGNOSTIC_BATCH} training digits each). With shared draws a Xavier net is the He "
        "net with every weight divided by sqrt 2, and ReLU is positively homogeneous, so "
        "its `q^l` is exactly `2^-l` times He's: the two inits give one measurement, not "
        "two (the old table's Xavier and He slopes differed by exactly 1 for this reason).",
        "",
        "| depth | mean q^L / q^1 [95% CI] | median q^L / q^1 | per-input E log2 R per layer "
        "[95% CI] | slope of log2 q (batch average) [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for depth in depths:
        e = signal["per_depth"][f"d{depth}"]
        t, s = e["log2_per_layer_per_input"], e["log2_slope_batch_q"]
        lines.append(
            f"| {depth} | {f(e['ratio_mean'])} [{f(e['ratio_interval'][0])}, "
            f"{f(e['ratio_interval'][1])}] | {f(e['ratio_median'])} | {f(t[0])} "
            f"[{f(t[1])}, {f(t[2])}] | {f(s[0])} [{f(s[1])}, {f(s[2])}] |"
        )
    lines += [
        "",
        "The mean ratio is the mean-field (He et al., Sec. 2.2) quantity; at "
        f"{deep} layers it is {f(d['ratio_mean'])} [{f(d['ratio_interval'][0])}, "
        f"{f(d['ratio_interval'][1])}] against 1"
        + (
            " (kept, within its interval)"
            if d["ratio_interval"][0] <= 1 <= d["ratio_interval"][1]
            else " (its interval excludes 1)"
        )
        + f", so Xavier's is {f(d['ratio_mean'] * 2.0 ** -(deep - 1))} against "
        f"2^-{deep - 1} = {f(2.0 ** -(deep - 1))}. The median ratio is "
        f"{f(d['ratio_median'])}: finite width spreads the per-layer ratios and lowers "
        "their log while keeping their mean (Hanin 2018). Per input, Hanin's "
        f"setting, the per-layer shift is {f(typical[0])} [{f(typical[1])}, "
        f"{f(typical[2])}] in log2, "
        + (
            "resolved from zero, "
            if resolved
            else "not resolved from zero (its interval includes 0), "
        )
        + f"against {f(signal['exact_log2_per_layer'])} exactly at width "
        f"{config['width']} (-2.5 / (n ln 2) = {f(signal['hanin_leading_log2_per_layer'])} "
        f"to leading order). The old table's statistic, the slope of log2 of the "
        f"second moment averaged over the {DIAGNOSTIC_BATCH} inputs, is {f(slope[0])} "
        f"[{f(slope[1])}, {f(slope[2])}] per layer"
        + (
            "; its interval excludes 0"
            if slope[2] < 0
            else "; its interval includes 0, so no shift is resolved in it"
        )
        + ". Averaging over inputs before taking the log removes part of the spread, so "
        "this statistic need not match the per-input value, and Hanin's formula is not a "
        "prediction for it.",
    ]
    return "\n".join(lines)


def _left_chance(curve: Sequence[float | None], steps: Sequence[int], config: Any) -> int | None:
    """The first evaluated step at which a median loss curve is below the stall threshold."""
    threshold = CHANCE_LOSS - config["stall_margin"]
    for step, value in zip(steps, curve):
        if value is not None and value < threshold:
            return int(step)
    return None


# --- main ----------------------------------------------------------------------------


def measure_signal(config: ExperimentConfig, data: Dataset) -> tuple[np.ndarray, dict[str, Any]]:
    """Runs :func:`init_profiles` for He nets of the deepest depth and summarizes them."""
    x = jnp.asarray(data.x_train[:DIAGNOSTIC_BATCH])
    key = jax.random.key(config.seed + 1)
    q, log_ratio = init_profiles(key, x, config.width, max(config.depths), config.init_nets)
    return q, summarize_signal(q, log_ratio, config)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    config = get_config(args.quick)
    data = load_digits()
    # No per-layer statistics: they are not used here, and cost compile time.
    results, programs = run_many(engine_configs(config), data, layer_stats=False)
    measured = summarize_training(results, config)
    measured["programs_compiled"] = programs
    q, measured["signal"] = measure_signal(config, data)
    figures = {
        "loss.png": lambda p: plot_loss_curves(measured, config, p),
        "final.png": lambda p: plot_final_loss(measured, config, p),
        "signal.png": lambda p: plot_signal(q, measured["signal"], config, p),
    }
    for name, draw in figures.items():
        draw(args.workdir / name)
    return _common.write_results(
        args.workdir,
        experiment=NAME,
        quick=args.quick,
        config=config,
        measured=measured,
        claims=claims(measured, config),
        figures=list(figures),
    )


if __name__ == "__main__":
    main()
