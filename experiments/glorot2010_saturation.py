"""Saturation of deep sigmoid and tanh MLPs, and the normalized initialization.

Published claims (Glorot & Bengio 2010, "Understanding the difficulty of training
deep feedforward neural networks", AISTATS, PMLR 9:249-256; no arXiv id): in a
net of 5 hidden layers of 1000 units trained by SGD (minibatches of 10) from the
"standard" init ``U(+-1/sqrt(n_in))``, the sigmoid's top hidden layer is pushed to
its lower saturation value 0 very early while the other layers' means stay above 0.5,
decreasing from the output toward the input (Sec. 3.1, Fig. 2). With tanh, the
standard init shrinks the activations going up and the back-propagated gradients
going down by about ``sqrt(n Var W) = sqrt(1/3)`` per layer, while the weight
gradients are similar across layers; the "normalized" init
``U(+-sqrt(6/(n_in + n_out)))`` keeps all three similar across layers (Sec. 4.2,
Figs. 6-8), keeps the weight gradients similar during training (Sec. 4.3, Fig. 9),
trains faster and reaches a lower test error (Sec. 5, Fig. 11, Table 1).

Here: the digits, sigmoid and tanh, jaxstab's ``torch_linear`` ("standard",
variance ``1/(3 n_in)``) and ``xavier_uniform`` ("normalized"), 16 seeds per
(activation, init) arm. The at-init claims are measured at the paper's width of
1000 on 32 independent nets per init; training runs at width 500 (the compute
budget; see ``ExperimentConfig.width``). The learning rate of each arm is the best
of a small grid on a pilot of separate seeds (the paper tuned it per model), then
fixed for the 16 measured seeds. Every ``record_every`` steps a snapshot measures
each hidden layer: percentiles and saturation of ``phi(z)``
(``jaxstab.diagnostics.forward_stats`` and per activation value) and the loss; at
init and after training, the back-propagated and weight gradients
(``backward_stats``), histograms of ``phi(z)`` and the test accuracy. All training
runs of one length (activations x inits x seeds) are one program of
``jaxstab.engine.train``: the activation, the learning rate and the init's per-layer
bound are the runs' traced hyperparameters. Each claim carries a 95% bootstrap
interval over seeds, the comparisons a rank test.

    python experiments/glorot2010_saturation.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxstab as js
from jaxstab import diagnostics, engine
from jaxstab.data import load_digits
from jaxstab.experiment import INIT_FORMS, layer_scales

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
    import _findings
    import _stats
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common, _findings, _stats

NAME = "glorot2010_saturation"
TITLE = "Saturation of deep sigmoid and tanh nets, and the normalized initialization"
SOURCE = "Glorot & Bengio 2010 (AISTATS)"
PERCENTILES = (2.0, 16.0, 50.0, 84.0, 98.0)  # of phi(z) per layer; 16-84 is +-1 std if Gaussian
INIT_LABELS = {"torch_linear": "standard", "xavier_uniform": "normalized"}
# tanh(z) = 2 sigmoid(2z) - 1 exactly, so both activations are phi(z) = a sigmoid(b z) + c
# with a per-run (a, b, c): sigmoid and tanh runs then share one compiled program.
ACTIVATION_FORMS = {"sigmoid": (1.0, 1.0, 0.0), "tanh": (2.0, 2.0, -1.0)}
PILOT_SEED_OFFSET = 10_000  # the pilot's engine seeds: disjoint from the measured seeds 0..


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The experiment's settings (see :func:`get_config`)."""

    depth: int = 5  # hidden layers (Glorot & Bengio: 5)
    # Units per hidden layer of the TRAINED nets. The paper's 1000 costs ~4x more per SGD
    # step (batch-10 steps are bound by the 5 weight matrices); 64 runs x 800 steps at 1000
    # exceed the experiments' compute budget, so training runs at 500 (stated in findings).
    width: int = 500
    init_width: int = 1000  # units per hidden layer of the at-init measurements (the paper's)
    activations: tuple[str, ...] = ("sigmoid", "tanh")  # keys of ACTIVATION_FORMS
    inits: tuple[str, ...] = ("torch_linear", "xavier_uniform")  # standard, normalized (uniform)
    # Learning-rate rule, fixed before the run: per (activation, init) arm, the value of
    # this grid (one per activation, in order; ~3x steps around the values earlier runs
    # trained with, the sigmoid's larger since its slope is at most 1/4) with the lowest
    # mean training loss at step pilot_steps over pilot_seeds pilot seeds (disjoint from
    # the measured seeds; a diverged pilot counts as +inf). The paper also tuned the
    # learning rate per model (on validation error, after far longer training).
    lr_grid: tuple[tuple[float, ...], ...] = ((0.3, 1.0, 3.0, 10.0), (0.01, 0.03, 0.1, 0.3))
    pilot_seeds: int = 2  # seeds per (arm, learning rate) of the pilot
    pilot_steps: int = 200  # SGD steps of a pilot run (= early_step: the loss claim's step)
    batch_size: int = 10  # examples per SGD step, drawn with replacement (the paper's 10)
    steps: int = 800  # SGD steps per measured run
    record_every: int = 100  # steps between snapshots (divides steps and early_step)
    seeds: int = 16  # measured seeds per (activation, init) arm
    init_seeds: int = 32  # independent nets per init for the at-init claims (tanh)
    init_activation: str = "tanh"  # the activation of the at-init claims (Figs. 6-8)
    diag_examples: int = 128  # training examples every training snapshot is measured on
    init_examples: int = 256  # training examples the at-init measurements use
    bins: int = 40  # histogram bins of phi(z) over [-1, 1]
    early_step: int = 200  # "early in training": the step the top layer and loss are judged at
    seed: int = 0  # the engine's base seed (see run_experiment for how keys derive from it)


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full config, or with ``quick`` a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(
            width=64,
            init_width=128,
            steps=100,
            record_every=50,
            early_step=50,
            pilot_steps=100,  # = steps: the pilot shares the measured runs' program
            pilot_seeds=1,
            lr_grid=((1.0, 3.0), (0.03, 0.1)),
            seeds=4,
            init_seeds=4,
            diag_examples=64,
            init_examples=64,
        )
    return ExperimentConfig()


def _check_config(config: ExperimentConfig) -> None:
    bad = [a for a in (*config.activations, config.init_activation) if a not in ACTIVATION_FORMS]
    if bad:
        raise ValueError(f"unknown activations {bad}; valid: {', '.join(ACTIVATION_FORMS)}")
    uniform = [name for name, form in INIT_FORMS.items() if form[0] == "uniform"]
    bad = [i for i in config.inits if i not in uniform]
    if bad:
        raise ValueError(f"unknown or non-uniform inits {bad}; valid: {', '.join(uniform)}")
    if len(config.lr_grid) != len(config.activations) or not all(config.lr_grid):
        raise ValueError(
            f"lr_grid {config.lr_grid} must give a non-empty grid per activation "
            f"{config.activations}"
        )
    if (
        config.steps % config.record_every
        or config.early_step % config.record_every
        or not 0 < config.early_step <= config.steps
    ):
        raise ValueError(
            f"record_every={config.record_every} must divide steps={config.steps} and "
            f"early_step={config.early_step}, with 0 < early_step <= steps"
        )
    if config.seeds < 2 or config.init_seeds < 2:
        raise ValueError(
            f"seeds={config.seeds} and init_seeds={config.init_seeds}: an interval over "
            "seeds needs at least 2"
        )


