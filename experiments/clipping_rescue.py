"""Gradient clipping extends the range of stable learning rates of a deep MLP.

Published claim (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
recurrent neural networks", arXiv 1211.5063; Zhang, He, Sra & Jadbabaie 2020, "Why
gradient clipping accelerates training", arXiv 1905.11881): rescaling the gradient
to global norm at most ``tau`` (``g <- g min(1, tau/||g||)``) keeps SGD stable at
learning rates where plain SGD diverges, since each clipped step moves the
parameters by at most ``lr tau``; under (L0, L1)-smoothness clipped GD can be
arbitrarily faster than fixed-step GD.

Here: a deep ReLU MLP (He init) on the digits, a log-spaced learning-rate sweep
with and without ``jaxstab.clip_by_global_norm(tau)``, many seeds; every learning
rate and both clip settings are one compiled program (``run_many``). Reported per
learning rate: the divergence rate (non-finite loss), the failure rate (diverged or
no better than chance), the final loss, and from the clip transform's ``ClipState``
(the engine's ``clipped``/``grad_norm``): how often it fired and the distribution
of pre-clip gradient norms. The ``lr tau`` bound is measured directly on the
parameters of a few steps at the largest learning rate (``jaxstab.engine.train``,
one step per call).

    python experiments/clipping_rescue.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxstab as js
from jaxstab import engine
from jaxstab.data import Dataset, load_digits
from jaxstab.experiment import Config, Result, run_many

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common

NAME = "clipping_rescue"
CHANCE_LOSS = math.log(10.0)  # cross-entropy of the uniform prediction over 10 classes
NORM_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)  # of the pre-clip gradient norms


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The experiment's settings (see :func:`get_config`)."""

    depth: int = 16  # hidden layers
    width: int = 128  # units per hidden layer
    activation: str = "relu"  # hidden activation
    init: str = "he_normal"  # weight initializer (critical for ReLU)
    lr_min: float = 0.01  # smallest learning rate of the sweep
    lr_max: float = 3.0  # largest learning rate
    num_lrs: int = 8  # log-spaced learning rates from lr_min to lr_max
    clip: float = 1.0  # tau of clip_by_global_norm; each lr also runs unclipped
    batch_size: int = 32  # examples per SGD step, drawn with replacement
    steps: int = 300  # SGD steps
    eval_every: int = 50  # steps between evaluations of the full training loss
    seeds: int = 6  # seeds per (lr, clip); every lr and clip setting shares the draws
    bound_steps: int = 20  # steps of the direct check of ||delta theta|| <= lr tau
    seed: int = 0  # base PRNG seed


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full config, or with ``quick`` a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(
            depth=8, width=32, num_lrs=6, steps=100, eval_every=50, seeds=3, bound_steps=5
        )
    return ExperimentConfig()


def learning_rates(config: ExperimentConfig) -> list[float]:
    """``num_lrs`` log-spaced learning rates, rounded to 3 significant digits."""
    lrs = np.geomspace(config.lr_min, config.lr_max, config.num_lrs)
    return [float(f"{lr:.3g}") for lr in lrs]


def engine_configs(config: ExperimentConfig) -> list[Config]:
    """One engine config per (clip setting, lr): all share one program key."""
    return [
        Config(
            depth=config.depth,
            width=config.width,
            activation=config.activation,
            init=config.init,
            optimizer="sgd",
            lr=lr,
            clip=clip,
            batch_size=config.batch_size,
            steps=config.steps,
            eval_every=config.eval_every,
            seeds=config.seeds,
            dataset="digits",
            seed=config.seed,
        )
        for clip in (None, config.clip)
        for lr in learning_rates(config)
    ]


def failed(result: Result) -> np.ndarray:
    """Per seed: diverged, or a final training loss no better than chance (``>= ln 10``)."""
    final = result.eval_train_loss[:, -1]
    return result.diverged | ~(final < CHANCE_LOSS)


def largest_stable_lr(lrs: list[float], failure_rate: list[float]) -> float | None:
    """The largest lr such that it and every smaller lr of the sweep have no failed seed."""
    stable = None
    for lr, rate in sorted(zip(lrs, failure_rate)):
        if rate > 0:
            break
        stable = lr
    return stable


