"""Deep ReLU MLPs: Xavier stalls as depth grows, He initialization trains.

Published claim (He, Zhang, Ren & Sun 2015, "Delving Deep into Rectifiers:
Surpassing Human-Level Performance on ImageNet Classification", arXiv 1502.01852,
Sec. 2.2 and Figs. 2-3): with ReLU, Xavier's ``n Var W = 1`` halves the forward
signal's second moment at every layer (``(1/2 n Var W)`` per layer), He's
``Var W = 2/n_in`` keeps it; a 22-layer net converges with both (He faster), a
30-layer net converges with He and stalls with Xavier.

Here: ReLU MLPs of several depths on the digits, Xavier (``xavier_normal``) and He
(``he_normal``) for many seeds with SGD, trained by the sweep engine
(``jaxstab.experiment.run_many``: every init and seed of one depth is one compiled
program). Reported per (depth, init): the final training loss, median and seed
spread, whether the run stalled (still near the chance loss ``ln 10``), and the
per-layer second moment of the pre-activations at init.

    python experiments/he2015_depth.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from jaxstab.data import load_digits
from jaxstab.experiment import Config, Result, run_many

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common

NAME = "he2015_depth"
CHANCE_LOSS = math.log(10.0)  # cross-entropy of the uniform prediction over 10 classes
# sigma_w^2 = n Var W of a square layer: Xavier 2/(n + n) = 1/n, He 2/n.
SIGMA_W2 = {"xavier_normal": 1.0, "he_normal": 2.0}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The experiment's settings (see :func:`get_config`)."""

    depths: tuple[int, ...] = (10, 20, 30)  # hidden layers; one compiled program per depth
    width: int = 64  # units per hidden layer (64 = the digits' input size: all layers square)
    inits: tuple[str, ...] = ("xavier_normal", "he_normal")  # Xavier vs He, plain Gaussians
    lr: float = 0.02  # SGD learning rate, the same for every depth and init
    batch_size: int = 64  # examples per step, drawn with replacement
    steps: int = 600  # SGD steps
    eval_every: int = 50  # steps between evaluations of the full training loss
    seeds: int = 8  # seeds per (depth, init)
    stall_margin: float = 0.05  # a run has stalled if its final loss is > ln 10 - this
    seed: int = 0  # base PRNG seed (seed i folds in i; both inits share the draws)


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full config, or with ``quick`` a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(depths=(4, 16), width=32, steps=300, eval_every=50, seeds=3)
    return ExperimentConfig()


def engine_configs(config: ExperimentConfig) -> list[Config]:
    """One engine config per (depth, init), in that order."""
    if config.seeds < 2:
        raise ValueError(f"seeds={config.seeds}: the seed spread needs at least 2 seeds")
    return [
        Config(
            depth=depth,
            width=config.width,
            activation="relu",
            init=init,
            optimizer="sgd",
            lr=config.lr,
            batch_size=config.batch_size,
            steps=config.steps,
            eval_every=config.eval_every,
            seeds=config.seeds,
            dataset="digits",
            seed=config.seed,
        )
        for depth in config.depths
        for init in config.inits
    ]


def seed_summary(final_loss: np.ndarray, stall_margin: float) -> dict[str, Any]:
    """Median, quartiles, range and stalled fraction of per-seed final losses.

    A diverged seed (NaN loss) counts as not stalled, is left out of the quantiles and
    appears as None in ``per_seed``; the quantiles are None if every seed diverged.
    """
    loss = np.asarray(final_loss, np.float64)
    finite = loss[np.isfinite(loss)]
    q = np.percentile(finite, [0, 25, 50, 75, 100]).tolist() if finite.size else [None] * 5
    return {
        "median": q[2],
        "q25": q[1],
        "q75": q[3],
        "min": q[0],
        "max": q[4],
        "stalled_fraction": float(np.mean(loss > CHANCE_LOSS - stall_margin)),
        "diverged": int(np.sum(~np.isfinite(loss))),
        "per_seed": [float(v) if math.isfinite(v) else None for v in loss],
    }


def _median_or_none(values: np.ndarray) -> float | None:
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else None


