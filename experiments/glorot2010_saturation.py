"""Saturation of deep sigmoid and tanh MLPs, and the normalized initialization.

Published claim (Glorot & Bengio 2010, "Understanding the difficulty of training
deep feedforward neural networks", AISTATS, PMLR 9:249-256; no arXiv id): in a
net of 5 hidden layers of 1000 units trained by SGD from the "standard" init
``U(+-1/sqrt(n_in))``, the sigmoid's top hidden layer is pushed to its lower
saturation value 0 early in training while the other layers' means stay above 0.5; the
"normalized" init ``U(+-sqrt(6/(n_in + n_out)))`` keeps the spread of
activations and of back-propagated gradients similar across layers, where the
standard init shrinks both by about ``sqrt(n Var W) = sqrt(1/3)`` per layer.

Here: the digits, sigmoid and tanh, jaxstab's ``torch_linear`` ("standard",
variance ``1/(3 n_in)``) and ``xavier_uniform`` ("normalized"). Every
``record_every`` steps a snapshot measures each hidden layer: percentiles,
histogram and saturation of ``phi(z)`` (``jaxstab.diagnostics.forward_stats``
and per activation value), back-propagated gradients and weight gradients
(``backward_stats``). All runs (activations x inits x seeds) are one program of
``jaxstab.engine.train``: the activation, the learning rate and the init's
per-layer bound are the runs' traced hyperparameters.

    python experiments/glorot2010_saturation.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
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
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common

NAME = "glorot2010_saturation"
PERCENTILES = (2.0, 16.0, 50.0, 84.0, 98.0)  # of phi(z) per layer; 16-84 is +-1 std if Gaussian
INIT_LABELS = {"torch_linear": "standard", "xavier_uniform": "normalized"}
# tanh(z) = 2 sigmoid(2z) - 1 exactly, so both activations are phi(z) = a sigmoid(b z) + c
# with a per-run (a, b, c): sigmoid and tanh runs then share one compiled program.
ACTIVATION_FORMS = {"sigmoid": (1.0, 1.0, 0.0), "tanh": (2.0, 2.0, -1.0)}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The experiment's settings (see :func:`get_config`)."""

    depth: int = 5  # hidden layers (Glorot & Bengio: 5)
    width: int = 1000  # units per hidden layer (Glorot & Bengio: 1000)
    activations: tuple[str, ...] = ("sigmoid", "tanh")  # keys of ACTIVATION_FORMS
    inits: tuple[str, ...] = ("torch_linear", "xavier_uniform")  # standard, normalized (uniform)
    lrs: tuple[float, ...] = (1.0, 0.03)  # SGD lr per activation, in order (sigmoid' <= 1/4)
    batch_size: int = 10  # examples per SGD step, drawn with replacement (the paper's 10)
    steps: int = 800  # SGD steps per run
    record_every: int = 50  # steps between snapshots (divides steps)
    seeds: int = 1  # seeds per (activation, init); the width averages each statistic already
    diag_examples: int = 256  # training examples every snapshot is measured on
    bins: int = 40  # histogram bins of phi(z) over [-1, 1]
    early_step: int = 200  # "early in training": the step the top layer is judged at
    seed: int = 0  # the engine's base seed (see run_experiment for how keys derive from it)


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full config, or with ``quick`` a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(width=256, steps=300, record_every=50, seeds=2, diag_examples=128)
    return ExperimentConfig()


