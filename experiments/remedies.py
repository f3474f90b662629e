"""Remedies for dying ReLU in training, and how much Adam rescues a bad init.

Claims. The project's founding text (``seeds/000_002e6f7aef932404.txt``): a ReLU unit
whose input stays negative outputs zero and gets no gradient, which "is exacerbated by
poor initialization or large learning rates" (sec. 5.3); leaky ReLU ``max(a x, x)``
"mitigates neuron death while preserving ReLU's advantages" (sec. 5.4); "adaptive
optimizers can compensate for poor scaling to some extent, but cannot fully overcome
pathological initial conditions" (sec. 9). He, Zhang, Ren & Sun 2015 ("Delving Deep
into Rectifiers", arXiv 1502.01852, Sec. 2.2): with negative slope ``a`` the forward
second moment is kept by ``Var w = 2 / ((1 + a^2) n_in)``, the gain used here for every
leaky arm. Lu, Shin, Su & Karniadakis 2019 ("Dying ReLU and Initialization", arXiv
1903.06733): narrow deep ReLU nets are born dead; their remedy, a randomized asymmetric
initialization (RAI), is left out because its definition could not be checked in the
paper or the authors' code (see the claims).

Part A, remedies in training. Narrow deep nets on the digits (64 inputs, then ``L``
hidden layers of width ``N``, 10 outputs). The 64-dimensional input does not make a
narrow net meaningless here: the first hidden layer maps it to ``N`` units, and the other
``L - 1`` layers are ``N x N``, where a layer dies with probability about ``2^-N`` per
input as in the closed form of ``dying_relu`` (a low-dimensional task would only change
the first layer). Arms: ReLU with He weights, leaky ReLU
at slopes 0.01, 0.1 and 0.3 with the matching He gain, and ReLU with He weights and a
constant positive bias on every hidden unit. Every arm, learning rate and seed of one
architecture is one compiled program (``jaxstab.engine.train``; slope, bias, weight
scales and learning rate are traced values of ``runs``), trained with plain SGD. A unit
is *dead* when its pre-activation is ``<= 0`` on every training example (for ReLU: it
outputs 0 on all of them; for leaky ReLU: it sits in the negative regime, where it
still passes a gradient of slope ``a``); a network is *born dead* when its logits are
identical on every training example. Measured: the born-dead rate at init on many
independent nets, the dead-unit fraction during and after training at every learning
rate, and the final training loss.

Part B, Adam against SGD from a bad init. ReLU nets of depth 30 and width 64 from
Xavier-normal weights (the bad init for ReLU: the signal halves at every layer) and
He-normal, each trained with SGD and with Adam over a geometric learning-rate grid,
all in one compiled program (the optimizer is a traced switch). The gap closed by Adam
is ``(L_XavierSGD - L_XavierAdam) / (L_XavierSGD - L_HeSGD)`` of median final losses,
each arm at its own best learning rate.

    python experiments/remedies.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxstab as js
from jaxstab import engine
from jaxstab.data import Dataset, load_digits

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
    import _findings
    import _stats
    import dying_relu
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common, _findings, _stats, dying_relu

NAME = "remedies"
TITLE = "Remedies for dying ReLU in training, and Adam from a bad init"
SEED_TEXT = "founding text (seeds/000_002e6f7aef932404.txt)"
HE = "He et al. 2015 (arXiv 1502.01852)"
LU = "Lu, Shin, Su & Karniadakis 2019 (arXiv 1903.06733)"
CHANCE_LOSS = math.log(10.0)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The experiment's settings (see :func:`get_config`)."""

    # --- Part A: remedies in narrow deep nets ---
    architectures: tuple[tuple[int, int], ...] = ((4, 20), (8, 20))  # (width N, depth L)
    slopes: tuple[float, ...] = (0.0, 0.01, 0.1, 0.3)  # negative slopes; 0 is the ReLU arm
    positive_bias: float = 0.1  # constant hidden bias of the positive-bias arm (ReLU, He)
    remedy_lrs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)  # SGD grid of every arm
    remedy_steps: int = 2000  # SGD steps (48 epochs of the 1347 training digits)
    remedy_eval_every: int = 200  # steps between evaluations (loss and dead units)
    init_nets: int = 4096  # independent nets per arm for the born-dead rate at init
    # --- Part B: Adam vs SGD from Xavier at depth 30 ---
    adam_width: int = 64  # units per hidden layer
    adam_depth: int = 30  # hidden layers (He et al.'s deep case)
    # Learning-rate grids, x3 apart, in the order of ADAM_ARMS: Xavier-SGD, He-SGD (around
    # he2015_depth's chosen 0.03 and 0.01 at this depth), Xavier-Adam, He-Adam.
    adam_grids: tuple[tuple[float, ...], ...] = (
        (0.01, 0.03, 0.1),
        (0.003, 0.01, 0.03),
        (1e-4, 3e-4, 1e-3, 3e-3),
        (1e-4, 3e-4, 1e-3, 3e-3),
    )
    adam_steps: int = 1000  # training steps
    adam_eval_every: int = 100  # steps between evaluations
    # --- shared ---
    batch_size: int = 32  # examples per step, drawn with replacement
    seeds: int = 16  # seeds per cell; every arm and lr of a program shares the init draws
    seed: int = 0  # base PRNG seed (the init Monte Carlo uses seed + 1)


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full config, or with ``quick`` a shrunk one that runs in seconds."""
    if quick:
        # One architecture, shared by both parts (same steps: one compiled program).
        return ExperimentConfig(
            architectures=((4, 20),),
            remedy_lrs=(0.03, 0.3),
            remedy_steps=60,
            remedy_eval_every=30,
            init_nets=256,
            adam_width=4,
            adam_depth=20,
            adam_grids=((0.03,), (0.03,), (1e-3, 1e-2), (1e-3,)),
            adam_steps=60,
            adam_eval_every=30,
            seeds=4,
        )
    return ExperimentConfig()


# --- arms ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Arm:
    """One remedy: activation slope, weight init and hidden bias (traced values)."""

    name: str  # "relu", "leaky_0.01", ..., "bias_0.1"
    slope: float  # negative slope (0: ReLU)
    bias: float  # constant bias of every hidden unit at init
    init: str  # "he" (gain matched to the slope) or "xavier"


def remedy_arms(config: ExperimentConfig) -> list[Arm]:
    """Part A's arms: ReLU (He), leaky ReLU at each slope (matching He gain), positive bias."""
    arms = [Arm("relu" if a == 0 else f"leaky_{a:g}", float(a), 0.0, "he") for a in config.slopes]
    if arms[0].slope != 0.0:
        raise ValueError(f"slopes={config.slopes}: the first slope is the ReLU arm, 0")
    arms.append(Arm(f"bias_{config.positive_bias:g}", 0.0, config.positive_bias, "he"))
    return arms


def he_std(n_in: int, slope: float) -> float:
    """He et al.'s standard deviation for negative slope ``a``: ``sqrt(2 / ((1 + a^2) n_in))``."""
    return math.sqrt(2.0 / ((1.0 + slope**2) * n_in))