def summarize(results: list[Result], config: ExperimentConfig) -> dict[str, Any]:
    """Per clip setting and lr: divergence/failure rates, final loss, clip statistics."""
    measured: dict[str, Any] = {"lrs": learning_rates(config)}
    for label, clip in (("none", None), ("clip", config.clip)):
        rows = [r for r in results if r.config.clip == clip]
        final = [r.eval_train_loss[:, -1] for r in rows]
        entry: dict[str, Any] = {
            "divergence_rate": [float(np.mean(r.diverged)) for r in rows],
            "failure_rate": [float(np.mean(failed(r))) for r in rows],
            "diverged_step_median": [
                float(np.median(r.diverged_step[r.diverged])) if r.diverged.any() else None
                for r in rows
            ],
            # A diverged seed's loss is NaN: medians over the finite seeds, None if none.
            "final_loss_median": [
                float(np.nanmedian(f)) if np.isfinite(f).any() else None for f in final
            ],
            "final_loss_per_seed": [[_finite_or_none(v) for v in f] for f in final],
            # Over the steps before divergence (every step of a run that did not diverge).
            "clip_rate": [float(np.mean(r.clipped[live_steps(r)])) for r in rows],
            "grad_norm_percentiles": [_norm_percentiles(r) for r in rows],
            # Median over seeds of the fraction of hidden units dead (ReLU 0 on a whole
            # batch) at the end, averaged over layers: what a too-large step leaves behind.
            "dead_fraction_final": [
                float(np.median(r.layer_stats["final/dead_fraction"].mean(axis=1))) for r in rows
            ],
        }
        entry["largest_stable_lr"] = largest_stable_lr(measured["lrs"], entry["failure_rate"])
        measured[label] = entry
    return measured


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def live_steps(result: Result) -> np.ndarray:
    """``[seeds, steps]`` mask of the steps before each seed diverged (all if it did not).

    The engine freezes a diverged run at its last finite parameters and goes on
    measuring gradients there; those steps say nothing about training.
    """
    steps = np.arange(result.grad_norm.shape[1])
    end = np.where(result.diverged, result.diverged_step, steps.size)
    return steps[None, :] < end[:, None]


def _norm_percentiles(result: Result) -> list[float] | list[None]:
    norms = result.grad_norm[live_steps(result)].astype(np.float64)
    norms = norms[np.isfinite(norms)]
    if not norms.size:
        return [None] * len(NORM_PERCENTILES)
    return np.percentile(norms, NORM_PERCENTILES).tolist()


class _BoundTask(NamedTuple):
    """The engine's callables of the step-bound check (the same objects: one compile)."""

    init: Callable[..., Any]
    loss: Callable[..., Any]
    optimizer: Callable[..., Any]


@functools.lru_cache(maxsize=8)
def _bound_task(activation: str) -> _BoundTask:
    """Clipped SGD from given parameters: a run's hparams are ``params``, ``lr``, ``clip``."""

    def init(key: jax.Array, hp: Any) -> Any:
        del key  # the run continues from its given parameters
        return hp["params"]

    def loss(params: Any, batch: tuple[jax.Array, jax.Array], hp: Any) -> jax.Array:
        del hp
        logits = js.apply_mlp(params, batch[0], activation)
        return jnp.mean(js.softmax_cross_entropy(logits, batch[1]))

    def optimizer(hp: Any) -> optax.GradientTransformation:
        return optax.chain(js.clip_by_global_norm(hp["clip"]), optax.sgd(hp["lr"]))

    return _BoundTask(init, loss, optimizer)


def _norms(tree: Any) -> np.ndarray:
    """Per run (the leading axis), the global norm of a pytree of float32 arrays, in float64."""
    leaves = [np.asarray(a, np.float64).reshape(a.shape[0], -1) for a in jax.tree.leaves(tree)]
    return np.sqrt(sum(np.sum(a**2, axis=1) for a in leaves))