def _check_config(config: ExperimentConfig) -> None:
    bad = [a for a in config.activations if a not in ACTIVATION_FORMS]
    if bad:
        raise ValueError(f"unknown activations {bad}; valid: {', '.join(ACTIVATION_FORMS)}")
    uniform = [name for name, form in INIT_FORMS.items() if form[0] == "uniform"]
    bad = [i for i in config.inits if i not in uniform]
    if bad:
        raise ValueError(f"unknown or non-uniform inits {bad}; valid: {', '.join(uniform)}")
    if len(config.lrs) != len(config.activations):
        raise ValueError(f"lrs {config.lrs} must give one lr per activation {config.activations}")
    if (
        config.steps % config.record_every
        or config.early_step % config.record_every
        or not 0 < config.early_step <= config.steps
    ):
        raise ValueError(
            f"record_every={config.record_every} must divide steps={config.steps} and "
            f"early_step={config.early_step}, with 0 < early_step <= steps"
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
def _task(config: ExperimentConfig, sizes: tuple[int, ...]) -> _Task:
    """The callables over a run's hparams: ``form`` (a, b, c) of :func:`sigmoid_family`,
    ``lr`` and ``bound`` (per layer, the weights' ``U(+-bound)``)."""

    def init(key: jax.Array, hp: Any) -> Any:
        return uniform_params(key, sizes, hp["bound"])

    def loss(params: Any, batch: tuple[jax.Array, jax.Array], hp: Any) -> jax.Array:
        logits = js.apply_mlp(params, batch[0], sigmoid_family(hp["form"]))
        return jnp.mean(js.softmax_cross_entropy(logits, batch[1]))

    def snapshot(params: Any, data: dict[str, jax.Array], hp: Any) -> dict[str, jax.Array]:
        phi = sigmoid_family(hp["form"])
        snap = layer_snapshot(params, data["x_diag"], data["y_diag"], phi, config.bins)
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


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    """Trains every (activation, init, seed) as one program of :func:`jaxstab.engine.train`.

    Seed ``s`` is the engine's run seed ``s`` for every activation and init, so the
    standard and normalized, sigmoid and tanh nets of a seed share their initial draw
    (:func:`uniform_params`' ``U(-1, 1)``, from the first half of
    ``split(fold_in(key(seed), s))``, scaled per init) and their minibatches (from the
    second half). The :data:`CURVES` of a snapshot are taken at
    step 0 and after every ``record_every`` steps, the :data:`ENDS` at step 0 and after
    the last step.

    Returns:
      ``runs`` (``(activation, init, seed)`` per run), ``sizes`` (the layer sizes),
      ``steps`` (of the snapshots, 0 first), ``snapshots`` (numpy, each of
      :data:`CURVES` ``[runs, snapshots, layers, ...]``, ``loss`` ``[runs, snapshots]``),
      ``ends`` (each of :data:`ENDS` ``[runs, 2, layers, ...]``: at init, after
      training) and ``test_accuracy`` ``[runs]`` (after the last step).
    """
    _check_config(config)
    data = load_digits()
    n_diag = min(config.diag_examples, data.n_train)
    eval_data = {
        "x_diag": data.x_train[:n_diag],
        "y_diag": data.y_train[:n_diag],
        "x_test": data.x_test,
        "y_test": data.y_test,
    }
    sizes = (data.d_in, *[config.width] * config.depth, data.d_out)
    # The seed varies fastest, then the init, then the activation (the runs' order).
    index = engine.grid(
        config.seeds, activation=range(len(config.activations)), init=range(len(config.inits))
    )
    forms = np.asarray([ACTIVATION_FORMS[a] for a in config.activations], np.float32)
    bounds = np.stack([layer_scales(init, 1.0, sizes) for init in config.inits])
    runs = {
        "seed": index["seed"],
        "form": forms[index["activation"]],
        "lr": np.asarray(config.lrs, np.float32)[index["activation"]],
        "bound": bounds[index["init"]],
    }
    task = _task(config, sizes)
    result = engine.train(
        task.init,
        task.loss,
        task.optimizer,
        (data.x_train, data.y_train),
        runs,
        steps=config.steps,
        batch_size=config.batch_size,
        seed=config.seed,
        evaluate=task.evaluate,
        eval_data=eval_data,
        eval_every=config.record_every,
        inspect=task.inspect,
    )
    hp0 = engine.run_at(runs, 0)
    params = jax.eval_shape(task.init, jax.random.key(0), hp0)
    shapes = jax.eval_shape(task.curves, params, eval_data, hp0)
    ends = {
        k: np.stack([result.inspections["init"][k], result.inspections["final"][k]], axis=1)
        for k in ENDS
    }
    return {
        "runs": [
            (config.activations[a], config.inits[i], int(s))
            for a, i, s in zip(index["activation"], index["init"], index["seed"])
        ],
        "sizes": list(sizes),
        "steps": result.eval_steps,
        "snapshots": _common.from_scalars(result.evals, {k: v.shape for k, v in shapes.items()}),
        "ends": ends,
        "test_accuracy": ends["test_accuracy"][:, -1],
    }


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


def summarize(out: dict[str, Any], config: ExperimentConfig) -> dict[str, Any]:
    """The measured numbers: medians over seeds per (activation, init)."""
    snaps, ends, steps = out["snapshots"], out["ends"], out["steps"]
    early = int(np.searchsorted(steps, config.early_step))
    square = square_layers(out["sizes"])
    measured: dict[str, Any] = {"snapshot_steps": steps.tolist()}
    for act in config.activations:
        for init in config.inits:
            idx = [r for r, (a, i, _) in enumerate(out["runs"]) if a == act and i == init]
            med = lambda field, idx=idx: np.median(snaps[field][idx], axis=0)
            init_values = lambda field, idx=idx: ends[field][idx, 0]  # [seeds, layers]
            # [seeds, (init, final), equal-width layers]
            rms = weight_grad_rms(ends["grad_norm"][idx], out["sizes"])[..., square]
            measured[f"{act}/{INIT_LABELS.get(init, init)}"] = {
                "layer_mean_init": med("mean")[0].tolist(),
                "layer_mean_early": med("mean")[early].tolist(),
                "layer_mean_final": med("mean")[-1].tolist(),
                "top_mean_curve": med("mean")[:, -1].tolist(),
                "top_saturated_curve": med("saturated")[:, -1].tolist(),
                "layer_saturated_final": med("saturated")[-1].tolist(),
                "layer_saturated_units_final": med("saturated_units")[-1].tolist(),
                "activation_std_init": np.median(init_values("std"), axis=0).tolist(),
                "signal_rms_init": np.median(init_values("signal_rms"), axis=0).tolist(),
                "weight_grad_rms_init": np.median(
                    weight_grad_rms(init_values("grad_norm"), out["sizes"]), axis=0
                ).tolist(),
                "activation_std_spread_init": float(np.median(spread(init_values("std")))),
                "signal_rms_spread_init": float(np.median(spread(init_values("signal_rms")))),
                "weight_grad_spread_init": float(np.median(spread(rms[:, 0]))),
                "weight_grad_spread_final": float(np.median(spread(rms[:, -1]))),
                "loss_curve": med("loss").tolist(),
                "early_loss": float(med("loss")[early]),
                "final_loss": float(med("loss")[-1]),
                "test_accuracy": float(np.median(out["test_accuracy"][idx])),
            }
    return measured


def claims(measured: dict[str, Any], config: ExperimentConfig) -> list[dict[str, Any]]:
    """The published claims against the measured numbers."""
    std, norm = "torch_linear", "xavier_uniform"
    s = measured[f"sigmoid/{INIT_LABELS[std]}"]
    t_std, t_norm = measured[f"tanh/{INIT_LABELS[std]}"], measured[f"tanh/{INIT_LABELS[norm]}"]
    top_early, lower_early = s["layer_mean_early"][-1], s["layer_mean_early"][:-1]
    predicted = linear_regime_spread(N_VAR_W[std], config.depth)
    out = [
        {
            "claim": f"sigmoid, standard init: the top hidden layer is pushed to 0 early "
            f"(mean phi(z) at step {config.early_step}) while the lower layers are not",
            "published": "very quickly the top layer's activations are pushed to their lower "
            "saturation value 0; the other layers' means stay above 0.5, decreasing from the "
            "output toward the input (Glorot & Bengio 2010, Fig. 2)",
            "measured": {"top": top_early, "lower_min": min(lower_early)},
            "tolerance": "top < 0.1 and every lower layer > 0.4 (none pushed to 0)",
            "agrees": bool(top_early < 0.1 and min(lower_early) > 0.4),
        }
    ]
    for field, what in (
        ("activation_std_spread_init", "activation std"),
        ("signal_rms_spread_init", "back-propagated gradient RMS"),
    ):
        a, b = t_std[field], t_norm[field]
        out.append(
            {
                "claim": f"tanh at init: {what}, largest over smallest across the "
                f"{config.depth} layers, standard vs normalized init",
                "published": f"standard: shrinks layer by layer, {predicted:.3g} in the "
                "linear regime; normalized: about 1, similar across layers (Figs. 6-7)",
                "measured": {"standard": a, "normalized": b},
                "tolerance": f"standard within a factor 1.5 of {predicted:.3g}; normalized < 2",
                "agrees": bool(predicted / 1.5 < a < predicted * 1.5 and b < 2.0),
            }
        )
    a, b = t_std["weight_grad_spread_init"], t_norm["weight_grad_spread_init"]
    out.append(
        {
            "claim": "tanh at init: RMS weight gradient, largest over smallest across the "
            "equal-width layers",
            "published": "about 1 for both inits: the weight-gradient variance does not "
            "depend on the layer at init (Sec. 4.2.1)",
            "measured": {"standard": a, "normalized": b},
            "tolerance": "both < 1.5",
            "agrees": bool(a < 1.5 and b < 1.5),
        }
    )
    a, b = t_std["weight_grad_spread_final"], t_norm["weight_grad_spread_final"]
    out.append(
        {
            "claim": f"tanh after {config.steps} steps: RMS weight gradient, largest over "
            "smallest across the equal-width layers",
            "published": "during training the standard init's weight gradients drift apart "
            "across layers, the normalized init's stay similar (Fig. 9)",
            "measured": {"standard": a, "normalized": b},
            "tolerance": "normalized < standard",
            "agrees": bool(b < a),
        }
    )
    a, b = t_std["early_loss"], t_norm["early_loss"]
    out.append(
        {
            "claim": f"tanh: training loss at step {config.early_step}, standard vs normalized",
            "published": "the normalized init trains faster (Fig. 11, Table 1)",
            "measured": {"standard": a, "normalized": b},
            "tolerance": "normalized < standard",
            "agrees": bool(b < a),
        }
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
    return next(r for r, (a, i, _) in enumerate(out["runs"]) if a == act and i == init)


def plot_activations(out: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Per layer: mean phi(z) and its 2-98 percentile band over training (seed 0)."""
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
    """Per layer: fraction of values (solid) and of units (dashed) saturated, over training."""
    fig, axes = _grid(config, figsize=(10, 3.2 * len(config.activations)))
    colors = _common.pyplot().cm.viridis(np.linspace(0, 0.9, config.depth))
    for (r, act), (c, init) in itertools.product(
        enumerate(config.activations), enumerate(config.inits)
    ):
        idx = [k for k, (a, i, _) in enumerate(out["runs"]) if a == act and i == init]
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
    """tanh at init, per layer: activation std, back-propagated and weight gradient RMS."""
    plt = _common.pyplot()
    fields = (
        ("activation_std_init", "std of phi(z)"),
        ("signal_rms_init", "RMS of dl/dz (back-propagated)"),
        ("weight_grad_rms_init", "RMS of dL/dW"),
    )
    fig, axes = plt.subplots(1, len(fields), layout="constrained", figsize=(4 * len(fields), 3.2))
    layers = np.arange(1, config.depth + 1)
    for ax, (field, label) in zip(axes, fields):
        for init in config.inits:
            name = INIT_LABELS.get(init, init)
            ax.semilogy(layers, measured[f"tanh/{name}"][field], "o-", label=name)
        ax.set_xlabel("hidden layer")
        ax.set_title(f"tanh at init: {label}", fontsize=9)
        ax.set_xticks(layers)
    axes[0].legend(fontsize=8)
    _common.save_and_close(fig, path)


# --- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    config = get_config(args.quick)
    out = run_experiment(config)
    measured = summarize(out, config)
    figures = {
        f"{NAME}_activations.png": lambda p: plot_activations(out, config, p),
        f"{NAME}_saturation.png": lambda p: plot_saturation(out, config, p),
        f"{NAME}_histograms.png": lambda p: plot_histograms(out, config, p),
        f"{NAME}_gradients.png": lambda p: plot_gradients(measured, config, p),
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