def layer_stds(sizes: Sequence[int], arm: Arm) -> np.ndarray:
    """Per layer (hidden layers, then the output layer): the weights' standard deviation.

    He: :func:`he_std` with the arm's slope (the output layer too, as jaxstab's
    ``he_normal`` preset does); Xavier: ``sqrt(2 / (n_in + n_out))``. Computed in
    float64, rounded once to float32.
    """
    out = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        if arm.init == "he":
            out.append(he_std(n_in, arm.slope))
        elif arm.init == "xavier":
            out.append(math.sqrt(2.0 / (n_in + n_out)))
        else:
            raise ValueError(f"unknown init {arm.init!r}; use 'he' or 'xavier'")
    return np.asarray(out, np.float32)


def leaky(slope: Any) -> Callable[[jax.Array], jax.Array]:
    """``z -> max(z, a z)`` with a traced slope (``dying_relu.leaky``): ReLU at ``a = 0``."""
    return dying_relu.leaky(slope)


# --- the model: jaxstab's MLP layout with traced scales, bias and slope -----------------


def make_init(sizes: tuple[int, ...]) -> Callable[[jax.Array, Any], Any]:
    """``init(key, hp)``: Gaussian weights of std ``hp["weight_std"][i]``, hidden biases
    ``hp["bias"]``, output bias 0, in :func:`jaxstab.init_mlp`'s layout (the input layer,
    then the stack of square hidden layers, split by :func:`jaxstab.split_stacks`)."""
    depth = len(sizes) - 2

    def init(key: jax.Array, hp: Any) -> Any:
        keys = jax.random.split(key, depth + 1)
        std = hp["weight_std"]

        def layer(k: jax.Array, n_in: int, n_out: int, s: Any, b: Any) -> dict[str, Any]:
            w = s * jax.random.normal(k, (n_in, n_out), jnp.float32)
            return {"w": w, "b": jnp.full((n_out,), b, jnp.float32)}

        first = layer(keys[0], sizes[0], sizes[1], std[0], hp["bias"])
        hidden = [jax.tree.map(lambda a: a[None], first)]
        if depth > 1:
            n = sizes[1]
            stack = jax.vmap(lambda k, s: layer(k, n, n, s, hp["bias"]))(
                keys[1:depth], std[1:depth]
            )
            hidden.append(stack)
        output = layer(keys[depth], sizes[-2], sizes[-1], std[depth], 0.0)
        return js.split_stacks({"hidden": hidden, "output": output})

    return init


def forward(params: Any, x: jax.Array, slope: Any) -> tuple[jax.Array, jax.Array]:
    """Logits and the stacked hidden pre-activations ``[L, batch, N]``."""
    return js.apply_mlp(params, x, leaky(slope), capture=True)


def loss_fn(params: Any, batch: tuple[jax.Array, jax.Array], hp: Any) -> jax.Array:
    """Mean softmax cross-entropy of a minibatch."""
    logits = js.apply_mlp(params, batch[0], leaky(hp["slope"]))
    return jnp.mean(js.softmax_cross_entropy(logits, batch[1]))


def death(pre_LxBxN: jax.Array, logits_BxC: jax.Array) -> dict[str, jax.Array]:
    """The death measures of one net on a batch.

    Returns:
      ``dead_units``: fraction of hidden units whose pre-activation is ``<= 0`` on every
      example; ``collapsed``: 1.0 if some hidden layer has every unit dead;
      ``constant``: 1.0 if the logits are identical on every example (born dead).
    """
    dead_LxN = jnp.all(pre_LxBxN <= 0, axis=1)
    return {
        "dead_units": jnp.mean(dead_LxN.astype(jnp.float32)),
        "collapsed": jnp.any(jnp.all(dead_LxN, axis=1)).astype(jnp.float32),
        "constant": jnp.all(logits_BxC == logits_BxC[:1]).astype(jnp.float32),
    }


def evaluate_fn(params: Any, data: Mapping[str, jax.Array], hp: Any) -> dict[str, jax.Array]:
    """Full training loss with the death measures on the training set; test loss, accuracy."""
    logits, pre = forward(params, data["x_train"], hp["slope"])
    out = {"train_loss": jnp.mean(js.softmax_cross_entropy(logits, data["y_train"]))}
    out.update(death(pre, logits))
    test_logits = js.apply_mlp(params, data["x_test"], leaky(hp["slope"]))
    out["test_loss"] = jnp.mean(js.softmax_cross_entropy(test_logits, data["y_test"]))
    out["test_accuracy"] = js.accuracy(test_logits, data["y_test"])
    return out


def sgd_or_adam(hp: Any) -> optax.GradientTransformation:
    """Adam where ``hp["adam"] > 0``, else plain SGD, at learning rate ``hp["lr"]``.

    One program serves both: Adam's moments are always tracked (cheap next to the
    net), and its direction replaces the raw gradient only where the switch is on.
    """
    adam = optax.scale_by_adam()

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        scaled, state = adam.update(updates, state, params)
        use = hp["adam"] > 0
        return jax.tree.map(lambda a, g: jnp.where(use, a, g), scaled, updates), state

    return optax.chain(
        optax.GradientTransformation(adam.init, update), optax.scale_by_learning_rate(hp["lr"])
    )


@functools.cache
def _task(sizes: tuple[int, ...]) -> Callable[[jax.Array, Any], Any]:
    """The init of one architecture: the same object each time, so one compile."""
    return make_init(sizes)


def runs_for(
    cells: Sequence[tuple[Arm, float, bool]], sizes: Sequence[int], seeds: int
) -> dict[str, np.ndarray]:
    """The engine's runs: every cell ``(arm, lr, adam)`` for seeds ``0 .. seeds-1``."""
    per_cell = [
        engine.grid(
            seeds,
            lr=[lr],
            slope=[arm.slope],
            bias=[arm.bias],
            adam=[float(adam)],
            weight_std=[layer_stds(sizes, arm)],
        )
        for arm, lr, adam in cells
    ]
    return jax.tree.map(lambda *a: np.concatenate(a), *per_cell)


def train_cells(
    cells: Sequence[tuple[Arm, float, bool]],
    sizes: tuple[int, ...],
    data: Dataset,
    *,
    steps: int,
    eval_every: int,
    config: ExperimentConfig,
) -> dict[str, np.ndarray]:
    """Trains every cell for ``config.seeds`` seeds in one engine call (one program).

    Returns:
      ``evals`` entries reshaped to ``[cells, seeds, evals]``, plus ``diverged``
      ``[cells, seeds]`` and ``eval_steps``.
    """
    runs = runs_for(cells, sizes, config.seeds)
    eval_data = {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "x_test": data.x_test,
        "y_test": data.y_test,
    }
    out = engine.train(
        _task(sizes),
        loss_fn,
        sgd_or_adam,
        (data.x_train, data.y_train),
        runs,
        steps=steps,
        batch_size=config.batch_size,
        seed=config.seed,
        evaluate=evaluate_fn,
        eval_data=eval_data,
        eval_every=eval_every,
    )
    shape = (len(cells), config.seeds)
    res = {k: np.asarray(v).reshape(*shape, -1) for k, v in out.evals.items()}
    res["diverged"] = np.asarray(out.diverged).reshape(shape)
    res["eval_steps"] = np.asarray(out.eval_steps)
    return res


# --- born dead at init: many independent nets ---------------------------------------------