def sigmoid_family(form: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """``phi(z) = a sigmoid(b z) + c`` for ``form = (a, b, c)``: sigmoid or, exactly, tanh."""
    a, b, c = form[0], form[1], form[2]
    return lambda z: a * jax.nn.sigmoid(b * z) + c


def uniform_params(key: jax.Array, sizes: tuple[int, ...], bounds: jax.Array) -> Any:
    """MLP parameters in :func:`jaxstab.init_mlp`'s layout; layer ``l``'s weights
    ``U(+-bounds[l])``, zero biases.

    Every weight comes from ONE flat ``U(-1, 1)`` draw, scaled per layer: ``bounds``
    may be traced (a run's hparams), and inside the training program a single threefry
    draw compiles in a fraction of the time of per-layer draws on CPU.

    Args:
      key: PRNG key.
      sizes: ``[d_in, hidden..., d_out]``.
      bounds: ``[len(sizes) - 1]`` per-layer bounds, the output layer last.
    """
    shapes = list(zip(sizes[:-1], sizes[1:]))
    ends = np.cumsum([0] + [m * n for m, n in shapes])
    u = jax.random.uniform(key, (int(ends[-1]),), jnp.float32, -1.0, 1.0)
    w = [bounds[i] * u[ends[i] : ends[i + 1]].reshape(shape) for i, shape in enumerate(shapes)]
    # init_mlp stacks consecutive hidden layers of equal shape into one scanned group.
    hidden, start = [], 0
    for shape, group in itertools.groupby(shapes[:-1]):
        count = len(list(group))
        stack = jnp.stack(w[start : start + count])
        hidden.append({"w": stack, "b": jnp.zeros((count, shape[1]), jnp.float32)})
        start += count
    return {"hidden": hidden, "output": {"w": w[-1], "b": jnp.zeros((sizes[-1],), jnp.float32)}}


def layer_snapshot(
    params: Any, x: jax.Array, y: jax.Array, phi: Callable[[jax.Array], jax.Array], bins: int
) -> dict[str, jax.Array]:
    """Per hidden layer statistics of ``phi(z)`` and of the gradients, on one batch.

    Returns a dict of ``[layers]`` (or ``[layers, k]``) arrays: ``mean``/``std`` and
    ``percentiles`` of ``phi(z)``, its normalized ``histogram`` over ``[-1, 1]``,
    ``saturated`` (fraction of values with ``|phi'(z)| < SATURATION_THRESHOLD``),
    ``saturated_units`` (forward_stats: units saturated on every example),
    ``signal_rms`` (root mean square back-propagated gradient ``dl/dz`` per example),
    ``grad_norm`` (of ``dL/dW``), and the scalar batch ``loss``.
    """
    fwd = diagnostics.forward_stats(params, x, phi)
    bwd = diagnostics.backward_stats(params, x, y, phi)
    logits, z = js.apply_mlp(params, x, phi, capture=True)
    z = z.reshape(z.shape[0], -1)
    h = phi(z)
    dphi = diagnostics.derivative(phi)
    histogram = jax.vmap(lambda v: jnp.histogram(v, bins, range=(-1.0, 1.0))[0])(h)
    return {
        "mean": jnp.mean(h, axis=1),
        "std": jnp.std(h, axis=1),
        "percentiles": jnp.percentile(h, jnp.asarray(PERCENTILES), axis=1).T,
        "histogram": histogram / h.shape[1],
        "saturated": jnp.mean(jnp.abs(dphi(z)) < diagnostics.SATURATION_THRESHOLD, axis=1),
        "saturated_units": fwd.saturated_fraction,
        "signal_rms": jnp.sqrt(bwd.signal_second_moment),
        "grad_norm": bwd.grad_norm,
        "loss": jnp.mean(js.softmax_cross_entropy(logits, y)),
    }


# Fields of layer_snapshot recorded every record_every steps (forward statistics only),
# and those recorded at init and after training (they need a backward pass, or are big).
CURVES = ("mean", "percentiles", "saturated", "saturated_units", "loss")
ENDS = ("std", "signal_rms", "grad_norm", "histogram", "test_accuracy")


class _Task(NamedTuple):
    """The engine's callables for one config (the same objects each call: one compile)."""

    init: Callable[..., Any]
    loss: Callable[..., Any]
    optimizer: Callable[..., Any]
    curves: Callable[..., Any]  # (params, eval_data, hp) -> CURVES, per-layer arrays
    evaluate: Callable[..., Any]  # the curves as the engine's dict of scalars
    inspect: Callable[..., Any]  # (params, eval_data, hp) -> ENDS


@functools.lru_cache(maxsize=8)
def _task(bins: int, sizes: tuple[int, ...]) -> _Task:
    """The callables over a run's hparams: ``form`` (a, b, c) of :func:`sigmoid_family`,
    ``lr`` and ``bound`` (per layer, the weights' ``U(+-bound)``)."""

    def init(key: jax.Array, hp: Any) -> Any:
        return uniform_params(key, sizes, hp["bound"])

    def loss(params: Any, batch: tuple[jax.Array, jax.Array], hp: Any) -> jax.Array:
        logits = js.apply_mlp(params, batch[0], sigmoid_family(hp["form"]))
        return jnp.mean(js.softmax_cross_entropy(logits, batch[1]))

    def snapshot(params: Any, data: dict[str, jax.Array], hp: Any) -> dict[str, jax.Array]:
        phi = sigmoid_family(hp["form"])
        snap = layer_snapshot(params, data["x_diag"], data["y_diag"], phi, bins)
        logits = js.apply_mlp(params, data["x_test"], phi)
        return {**snap, "test_accuracy": js.accuracy(logits, data["y_test"])}

    # Each keeps only its fields of the snapshot; XLA drops the computations of the others.
    def curves(params: Any, data: dict[str, jax.Array], hp: Any) -> dict[str, jax.Array]:
        snap = snapshot(params, data, hp)
        return {k: snap[k] for k in CURVES}

    def evaluate(params: Any, data: dict[str, jax.Array], hp: Any) -> dict[str, jax.Array]:
        return _common.to_scalars(curves(params, data, hp))

    def inspect(params: Any, data: dict[str, jax.Array], hp: Any) -> dict[str, jax.Array]:
        snap = snapshot(params, data, hp)
        return {k: snap[k] for k in ENDS}

    return _Task(init, loss, lambda hp: optax.sgd(hp["lr"]), curves, evaluate, inspect)


class Arm(NamedTuple):
    """One (activation, init) arm at one learning rate."""

    activation: str
    init: str
    lr: float


def arm_name(activation: str, init: str) -> str:
    """``"<activation>/<standard|normalized>"``, the key of an arm in ``measured``."""
    return f"{activation}/{INIT_LABELS.get(init, init)}"


def _sizes(width: int, depth: int, d_in: int, d_out: int) -> tuple[int, ...]:
    return (d_in, *[width] * depth, d_out)


def _eval_data(data: Any, examples: int) -> dict[str, Any]:
    n = min(examples, data.n_train)
    return {
        "x_diag": data.x_train[:n],
        "y_diag": data.y_train[:n],
        "x_test": data.x_test,
        "y_test": data.y_test,
    }


def train_arms(
    config: ExperimentConfig,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    steps: int,
    record_every: int,
    *,
    inspect: bool = True,
) -> dict[str, Any]:
    """Trains every (arm, seed) as one program of :func:`jaxstab.engine.train`.

    Seed ``s`` is the engine's run seed ``s`` for every arm, so the standard and
    normalized, sigmoid and tanh nets of a seed share their initial draw
    (:func:`uniform_params`' ``U(-1, 1)``, from the first half of
    ``split(fold_in(key(config.seed), s))``, scaled per init) and their minibatches
    (from the second half). The :data:`CURVES` of a snapshot are taken at step 0 and
    after every ``record_every`` steps, the :data:`ENDS` (with ``inspect``) at step 0
    and after the last step.

    Args:
      config: the experiment's config (width, depth, batch size, bins, base seed).
      arms: the (activation, init, learning rate) arms.
      seeds: the engine's run seeds, the same for every arm.
      steps: SGD steps per run.
      record_every: steps between snapshots (divides ``steps``).
      inspect: also record the :data:`ENDS` at init and after training.

    Returns:
      ``runs`` (``(activation, init, lr, seed)`` per run, the seed fastest),
      ``sizes`` (the layer sizes), ``steps`` (of the snapshots, 0 first),
      ``snapshots`` (numpy, each of :data:`CURVES` ``[runs, snapshots, layers, ...]``,
      ``loss`` ``[runs, snapshots]``), ``diverged`` ``[runs]`` and, with ``inspect``,
      ``ends`` (each of :data:`ENDS` ``[runs, 2, layers, ...]``: at init, after
      training) and ``test_accuracy`` ``[runs]`` (after the last step).
    """
    data = load_digits()
    eval_data = _eval_data(data, config.diag_examples)
    sizes = _sizes(config.width, config.depth, data.d_in, data.d_out)
    rows = [(arm, int(s)) for arm in arms for s in seeds]
    bounds = {init: np.asarray(layer_scales(init, 1.0, sizes), np.float32) for init in config.inits}
    runs = {
        "seed": np.asarray([s for _, s in rows], np.int32),
        "form": np.asarray([ACTIVATION_FORMS[a.activation] for a, _ in rows], np.float32),
        "lr": np.asarray([a.lr for a, _ in rows], np.float32),
        "bound": np.stack([bounds[a.init] for a, _ in rows]),
    }
    task = _task(config.bins, sizes)
    result = engine.train(
        task.init,
        task.loss,
        task.optimizer,
        (data.x_train, data.y_train),
        runs,
        steps=steps,
        batch_size=config.batch_size,
        seed=config.seed,
        evaluate=task.evaluate,
        eval_data=eval_data,
        eval_every=record_every,
        inspect=task.inspect if inspect else None,
    )
    hp0 = engine.run_at(runs, 0)
    params = jax.eval_shape(task.init, jax.random.key(0), hp0)
    shapes = jax.eval_shape(task.curves, params, eval_data, hp0)
    out: dict[str, Any] = {
        "runs": [(a.activation, a.init, float(a.lr), s) for a, s in rows],
        "sizes": list(sizes),
        "steps": result.eval_steps,
        "snapshots": _common.from_scalars(result.evals, {k: v.shape for k, v in shapes.items()}),
        "diverged": np.asarray(result.diverged),
    }
    if inspect:
        out["ends"] = {
            k: np.stack([result.inspections["init"][k], result.inspections["final"][k]], axis=1)
            for k in ENDS
        }
        out["test_accuracy"] = out["ends"]["test_accuracy"][:, -1]
    return out


def best_lr(losses: np.ndarray) -> int:
    """Index of the learning rate with the lowest mean loss over seeds (``[lrs, seeds]``).

    A non-finite loss (a diverged pilot) counts as ``+inf``; ties go to the first
    (smallest) learning rate.
    """
    losses = np.asarray(losses, np.float64)
    means = np.where(np.isfinite(losses), losses, np.inf).mean(axis=1)
    return int(np.argmin(means))


def select_lrs(config: ExperimentConfig) -> dict[str, Any]:
    """The learning-rate rule: per arm, the best of its activation's grid on pilot seeds.

    Every (activation, init, learning rate) of the grid trains ``pilot_seeds`` seeds
    (engine seeds from :data:`PILOT_SEED_OFFSET`, never measured) for ``pilot_steps``
    steps in one program; the arm's learning rate is :func:`best_lr` of their training
    losses on the snapshot batch after the last step.

    Returns:
      ``{"grid": {activation: [lrs]}, "pilot_loss": {arm: [mean loss per lr]},
      "lr": {arm: the chosen lr}, "seeds", "steps"}``, arms keyed by :func:`arm_name`.
    """
    arms = [
        Arm(act, init, lr)
        for act, grid in zip(config.activations, config.lr_grid)
        for init in config.inits
        for lr in grid
    ]
    seeds = [PILOT_SEED_OFFSET + s for s in range(config.pilot_seeds)]
    # A pilot as long as the measured runs shares their compiled program (the quick
    # config); a shorter one evaluates only at its end and skips the inspections.
    shared = config.pilot_steps == config.steps
    every = config.record_every if shared else config.pilot_steps
    out = train_arms(config, arms, seeds, config.pilot_steps, every, inspect=shared)
    final = out["snapshots"]["loss"][:, -1].reshape(len(arms), len(seeds))
    pilot: dict[str, Any] = {
        "grid": {a: list(g) for a, g in zip(config.activations, config.lr_grid)},
        "pilot_loss": {},
        "lr": {},
        "seeds": len(seeds),
        "steps": config.pilot_steps,
    }
    for act, grid in zip(config.activations, config.lr_grid):
        for init in config.inits:
            rows = [k for k, a in enumerate(arms) if a.activation == act and a.init == init]
            losses = final[rows]
            finite = np.where(np.isfinite(losses), losses, np.inf)
            pilot["pilot_loss"][arm_name(act, init)] = finite.mean(axis=1).tolist()
            pilot["lr"][arm_name(act, init)] = float(grid[best_lr(losses)])
    return pilot


def measure_init(config: ExperimentConfig) -> dict[str, Any]:
    """The at-init statistics of ``init_seeds`` independent nets per init, at ``init_width``.

    Per net (``init_activation``), on ``init_examples`` training examples: the std of
    ``phi(z)``, the RMS back-propagated gradient ``dl/dz`` and the norm of ``dL/dW``
    per hidden layer (:func:`layer_snapshot`). Net ``s`` of every init scales the same
    ``U(-1, 1)`` draw, from ``split(key(config.seed + 1), init_seeds)[s]``.

    Returns:
      ``{"sizes": [...], "std" | "signal_rms" | "grad_norm": [inits, seeds, layers]}``.
    """
    data = load_digits()
    eval_data = _eval_data(data, config.init_examples)
    sizes = _sizes(config.init_width, config.depth, data.d_in, data.d_out)
    task = _task(config.bins, sizes)
    form = jnp.asarray(ACTIVATION_FORMS[config.init_activation], jnp.float32)
    keys = jax.random.split(jax.random.key(config.seed + 1), config.init_seeds)
    fields = ("std", "signal_rms", "grad_norm")

    @jax.jit
    def measure(keys: jax.Array, bound: jax.Array) -> dict[str, jax.Array]:
        hp = {"form": form, "bound": bound, "lr": jnp.float32(0.0)}

        def one(key: jax.Array) -> dict[str, jax.Array]:
            snap = task.inspect(uniform_params(key, sizes, bound), eval_data, hp)
            return {k: snap[k] for k in fields}  # XLA drops the rest of the snapshot

        return jax.lax.map(one, keys, batch_size=8)

    per_init = [
        measure(keys, jnp.asarray(layer_scales(init, 1.0, sizes), jnp.float32))
        for init in config.inits
    ]
    out: dict[str, Any] = {"sizes": list(sizes)}
    for k in fields:
        out[k] = np.stack([np.asarray(p[k], np.float64) for p in per_init])
    return out


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    """The pilot (learning rates), the measured training runs and the at-init nets.

    Returns:
      ``{"pilot": select_lrs(...), "train": train_arms(...) of the measured seeds
      0 .. seeds-1 at the chosen learning rates, "init": measure_init(...)}``.
    """
    _check_config(config)
    pilot = select_lrs(config)
    arms = [
        Arm(act, init, pilot["lr"][arm_name(act, init)])
        for act in config.activations
        for init in config.inits
    ]
    train = train_arms(config, arms, range(config.seeds), config.steps, config.record_every)
    return {"pilot": pilot, "train": train, "init": measure_init(config)}


# --- analysis (numpy) --------------------------------------------------------------


def spread(values: np.ndarray) -> np.ndarray:
    """Largest over smallest value across layers (the last axis); 1 means equal layers."""
    values = np.asarray(values, np.float64)
    return values.max(axis=-1) / values.min(axis=-1)


def weight_grad_rms(grad_norm: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Root mean square entry of each hidden layer's ``dL/dW``: ``||dL/dW|| / sqrt(n_in n_out)``."""
    fans = np.asarray([n_in * n_out for n_in, n_out in zip(sizes[:-2], sizes[1:-1])], np.float64)
    return np.asarray(grad_norm, np.float64) / np.sqrt(fans)


def square_layers(sizes: list[int]) -> np.ndarray:
    """Mask of the hidden layers with ``n_in == n_out``.

    Between equal widths Glorot & Bengio's analysis makes the weight-gradient variance
    independent of the layer; the first layer's input is the data, of another width.
    """
    return np.asarray([n_in == n_out for n_in, n_out in zip(sizes[:-2], sizes[1:-1])])


def linear_regime_spread(n_var_w: float, depth: int) -> float:
    """Glorot & Bengio's linear-regime spread across ``depth`` layers, ``(n Var W)^-(depth-1)/2``.

    Each square layer scales the activation variance going up, and the back-propagated
    gradient variance going down, by ``n Var W``: 1/3 for the standard init (9 over 5
    layers), 1 for the normalized init between equal widths.
    """
    return float(n_var_w ** (-(depth - 1) / 2))


# n Var W of a square layer: U(+-1/sqrt(n)) has variance 1/(3n); Xavier 2/(n + n) = 1/n.
N_VAR_W = {"torch_linear": 1.0 / 3.0, "xavier_uniform": 1.0}


def mean_ci(values: Any) -> dict[str, Any]:
    """Mean over seeds (finite values) with its 95% BCa bootstrap interval."""
    v = np.asarray(values, np.float64).reshape(-1)
    finite = v[np.isfinite(v)]
    ci = list(_stats.bootstrap_ci(finite)) if finite.size >= 2 else None
    return {"mean": float(finite.mean()) if finite.size else None, "ci": ci}


def layer_mean_ci(values: np.ndarray) -> dict[str, list[Any]]:
    """Per layer (the last axis of ``[seeds, layers]``): mean and 95% interval over seeds."""
    per = [mean_ci(values[:, layer]) for layer in range(values.shape[-1])]
    return {"mean": [p["mean"] for p in per], "ci": [p["ci"] for p in per]}


def compare(x: Any, y: Any) -> dict[str, Any]:
    """Is ``x`` larger than ``y``? Difference of means with its 95% bootstrap interval
    (seeds resampled independently) and the one-sided Mann-Whitney p (x > y)."""
    diff, lo, hi = _stats.difference_ci(x, y)
    return {"diff": diff, "ci": [lo, hi], "p": _stats.rank_test(x, y, "greater")}


def summarize(out: dict[str, Any], config: ExperimentConfig) -> dict[str, Any]:
    """The measured numbers: per arm, per-seed values of what the claims test and
    means with 95% intervals over seeds; per init, the at-init nets' statistics."""
    train, init = out["train"], out["init"]
    snaps, ends, steps = train["snapshots"], train["ends"], train["steps"]
    early = int(np.searchsorted(steps, config.early_step))
    square = square_layers(train["sizes"])
    measured: dict[str, Any] = {
        "snapshot_steps": steps.tolist(),
        "sizes": train["sizes"],
        "init_sizes": init["sizes"],
        "pilot": out["pilot"],
        "arms": {},
        "init": {},
    }
    for act in config.activations:
        for name in config.inits:
            idx = [r for r, (a, i, _, _) in enumerate(train["runs"]) if a == act and i == name]
            mean = snaps["mean"][idx]  # [seeds, snapshots, layers]
            loss = snaps["loss"][idx]  # [seeds, snapshots]
            rms = weight_grad_rms(ends["grad_norm"][idx], train["sizes"])[..., square]
            measured["arms"][arm_name(act, name)] = {
                "lr": train["runs"][idx[0]][2],
                "seeds": len(idx),
                "diverged": int(train["diverged"][idx].sum()),
                "layer_mean_init": layer_mean_ci(mean[:, 0]),
                "layer_mean_early": layer_mean_ci(mean[:, early]),
                "layer_mean_final": layer_mean_ci(mean[:, -1]),
                "top_mean_early": mean[:, early, -1].tolist(),
                "lower_min_early": mean[:, early, :-1].min(axis=1).tolist(),
                "below_top_minus_first_early": (mean[:, early, -2] - mean[:, early, 0]).tolist(),
                "top_mean_curve": np.median(mean[:, :, -1], axis=0).tolist(),
                "top_saturated_early": mean_ci(snaps["saturated"][idx, early, -1]),
                "saturated_final": np.mean(snaps["saturated"][idx, -1], axis=0).tolist(),
                "saturated_units_final": np.mean(snaps["saturated_units"][idx, -1], 0).tolist(),
                "loss_curve": np.nanmedian(loss, axis=0).tolist(),
                "loss_curve_q25": np.nanpercentile(loss, 25, axis=0).tolist(),
                "loss_curve_q75": np.nanpercentile(loss, 75, axis=0).tolist(),
                "early_loss": loss[:, early].tolist(),
                "final_loss": loss[:, -1].tolist(),
                "test_accuracy": train["test_accuracy"][idx].tolist(),
                "weight_grad_spread_init": spread(rms[:, 0]).tolist(),
                "weight_grad_spread_final": spread(rms[:, -1]).tolist(),
            }
    for k, name in enumerate(config.inits):
        std, signal = init["std"][k], init["signal_rms"][k]
        wrms = weight_grad_rms(init["grad_norm"][k], init["sizes"])
        measured["init"][INIT_LABELS.get(name, name)] = {
            "nets": int(std.shape[0]),
            "activation_std": layer_mean_ci(std),
            "signal_rms": layer_mean_ci(signal),
            "weight_grad_rms": layer_mean_ci(wrms),
            "activation_std_spread": spread(std).tolist(),
            "signal_rms_spread": spread(signal).tolist(),
            "weight_grad_spread": spread(wrms[:, square_layers(init["sizes"])]).tolist(),
        }
    return measured


def _comparison_claim(
    claim: str, source: str, published: str, x: Any, y: Any, what: str
) -> dict[str, Any]:
    """A claim that ``x`` exceeds ``y``: the difference of means, its interval and the p."""
    c = compare(x, y)
    return _common.claim(
        claim,
        source=source,
        published=published,
        measured=c["diff"],
        interval=c["ci"],
        n=min(len(x), len(y)),
        rule=f"{what}: one-sided rank-test p < 0.05 and the difference's 95% interval above 0",
        agrees=bool(c["p"] < 0.05 and c["ci"][0] > 0),
        note=f"{what}; n seeds per arm; one-sided Mann-Whitney p = {c['p']:.2g}. The arms share "
        "each seed's initial draw and minibatches; the unpaired interval and test ignore "
        "that pairing, which makes them conservative.",
    )


def claims(measured: dict[str, Any], config: ExperimentConfig) -> list[dict[str, Any]]:
    """The published claims against the measured numbers (rules fixed before the run)."""
    std, norm = (INIT_LABELS[i] for i in ("torch_linear", "xavier_uniform"))
    arms, at_init = measured["arms"], measured["init"]
    s = arms[f"sigmoid/{std}"]
    t_std, t_norm = arms[f"tanh/{std}"], arms[f"tanh/{norm}"]
    L, step = config.depth, config.early_step
    seeds_note = (
        f"{s['seeds']} seeds at width {config.width}; the interval is a BCa bootstrap over seeds."
    )
    out = []

    top = mean_ci(s["top_mean_early"])
    out.append(
        _common.claim(
            f"sigmoid, standard init: the top hidden layer is pushed to its lower saturation "
            f"value 0 early in training (mean phi(z) of layer {L} at step {step})",
            source=f"{SOURCE}, Sec. 3.1, Fig. 2",
            published="very quickly all the sigmoid activation values of the last hidden "
            "layer are pushed to their lower saturation value of 0",
            measured=top["mean"],
            interval=top["ci"],
            n=s["seeds"],
            rule="95% interval below 0.1 (0.5 at init, range [0, 1])",
            agrees=bool(top["ci"][1] < 0.1),
            note=seeds_note,
        )
    )
    low = mean_ci(s["lower_min_early"])
    out.append(
        _common.claim(
            f"sigmoid, standard init: the other layers are not pushed to 0 (smallest mean "
            f"phi(z) over layers 1-{L - 1} at step {step})",
            source=f"{SOURCE}, Sec. 3.1, Fig. 2",
            published="the other layers have a mean activation value above 0.5",
            measured=low["mean"],
            interval=low["ci"],
            n=s["seeds"],
            rule="95% interval above 0.4 (far from 0, where the top layer goes)",
            agrees=bool(low["ci"][0] > 0.4),
            note=seeds_note + " Per seed, the smallest of the lower layers' means.",
        )
    )
    rise = mean_ci(s["below_top_minus_first_early"])
    out.append(
        _common.claim(
            f"sigmoid, standard init: the mean activation decreases from the output toward "
            f"the input (mean phi(z) of layer {L - 1} minus layer 1 at step {step})",
            source=f"{SOURCE}, Sec. 3.1, Fig. 2",
            published="the other layers' means are above 0.5 and decrease as we go from the "
            "output layer to the input layer",
            measured=rise["mean"],
            interval=rise["ci"],
            n=s["seeds"],
            rule="95% interval above 0",
            agrees=bool(rise["ci"][0] > 0),
            note=seeds_note,
        )
    )
    predicted = linear_regime_spread(N_VAR_W["torch_linear"], L)
    for field, what, fig in (
        ("activation_std_spread", "activation std", "Fig. 6"),
        ("signal_rms_spread", "back-propagated gradient RMS (dl/dz)", "Fig. 7"),
    ):
        paper = " (the paper's)" if config.init_width == 1000 else ""
        init_note = (
            f"{at_init[std]['nets']} independent nets per init at width {config.init_width}"
            f"{paper}, {config.init_examples} examples; each net's spread is one "
            "sample, the interval a BCa bootstrap over nets."
        )
        a, b = mean_ci(at_init[std][field]), mean_ci(at_init[norm][field])
        out.append(
            _common.claim(
                f"tanh at init, standard init: {what}, largest over smallest across the {L} layers",
                source=f"{SOURCE}, Sec. 4.2, {fig}",
                published=f"shrinks by sqrt(n Var W) = sqrt(1/3) per layer in the linear "
                f"regime: a spread of {predicted:.3g}",
                measured=a["mean"],
                interval=a["ci"],
                n=at_init[std]["nets"],
                rule=f"95% interval within a factor 1.5 of {predicted:.3g}",
                agrees=bool(predicted / 1.5 < a["ci"][0] and a["ci"][1] < predicted * 1.5),
                note=init_note,
            )
        )
        out.append(
            _common.claim(
                f"tanh at init, normalized init: {what}, largest over smallest across the "
                f"{L} layers",
                source=f"{SOURCE}, Sec. 4.2, {fig}",
                published="about 1: similar across layers",
                measured=b["mean"],
                interval=b["ci"],
                n=at_init[norm]["nets"],
                rule="95% interval below 2 (the standard init's is about 9)",
                agrees=bool(b["ci"][1] < 2.0),
                note=init_note,
            )
        )
    for label in (std, norm):
        w = mean_ci(at_init[label]["weight_grad_spread"])
        out.append(
            _common.claim(
                f"tanh at init, {label} init: RMS weight gradient dL/dW, largest over "
                f"smallest across the equal-width layers 2-{L}",
                source=f"{SOURCE}, Sec. 4.2, Fig. 8",
                published="about 1 for both inits: the weight-gradient variance does not "
                "depend on the layer at init",
                measured=w["mean"],
                interval=w["ci"],
                n=at_init[label]["nets"],
                rule="95% interval below 1.5",
                agrees=bool(w["ci"][1] < 1.5),
                note=f"{at_init[label]['nets']} independent nets at width {config.init_width}; "
                "layer 1 (64 data inputs) is left out, as the analysis is for equal widths.",
            )
        )
    out.append(
        _comparison_claim(
            f"tanh after {config.steps} steps: the weight gradients' spread across the "
            "equal-width layers is larger with the standard init than with the normalized",
            f"{SOURCE}, Sec. 4.3, Fig. 9",
            "during training the standard init's weight gradients drift apart across "
            "layers (smaller for higher layers), the normalized init's stay similar",
            t_std["weight_grad_spread_final"],
            t_norm["weight_grad_spread_final"],
            "spread standard - normalized",
        )
    )
    out.append(
        _comparison_claim(
            f"tanh: the normalized init trains faster (training loss at step {step})",
            f"{SOURCE}, Sec. 5, Fig. 11",
            "normalized initialization: lower error early in training (online learning "
            "curves, Fig. 11)",
            t_std["early_loss"],
            t_norm["early_loss"],
            "loss standard - normalized",
        )
    )
    out.append(
        _comparison_claim(
            f"tanh: the normalized init reaches a higher test accuracy (after {config.steps} "
            "steps)",
            f"{SOURCE}, Sec. 5, Table 1",
            "tanh with normalized init has a lower test error than with the standard init",
            t_norm["test_accuracy"],
            t_std["test_accuracy"],
            "test accuracy normalized - standard",
        )
    )
    return out


# --- figures -----------------------------------------------------------------------


def _grid(config: ExperimentConfig, **kwargs: Any) -> tuple[Any, Any]:
    plt = _common.pyplot()
    rows, cols = len(config.activations), len(config.inits)
    fig, axes = plt.subplots(rows, cols, squeeze=False, sharex=True, layout="constrained", **kwargs)
    for (r, act), (c, init) in itertools.product(
        enumerate(config.activations), enumerate(config.inits)
    ):
        axes[r, c].set_title(f"{act}, {INIT_LABELS.get(init, init)} init", fontsize=9)
    return fig, axes


def _first_run(out: dict[str, Any], act: str, init: str) -> int:
    return next(r for r, (a, i, *_) in enumerate(out["runs"]) if a == act and i == init)


def plot_activations(out: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Per layer: mean phi(z) and its 2-98 percentile band over training (seed 0).

    Args:
      out: :func:`train_arms`' result (of the measured runs).
      config: the experiment's config.
      path: the PNG file.
    """
    fig, axes = _grid(config, figsize=(10, 3.2 * len(config.activations)))
    colors = _common.pyplot().cm.viridis(np.linspace(0, 0.9, config.depth))
    for (r, act), (c, init) in itertools.product(
        enumerate(config.activations), enumerate(config.inits)
    ):
        run, ax = _first_run(out, act, init), axes[r, c]
        pct = out["snapshots"]["percentiles"][run]  # [snapshots, layers, percentiles]
        for layer in range(config.depth):
            ax.fill_between(
                out["steps"], pct[:, layer, 0], pct[:, layer, -1], color=colors[layer], alpha=0.15
            )
            ax.plot(
                out["steps"],
                out["snapshots"]["mean"][run, :, layer],
                color=colors[layer],
                label=f"layer {layer + 1}",
            )
        ax.set_ylabel("phi(z): mean, 2-98%")
    axes[0, -1].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("SGD step")
    _common.save_and_close(fig, path)


def plot_saturation(out: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Per layer: fraction of values (solid) and of units (dashed) saturated, over training
    (median over seeds)."""
    fig, axes = _grid(config, figsize=(10, 3.2 * len(config.activations)))
    colors = _common.pyplot().cm.viridis(np.linspace(0, 0.9, config.depth))
    for (r, act), (c, init) in itertools.product(
        enumerate(config.activations), enumerate(config.inits)
    ):
        idx = [k for k, (a, i, *_) in enumerate(out["runs"]) if a == act and i == init]
        ax = axes[r, c]
        for layer in range(config.depth):
            for field, style in (("saturated", "-"), ("saturated_units", "--")):
                curve = np.median(out["snapshots"][field][idx, :, layer], axis=0)
                ax.plot(
                    out["steps"],
                    curve,
                    style,
                    color=colors[layer],
                    label=f"layer {layer + 1}" if style == "-" else None,
                )
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("saturated fraction")
    axes[0, -1].legend(fontsize=7, title="solid: values, dashed: units", title_fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("SGD step")
    _common.save_and_close(fig, path)


def plot_histograms(out: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Normalized histograms of phi(z) per layer, at init and after training (seed 0)."""
    plt = _common.pyplot()
    cols = [(init, when) for init in config.inits for when in (0, -1)]
    fig, axes = plt.subplots(
        len(config.activations),
        len(cols),
        squeeze=False,
        figsize=(3.2 * len(cols), 2.8 * len(config.activations)),
    )
    edges = np.linspace(-1.0, 1.0, config.bins + 1)
    colors = plt.cm.viridis(np.linspace(0, 0.9, config.depth))
    for (r, act), (c, (init, when)) in itertools.product(
        enumerate(config.activations), enumerate(cols)
    ):
        run, ax = _first_run(out, act, init), axes[r, c]
        for layer in range(config.depth):
            hist = out["ends"]["histogram"][run, when, layer]
            ax.stairs(hist, edges, color=colors[layer], label=f"layer {layer + 1}")
        a, _, c0 = ACTIVATION_FORMS[act]
        ax.set_xlim(c0, a + c0)  # the range of phi
        step = out["steps"][when]
        ax.set_title(f"{act}, {INIT_LABELS.get(init, init)}, step {step}", fontsize=9)
        ax.set_xlabel("phi(z)")
    axes[0, -1].legend(fontsize=7)
    _common.save_and_close(fig, path)


def plot_gradients(measured: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """tanh at init, per layer: activation std, back-propagated and weight gradient RMS
    (mean over the independent nets, with its 95% interval)."""
    plt = _common.pyplot()
    fields = (
        ("activation_std", "std of phi(z)"),
        ("signal_rms", "RMS of dl/dz (back-propagated)"),
        ("weight_grad_rms", "RMS of dL/dW"),
    )
    fig, axes = plt.subplots(1, len(fields), layout="constrained", figsize=(4 * len(fields), 3.2))
    layers = np.arange(1, config.depth + 1)
    for ax, (field, label) in zip(axes, fields):
        for name, stats in measured["init"].items():
            mean = np.asarray(stats[field]["mean"])
            ci = np.asarray(stats[field]["ci"]).T
            ax.errorbar(layers, mean, yerr=np.abs(ci - mean), fmt="o-", capsize=3, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("hidden layer")
        ax.set_title(
            f"{config.init_activation} at init (width {config.init_width}): {label}", fontsize=8
        )
        ax.set_xticks(layers)
    axes[0].legend(fontsize=8)
    _common.save_and_close(fig, path)


def plot_loss(measured: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Training loss on the snapshot batch per arm: median and quartiles over seeds."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(
        1, len(config.activations), squeeze=False, layout="constrained", figsize=(9, 3.2)
    )
    steps = measured["snapshot_steps"]
    for ax, act in zip(axes[0], config.activations):
        for init in config.inits:
            arm = measured["arms"][arm_name(act, init)]
            label = f"{INIT_LABELS.get(init, init)} (lr {arm['lr']:g})"
            (line,) = ax.plot(steps, arm["loss_curve"], label=label)
            ax.fill_between(
                steps,
                arm["loss_curve_q25"],
                arm["loss_curve_q75"],
                color=line.get_color(),
                alpha=0.2,
            )
        ax.axvline(config.early_step, color="gray", lw=0.8, ls=":")
        ax.set_title(f"{act}: training loss, median and quartiles over seeds", fontsize=9)
        ax.set_xlabel("SGD step")
        ax.legend(fontsize=8)
    _common.save_and_close(fig, path)


# --- findings -----------------------------------------------------------------------


def _ci(stat: dict[str, Any], digits: int = 3) -> str:
    """``mean [lo, hi]`` of a :func:`mean_ci` dict."""
    f = _findings.fmt
    if stat["ci"] is None:
        return f(stat["mean"], digits)
    return f"{f(stat['mean'], digits)} [{f(stat['ci'][0], digits)}, {f(stat['ci'][1], digits)}]"


def _layer(per_layer: dict[str, list[Any]], layer: int) -> dict[str, Any]:
    """One layer's entry of a :func:`layer_mean_ci` dict, as a :func:`mean_ci` dict."""
    return {"mean": per_layer["mean"][layer], "ci": per_layer["ci"][layer]}


def _why(c: dict[str, Any], result: dict[str, Any]) -> str:
    """The likely reason a claim disagrees, with its numbers (from ``result``)."""
    f, cfg = _findings.fmt, result["config"]
    lo, hi = c["interval"] if c["interval"] is not None else (None, None)
    measured = f"measured {f(c['measured'])} [{f(lo)}, {f(hi)}]"
    text = c["claim"]
    if "test accuracy" in text:
        return (
            f"{measured}. Table 1's test errors come from nets trained to convergence on "
            "harder data sets (Shapeset, CIFAR-10), where the gaps are several points; "
            f"after {cfg['steps']} steps on the digits both arms fit the easy task, and the "
            "faster start of the normalized init does not turn into a better test accuracy."
        )
    if "weight gradients' spread" in text:
        arms = result["measured"]["arms"]
        grown = "; ".join(
            f"{name}: {f(float(np.mean(arms[name]['weight_grad_spread_init'])))} at init, "
            f"{_ci(mean_ci(arms[name]['weight_grad_spread_final']))} at the end"
            for name in ("tanh/standard", "tanh/normalized")
        )
        if hi is not None and hi < 0:
            return (
                f"{measured}: the opposite of Fig. 9 at this length of training, the "
                f"normalized init's weight gradients drift apart more ({grown}). Likely "
                "reasons: Fig. 9 follows a far longer training, and here the normalized arm, "
                "which has learned more (lower loss), trains at another learning rate; which "
                "of the two drives the reversal this run cannot tell."
            )
        return (
            f"{measured}. The spreads ({grown}) do not separate the inits after "
            f"{cfg['steps']} steps; Fig. 9 follows the weight gradients over a far longer "
            "training, so the drift the paper describes is not resolved at this length."
        )

    if "trains faster" in text:
        return (
            f"{measured}. Each arm trains at its own best learning rate, and a larger one "
            "can make up for the standard init's smaller weights early in training."
        )
    if "normalized init:" in text:
        return (
            f"{measured}. The first layer sees {result['measured']['sizes'][0]} data "
            "inputs, not the width, and tanh's slope below 1 shrinks every layer a "
            "little: the normalized init makes n Var W = 1 only between equal widths."
        )
    return f"{measured}; see the tables above."


def findings(result: dict[str, Any]) -> str:
    """The findings section's prose and tables, every number formatted from ``result``."""
    f = _findings.fmt
    cfg, m = result["config"], result["measured"]
    arms, pilot, at_init = m["arms"], m["pilot"], m["init"]
    std, norm = INIT_LABELS["torch_linear"], INIT_LABELS["xavier_uniform"]
    L = cfg["depth"]
    verdict = {c["claim"]: c["agrees"] for c in result["claims"]}
    n_agree = sum(v is True for v in verdict.values())
    d_in, d_out = m["sizes"][0], m["sizes"][-1]
    paper_width, paper_batch = 1000, 10  # Glorot & Bengio's setting, not a measurement
    if cfg["width"] < paper_width:
        width_text = (
            f"The trained nets have width {cfg['width']}, not the paper's {paper_width}: an SGD "
            f"step on minibatches of {cfg['batch_size']} is bound by reading the weight "
            f"matrices, so width {paper_width} costs about "
            f"{f((paper_width / cfg['width']) ** 2, 2)} times as much, and "
            f"{cfg['seeds']} seeds x {len(cfg['activations']) * len(cfg['inits'])} arms x "
            f"{cfg['steps']} steps at {paper_width} would exceed the experiments' compute "
            "budget; the at-init claims, which need no training, are measured at width "
            f"{cfg['init_width']} on {cfg['init_seeds']} independent nets per init."
        )
    else:
        width_text = f"The nets have width {cfg['width']}, as in the paper."
    parts = [
        f"Glorot & Bengio (2010) train nets of {L} hidden layers of {paper_width} units by SGD "
        f"with minibatches of {paper_batch} on Shapeset, MNIST and CIFAR-10; here the digits "
        f"({d_in} features, {d_out} classes), minibatches of {cfg['batch_size']}. "
        '"Standard" init is jaxstab\'s `torch_linear`, `U(+-1/sqrt(n_in))` '
        '(`n Var W = 1/3`); "normalized" is `xavier_uniform` (`n Var W = 1` between the '
        f"equal-width layers; the first layer has {d_in} inputs). {width_text} Every training "
        f"claim is over {cfg['seeds']} seeds per (activation, init) arm, trained for "
        f"{cfg['steps']} SGD steps ({cfg['steps'] * cfg['batch_size']} examples drawn; the "
        "paper trains for millions of updates). A seed's whole trajectory is one sample: "
        "averaging a layer over its units makes each statistic of a net precise, but says "
        "nothing about how much another net, with another draw and other minibatches, would "
        "differ, which is what the intervals over seeds measure.",
        "",
        "**Learning rates, by a rule fixed before the run.** Glorot & Bengio tune the "
        "learning rate per model. Here each (activation, init) arm takes the value of its "
        f"activation's grid with the lowest mean training loss at step {pilot['steps']} over "
        f"{pilot['seeds']} pilot seeds that are not among the measured ones (a diverged pilot "
        "counts as infinite loss); the measured seeds then train at that value.",
        "",
        "| arm | grid | pilot loss per learning rate | chosen |",
        "|---|---|---|---|",
    ]
    for name, lr in pilot["lr"].items():
        act = name.split("/")[0]
        grid = pilot["grid"][act]
        edge = " (grid edge)" if lr in (min(grid), max(grid)) else ""
        parts.append(
            f"| {name} | {f(grid)} | {', '.join(f(v) for v in pilot['pilot_loss'][name])} | "
            f"{f(lr)}{edge} |"
        )
    parts += [
        "",
        "Intervals are 95% BCa bootstrap intervals of the mean over seeds (over nets for the "
        "at-init claims); comparisons give the difference of the arm means with a "
        "percentile-bootstrap interval and a one-sided Mann-Whitney p.",
        "",
        f"Per arm (layer 1 is next to the input; mean over {cfg['seeds']} seeds with its 95% "
        "interval where one is given):",
        "",
        f"| arm | lr | mean phi(z) of layers 1-{L} at step {cfg['early_step']} | top layer "
        f"saturated at step {cfg['early_step']} | loss at step {cfg['early_step']} | loss at "
        f"step {cfg['steps']} | test accuracy | weight-grad spread at init / step "
        f"{cfg['steps']} | diverged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        means = " / ".join(
            _ci({"mean": mu, "ci": ci}) for mu, ci in zip(*a["layer_mean_early"].values())
        )
        parts.append(
            f"| {name} | {f(a['lr'])} | {means} | {_ci(a['top_saturated_early'])} | "
            f"{_ci(mean_ci(a['early_loss']))} | {_ci(mean_ci(a['final_loss']))} | "
            f"{_ci(mean_ci(a['test_accuracy']))} | "
            f"{f(float(np.mean(a['weight_grad_spread_init'])))}"
            f" / {_ci(mean_ci(a['weight_grad_spread_final']))} | {a['diverged']} |"
        )
    header = " | ".join(str(k) for k in range(1, L + 1))
    parts += [
        "",
        f"tanh at init, width {cfg['init_width']}, mean over {cfg['init_seeds']} nets per "
        "init [95% interval]:",
        "",
        f"| per layer | {header} | spread |",
        "|---|" + "---|" * (L + 1),
    ]
    for field, label, spread_field in (
        ("activation_std", "std of phi(z)", "activation_std_spread"),
        ("signal_rms", "RMS of dl/dz", "signal_rms_spread"),
        ("weight_grad_rms", "RMS of dL/dW", "weight_grad_spread"),
    ):
        for name in (std, norm):
            s = at_init[name][field]
            cells = " | ".join(_ci({"mean": mu, "ci": ci}) for mu, ci in zip(s["mean"], s["ci"]))
            parts.append(
                f"| {label}, {name} | {cells} | {_ci(mean_ci(at_init[name][spread_field]))} |"
            )
    sig_std, sig_norm = arms[f"sigmoid/{std}"], arms[f"sigmoid/{norm}"]
    t_std, t_norm = arms[f"tanh/{std}"], arms[f"tanh/{norm}"]
    predicted = linear_regime_spread(N_VAR_W["torch_linear"], L)
    parts += [
        "",
        f"**What the run shows** ({n_agree} of {len(verdict)} claims agree). "
        f"The sigmoid net's top layer is pushed toward its lower asymptote: with the standard "
        f"init its mean phi(z) at step {cfg['early_step']} is "
        f"{_ci(mean_ci(sig_std['top_mean_early']))} (0.5 at init); a fraction "
        f"{_ci(sig_std['top_saturated_early'])} of its values is below the threshold "
        f"{f(diagnostics.SATURATION_THRESHOLD)} of |phi'(z)| that counts a value as "
        "saturated, so the top layer sits near 0 without being saturated by that strict "
        "criterion; the layer "
        f"below it rises to {_ci(_layer(sig_std['layer_mean_early'], L - 2))}"
        f" while layer 1 stays at {f(sig_std['layer_mean_early']['mean'][0])}. "
        f"The normalized init does not prevent it (top-layer mean "
        f"{_ci(mean_ci(sig_norm['top_mean_early']))}); nor does the paper say so: it "
        "attributes the saturation to the sigmoid's non-zero mean, which no weight scale "
        "changes. Neither sigmoid arm learns in this run (loss at step "
        f"{cfg['steps']}: {_ci(mean_ci(sig_std['final_loss']))} standard, "
        f"{_ci(mean_ci(sig_norm['final_loss']))} normalized; chance is "
        f"{f(math.log(d_out))}): in the paper the "
        "top layer desaturates only slowly, around epoch 100, far beyond these "
        f"{cfg['steps']} steps.",
        "",
        "With tanh at init the standard init shrinks the activations going up and the "
        f"back-propagated gradients going down: spreads "
        f"{_ci(mean_ci(at_init[std]['activation_std_spread']))} and "
        f"{_ci(mean_ci(at_init[std]['signal_rms_spread']))} against the linear regime's "
        f"{f(predicted)} (tanh's slope below 1 adds to the shrinking), while the normalized "
        f"init keeps them at {_ci(mean_ci(at_init[norm]['activation_std_spread']))} and "
        f"{_ci(mean_ci(at_init[norm]['signal_rms_spread']))}. The weight-gradient RMS is "
        f"nearly the same in every equal-width layer for both inits (spreads "
        f"{_ci(mean_ci(at_init[std]['weight_grad_spread']))} and "
        f"{_ci(mean_ci(at_init[norm]['weight_grad_spread']))}): the two effects cancel, as "
        "the paper's analysis says. The first normalized layer's larger weight-gradient RMS "
        f"comes from its input: {d_in} standardized features of variance about 1, against much "
        "smaller hidden tanh activations, which is why the spreads leave it out.",
        "",
        f"Training with tanh: the loss at step {cfg['early_step']} is "
        f"{_ci(mean_ci(t_std['early_loss']))} with the standard init and "
        f"{_ci(mean_ci(t_norm['early_loss']))} with the normalized one; the weight-gradient "
        f"spread after {cfg['steps']} steps {_ci(mean_ci(t_std['weight_grad_spread_final']))} "
        f"and {_ci(mean_ci(t_norm['weight_grad_spread_final']))}; the test accuracy "
        f"{_ci(mean_ci(t_std['test_accuracy']))} and {_ci(mean_ci(t_norm['test_accuracy']))} "
        f"({cfg['seeds']} seeds each; the claims table gives the differences and tests). "
        f"The two tanh arms train at different learning rates ({f(t_std['lr'])} standard, "
        f"{f(t_norm['lr'])} normalized), each its arm's best by the rule; the comparisons are "
        "between the inits at their own best learning rates, as in the paper.",
    ]
    edge = [
        k
        for k, lr in pilot["lr"].items()
        if k.startswith("sigmoid/") and lr == min(pilot["grid"]["sigmoid"])
    ]
    if edge:
        best = min(min(pilot["pilot_loss"][k]) for k in edge)
        parts += [
            "",
            f"{', '.join(edge)} take the smallest learning rate of the grid (a grid edge), but "
            f"no value of it trains them in {pilot['steps']} steps: the best pilot loss is "
            f"{f(best)}, against the chance loss {f(math.log(d_out))}. The sigmoid claims are "
            "about where the layers' activations go, not about how fast the net learns.",
        ]
    disagree = [c for c in result["claims"] if c["agrees"] is False]
    if disagree:
        parts += ["", "**Not reproduced here**, with the likely reasons:", ""]
        for c in disagree:
            parts.append(f"- {c['claim']}: {_why(c, result)}")
    return "\n".join(parts) + "\n"


# --- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    config = get_config(args.quick)
    out = run_experiment(config)
    measured = summarize(out, config)
    train = out["train"]
    figures = {
        "activations.png": lambda p: plot_activations(train, config, p),
        "saturation.png": lambda p: plot_saturation(train, config, p),
        "histograms.png": lambda p: plot_histograms(train, config, p),
        "gradients.png": lambda p: plot_gradients(measured, config, p),
        "loss.png": lambda p: plot_loss(measured, config, p),
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
