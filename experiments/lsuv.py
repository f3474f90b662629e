"""LSUV against Xavier, He and orthogonal initialization in deep tanh and ReLU MLPs.

Published claim (Mishkin & Matas 2016, "All you need is a good init", ICLR 2016,
arXiv 1511.06422; abstract and Algorithm 1, checked against the abstract and the
authors' code): layer-sequential unit-variance (LSUV) initialization -- first
pre-initialize every convolution or inner-product layer with an orthonormal matrix,
then, from the first layer to the last, divide the layer's weights by the standard
deviation of its output on a minibatch until that variance is within a tolerance of 1
-- "leads to learning of very deep nets that (i) produces networks with test accuracy
better or equal to standard methods and (ii) is at least as fast as the complex
schemes proposed specifically for very deep nets" (FitNets, Highway; not tested here).

Here: MLPs of width 32 on the embedded digits (jaxstab.data.load_digits), at 10, 30 and
50 hidden layers, with tanh and with ReLU, zero biases. Four arms per (activation,
depth): Xavier normal, He normal, orthogonal with the activation's gain (5/3 for tanh,
sqrt 2 for ReLU) and LSUV (orthogonal start with gain 1, then jaxstab.probe.lsuv on
every dense layer, the classifier included as in Algorithm 1 and the authors' Caffe
script, on a fixed batch of training digits). The *tailored* init is He for ReLU (He et
al. 2015, derived for rectifiers) and Xavier for tanh (Glorot & Bengio 2010, derived for
symmetric activations linear at 0).

Per (activation, depth) two compiled programs. The init program draws every run's
initial parameters (the arm's settings are arguments, so every arm shares it) and
measures every hidden layer's pre-activation variance on the LSUV batch
(jaxstab.diagnostics.forward_stats): the per-layer profile, its drift over depth and
whether LSUV met its target |Var z - 1| < tol at every layer. The training program,
jaxstab.engine.train, takes those parameters through ``runs`` (with the learning rate
and seed, all traced): SGD with momentum, 16 seeds per arm at every learning rate of a
grid; per arm the learning rate with the lowest median final training loss among those
at which no seed diverged. Speed: the step at which a seed's smoothed minibatch loss
first falls below a threshold; and the training loss after the fixed budget. "Matches or
beats" is a non-inferiority rule fixed before the run: the upper end of the 95% bootstrap
interval of the ratio of medians LSUV / tailored is at most a stated margin (test
accuracy: the lower end of the difference's interval is at least minus a margin).

Notes. LSUV runs in the init program, not inside the engine's ``init``: a vmapped batch
of jaxstab.probe.lsuv's while loops (inside a scan over a 49-layer stack, or selected by
a traced arm flag) deadlocked XLA:CPU here (every thread idle in a futex wait), so the
init program maps over nets with ``lax.map``. With zero biases one rescaling sets a
layer's variance to 1 up to rounding, so LSUV's tolerance and iteration cap matter only
through the first check (a layer already within tol is left as it is).

    python experiments/lsuv.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxstab as js
from jaxstab import diagnostics, engine
from jaxstab.data import Dataset, load_digits

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
    import _findings
    import _stats
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common, _findings, _stats

NAME = "lsuv"
TITLE = "LSUV against Xavier, He and orthogonal init in deep tanh and ReLU MLPs"
SOURCE = "Mishkin & Matas 2016 (arXiv 1511.06422)"
ARMS = ("xavier_normal", "he_normal", "orthogonal", "lsuv")
LABEL = {
    "xavier_normal": "Xavier",
    "he_normal": "He",
    "orthogonal": "orthogonal",
    "lsuv": "LSUV",
}
# The init derived for the activation: He et al. 2015 for rectifiers, Glorot & Bengio
# 2010 for tanh (symmetric, linear at 0).
TAILORED = {"relu": "he_normal", "tanh": "xavier_normal"}
CHANCE_LOSS = math.log(10.0)  # cross-entropy of the uniform prediction over 10 classes


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The experiment's settings (see :func:`get_config`)."""

    activations: tuple[str, ...] = ("tanh", "relu")  # hidden activations
    depths: tuple[int, ...] = (10, 30, 50)  # hidden layers; two programs per (activation, depth)
    width: int = 32  # units per hidden layer (32 rather than 64 to fit the CPU budget)
    # SGD-with-momentum learning rates, one grid for every arm, activation and depth,
    # log-spaced by about 3. From a pilot at width 64 and batch 64 (ReLU, 50 layers, 4
    # seeds, lr 0.001 .. 0.3): He, orthogonal and LSUV did best at 0.001-0.003 and
    # diverged or stalled from 0.03 on, Xavier stayed at chance at every lr. This grid
    # extends that best range one step down and one up; the rule (best_lr) picks per arm.
    # A first full run with (0.0003 .. 0.01) chose the upper edge for every arm at 10
    # layers, so 0.03 was added (the first four lrs' runs are reproduced bit for bit).
    lrs: tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01, 0.03)
    momentum: float = 0.9  # heavy-ball momentum, as the paper's Caffe solvers use
    batch_size: int = 32  # examples per step, drawn with replacement
    steps: int = 300  # SGD steps (7 epochs of the 1347 training digits)
    eval_every: int = 300  # steps between evaluations of the full training and test sets
    seeds: int = 16  # seeds per (activation, depth, arm, lr); the arms share the draws
    lsuv_batch: int = 256  # the first training digits: LSUV's batch and the at-init probe
    tol: float = 0.1  # LSUV's tolerance on |Var z - 1| (the authors' Keras code: 0.1)
    max_iters: int = 10  # LSUV's most rescalings per layer (the authors' Keras code: 10)
    smooth: int = 20  # window (steps) of the running mean of the minibatch loss
    threshold: float = 1.5  # "reached": smoothed minibatch loss below this (chance: ln 10)
    margin: float = 1.25  # non-inferiority: upper 95% bound of median ratio LSUV/tailored
    accuracy_margin: float = 0.02  # non-inferiority of test accuracy (absolute)
    seed: int = 0  # base PRNG seed; run r initializes from fold_in(key(seed), run seed r)


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full config, or with ``quick`` a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(
            depths=(3,),
            width=16,
            lrs=(0.003, 0.01),
            steps=40,
            eval_every=40,
            seeds=4,
            lsuv_batch=64,
            smooth=10,
        )
    return ExperimentConfig()