@functools.cache
def _init_program(sizes: tuple[int, ...], chunk: int) -> Any:
    """The jitted Monte Carlo at init: keys ``[chunks, chunk]`` -> death measures per net.

    ``lax.map`` for the init (XLA on CPU compiles a vmapped threefry draw slowly, as
    ``dying_relu`` notes), ``vmap`` for the forward passes of a chunk.
    """
    init = make_init(sizes)

    def measure(params: Any, hp: Any, x: jax.Array) -> dict[str, jax.Array]:
        logits, pre = forward(params, x, hp["slope"])
        out = death(pre, logits)
        q = jnp.mean(jnp.square(pre), axis=(1, 2))  # per-layer second moment [L]
        out["q_ratio"] = jnp.mean(q[1:] / q[:-1])  # NaN if a layer is all zero (ReLU)
        return out

    def run(keys: jax.Array, hp: Any, x: jax.Array) -> Any:
        def one_chunk(keys_k: jax.Array) -> Any:
            params = jax.lax.map(lambda k: init(k, hp), keys_k)
            return jax.vmap(lambda p: measure(p, hp, x))(params)

        out = jax.lax.map(one_chunk, keys)
        return jax.tree.map(lambda a: a.reshape(-1), out)

    return _common.jit_once(run)


def init_death(
    key: jax.Array, sizes: tuple[int, ...], arm: Arm, x: np.ndarray, nets: int
) -> dict[str, np.ndarray]:
    """Death measures of ``nets`` independent nets of ``arm`` at init on inputs ``x``.

    Also ``q_ratio``: the mean over layers of ``q^(l+1) / q^l``, the ratio of successive
    layers' pre-activation second moments over the inputs and units. With zero biases
    and the matching gain each ratio is 1 in expectation at any width (flipping the sign
    of a unit's weight row maps ``phi(z)^2`` to ``phi(-z)^2``, and the two average to
    ``(1 + a^2) z^2 / 2``), so the He et al. condition is checked without the heavy
    tails of the product over layers.
    """
    hp = {
        "slope": jnp.float32(arm.slope),
        "bias": jnp.float32(arm.bias),
        "weight_std": jnp.asarray(layer_stds(sizes, arm)),
    }
    chunk = min(nets, 256)
    if nets % chunk:
        raise ValueError(f"nets={nets} must be a multiple of {chunk}")
    keys = jax.random.split(key, nets).reshape(nets // chunk, chunk)
    out = _init_program(sizes, chunk)(keys, hp, jnp.asarray(x))
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


# --- statistics ----------------------------------------------------------------------------


def gap_closed(xavier_sgd: Any, xavier_adam: Any, he_sgd: Any) -> float:
    """``(m_XS - m_XA) / (m_XS - m_HS)`` of the median final losses ``m``: 0 when Adam
    does no better than SGD from Xavier, 1 when it reaches He with SGD."""
    m = [float(np.median(np.asarray(v, np.float64))) for v in (xavier_sgd, xavier_adam, he_sgd)]
    return (m[0] - m[1]) / (m[0] - m[2])


def gap_closed_ci(
    xavier_sgd: Any, xavier_adam: Any, he_sgd: Any, *, seed: int = 0
) -> tuple[float, float, float]:
    """:func:`gap_closed` with its 95% percentile bootstrap interval.

    The three arms' seeds are resampled independently (``_stats.RESAMPLES`` times, a
    fixed generator); a diverged seed counts as ``+inf``, the worst loss. Resamples
    where the ratio is undefined (both medians infinite) are dropped.
    """
    arms = [np.asarray(v, np.float64).reshape(-1) for v in (xavier_sgd, xavier_adam, he_sgd)]
    arms = [np.where(np.isfinite(a), a, np.inf) for a in arms]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = gap_closed(*arms)
        rng = np.random.default_rng(seed)
        medians = [
            np.median(a[rng.integers(0, a.size, (_stats.RESAMPLES, a.size))], axis=1) for a in arms
        ]
        ratio = (medians[0] - medians[1]) / (medians[0] - medians[2])
        ratio = ratio[~np.isnan(ratio)]
        if ratio.size == 0:
            return value, math.nan, math.nan
        alpha = (1.0 - _stats.CONFIDENCE) / 2.0
        lo, hi = np.quantile(ratio, [alpha, 1.0 - alpha])
    return value, float(lo), float(hi)


def _nan(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], np.float64)


def _finite_list(a: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(a, np.float64)]