def step_bound(config: ExperimentConfig, data: Dataset, lr: float) -> dict[str, Any]:
    """Measures ``||theta_{t+1} - theta_t|| / (lr tau)`` of clipped SGD at ``lr``, every seed.

    ``bound_steps`` steps of :func:`jaxstab.engine.train`, one step per call, each call
    continuing from the parameters the previous one returned, so that every step's
    parameters before and after are measured. Seed ``s`` starts from ``init_mlp`` with
    the first half of ``split(key(seed))`` folded with ``s``; its step ``t`` draws its
    minibatch from the engine's run seed ``t * seeds + s``.

    Returns the largest ratio over all steps and seeds, the smallest over the clipped
    steps (1 up to rounding: a clipped step moves by exactly ``lr tau``), ``rounding``
    (the largest float32 rounding error of a ratio) and how many steps were clipped.
    """
    sizes = [data.d_in, *[config.width] * config.depth, data.d_out]
    init = js.get_initializer(config.init)
    init_key = jax.random.split(jax.random.key(config.seed))[0]
    nets = [
        js.init_mlp(jax.random.fold_in(init_key, s), sizes, weight_init=init)
        for s in range(config.seeds)
    ]
    params = jax.tree.map(lambda *a: np.stack(a), *nets)
    task = _bound_task(config.activation)
    moved, norm, clipped = [], [], []
    for t in range(config.bound_steps):
        runs = {
            "seed": t * config.seeds + np.arange(config.seeds),
            "lr": np.full(config.seeds, lr),
            "clip": np.full(config.seeds, config.clip),
            "params": params,
        }
        result = engine.train(
            task.init,
            task.loss,
            task.optimizer,
            (data.x_train, data.y_train),
            runs,
            steps=1,
            batch_size=config.batch_size,
            seed=config.seed,
            return_params=True,
        )
        # The float32 difference of the parameters, as the step changed them.
        moved.append(_norms(jax.tree.map(np.subtract, result.params, params)))
        norm.append(_norms(result.params))
        clipped.append(result.metrics["clipped"][:, 0])
        params = result.params
    bound = lr * config.clip
    ratio = np.stack(moved, axis=1) / bound  # [seeds, steps]
    clipped_steps = np.stack(clipped, axis=1)
    # float32: theta + u rounds each entry by up to eps/2 |theta_i| (the difference of the
    # two close parameter vectors is then exact), and a norm of N entries carries a
    # relative error of order sqrt(N) eps.
    eps = float(np.finfo(np.float32).eps)
    n_params = sum(leaf.size for leaf in jax.tree.leaves(nets[0]))
    rounding = eps / 2 * float(np.max(norm)) / bound + math.sqrt(n_params) * eps
    return {
        "lr": lr,
        "max_ratio": float(ratio.max()),
        "min_ratio_clipped": float(ratio[clipped_steps].min()) if clipped_steps.any() else None,
        "rounding": rounding,
        "clipped_steps": int(clipped_steps.sum()),
        "steps": int(clipped_steps.size),
    }


def claims(measured: dict[str, Any], config: ExperimentConfig) -> list[dict[str, Any]]:
    """The published claims against the measured numbers."""
    none, clip = measured["none"]["largest_stable_lr"], measured["clip"]["largest_stable_lr"]
    rank = lambda lr: -1 if lr is None else measured["lrs"].index(lr)
    bound = measured["step_bound"]
    slack = bound["rounding"]
    return [
        {
            "claim": f"clipping (tau = {config.clip:g}) extends the range of stable learning "
            "rates: largest lr of the sweep up to which no seed fails",
            "published": "clipped SGD stays stable at learning rates where plain SGD "
            "diverges (Pascanu et al. 2013; Zhang et al. 2020)",
            "measured": {"none": none, "clip": clip},
            "tolerance": "clip's largest stable lr above the unclipped one (a failed seed: "
            "non-finite loss or final loss >= ln 10)",
            "agrees": bool(rank(clip) > rank(none)),
        },
        {
            "claim": f"with SGD a clipped step moves the parameters by at most lr tau "
            f"(measured at lr = {bound['lr']:g} over {bound['steps']} steps)",
            "published": "||theta_{t+1} - theta_t|| <= lr tau, with equality when clipped",
            "measured": {
                "max_ratio": bound["max_ratio"],
                "min_ratio_clipped": bound["min_ratio_clipped"],
            },
            "tolerance": f"max ratio <= 1 + {slack:.2g} and clipped steps >= 1 - {slack:.2g} "
            "(float32 rounding of the update and of the norms)",
            "agrees": bool(
                bound["max_ratio"] <= 1 + slack
                and (bound["min_ratio_clipped"] is None or bound["min_ratio_clipped"] >= 1 - slack)
            ),
        },
    ]