# --- the arms: traced per-run settings of one init program --------------------------------


def mlp_sizes(config: ExperimentConfig, depth: int, d_in: int = 64, classes: int = 10) -> list:
    """``[d_in, width x depth, classes]``."""
    return [d_in, *[config.width] * depth, classes]


def arm_settings(arm: str, activation: str, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """One arm as traced values: the base draw, the per-layer scale and the LSUV switch.

    Every arm draws from one key per layer: ``orthogonal`` = 0 takes the LeCun-normal
    draw ``N(0, 1/fan_in)``, 1 the orthogonal one (gain 1); ``scale[l]`` multiplies
    layer ``l``'s weights (the output layer last); ``lsuv`` = 1 then runs LSUV.

    * Xavier normal: ``Var W = 2/(fan_in + fan_out)``, scale ``sqrt(2 fan_in/(fan_in+fan_out))``.
    * He normal: ``Var W = 2/fan_in``, scale ``sqrt 2``.
    * orthogonal: gain :func:`jaxstab.calculate_gain` of the activation on every layer.
    * LSUV: orthogonal with gain 1, then rescaled layer by layer.
    """
    fans = list(zip(sizes[:-1], sizes[1:]))
    if arm == "xavier_normal":
        scale = [math.sqrt(2 * n_in / (n_in + n_out)) for n_in, n_out in fans]
    elif arm == "he_normal":
        scale = [math.sqrt(2.0)] * len(fans)
    elif arm == "orthogonal":
        scale = [js.calculate_gain(activation)] * len(fans)
    elif arm == "lsuv":
        scale = [1.0] * len(fans)
    else:
        raise ValueError(f"unknown arm {arm!r}; valid: {', '.join(ARMS)}")
    return {
        "orthogonal": np.asarray(arm in ("orthogonal", "lsuv"), np.int32),
        "lsuv": np.asarray(arm == "lsuv", np.int32),
        "scale": np.asarray(scale, np.float32),
    }


def scale_layers(params: Any, scale: jax.Array) -> Any:
    """``params`` with layer ``l``'s weight times ``scale[l]`` (hidden layers, then output)."""
    hidden, start = [], 0
    for group in params["hidden"]:
        k = group["w"].shape[0]
        hidden.append({**group, "w": group["w"] * scale[start : start + k, None, None]})
        start += k
    output = {**params["output"], "w": params["output"]["w"] * scale[start]}
    return {"hidden": hidden, "output": output}


def make_init(
    sizes: Sequence[int], activation: str, x_lsuv: jax.Array, tol: float, max_iters: int
) -> Callable[[jax.Array, Any], Any]:
    """The engine's ``init(key, hparams)``: one program for every arm (see :func:`arm_settings`).

    LSUV is :func:`jaxstab.probe.lsuv` on :func:`jaxstab.apply_mlp` with every dense
    weight as a layer, the classifier included (Algorithm 1 runs "from the first to the
    final layer"; :func:`jaxstab.lsuv` leaves the output layer as it is). It runs for
    every run and is selected where ``hparams["lsuv"]`` is 1 (``jnp.where``, the vmapped
    form of a branch).
    """
    sizes = list(sizes)
    gaussian, orthogonal = js.lecun_normal(), js.orthogonal()

    def apply(params: Any, x: jax.Array) -> jax.Array:
        return js.apply_mlp(params, x, activation)

    def init(key: jax.Array, hp: Any) -> Any:
        g = js.init_mlp(key, sizes, weight_init=gaussian)
        o = js.init_mlp(key, sizes, weight_init=orthogonal)
        base = jax.tree.map(lambda a, b: jnp.where(hp["orthogonal"] > 0, b, a), g, o)
        scaled = scale_layers(base, hp["scale"])
        # LSUV's start is the orthogonal draw itself (gain 1), whatever the arm, so the
        # rescaling never runs on another arm's weights.
        rescaled = js.probe.lsuv(apply, o, x_lsuv, tol=tol, max_iters=max_iters)
        params = jax.tree.map(lambda a, b: jnp.where(hp["lsuv"] > 0, b, a), scaled, rescaled)
        return js.split_stacks(params)

    return init


def arm_runs(config: ExperimentConfig) -> dict[str, np.ndarray]:
    """The engine's runs: every arm (slowest) and learning rate for ``seeds`` seeds.

    Run seeds differ between learning rates (seed ``i`` of the ``j``-th learning rate is
    ``i + j * seeds``) and are shared by the arms: the arms of one run seed start from the
    same draws (Xavier and He nets are scaled copies), the learning rates from
    independent ones, so every arm has ``seeds * len(lrs)`` independent nets at init.
    """
    runs = engine.grid(config.seeds, arm=list(range(len(ARMS))), lr=list(config.lrs))
    lr_index = np.searchsorted(np.asarray(config.lrs, np.float32), runs["lr"])
    runs["seed"] = (runs["seed"] + config.seeds * lr_index).astype(np.int32)
    return runs


def initial_params(
    config: ExperimentConfig, data: Dataset, activation: str, depth: int, runs: Mapping
) -> tuple[Any, np.ndarray]:
    """Every run's initial parameters and its per-layer pre-activation variance at init.

    One compiled program per (activation, depth), ``jax.vmap`` over the runs of one arm
    with the arm's settings as (unbatched) arguments. Run ``r`` draws from
    ``fold_in(key(seed), runs["seed"][r])``.

    Returns:
      ``(params, variance)``: the parameters with a leading runs axis, and
      ``[runs, depth]`` float64 ``Var z^l`` on the LSUV batch (over its examples and
      units: ``diagnostics.forward_stats(...).variance``, what LSUV normalizes).
    """
    sizes = mlp_sizes(config, depth, data.x_train.shape[1], data.num_classes)
    x = jnp.asarray(data.x_train[: config.lsuv_batch])
    init = make_init(sizes, activation, x, config.tol, config.max_iters)

    def one(seed: jax.Array, hp: Any) -> tuple[Any, jax.Array]:
        params = init(jax.random.fold_in(jax.random.key(config.seed), seed), hp)
        return params, diagnostics.forward_stats(params, x, activation).variance

    # lax.map, not vmap: one net at a time keeps LSUV's while loops unbatched (a vmapped
    # batch of them deadlocked XLA:CPU here; see the module's notes).
    program = _common.jit_once(lambda seeds, hp: jax.lax.map(lambda s: one(s, hp), seeds))
    params, variance = [], np.empty((runs["seed"].size, depth))
    for a, arm in enumerate(ARMS):
        idx = np.flatnonzero(runs["arm"] == a)
        hp = {k: jnp.asarray(v) for k, v in arm_settings(arm, activation, sizes).items()}
        p, v = program(jnp.asarray(runs["seed"][idx]), hp)
        params.append((idx, jax.device_get(p)))
        variance[idx] = np.asarray(v, np.float64)
    order = np.argsort(np.concatenate([idx for idx, _ in params]))
    stacked = jax.tree.map(lambda *a: np.concatenate(a)[order], *[p for _, p in params])
    return stacked, variance


# --- training ------------------------------------------------------------------------------


def train_cell(
    config: ExperimentConfig, data: Dataset, activation: str, depth: int
) -> tuple[engine.TrainResult, np.ndarray]:
    """Trains every arm, learning rate and seed of one (activation, depth).

    The initial parameters come from :func:`initial_params` through ``runs`` (the
    engine's ``init`` returns the run's own), so the training is one program whatever
    the arm. Returns the result and the runs' variance at init.
    """
    runs = arm_runs(config)
    runs["params"], variance = initial_params(config, data, activation, depth, runs)

    def init(key: jax.Array, hp: Any) -> Any:
        del key
        return hp["params"]

    def loss(params: Any, batch: tuple[jax.Array, jax.Array], hp: Any) -> jax.Array:
        del hp
        logits = js.apply_mlp(params, batch[0], activation)
        return jnp.mean(js.softmax_cross_entropy(logits, batch[1]))

    def optimizer(hp: Any) -> optax.GradientTransformation:
        return optax.sgd(hp["lr"], momentum=config.momentum)

    def evaluate(params: Any, d: Mapping[str, jax.Array], hp: Any) -> dict[str, jax.Array]:
        del hp
        train_logits = js.apply_mlp(params, d["x_train"], activation)
        test_logits = js.apply_mlp(params, d["x_test"], activation)
        return {
            "train_loss": jnp.mean(js.softmax_cross_entropy(train_logits, d["y_train"])),
            "test_loss": jnp.mean(js.softmax_cross_entropy(test_logits, d["y_test"])),
            "test_accuracy": js.accuracy(test_logits, d["y_test"]),
        }

    eval_data = {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "x_test": data.x_test,
        "y_test": data.y_test,
    }
    result = engine.train(
        init,
        loss,
        optimizer,
        (data.x_train, data.y_train),
        runs,
        steps=config.steps,
        batch_size=config.batch_size,
        seed=config.seed,
        evaluate=evaluate,
        eval_data=eval_data,
        eval_every=config.eval_every,
    )
    return result, variance


# --- the signal at init ----------------------------------------------------------------------


def summarize_init(variance: Mapping[str, np.ndarray], tol: float) -> dict[str, Any]:
    """Per arm: the mean log10 variance per layer, its drift over depth and the LSUV check.

    ``drift`` is ``log10(Var z^L / Var z^1)`` per net (last hidden layer against the
    first), with its mean and 95% Student-t interval over the nets. ``within_tol`` counts
    the nets whose every hidden layer has ``|Var z - 1| < tol`` (LSUV's stopping rule).
    """
    out: dict[str, Any] = {}
    for arm, v in variance.items():
        log_v = np.log10(v)
        drift = log_v[:, -1] - log_v[:, 0]
        within = np.all(np.abs(v - 1.0) < tol, axis=1)
        out[arm] = {
            "log10_variance_mean": log_v.mean(axis=0).tolist(),
            "log10_variance_q25": np.quantile(log_v, 0.25, axis=0).tolist(),
            "log10_variance_q75": np.quantile(log_v, 0.75, axis=0).tolist(),
            "drift": list(_stats.mean_ci(drift)) if np.ptp(drift) > 0 else [float(drift[0])] * 3,
            "within_tol": int(within.sum()),
            "nets": int(v.shape[0]),
        }
    return out


# --- training statistics -------------------------------------------------------------------


def smoothed(loss: np.ndarray, window: int) -> np.ndarray:
    """Running mean of each row over the last ``window`` steps: ``[runs, steps - window + 1]``.

    Entry ``j`` is the mean of steps ``j .. j + window - 1``, i.e. it is known after step
    ``j + window`` (1-based). A NaN (diverged) step makes the windows holding it NaN.
    """
    loss = np.asarray(loss, np.float64)
    if not 1 <= window <= loss.shape[-1]:
        raise ValueError(f"window={window} must be in [1, steps={loss.shape[-1]}]")
    c = np.cumsum(np.concatenate([np.zeros((*loss.shape[:-1], 1)), loss], axis=-1), axis=-1)
    return (c[..., window:] - c[..., :-window]) / window


def steps_to_threshold(loss: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """Per run: the first step after which the smoothed minibatch loss is below ``threshold``.

    Returns float64 ``[runs]``: a step count in ``[window, steps]``, or ``inf`` where the
    threshold is never reached (censored at the budget; a diverged run counts as never
    after its divergence).
    """
    s = smoothed(loss, window)
    with np.errstate(invalid="ignore"):
        below = s < threshold
    first = np.argmax(below, axis=-1)
    return np.where(below.any(axis=-1), first + window, np.inf).astype(np.float64)


def ratio_of_medians(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """``exp(median log a - median log b)`` with its 95% bootstrap interval.

    ``inf`` (a diverged or censored seed) is ranked worst: it is replaced by
    ``2 * max`` of the finite values of both samples before the logs, so it can move a
    median but not break the interval. Also the one-sided Mann-Whitney p-value that
    ``a`` tends to be larger (the evidence against "a is no worse than b").
    """
    x, y = (np.asarray(v, np.float64).reshape(-1) for v in (a, b))
    finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
    if finite.size == 0:
        return {"ratio": None, "interval": None, "p_greater": None, "worst_fill": None}
    fill = 2.0 * float(finite.max())
    lx, ly = (np.log(np.where(np.isfinite(v), v, fill)) for v in (x, y))
    diff, lo, hi = _stats.difference_ci(lx, ly, np.median)
    return {
        "ratio": math.exp(diff),
        "interval": [math.exp(lo), math.exp(hi)],
        "p_greater": _stats.rank_test(x, y, "greater"),
        "worst_fill": fill,
    }


def difference_of_medians(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """``median a - median b`` with its 95% bootstrap interval (NaN values left out)."""
    diff, lo, hi = _stats.difference_ci(a, b, np.median)
    return {"difference": diff, "interval": [lo, hi]}


def _quantile_curve(values: np.ndarray, q: float) -> list[float | None]:
    """Per column: the ``q`` quantile over the finite rows (None where none is finite)."""
    out: list[float | None] = []
    for column in np.asarray(values, np.float64).T:
        finite = column[np.isfinite(column)]
        out.append(float(np.quantile(finite, q)) if finite.size else None)
    return out


def _per_seed(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, np.float64)]


def _from_per_seed(values: Sequence[float | None], missing: float = np.inf) -> np.ndarray:
    return np.array([missing if v is None else v for v in values], np.float64)


def summarize_cell(
    result: engine.TrainResult, config: ExperimentConfig, activation: str
) -> dict[str, Any]:
    """One (activation, depth): per arm the chosen lr and its seeds; LSUV against the rest."""
    arm_ids, lrs = np.asarray(result.runs["arm"]), np.asarray(result.runs["lr"])
    final = np.asarray(result.evals["train_loss"][:, -1], np.float64)
    final = np.where(np.isfinite(final), final, np.inf)
    accuracy = np.asarray(result.evals["test_accuracy"][:, -1], np.float64)
    steps = steps_to_threshold(result.metrics["loss"], config.smooth, config.threshold)
    curves = smoothed(result.metrics["loss"], config.smooth)
    arms: dict[str, Any] = {}
    for a, arm in enumerate(ARMS):
        masks = {lr: (arm_ids == a) & np.isclose(lrs, lr) for lr in config.lrs}
        chosen = _stats.best_lr({lr: final[m] for lr, m in masks.items()})
        m = masks[chosen]
        arms[arm] = {
            "lr": chosen,
            "lr_at_grid_edge": chosen in (min(config.lrs), max(config.lrs)),
            "grid_median_final_loss": {
                repr(lr): float(np.median(final[mm])) for lr, mm in masks.items()
            },
            "grid_diverged": {
                repr(lr): int(np.sum(~np.isfinite(final[mm]))) for lr, mm in masks.items()
            },
            "final_loss": _per_seed(final[m]),
            "steps_to_threshold": _per_seed(steps[m]),
            "test_accuracy": _per_seed(accuracy[m]),
            "median_final_loss": float(np.median(final[m])),
            "median_steps": float(np.median(steps[m])),
            "reached": int(np.sum(np.isfinite(steps[m]))),
            "median_test_accuracy": float(np.nanmedian(accuracy[m])),
            "curve_median": _quantile_curve(curves[m], 0.5)[:: config.smooth // 2 or 1],
        }
    tailored = TAILORED[activation]
    comparisons = {}
    for other in ARMS[:-1]:
        lsuv, ref = arms["lsuv"], arms[other]
        comparisons[other] = {
            "final_loss": ratio_of_medians(
                _from_per_seed(lsuv["final_loss"]), _from_per_seed(ref["final_loss"])
            ),
            "steps": ratio_of_medians(
                _from_per_seed(lsuv["steps_to_threshold"]),
                _from_per_seed(ref["steps_to_threshold"]),
            ),
            "test_accuracy": difference_of_medians(
                _from_per_seed(lsuv["test_accuracy"], np.nan),
                _from_per_seed(ref["test_accuracy"], np.nan),
            ),
        }
    return {"tailored": tailored, "arms": arms, "lsuv_vs": comparisons}


# --- claims --------------------------------------------------------------------------------

ABSTRACT = f"{SOURCE}, abstract"


def claims(measured: Mapping[str, Any], config: ExperimentConfig) -> list[dict[str, Any]]:
    """The published claims against the measurements (rules fixed before the run)."""
    out = []
    for act in config.activations:
        init = measured["init"][act]
        hits = sum(init[f"d{d}"]["lsuv"]["within_tol"] for d in config.depths)
        nets = sum(init[f"d{d}"]["lsuv"]["nets"] for d in config.depths)
        p, lo, hi = _stats.proportion_ci(hits, nets)
        out.append(
            _common.claim(
                f"{act}: LSUV brings every layer's output variance within tol of 1",
                source=f"{SOURCE}, abstract and Algorithm 1",
                published=f"Var of every layer's output = 1 (stopping rule |Var - 1| < tol "
                f"= {config.tol}, at most {config.max_iters} rescalings per layer)",
                measured=p,
                interval=[lo, hi],
                n=nets,
                rule="the Wilson interval's lower end is above 0.95 (nets with every hidden "
                "layer within tol, pooled over depths)",
                agrees=lo > 0.95,
                note="Measured on the pre-activations z = h W + b of the LSUV batch, as the "
                "authors' Caffe script does (var_before_relu_if_inplace); with zero biases one "
                "rescaling makes Var z = 1 up to rounding, so this checks the implementation. "
                "Tolerance and iteration cap are the authors' Keras code's (margin 0.1, "
                "max_iter 10; their Caffe script uses 0.02 and 20); the paper's own values "
                "were not checked.",
            )
        )
    for act in config.activations:
        tailored = TAILORED[act]
        for depth in config.depths:
            cell = measured["training"][act][f"d{depth}"]
            c = cell["lsuv_vs"][tailored]["final_loss"]
            out.append(
                _common.claim(
                    f"{act}, {depth} layers: LSUV's training loss after the budget matches or "
                    f"beats {LABEL[tailored]}'s",
                    source=f"{ABSTRACT} (i)",
                    published="LSUV nets are better than or equal to those of standard inits",
                    measured=c["ratio"],
                    interval=c["interval"],
                    n=config.seeds,
                    rule=f"median final loss ratio LSUV / {LABEL[tailored]}: the interval's "
                    f"upper end is at most {config.margin}",
                    agrees=c["interval"] is not None and c["interval"][1] <= config.margin,
                    note=_lr_note(cell, ("lsuv", tailored)),
                )
            )
    for act in config.activations:
        tailored = TAILORED[act]
        for depth in config.depths:
            cell = measured["training"][act][f"d{depth}"]
            c = cell["lsuv_vs"][tailored]["steps"]
            lsuv, ref = cell["arms"]["lsuv"], cell["arms"][tailored]
            out.append(
                _common.claim(
                    f"{act}, {depth} layers: LSUV reaches the loss threshold at least as fast "
                    f"as {LABEL[tailored]}",
                    source=f"{ABSTRACT} (ii)",
                    published="LSUV learns very deep nets at least as fast as schemes built "
                    "for them (FitNets, Highway)",
                    measured=c["ratio"],
                    interval=c["interval"],
                    n=config.seeds,
                    rule=f"median steps-to-threshold ratio LSUV / {LABEL[tailored]}: the "
                    f"interval's upper end is at most {config.margin}",
                    agrees=c["interval"] is not None and c["interval"][1] <= config.margin,
                    note=f"Steps until the {config.smooth}-step running mean of the minibatch "
                    f"loss is below {config.threshold}; {lsuv['reached']} LSUV and "
                    f"{ref['reached']} {LABEL[tailored]} seeds of {config.seeds} reached it "
                    f"within {config.steps} steps (the others count as twice the slowest)."
                    + _censoring_note(lsuv, ref, config)
                    + " "
                    + _lr_note(cell, ("lsuv", tailored))
                    + " The abstract compares speed with FitNets and Highway, not with "
                    "standard inits; comparing with the tailored init is the issue's reading, "
                    "and the paper's convergence figures were not checked.",
                )
            )
    deep = max(config.depths)
    for act in config.activations:
        tailored = TAILORED[act]
        cell = measured["training"][act][f"d{deep}"]
        c = cell["lsuv_vs"][tailored]["test_accuracy"]
        out.append(
            _common.claim(
                f"{act}, {deep} layers: LSUV's test accuracy is better than or equal to "
                f"{LABEL[tailored]}'s",
                source=f"{ABSTRACT} (i)",
                published="test accuracy better or equal to standard methods",
                measured=c["difference"],
                interval=c["interval"],
                n=config.seeds,
                rule=f"median test accuracy LSUV - {LABEL[tailored]}: the interval's lower end "
                f"is at least -{config.accuracy_margin}",
                agrees=c["interval"][0] >= -config.accuracy_margin,
                note="Digits test split after the training budget, at each arm's learning rate "
                "(chosen on the training loss). " + _lr_note(cell, ("lsuv", tailored)),
            )
        )
    return out


def _censoring_note(lsuv: Mapping[str, Any], ref: Mapping[str, Any], config: Any) -> str:
    """Says when a median seed never reached the threshold (the ratio then rests on the fill)."""
    half = config.seeds / 2
    censored = [
        name for name, e in (("LSUV", lsuv), ("the other arm", ref)) if e["reached"] <= half
    ]
    if not censored:
        return ""
    return (
        f" The median seed of {' and '.join(censored)} never reached the threshold, so the "
        "ratio compares filled values and says little; the counts of seeds that reached it "
        "are the informative part."
    )


def _lr_note(cell: Mapping[str, Any], arms: Sequence[str]) -> str:
    """The chosen learning rates, and which sit at the grid's edge."""
    parts = [f"{LABEL[a]} lr {_findings.fmt(cell['arms'][a]['lr'])}" for a in arms]
    edge = [LABEL[a] for a in arms if cell["arms"][a]["lr_at_grid_edge"]]
    text = "Chosen: " + ", ".join(parts) + "."
    if edge:
        text += " At the grid's edge: " + ", ".join(edge) + "."
    return text


# --- figures -------------------------------------------------------------------------------

COLOR = {"xavier_normal": "C0", "he_normal": "C1", "orthogonal": "C2", "lsuv": "C3"}


def plot_init(measured: Mapping[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Mean log10 Var z^l per layer at init, per arm, at every depth (rows: activations)."""
    plt = _common.pyplot()
    acts, depths = config.activations, config.depths
    fig, axes = plt.subplots(
        len(acts), len(depths), figsize=(3.6 * len(depths), 2.8 * len(acts)), squeeze=False
    )
    for i, act in enumerate(acts):
        for j, depth in enumerate(depths):
            ax = axes[i][j]
            cell = measured["init"][act][f"d{depth}"]
            layers = np.arange(1, depth + 1)
            for arm in ARMS:
                e = cell[arm]
                ax.plot(layers, e["log10_variance_mean"], color=COLOR[arm], label=LABEL[arm])
                ax.fill_between(
                    layers,
                    e["log10_variance_q25"],
                    e["log10_variance_q75"],
                    color=COLOR[arm],
                    alpha=0.2,
                    lw=0,
                )
            ax.set_title(f"{act}, {depth} layers", fontsize=9)
            ax.set_xlabel("hidden layer")
            if j == 0:
                ax.set_ylabel("log10 Var z (mean over nets)")
    axes[0][0].legend(fontsize=7)
    nets = config.seeds * len(config.lrs)
    fig.suptitle(f"Pre-activation variance at init ({nets} nets per arm; band: IQR)")
    fig.tight_layout()
    _common.save_and_close(fig, path, tight=False)


def plot_loss(measured: Mapping[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Median smoothed minibatch loss of every arm at its chosen learning rate."""
    plt = _common.pyplot()
    acts, depths = config.activations, config.depths
    fig, axes = plt.subplots(
        len(acts), len(depths), figsize=(3.6 * len(depths), 2.8 * len(acts)), squeeze=False
    )
    steps = np.asarray(measured["curve_steps"])
    for i, act in enumerate(acts):
        for j, depth in enumerate(depths):
            ax = axes[i][j]
            cell = measured["training"][act][f"d{depth}"]
            for arm in ARMS:
                e = cell["arms"][arm]
                curve = np.array([np.nan if v is None else v for v in e["curve_median"]])
                ax.plot(steps, curve, color=COLOR[arm], label=f"{LABEL[arm]} (lr {e['lr']:g})")
            ax.axhline(config.threshold, color="k", lw=0.6, ls=":")
            ax.set_yscale("log")
            ax.set_title(f"{act}, {depth} layers", fontsize=9)
            ax.set_xlabel("step")
            ax.legend(fontsize=6)
            if j == 0:
                ax.set_ylabel(f"minibatch loss ({config.smooth}-step mean)")
    fig.suptitle(f"Training: median over {config.seeds} seeds at each arm's chosen lr")
    fig.tight_layout()
    _common.save_and_close(fig, path, tight=False)


def plot_final(measured: Mapping[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Per depth: each arm's median final loss and steps to threshold (seeds as dots)."""
    plt = _common.pyplot()
    acts = config.activations
    fig, axes = plt.subplots(2, len(acts), figsize=(4.5 * len(acts), 6.0), squeeze=False)
    offsets = np.linspace(-0.3, 0.3, len(ARMS))
    for j, act in enumerate(acts):
        for i, (key, label) in enumerate(
            (("final_loss", "final training loss"), ("steps_to_threshold", "steps to threshold"))
        ):
            ax = axes[i][j]
            for k, arm in enumerate(ARMS):
                for d, depth in enumerate(config.depths):
                    e = measured["training"][act][f"d{depth}"]["arms"][arm]
                    v = np.array([np.nan if x is None else x for x in e[key]])
                    x = np.full(v.shape, d + offsets[k])
                    ax.scatter(x, v, s=6, color=COLOR[arm], alpha=0.5)
                    median = float(np.median(np.where(np.isnan(v), np.inf, v)))
                    ax.scatter(
                        [d + offsets[k]],
                        [median if math.isfinite(median) else np.nan],
                        marker="_",
                        s=200,
                        color=COLOR[arm],
                        label=LABEL[arm] if d == 0 else None,
                    )
            ax.set_xticks(range(len(config.depths)), [str(d) for d in config.depths])
            ax.set_xlabel("hidden layers")
            ax.set_ylabel(label)
            ax.set_yscale("log")
            ax.set_title(f"{act}: {label}", fontsize=9)
        axes[0][j].legend(fontsize=7)
    fig.suptitle(
        "Per seed (dots) and median over all seeds (bar)\n"
        f"(a seed or median that never reached the threshold in {config.steps} steps is not drawn)"
    )
    fig.tight_layout()
    _common.save_and_close(fig, path, tight=False)


# --- findings --------------------------------------------------------------------------------


def findings(result: Mapping[str, Any]) -> str:
    """The section of docs/findings.md after the claims table; every number from ``result``."""
    f = _findings.fmt
    config, m = result["config"], result["measured"]
    acts, depths = config["activations"], config["depths"]
    lines = [
        f"**Setting.** MLPs of width {config['width']} on the digits (1347 training, 450 test "
        f"examples), {', '.join(map(str, depths))} hidden layers, tanh and ReLU, zero biases. "
        f"Arms: Xavier normal, He normal, orthogonal with the activation's gain (tanh 5/3, "
        f"ReLU sqrt 2) and LSUV (orthogonal with gain 1, then every dense layer, the "
        f"classifier included, rescaled on the first {config['lsuv_batch']} training digits "
        f"until |Var z - 1| < {config['tol']}, at most {config['max_iters']} times). Tailored: "
        f"He for ReLU, Xavier for tanh. SGD with momentum {config['momentum']}, batch "
        f"{config['batch_size']}, {config['steps']} steps, {config['seeds']} seeds per arm at "
        f"each lr of {list(config['lrs'])}; per arm the lr with the lowest median final "
        "training loss among those with no diverged seed. Per (activation, depth) one "
        "init program (every arm's nets, one at a time by lax.map) and one training "
        f"program (every arm, lr and seed); all of it took {f(m['seconds']['total'])} s.",
        "",
        f"**At init** ({config['seeds'] * len(config['lrs'])} nets per arm, the training "
        "runs' initial parameters, on the LSUV batch): drift = log10(Var z^L / Var z^1), "
        "last hidden layer against the first, mean over nets [95% CI]; LSUV's check counts "
        "the nets with every layer within tol.",
        "",
        "| activation | depth | Xavier drift | He drift | orthogonal drift | LSUV drift | "
        "LSUV nets within tol |",
        "|---|---|---|---|---|---|---|",
    ]
    for act in acts:
        for depth in depths:
            cell = m["init"][act][f"d{depth}"]
            row = [act, str(depth)]
            for arm in ARMS:
                d = cell[arm]["drift"]
                row.append(f"{f(d[0])} [{f(d[1])}, {f(d[2])}]")
            row.append(f"{cell['lsuv']['within_tol']} / {cell['lsuv']['nets']}")
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "**Training** (each arm at its chosen lr; median over seeds; steps: to a "
        f"{config['smooth']}-step mean minibatch loss below {config['threshold']}, "
        f"'>{config['steps']}' where the median seed never got there).",
        "",
        "| activation | depth | arm | lr | final loss | steps | reached | test accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for act in acts:
        for depth in depths:
            cell = m["training"][act][f"d{depth}"]
            for arm in ARMS:
                e = cell["arms"][arm]
                edge = " (edge)" if e["lr_at_grid_edge"] else ""
                steps = e["median_steps"]
                shown = (
                    f(steps)
                    if steps is not None and math.isfinite(steps)
                    else (f">{config['steps']}")
                )
                name = LABEL[arm] + (" (tailored)" if arm == cell["tailored"] else "")
                lines.append(
                    f"| {act} | {depth} | {name} | {f(e['lr'])}{edge} | "
                    f"{f(e['median_final_loss'])} | {shown} | {e['reached']}/{config['seeds']} "
                    f"| {f(e['median_test_accuracy'])} |"
                )
    lines += [
        "",
        "**LSUV against every other arm** (ratio of median final loss and of median steps, "
        "LSUV / other, with 95% bootstrap intervals; below 1 favours LSUV):",
        "",
        "| activation | depth | vs | final-loss ratio | steps ratio | test-accuracy difference |",
        "|---|---|---|---|---|---|",
    ]
    for act in acts:
        for depth in depths:
            cell = m["training"][act][f"d{depth}"]
            for other, c in cell["lsuv_vs"].items():
                parts = []
                for key in ("final_loss", "steps"):
                    r = c[key]
                    parts.append(
                        "n/a"
                        if r["ratio"] is None
                        else f"{f(r['ratio'])} [{f(r['interval'][0])}, {f(r['interval'][1])}]"
                    )
                t = c["test_accuracy"]
                parts.append(f"{f(t['difference'])} [{f(t['interval'][0])}, {f(t['interval'][1])}]")
                lines.append(f"| {act} | {depth} | {LABEL[other]} | " + " | ".join(parts) + " |")
    lines += ["", _verdict_prose(result)]
    return "\n".join(lines)


def _verdict_prose(result: Mapping[str, Any]) -> str:
    """What agrees and what does not, counted from the claims."""
    cl = result["claims"]
    agree = [c for c in cl if c["agrees"] is True]
    disagree = [c for c in cl if c["agrees"] is False]
    text = (
        f"**Verdict.** {len(agree)} of {len(cl)} claims agree with the rule fixed before the run."
    )
    if disagree:
        text += " Disagreeing: " + "; ".join(c["claim"] for c in disagree) + "."
    text += (
        " Limits: one small data set and MLPs of one width, not the paper's convolutional "
        "nets on CIFAR and ImageNet; a short budget, so 'final loss' measures early training "
        "speed; one lr grid shared by all arms; zero biases, so LSUV's rescaling is exact "
        "after one pass per layer."
    )
    return text


# --- main ----------------------------------------------------------------------------------


def run_all(config: ExperimentConfig, data: Dataset) -> dict[str, Any]:
    """Every (activation, depth): the variance at init and the training cell."""
    import time

    measured: dict[str, Any] = {"init": {}, "training": {}, "seconds": {}}
    t0 = time.perf_counter()
    for act in config.activations:
        measured["init"][act], measured["training"][act] = {}, {}
        for depth in config.depths:
            result, variance = train_cell(config, data, act, depth)
            arms = np.asarray(result.runs["arm"])
            by_arm = {arm: variance[arms == a] for a, arm in enumerate(ARMS)}
            measured["init"][act][f"d{depth}"] = summarize_init(by_arm, config.tol)
            measured["training"][act][f"d{depth}"] = summarize_cell(result, config, act)
    measured["seconds"]["total"] = time.perf_counter() - t0
    stride = config.smooth // 2 or 1
    measured["curve_steps"] = list(range(config.smooth, config.steps + 1))[::stride]
    return measured


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    config = get_config(args.quick)
    measured = run_all(config, load_digits())
    figures = {
        "init_variance.png": plot_init,
        "loss.png": plot_loss,
        "final.png": plot_final,
    }
    for name, draw in figures.items():
        draw(measured, config, args.workdir / name)
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