def log2_slope(second_moment: np.ndarray) -> float:
    """Least-squares slope over layers of the seed-mean ``log2 q^l`` (``[seeds, layers]``).

    Mean field for ReLU: ``q^{l+1} = (sigma_w^2 / 2) q^l``, a slope of
    ``log2(sigma_w^2 / 2)``: -1 for Xavier, 0 for He.
    """
    log_q = np.mean(np.log2(np.asarray(second_moment, np.float64)), axis=0)
    layers = np.arange(log_q.size)
    return float(np.polyfit(layers, log_q, 1)[0])


def summarize(results: list[Result], config: ExperimentConfig) -> dict[str, Any]:
    """Per (depth, init): final training-loss statistics, stall fraction, init signal slope."""
    measured: dict[str, Any] = {
        "chance_loss": CHANCE_LOSS,
        "eval_steps": results[0].eval_steps.tolist(),
        "runs": {},
    }
    for r in results:
        c = r.config
        summary = seed_summary(r.eval_train_loss[:, -1], config.stall_margin)
        # Medians over the seeds that did not diverge (None where every seed did).
        summary["test_accuracy_median"] = _median_or_none(r.test_accuracy[:, -1])
        summary["loss_curve_median"] = [_median_or_none(v) for v in r.eval_train_loss.T]
        q = r.layer_stats["init/second_moment"]
        slopes = [log2_slope(q[s : s + 1]) for s in range(q.shape[0])]
        summary["init_log2_q_slope"] = log2_slope(q)  # = the mean of the per-seed slopes
        summary["init_log2_q_slope_se"] = float(np.std(slopes, ddof=1) / math.sqrt(len(slopes)))
        measured["runs"][f"d{c.depth}/{c.init}"] = summary
    return measured


def claims(measured: dict[str, Any], config: ExperimentConfig) -> list[dict[str, Any]]:
    """The published claims against the measured numbers."""
    runs = measured["runs"]
    deep, shallow = max(config.depths), min(config.depths)
    x_deep, h_deep = runs[f"d{deep}/xavier_normal"], runs[f"d{deep}/he_normal"]
    x_shallow, h_shallow = runs[f"d{shallow}/xavier_normal"], runs[f"d{shallow}/he_normal"]
    converged = CHANCE_LOSS / 2
    stalled = CHANCE_LOSS - config.stall_margin
    # A median is None when every seed diverged: then neither stalled nor converged.
    above = lambda s, v: s["median"] is not None and s["median"] > v
    below = lambda s, v: s["median"] is not None and s["median"] < v
    out = [
        {
            "claim": f"Xavier at the deepest depth ({deep} hidden layers) stalls: "
            "median final training loss still near ln 10",
            "published": "30 layers: Xavier does not learn, the loss stays at its initial "
            "value (He et al. 2015, Fig. 3)",
            "measured": x_deep["median"],
            "tolerance": f"> ln 10 - {config.stall_margin} = {stalled:.3f}",
            "agrees": above(x_deep, stalled),
        },
        {
            "claim": f"He at the deepest depth ({deep} hidden layers) converges",
            "published": "30 layers: He converges (He et al. 2015, Fig. 3)",
            "measured": h_deep["median"],
            "tolerance": f"median final loss < ln 10 / 2 = {converged:.3f}",
            "agrees": below(h_deep, converged),
        },
        {
            "claim": f"at the shallowest depth ({shallow} hidden layers) both inits converge",
            "published": "22 layers: both converge, He faster (He et al. 2015, Fig. 2)",
            "measured": {"xavier_normal": x_shallow["median"], "he_normal": h_shallow["median"]},
            "tolerance": f"both medians < ln 10 / 2 = {converged:.3f}",
            "agrees": below(x_shallow, converged) and below(h_shallow, converged),
        },
    ]
    for init, sigma_w2 in SIGMA_W2.items():
        predicted = math.log2(sigma_w2 / 2)
        slope = runs[f"d{deep}/{init}"]["init_log2_q_slope"]
        # Finite width lowers the typical q by up to 2.5 / n per layer in ln (Hanin 2018).
        shift = 2.5 / (config.width * math.log(2))
        tol = shift + 3 * runs[f"d{deep}/{init}"]["init_log2_q_slope_se"]
        out.append(
            {
                "claim": f"{init} at init: log2 of the pre-activation second moment per layer",
                "published": f"log2(sigma_w^2 / 2) = {predicted:g} per layer (He et al. 2015, "
                "Sec. 2.2: the forward signal scales by n Var W / 2 per layer)",
                "measured": slope,
                "tolerance": f"{tol:.3f} per layer: 3 standard errors over seeds plus the "
                f"finite-width shift of the typical q, 2.5 / (n ln 2) = {shift:.3f} (Hanin 2018)",
                "agrees": bool(abs(slope - predicted) < tol),
            }
        )
    return out