# --- figures -----------------------------------------------------------------------


LABELS = {"none": "no clipping", "clip": "clip_by_global_norm"}


def plot_sweep(measured: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Against lr: failure and divergence rates, final loss, clip rate, pre-clip norms."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(2, 2, layout="constrained", figsize=(9, 6.4))
    lrs = np.asarray(measured["lrs"])
    for k, label in enumerate(("none", "clip")):
        m, color = measured[label], f"C{k}"
        name = LABELS[label] + (f" (tau={config.clip:g})" if label == "clip" else "")
        ax = axes[0, 0]
        ax.plot(lrs, m["failure_rate"], "o-", color=color, label=f"{name}: failed")
        ax.plot(lrs, m["divergence_rate"], "x--", color=color, label=f"{name}: diverged")
        ax = axes[0, 1]
        for lr, seeds in zip(lrs, m["final_loss_per_seed"]):
            finite = [v for v in seeds if v is not None]
            ax.scatter(np.full(len(finite), lr), finite, s=8, alpha=0.4, color=color)
        medians = [np.nan if v is None else v for v in m["final_loss_median"]]
        ax.plot(lrs, medians, "o-", color=color, label=name)
        if label == "clip":
            axes[1, 0].plot(lrs, m["clip_rate"], "o-", color=color, label=name)
        pct = np.asarray(m["grad_norm_percentiles"], dtype=np.float64)  # None -> nan
        axes[1, 1].fill_between(lrs, pct[:, 0], pct[:, -1], color=color, alpha=0.2)
        axes[1, 1].plot(lrs, pct[:, 2], "o-", color=color, label=f"{name}: median, 5-95%")
    axes[0, 0].set_ylabel("fraction of seeds")
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":", label="ln 10")
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_ylabel(f"training loss after {config.steps} steps")
    axes[0, 1].legend(fontsize=7)
    axes[1, 0].set_ylabel("fraction of steps clipped")
    axes[1, 1].axhline(config.clip, color="gray", lw=0.8, ls=":", label="tau")
    axes[1, 1].set_yscale("log")
    axes[1, 1].set_ylabel("pre-clip gradient norm")
    axes[1, 1].legend(fontsize=7)
    for ax in axes.ravel():
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
    _common.save_and_close(fig, path)


def plot_norm_histograms(results: list[Result], config: ExperimentConfig, path: Path) -> None:
    """Per lr: the distribution of pre-clip gradient norms over steps and seeds."""
    plt = _common.pyplot()
    lrs = learning_rates(config)
    cols = math.ceil(len(lrs) / 2)
    fig, axes = plt.subplots(
        2, cols, sharex=True, layout="constrained", figsize=(2.6 * cols, 4.8), squeeze=False
    )
    logs = {}
    for r in results:
        norms = r.grad_norm[live_steps(r)].astype(np.float64)
        logs[r.config.lr, r.config.clip] = np.log10(norms[np.isfinite(norms) & (norms > 0)])
    # The bulk of all norms; the rare ones outside are piled into the edge bins.
    lo, hi = np.percentile(np.concatenate(list(logs.values())), [0.5, 99.5])
    edges = np.linspace(lo, hi, 40)
    for ax, lr in zip(axes.ravel(), lrs):
        for k, clip in enumerate((None, config.clip)):
            ax.hist(
                np.clip(logs[lr, clip], lo, hi),
                edges,
                density=True,
                histtype="step",
                color=f"C{k}",
                label=LABELS["none" if clip is None else "clip"],
            )
        ax.axvline(math.log10(config.clip), color="gray", lw=0.8, ls=":")
        ax.set_title(f"lr = {lr:g}", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("log10 pre-clip gradient norm")
    axes[0, 0].set_ylabel("density (steps before divergence)")
    axes[0, 0].legend(fontsize=7)
    _common.save_and_close(fig, path)


# --- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    config = get_config(args.quick)
    data = load_digits()
    results, programs = run_many(engine_configs(config), data)
    measured = summarize(results, config)
    measured["programs_compiled"] = programs
    measured["step_bound"] = step_bound(config, data, max(learning_rates(config)))
    figures = {
        f"{NAME}_sweep.png": lambda p: plot_sweep(measured, config, p),
        f"{NAME}_norms.png": lambda p: plot_norm_histograms(results, config, p),
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