def cell_summary(res: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    """One cell (arm, lr): final loss, dead units at init and after training, outcomes."""
    final = res["train_loss"][i, :, -1]
    dead_final = res["dead_units"][i, :, -1]
    return {
        "final_loss": _stats.summary(final),
        "final_loss_per_seed": _finite_list(final),
        "dead_init_per_seed": _finite_list(res["dead_units"][i, :, 0]),
        "dead_final_per_seed": _finite_list(dead_final),
        "dead_final_mean": float(np.nanmean(dead_final)) if np.isfinite(dead_final).any() else None,
        "dead_curve_mean": [
            float(np.nanmean(c)) if np.isfinite(c).any() else None for c in res["dead_units"][i].T
        ],
        "loss_curve_median": [
            float(np.nanmedian(c)) if np.isfinite(c).any() else None for c in res["train_loss"][i].T
        ],
        "constant_final": int(np.nansum(res["constant"][i, :, -1])),
        "constant_init": int(np.nansum(res["constant"][i, :, 0])),
        "diverged": int(res["diverged"][i].sum()),
        "n": int(final.size),
        "test_accuracy_median": float(np.nanmedian(res["test_accuracy"][i, :, -1]))
        if np.isfinite(res["test_accuracy"][i, :, -1]).any()
        else None,
    }


def mean_ci(values: Sequence[float | None]) -> list[float | None]:
    """Mean with its 95% bootstrap (BCa) interval over the finite values."""
    v = _nan(values)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return [float(v.mean()) if v.size else None, None, None]
    lo, hi = _stats.bootstrap_ci(v)
    return [float(v.mean()), lo, hi]


def diff(a: Any, b: Any, stat: Any = np.mean) -> list[Any]:
    """``stat(a) - stat(b)`` with its 95% bootstrap interval (None if an arm has < 2 values)."""
    try:
        return list(_stats.difference_ci(_nan(a), _nan(b), stat))
    except ValueError:
        return [None, None, None]


def summarize_remedies(
    per_arch: Mapping[str, Mapping[str, np.ndarray]],
    init_mc: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    config: ExperimentConfig,
) -> dict[str, Any]:
    """Per architecture and arm: the born-dead rate at init, every lr's cell, the chosen lr,
    and the comparisons against the ReLU arm (at each arm's chosen lr)."""
    arms = remedy_arms(config)
    out: dict[str, Any] = {}
    for key, res in per_arch.items():
        arch: dict[str, Any] = {"arms": {}}
        for a, arm in enumerate(arms):
            mc = init_mc[key][arm.name]
            nets = mc["constant"].size
            born = int(mc["constant"].sum())
            cells = {}
            for j, lr in enumerate(config.remedy_lrs):
                cells[repr(lr)] = cell_summary(res, a * len(config.remedy_lrs) + j)
            finals = {lr: _nan(cells[repr(lr)]["final_loss_per_seed"]) for lr in config.remedy_lrs}
            chosen = _stats.best_lr(finals)
            arch["arms"][arm.name] = {
                "slope": arm.slope,
                "bias": arm.bias,
                "born_dead": list(_stats.proportion_ci(born, nets)),
                "born_dead_count": born,
                "collapsed_init": list(_stats.proportion_ci(int(mc["collapsed"].sum()), nets)),
                "dead_units_init": list(_stats.mean_ci(mc["dead_units"])),
                "q_ratio_mean": list(_stats.mean_ci(mc["q_ratio"])),
                "q_ratio_nets": int(np.isfinite(mc["q_ratio"]).sum()),
                "nets": int(nets),
                "lr": chosen,
                "lr_at_grid_edge": chosen in (min(config.remedy_lrs), max(config.remedy_lrs)),
                "grid": cells,
            }
        relu = arch["arms"]["relu"]
        for arm in arms[1:]:
            a = arch["arms"][arm.name]
            born_flags = np.zeros(a["nets"])
            born_flags[: a["born_dead_count"]] = 1
            relu_born = np.zeros(relu["nets"])
            relu_born[: relu["born_dead_count"]] = 1
            mine, base = a["grid"][repr(a["lr"])], relu["grid"][repr(relu["lr"])]
            a["vs_relu"] = {
                "born_dead": list(_stats.difference_ci(born_flags, relu_born)),
                "dead_final": diff(mine["dead_final_per_seed"], base["dead_final_per_seed"]),
                "final_loss": diff(
                    mine["final_loss_per_seed"], base["final_loss_per_seed"], np.median
                ),
                "dead_final_per_lr": {
                    repr(lr): diff(
                        a["grid"][repr(lr)]["dead_final_per_seed"],
                        relu["grid"][repr(lr)]["dead_final_per_seed"],
                    )
                    for lr in config.remedy_lrs
                },
            }
        # Dying as the learning rate grows: each arm's dead fraction at the largest lr
        # without a diverged seed, minus at the smallest lr.
        for a in arch["arms"].values():
            ok = [lr for lr in config.remedy_lrs if a["grid"][repr(lr)]["diverged"] == 0]
            lo_lr = min(config.remedy_lrs)
            hi_lr = max(ok) if ok else lo_lr
            a["lr_trend"] = {
                "low_lr": lo_lr,
                "high_lr": hi_lr,
                "dead_high_minus_low": diff(
                    a["grid"][repr(hi_lr)]["dead_final_per_seed"],
                    a["grid"][repr(lo_lr)]["dead_final_per_seed"],
                ),
                "dead_per_lr": {
                    repr(lr): mean_ci(a["grid"][repr(lr)]["dead_final_per_seed"])
                    for lr in config.remedy_lrs
                },
            }
        out[key] = arch
    return out


ADAM_ARMS = (("xavier", False), ("he", False), ("xavier", True), ("he", True))


def adam_label(init: str, adam: bool) -> str:
    return f"{init}_{'adam' if adam else 'sgd'}"


def adam_grids(config: ExperimentConfig) -> tuple[tuple[float, ...], ...]:
    """Part B's learning-rate grids, one per arm of :data:`ADAM_ARMS`."""
    if len(config.adam_grids) != len(ADAM_ARMS):
        raise ValueError(
            f"adam_grids has {len(config.adam_grids)} grids; give one per arm of {ADAM_ARMS}"
        )
    return config.adam_grids


def adam_cells(config: ExperimentConfig) -> list[tuple[Arm, float, bool]]:
    """Part B's cells: (init, optimizer) x that optimizer's learning-rate grid."""
    cells = []
    for (init, adam), grid in zip(ADAM_ARMS, adam_grids(config)):
        arm = Arm(init, 0.0, 0.0, init)
        cells += [(arm, lr, adam) for lr in grid]
    return cells


def summarize_adam(res: Mapping[str, np.ndarray], config: ExperimentConfig) -> dict[str, Any]:
    """Per (init, optimizer): every lr's cell and the chosen lr; the gap closed by Adam at
    its best lr and at each lr of its grid; Xavier - He with Adam."""
    arms: dict[str, Any] = {}
    i = 0
    for (init, adam), grid in zip(ADAM_ARMS, adam_grids(config)):
        cells = {}
        for lr in grid:
            cells[repr(lr)] = cell_summary(res, i)
            i += 1
        finals = {lr: _nan(cells[repr(lr)]["final_loss_per_seed"]) for lr in grid}
        chosen = _stats.best_lr(finals)
        arms[adam_label(init, adam)] = {
            "lr": chosen,
            "lr_at_grid_edge": chosen in (min(grid), max(grid)),
            "grid": cells,
        }

    def best(label: str) -> np.ndarray:
        a = arms[label]
        return _nan(a["grid"][repr(a["lr"])]["final_loss_per_seed"])

    xs, hs, xa, ha = (best(adam_label(*arm)) for arm in ADAM_ARMS)
    per_lr = {}
    for lr in adam_grids(config)[2]:
        per_lr[repr(lr)] = list(
            gap_closed_ci(
                xs, _nan(arms["xavier_adam"]["grid"][repr(lr)]["final_loss_per_seed"]), hs
            )
        )
    return {
        "eval_steps": np.asarray(res["eval_steps"]).tolist(),
        "arms": arms,
        "gap_closed": list(gap_closed_ci(xs, xa, hs)),
        "gap_closed_per_adam_lr": per_lr,
        "xavier_minus_he_adam": diff(xa, ha, np.median),
        "xavier_minus_he_sgd": diff(xs, hs, np.median),
        "p_xavier_adam_worse_than_he_adam": _stats.rank_test(xa, ha, "greater"),
    }


# --- claims --------------------------------------------------------------------------------


def _arch_key(width: int, depth: int) -> str:
    return f"w{width}_d{depth}"


def _lr(arm: Mapping[str, Any]) -> str:
    """An arm's chosen learning rate, flagged when it is an edge of its grid."""
    return f"{arm['lr']:g}" + (" (grid edge)" if arm["lr_at_grid_edge"] else "")


def claims(measured: dict[str, Any], config: ExperimentConfig) -> list[dict[str, Any]]:
    """The claims against the measurements, each with its rule fixed before the run."""
    out = []
    width, depth = config.architectures[0]
    key = _arch_key(width, depth)
    arch = measured["remedies"][key]
    relu = arch["arms"]["relu"]
    lr_rule = "each arm at its best learning rate (lowest median final loss without divergence)"
    setting = (
        f"width {width}, {depth} hidden layers, digits, SGD {config.remedy_steps} steps, "
        f"{config.seeds} seeds per cell"
    )
    leaky_names = [f"leaky_{a:g}" for a in config.slopes[1:]]
    a = arch["arms"][leaky_names[0]]
    d = a["vs_relu"]["born_dead"]
    others = ", ".join(
        f"slope {arch['arms'][n]['slope']:g}: {arch['arms'][n]['born_dead'][0]:.3g}"
        for n in leaky_names
    )
    out.append(
        _common.claim(
            f"leaky ReLU with the matching He gain lowers the born-dead rate of a width-{width}, "
            f"{depth}-layer net below ReLU's",
            source=f"{SEED_TEXT}, sec. 5.4; {LU}, abstract (born dead)",
            published="leaky ReLU mitigates neuron death",
            measured=d[0],
            interval=d[1:],
            n=a["nets"],
            rule="the 95% bootstrap interval of (leaky - ReLU) born-dead rate lies below 0, "
            f"at the smallest slope ({a['slope']:g})",
            agrees=bool(d[2] < 0),
            note="born dead: identical logits on every training digit at init; "
            f"ReLU {relu['born_dead'][0]:.3g} of {relu['nets']} independent nets, leaky "
            f"({others}), {a['nets']} nets each",
        )
    )
    for name in leaky_names:
        a = arch["arms"][name]
        d = a["vs_relu"]["dead_final"]
        out.append(
            _common.claim(
                f"leaky ReLU (slope {a['slope']:g}) leaves fewer dead units after training "
                "than ReLU",
                source=f"{SEED_TEXT}, sec. 5.4",
                published="leaky ReLU mitigates neuron death",
                measured=d[0],
                interval=None if d[1] is None else d[1:],
                n=config.seeds,
                rule="the 95% bootstrap interval of the difference of mean dead-unit fractions "
                f"(leaky - ReLU) lies below 0, {lr_rule}",
                agrees=None if d[1] is None else bool(d[2] < 0),
                note=f"{setting}; lr leaky {_lr(a)}, ReLU {_lr(relu)}; a unit is dead "
                "when its pre-activation is <= 0 on every training example"
                + ("" if d[1] is not None else "; no interval: an arm diverged"),
            )
        )
    for name in leaky_names:
        a = arch["arms"][name]
        d = a["vs_relu"]["final_loss"]
        out.append(
            _common.claim(
                f"leaky ReLU (slope {a['slope']:g}) trains to a final loss no worse than ReLU's",
                source=f"{SEED_TEXT}, sec. 5.4",
                published="while preserving ReLU's advantages",
                measured=d[0],
                interval=None if d[1] is None else d[1:],
                n=config.seeds,
                rule="non-inferiority: the 95% bootstrap interval of the median final training "
                f"loss difference (leaky - ReLU) lies below +0.05 nats, {lr_rule}",
                agrees=None if d[1] is None else bool(d[2] < 0.05),
                note=f"{setting}; lr leaky {_lr(a)}, ReLU {_lr(relu)}",
            )
        )
    for w, dp in config.architectures:
        trend = measured["remedies"][_arch_key(w, dp)]["arms"]["relu"]["lr_trend"]
        d = trend["dead_high_minus_low"]
        out.append(
            _common.claim(
                f"ReLU units die more at a larger learning rate (width {w}, {dp} layers)",
                source=f"{SEED_TEXT}, sec. 5.3",
                published="dying is exacerbated by large learning rates",
                measured=d[0],
                interval=None if d[1] is None else d[1:],
                n=config.seeds,
                rule="the 95% bootstrap interval of the mean dead-unit fraction after training "
                "at the largest lr of the grid without a diverged seed minus at the smallest lr "
                "lies above 0",
                agrees=None if d[1] is None else bool(d[1] > 0),
                note=f"width {w}, {dp} hidden layers, digits, SGD {config.remedy_steps} steps, "
                f"{config.seeds} seeds per cell; lrs {trend['high_lr']:g} vs {trend['low_lr']:g}"
                + ("" if d[1] is not None else "; no interval: too few finite values"),
            )
        )
    bias = arch["arms"][f"bias_{config.positive_bias:g}"]
    d = bias["vs_relu"]["dead_final"]
    out.append(
        _common.claim(
            f"a positive bias ({config.positive_bias:g}) at init leaves fewer dead units after "
            "training than zero bias",
            source=f"REFERENCE.md, attributing it to {LU}",
            published="positive biases are a remedy for dying ReLU",
            measured=d[0],
            interval=None if d[1] is None else d[1:],
            n=config.seeds,
            rule="the 95% bootstrap interval of the difference of mean dead-unit fractions "
            f"(positive bias - zero bias) lies below 0, {lr_rule}",
            agrees=None,
            note="unverified: the remedy is not in Lu et al.'s abstract and their text could not "
            f"be checked; measured at {setting}; lr bias {_lr(bias)}, ReLU {_lr(relu)}; "
            "below 0 means fewer dead units"
            + (
                ""
                if d[1] is None
                else (
                    " (resolved)"
                    if d[2] < 0
                    else (" (resolved the other way)" if d[1] > 0 else " (not resolved)")
                )
            ),
        )
    )
    out.append(
        _common.claim(
            "randomized asymmetric initialization (RAI) prevents the dying ReLU",
            source=f"{LU}, abstract",
            published="RAI effectively prevents the dying ReLU",
            measured="not run",
            interval=None,
            n=None,
            rule="not tested",
            agrees=None,
            note="left out: the definition could not be checked in the paper (only its abstract "
            "was reachable) or in the authors' code (not found); two third-party "
            "implementations citing the paper were found but are not the source, so no "
            "definition was adopted",
        )
    )
    # He et al.'s matching gain keeps the forward second moment, layer by layer.
    a = arch["arms"][leaky_names[-1]]
    m, lo, hi = a["q_ratio_mean"]
    out.append(
        _common.claim(
            f"Var w = 2/((1 + a^2) n_in) keeps the forward second moment from layer to layer "
            f"(slope {a['slope']:g}, width {width})",
            source=f"{HE}, Sec. 2.2 (section from memory)",
            published="E[q^(l+1) / q^l] = 1",
            measured=m,
            interval=[lo, hi],
            n=a["nets"],
            rule="1 lies inside the 95% Student-t interval of the mean over nets of the "
            "layer-averaged ratio q^(l+1) / q^l",
            agrees=bool(lo <= 1.0 <= hi),
            note="q^l: second moment of layer l's pre-activations over the training digits and "
            f"the units, at init, zero biases; {depth - 1} ratios per net; with ReLU's gain "
            f"instead the ratio would be 1 + a^2 = {1 + a['slope'] ** 2:.3g}",
        )
    )
    adam = measured["adam"]
    g = adam["gap_closed"]
    xs, xa = adam["arms"]["xavier_sgd"], adam["arms"]["xavier_adam"]
    hs = adam["arms"]["he_sgd"]
    setting_b = (
        f"ReLU width {config.adam_width}, {config.adam_depth} layers, digits, "
        f"{config.adam_steps} steps; lrs Xavier-SGD {_lr(xs)}, Xavier-Adam {_lr(xa)}, "
        f"He-SGD {_lr(hs)}"
    )
    out.append(
        _common.claim(
            f"Adam compensates in part for Xavier's poor scaling at depth {config.adam_depth}",
            source=f"{SEED_TEXT}, sec. 9",
            published="adaptive optimizers can compensate for poor scaling to some extent",
            measured=g[0],
            interval=g[1:] if math.isfinite(g[1]) and math.isfinite(g[2]) else None,
            n=config.seeds,
            rule="the gap closed (m_XS - m_XA) / (m_XS - m_HS) of median final losses has a 95% "
            f"bootstrap interval above 0, {lr_rule}",
            agrees=bool(g[1] > 0) if math.isfinite(g[1]) else None,
            note=f"{setting_b}; 1 = Adam from Xavier reaches He with SGD"
            + ("" if math.isfinite(g[1]) else "; no interval: diverged seeds left it undefined"),
        )
    )
    d = adam["xavier_minus_he_adam"]
    out.append(
        _common.claim(
            f"with Adam, Xavier still ends above He at depth {config.adam_depth}",
            source=f"{SEED_TEXT}, sec. 9",
            published="[adaptive optimizers] cannot fully overcome pathological initial conditions",
            measured=d[0],
            interval=None if d[1] is None else d[1:],
            n=config.seeds,
            rule="the 95% bootstrap interval of the median final loss difference "
            f"(Xavier-Adam - He-Adam) lies above 0, {lr_rule}",
            agrees=None if d[1] is None else bool(d[1] > 0),
            note=f"{setting_b}; He-Adam lr {_lr(adam['arms']['he_adam'])}; one-sided rank-test "
            f"p = {adam['p_xavier_adam_worse_than_he_adam']:.2g}",
        )
    )
    return out


# --- figures -------------------------------------------------------------------------------

LABELS = {
    "relu": "ReLU",
    "xavier_sgd": "Xavier SGD",
    "he_sgd": "He SGD",
    "xavier_adam": "Xavier Adam",
    "he_adam": "He Adam",
}


def _label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    if name.startswith("leaky_"):
        return f"leaky {name[6:]}"
    if name.startswith("bias_"):
        return f"ReLU, bias {name[5:]}"
    return name.replace("_", " ")


def _lr_axis(ax: Any, lrs: Sequence[float], label: str) -> None:
    """A log learning-rate axis ticked at the grid's values."""
    ax.set_xscale("log")
    ax.set_xticks(list(lrs), [f"{v:g}" for v in lrs])
    ax.minorticks_off()
    ax.set_xlabel(label)


def plot_remedies(measured: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Per architecture: dead-unit fraction after training and median final loss vs lr."""
    plt = _common.pyplot()
    archs = list(measured["remedies"])
    fig, axes = plt.subplots(
        2, len(archs), figsize=(4.6 * len(archs), 6.4), squeeze=False, layout="constrained"
    )
    lrs = np.asarray(config.remedy_lrs)
    for col, key in enumerate(archs):
        arms = measured["remedies"][key]["arms"]
        top, bottom = axes[0, col], axes[1, col]
        for k, (name, a) in enumerate(arms.items()):
            dead = np.array(
                [
                    v[0] if v[0] is not None else np.nan
                    for v in a["lr_trend"]["dead_per_lr"].values()
                ]
            )
            lo = np.array(
                [
                    v[1] if v[1] is not None else np.nan
                    for v in a["lr_trend"]["dead_per_lr"].values()
                ]
            )
            hi = np.array(
                [
                    v[2] if v[2] is not None else np.nan
                    for v in a["lr_trend"]["dead_per_lr"].values()
                ]
            )
            shift = lrs * 1.06 ** (k - 2)
            top.errorbar(
                shift,
                dead,
                yerr=[dead - lo, hi - dead],
                fmt="o-",
                ms=3,
                color=f"C{k}",
                label=_label(name),
                capsize=2,
            )
            init = np.nanmean(_nan(a["grid"][repr(config.remedy_lrs[0])]["dead_init_per_seed"]))
            top.axhline(init, color=f"C{k}", lw=0.6, ls=":")
            med = [
                a["grid"][repr(lr)]["final_loss"]["median"]
                if a["grid"][repr(lr)]["diverged"] == 0
                else np.nan
                for lr in config.remedy_lrs
            ]
            bottom.plot(shift, med, "o-", ms=3, color=f"C{k}", label=_label(name))
            bottom.scatter(
                [a["lr"] * 1.06 ** (k - 2)],
                [a["grid"][repr(a["lr"])]["final_loss"]["median"]],
                s=70,
                facecolors="none",
                edgecolors="k",
            )
        width, depth = key[1:].split("_d")
        top.set_title(f"width {width}, {depth} layers (dotted: at init)", fontsize=9)
        top.set_ylabel("dead-unit fraction after training")
        bottom.set_ylabel(f"median training loss after {config.remedy_steps} steps")
        bottom.axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":")
        bottom.set_title("ring: chosen lr; dotted: ln 10; no point: a seed diverged", fontsize=8)
        for ax in (top, bottom):
            _lr_axis(ax, config.remedy_lrs, "SGD learning rate")
        top.legend(fontsize=7)
    _common.save_and_close(fig, path)


def plot_adam(measured: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Part B: median final loss vs lr per (init, optimizer); loss curves at the best lrs."""
    plt = _common.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained")
    adam = measured["adam"]
    steps = adam["eval_steps"]
    for k, (name, a) in enumerate(adam["arms"].items()):
        lrs = [float(v) for v in a["grid"]]
        med = [
            c["final_loss"]["median"] if c["diverged"] == 0 else np.nan for c in a["grid"].values()
        ]
        ls = "--" if name.endswith("adam") else "-"
        left.plot(lrs, med, "o" + ls, ms=3, color=f"C{k}", label=_label(name))
        right.plot(
            steps,
            _nan(a["grid"][repr(a["lr"])]["loss_curve_median"]),
            ls,
            color=f"C{k}",
            label=f"{_label(name)}, lr {a['lr']:g}",
        )
    left.set_yscale("log")
    _lr_axis(left, sorted({lr for g in adam_grids(config) for lr in g}), "learning rate")
    left.set_ylabel(f"median training loss after {config.adam_steps} steps")
    left.axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":")
    right.set_yscale("log")
    right.set_xlabel("step")
    right.set_ylabel("median training loss")
    right.axhline(CHANCE_LOSS, color="gray", lw=0.8, ls=":")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    g = adam["gap_closed"]
    fig.suptitle(
        f"ReLU, width {config.adam_width}, {config.adam_depth} layers: Adam closes "
        f"{g[0]:.2f} [{g[1]:.2f}, {g[2]:.2f}] of the Xavier-He gap",
        fontsize=9,
    )
    _common.save_and_close(fig, path)


# --- main ------------------------------------------------------------------------------


def run_remedies(config: ExperimentConfig, data: Dataset) -> dict[str, Any]:
    """Part A: per architecture, one engine call for every arm, lr and seed, and the
    born-dead Monte Carlo at init."""
    arms = remedy_arms(config)
    per_arch, init_mc = {}, {}
    for width, depth in config.architectures:
        sizes = (data.d_in, *([width] * depth), data.d_out)
        key = _arch_key(width, depth)
        cells = [(arm, lr, False) for arm in arms for lr in config.remedy_lrs]
        per_arch[key] = train_cells(
            cells,
            sizes,
            data,
            steps=config.remedy_steps,
            eval_every=config.remedy_eval_every,
            config=config,
        )
        root = jax.random.fold_in(jax.random.key(config.seed + 1), width * 1000 + depth)
        init_mc[key] = {
            arm.name: init_death(
                jax.random.fold_in(root, a), sizes, arm, data.x_train, config.init_nets
            )
            for a, arm in enumerate(arms)
        }
    out = summarize_remedies(per_arch, init_mc, config)
    steps = np.asarray(next(iter(per_arch.values()))["eval_steps"]).tolist()
    return {"eval_steps": steps, **out}


def run_adam(config: ExperimentConfig, data: Dataset) -> dict[str, Any]:
    """Part B: every (init, optimizer, lr) and seed in one engine call."""
    sizes = (data.d_in, *([config.adam_width] * config.adam_depth), data.d_out)
    res = train_cells(
        adam_cells(config),
        sizes,
        data,
        steps=config.adam_steps,
        eval_every=config.adam_eval_every,
        config=config,
    )
    return summarize_adam(res, config)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    config = get_config(args.quick)
    data = load_digits()
    remedies = run_remedies(config, data)
    measured = {"remedies": {k: v for k, v in remedies.items() if k != "eval_steps"}}
    measured["remedy_eval_steps"] = remedies["eval_steps"]
    measured["adam"] = run_adam(config, data)
    figures = {
        "vs_lr.png": lambda p: plot_remedies(measured, config, p),
        "adam.png": lambda p: plot_adam(measured, config, p),
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


def _ci(v: Sequence[Any] | None, f: Callable[..., str]) -> str:
    """``value [low, high]`` of a ``[value, low, high]`` triple (``n/a`` parts as such)."""
    if v is None or v[0] is None:
        return "n/a"
    if v[1] is None:
        return f(v[0])
    return f"{f(v[0])} [{f(v[1])}, {f(v[2])}]"


def findings(result: dict[str, Any]) -> str:
    """The section's prose and tables, every number formatted from ``result``."""
    f = _findings.fmt
    config, measured = result["config"], result["measured"]
    remedies, adam = measured["remedies"], measured["adam"]
    lrs = config["remedy_lrs"]
    lines = [
        "**Setting, part A (remedies).** Narrow deep MLPs on the digits: 64 inputs, then "
        + " and ".join(f"{d} hidden layers of width {w}" for w, d in config["architectures"])
        + " (one architecture at a time; the 64-wide input layer is one of the hidden "
        "layers, the others are square, where the dying happens), 10 outputs. Arms: ReLU "
        "with He weights (`Var w = 2 / n_in`), leaky ReLU at slopes "
        + ", ".join(f(a) for a in config["slopes"][1:])
        + " with the matching He gain `Var w = 2 / ((1 + a^2) n_in)` (He et al. 2015), and "
        f"ReLU with He weights and every hidden bias set to {f(config['positive_bias'])}; "
        "other biases zero. Plain SGD with minibatches of "
        f"{config['batch_size']} for {config['remedy_steps']} steps at every learning rate of "
        f"{', '.join(f(v) for v in lrs)}, {config['seeds']} seeds per (arm, learning rate); "
        "every arm, learning rate and seed of one architecture is one compiled program "
        "(`jaxstab.engine.train`, slope, bias, weight scales and learning rate traced), and "
        "the arms share their seeds' draws (a leaky net's weights are the ReLU net's times "
        "`1 / sqrt(1 + a^2)`). A unit is *dead* when its pre-activation is `<= 0` on all "
        "1347 training digits (for leaky ReLU: stuck in the negative regime, where it still "
        "passes a gradient of slope `a`); a net is *born dead* when its logits are the same "
        f"for every training digit at init, measured on {config['init_nets']} independent "
        "nets per arm. The learning rate of each arm is the one with the lowest median "
        "final training loss among those at which no seed diverged, fixed before the run.",
        "",
        "| width x depth | arm | born dead at init [95% CI] | dead units at init | lr | "
        "dead units after training [95% CI] | median final loss [95% CI] | diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, arch in remedies.items():
        shape = key[1:].replace("_d", " x ")
        for name, a in arch["arms"].items():
            cell = a["grid"][repr(a["lr"])]
            loss = cell["final_loss"]
            loss_ci = [loss["median"], *(loss["ci"] or [None, None])]
            dead = a["lr_trend"]["dead_per_lr"][repr(a["lr"])]
            edge = " (edge)" if a["lr_at_grid_edge"] else ""
            lines.append(
                f"| {shape} | {_label(name)} | {_ci(a['born_dead'], f)} | "
                f"{f(a['dead_units_init'][0])} | {f(a['lr'])}{edge} | {_ci(dead, f)} | "
                f"{_ci(loss_ci, f)} | {cell['diverged']}/{cell['n']} |"
            )
    lines += [
        "",
        "Dead-unit fraction after training (mean over seeds) at each learning rate; where "
        "some seeds diverged their count follows (the fraction is over the other seeds):",
        "",
        "| width x depth | arm | " + " | ".join(f"lr {f(v)}" for v in lrs) + " |",
        "|---|---|" + "---|" * len(lrs),
    ]
    for key, arch in remedies.items():
        shape = key[1:].replace("_d", " x ")
        for name, a in arch["arms"].items():
            row = []
            for lr in lrs:
                m = a["lr_trend"]["dead_per_lr"][repr(lr)][0]
                div = a["grid"][repr(lr)]["diverged"]
                row.append(("n/a" if m is None else f(m)) + (f" ({div} div.)" if div else ""))
            lines.append(f"| {shape} | {_label(name)} | " + " | ".join(row) + " |")
    first = next(iter(remedies))
    arch = remedies[first]
    relu = arch["arms"]["relu"]
    leaky_names = [n for n in arch["arms"] if n.startswith("leaky_")]
    bias_name = next(n for n in arch["arms"] if n.startswith("bias_"))
    lines += [
        "",
        f"**Part A, what the numbers say** (width x depth {first[1:].replace('_d', ' x ')}, "
        "the claims' architecture). At init "
        f"{f(relu['born_dead'][0])} of the ReLU nets are born dead against "
        + ", ".join(f"{f(arch['arms'][n]['born_dead'][0])}" for n in leaky_names)
        + " for the leaky slopes (their units are never exactly 0 in exact arithmetic) and "
        f"{f(arch['arms'][bias_name]['born_dead'][0])} with the positive bias (a collapsed "
        "layer then passes only the bias, the same for every input). After training at each "
        "arm's best learning rate, leaky minus ReLU dead-unit fraction: "
        + "; ".join(
            f"slope {f(arch['arms'][n]['slope'])}: "
            f"{_ci(arch['arms'][n]['vs_relu']['dead_final'], f)}"
            for n in leaky_names
        )
        + "; positive bias minus ReLU: "
        f"{_ci(arch['arms'][bias_name]['vs_relu']['dead_final'], f)}. Median final loss, "
        "leaky minus ReLU: "
        + "; ".join(
            f"slope {f(arch['arms'][n]['slope'])}: "
            f"{_ci(arch['arms'][n]['vs_relu']['final_loss'], f)}"
            for n in leaky_names
        )
        + "; positive bias minus ReLU: "
        f"{_ci(arch['arms'][bias_name]['vs_relu']['final_loss'], f)}. The learning-rate "
        "trend of ReLU's dead fraction (largest learning rate without a diverged seed minus "
        "the smallest): "
        + "; ".join(
            f"{k[1:].replace('_d', ' x ')}: lr {f(v['arms']['relu']['lr_trend']['high_lr'])} vs "
            f"{f(v['arms']['relu']['lr_trend']['low_lr'])}, "
            f"{_ci(v['arms']['relu']['lr_trend']['dead_high_minus_low'], f)}"
            for k, v in remedies.items()
        )
        + ". With the matching gain the layer-to-layer second-moment ratio at init averages "
        + ", ".join(
            f"{_ci(arch['arms'][n]['q_ratio_mean'], f)} (slope {f(arch['arms'][n]['slope'])})"
            for n in leaky_names
        )
        + ", as He et al.'s condition predicts (1).",
    ]
    grids = dict(zip([adam_label(*a) for a in ADAM_ARMS], config["adam_grids"]))
    lines += [
        "",
        f"**Setting, part B (Adam from a bad init).** ReLU MLPs of width {config['adam_width']} "
        f"and {config['adam_depth']} hidden layers on the digits, Xavier-normal weights "
        "(`Var w = 2 / (n_in + n_out)`, the signal halves at every layer) or He-normal, zero "
        f"biases, minibatches of {config['batch_size']} for {config['adam_steps']} steps, "
        f"{config['seeds']} seeds per cell, with SGD or Adam (optax defaults, no momentum on "
        "SGD), each (init, optimizer) over its own learning-rate grid ("
        + "; ".join(f"{_label(k)}: {', '.join(f(v) for v in g)}" for k, g in grids.items())
        + "), all in one compiled program (the optimizer is a traced switch). Each arm's "
        "learning rate by the same rule as part A. The gap closed is "
        "`(m_XS - m_XA) / (m_XS - m_HS)` of median final training losses (XS: Xavier with "
        "SGD, XA: Xavier with Adam, HS: He with SGD), with a percentile bootstrap interval "
        "over seeds (arms resampled independently).",
        "",
        "| init, optimizer | lr | median final loss [95% CI] | diverged | test accuracy |",
        "|---|---|---|---|---|",
    ]
    for label, a in adam["arms"].items():
        for lr in grids[label]:
            cell = a["grid"][repr(lr)]
            loss = cell["final_loss"]
            loss_ci = [loss["median"], *(loss["ci"] or [None, None])]
            best = "**" if lr == a["lr"] else ""
            lines.append(
                f"| {_label(label)} | {best}{f(lr)}{best} | {_ci(loss_ci, f)} | "
                f"{cell['diverged']}/{cell['n']} | {f(cell['test_accuracy_median'])} |"
            )
    g = adam["gap_closed"]
    per_lr = adam["gap_closed_per_adam_lr"]
    half = [lr for lr, v in per_lr.items() if v[1] is not None and v[1] > 0.5]
    edges = [_label(k) for k, a in adam["arms"].items() if a["lr_at_grid_edge"]]
    lines += [
        "",
        f"The chosen learning rate of each arm is in bold. Adam from Xavier closes "
        f"{_ci(g, f)} of the gap between Xavier and He with SGD. Per learning rate of "
        "Adam (against the other two arms at their best): "
        + "; ".join(f"lr {f(float(lr))}: {_ci(v, f)}" for lr, v in per_lr.items())
        + ". "
        + (
            "Adam closes more than half of the gap (interval above 0.5) at lr "
            + ", ".join(f(float(v)) for v in half)
            + ". "
            if half
            else "At no learning rate of the grid is the gap closed above 0.5 with confidence. "
        )
        + "With Adam for both, Xavier minus He median final loss is "
        f"{_ci(adam['xavier_minus_he_adam'], f)} (one-sided rank test p = "
        f"{f(adam['p_xavier_adam_worse_than_he_adam'], 2)}); with SGD for both it is "
        f"{_ci(adam['xavier_minus_he_sgd'], f)}."
        + (
            " The rule chose an edge of the grid for " + ", ".join(edges) + "."
            if edges
            else " Every chosen learning rate is inside its grid."
        ),
    ]
    disagree = [c["claim"] for c in result["claims"] if c["agrees"] is False]
    unverified = [c["claim"] for c in result["claims"] if c["agrees"] is None]
    causes = []
    for key, a in remedies.items():
        trend = a["arms"]["relu"]["lr_trend"]
        d = trend["dead_high_minus_low"]
        if d[1] is not None and d[1] <= 0:
            dead = trend["dead_per_lr"]
            causes.append(
                f"At width x depth {key[1:].replace('_d', ' x ')} ReLU's mean dead fraction "
                f"goes from {f(dead[repr(trend['low_lr'])][0])} at lr {f(trend['low_lr'])} "
                f"to {f(dead[repr(trend['high_lr'])][0])} at lr {f(trend['high_lr'])}, an "
                f"increase of {_ci(d, f)} that {config['seeds']} seeds do not resolve. A "
                f"likely cause, untested: {f(a['arms']['relu']['born_dead'][0])} of these "
                "ReLU nets are born dead, and the units of their collapsed layers are dead at "
                "every learning rate, so the learning rate moves only the rest."
            )
    d = adam["xavier_minus_he_adam"]
    if d[1] is not None and d[1] <= 0:
        xa, ha = adam["arms"]["xavier_adam"], adam["arms"]["he_adam"]
        causes.append(
            "With Adam, Xavier's median final loss is "
            f"{f(xa['grid'][repr(xa['lr'])]['final_loss']['median'])} against He's "
            f"{f(ha['grid'][repr(ha['lr'])]['final_loss']['median'])}"
            f" (difference {_ci(d, f)}): Adam from Xavier lags He early (the right panel of "
            "the figure) but the difference left after "
            f"{config['adam_steps']} steps is not resolved with {config['seeds']} seeds. A "
            "likely reason, untested: Adam divides each parameter's step by its gradient's "
            "running scale, so the small gradients of Xavier's shrunken signal get steps as "
            "large as He's, undoing most of the bad scaling."
        )
    stuck = [
        f"{_label(n)} ({k[1:].replace('_d', ' x ')})"
        for k, a in remedies.items()
        for n, arm in a["arms"].items()
        if (arm["grid"][repr(arm["lr"])]["final_loss"]["median"] or 0) > CHANCE_LOSS - 0.05
    ]
    edges = [
        f"{_label(n)} ({k[1:].replace('_d', ' x ')}, lr {f(arm['lr'])})"
        for k, a in remedies.items()
        for n, arm in a["arms"].items()
        if arm["lr_at_grid_edge"]
    ]
    lines += [
        "",
        "**What does not agree.** "
        + ("; ".join(disagree) + ". " if disagree else "Every checked claim agrees. ")
        + " ".join(causes)
        + (
            " Median final loss still within 0.05 of the chance loss ln 10 at the chosen "
            "learning rate: " + ", ".join(stuck) + "; where both arms of a comparison are "
            "there, its no-worse verdict says little."
            if stuck
            else ""
        )
        + (
            " The learning-rate rule chose an edge of the grid for " + ", ".join(edges) + "."
            if edges
            else ""
        )
        + " **Unverified:** "
        + "; ".join(unverified)
        + ". RAI (Lu et al. 2019) is left out: its definition could not be checked in the "
        "paper or the authors' code. Limits: one small data set, plain SGD (no momentum), "
        "a fixed step budget, MLPs rather than the papers' networks; the dead-unit "
        "fractions include the units of born-dead nets, whose collapsed layers never "
        "recover under ReLU.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