# --- figures -----------------------------------------------------------------------


def plot_loss_curves(results: list[Result], config: ExperimentConfig, path: Path) -> None:
    """Per depth: training loss against step, median over seeds and the seed range."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(
        1,
        len(config.depths),
        sharey=True,
        layout="constrained",
        figsize=(3.6 * len(config.depths), 3.2),
        squeeze=False,
    )
    for ax, depth in zip(axes[0], config.depths):
        for r in results:
            if r.config.depth != depth:
                continue
            loss = r.eval_train_loss
            (line,) = ax.plot(r.eval_steps, np.nanmedian(loss, axis=0), label=r.config.init)
            ax.fill_between(
                r.eval_steps,
                np.nanmin(loss, axis=0),
                np.nanmax(loss, axis=0),
                color=line.get_color(),
                alpha=0.2,
            )
        ax.axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":", label="ln 10")
        ax.set_title(f"{depth} hidden ReLU layers", fontsize=9)
        ax.set_xlabel("SGD step")
    axes[0, 0].set_ylabel("training loss (median, seed range)")
    axes[0, 0].legend(fontsize=8)
    _common.save_and_close(fig, path)


def plot_final_loss(measured: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Final training loss against depth: every seed, and the median."""
    plt = _common.pyplot()
    fig, ax = plt.subplots(layout="constrained", figsize=(4.8, 3.4))
    for k, init in enumerate(config.inits):
        medians = []
        for depth in config.depths:
            s = measured["runs"][f"d{depth}/{init}"]
            medians.append(np.nan if s["median"] is None else s["median"])
            finite = [v for v in s["per_seed"] if v is not None]
            jitter = depth + (k - 0.5) * 0.6
            ax.scatter(np.full(len(finite), jitter), finite, s=10, alpha=0.5, color=f"C{k}")
        ax.plot(config.depths, medians, "o-", color=f"C{k}", label=f"{init} (median)")
    ax.axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":", label="ln 10")
    ax.set_xlabel("hidden layers")
    ax.set_ylabel(f"training loss after {config.steps} steps")
    ax.set_xticks(config.depths)
    ax.legend(fontsize=8)
    _common.save_and_close(fig, path)


def plot_signal(results: list[Result], config: ExperimentConfig, path: Path) -> None:
    """At init, deepest depth: log2 of each layer's pre-activation second moment, per seed."""
    plt = _common.pyplot()
    fig, ax = plt.subplots(layout="constrained", figsize=(4.8, 3.4))
    deep = max(config.depths)
    layers = np.arange(1, deep + 1)
    for k, r in enumerate(x for x in results if x.config.depth == deep):
        log_q = np.log2(r.layer_stats["init/second_moment"])
        ax.plot(layers, log_q.T, color=f"C{k}", lw=0.5, alpha=0.4)
        predicted = log_q.mean(0)[0] + math.log2(SIGMA_W2[r.config.init] / 2) * (layers - 1)
        ax.plot(layers, predicted, "--", color=f"C{k}", label=f"{r.config.init}: mean field")
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("log2 q (pre-activation second moment)")
    ax.set_title(f"at init, {deep} layers, every seed", fontsize=9)
    ax.legend(fontsize=8)
    _common.save_and_close(fig, path)


# --- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    config = get_config(args.quick)
    results, programs = run_many(engine_configs(config), load_digits())
    measured = summarize(results, config)
    measured["programs_compiled"] = programs
    figures = {
        f"{NAME}_loss.png": lambda p: plot_loss_curves(results, config, p),
        f"{NAME}_final.png": lambda p: plot_final_loss(measured, config, p),
        f"{NAME}_signal.png": lambda p: plot_signal(results, config, p),
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
