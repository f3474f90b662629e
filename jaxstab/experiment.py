"""jaxstab's own MLP classifier as one more model on the engine (:mod:`jaxstab.engine`).

A :class:`Config` is one point of a sweep. It is the one typed description of
a run's settings: each field's metadata says whether it is ``static`` (selects
the compiled program), ``traced`` (a value on the engine's runs axis, so any
number of them share one program) or ``fixed`` (static and one value per sweep,
kept on resume); ``seeds``/``first_seed`` choose the seeds. The sweep's grid,
the command line's options, the ``results.csv`` columns and the program key
are all derived from these fields (:func:`fields`).

:func:`run_many` groups configs by :attr:`Config.program_key` and trains each
group with :func:`jaxstab.engine.train`, so a run's numbers are a function of
its config and seed alone, whatever the device count or the other configs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstab import _checks as checks
from jaxstab import diagnostics
from jaxstab._activations import ACTIVATIONS
from jaxstab._clipping import clip_by_global_norm
from jaxstab._initializers import INITIALIZERS
from jaxstab._losses import accuracy, softmax_cross_entropy
from jaxstab._mlp import apply_mlp, layer_groups, split_stacks
from jaxstab._typing import Array
from jaxstab.data import Dataset, get_dataset
from jaxstab.engine import grid, train

OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "warmup_cosine")
DIAGNOSTIC_BATCH = 256  # training examples on which per-layer statistics are measured
EVAL_LIMIT = 4096  # at most this many examples per split in each evaluation

# Each preset of jaxstab.INITIALIZERS as variance_scaling(scale, mode, distribution)
# (orthogonal: gain). The distribution selects the program; scale and mode become
# per-layer traced scales, so xavier_normal and he_normal runs share one program.
INIT_FORMS: dict[str, tuple[str, float, str]] = {
    "xavier_uniform": ("uniform", 1.0, "fan_avg"),
    "xavier_normal": ("normal", 1.0, "fan_avg"),
    "glorot_uniform": ("uniform", 1.0, "fan_avg"),
    "glorot_normal": ("normal", 1.0, "fan_avg"),
    "he_normal": ("normal", 2.0, "fan_in"),
    "he_uniform": ("uniform", 2.0, "fan_in"),
    "kaiming_normal": ("normal", 2.0, "fan_in"),
    "kaiming_uniform": ("uniform", 2.0, "fan_in"),
    "lecun_normal": ("normal", 1.0, "fan_in"),
    "lecun_uniform": ("uniform", 1.0, "fan_in"),
    "torch_linear": ("uniform", 1.0 / 3.0, "fan_in"),
    "orthogonal": ("orthogonal", 1.0, "gain"),
}

__all__ = [
    "INIT_FORMS",
    "OPTIMIZERS",
    "SCHEDULES",
    "Config",
    "Result",
    "fields",
    "group_configs",
    "run",
    "run_many",
]


def _setting(default: Any, role: str, help: str, plural: str | None = None, **extra: Any) -> Any:
    """A Config field with its role and help text (see the module docstring)."""
    return dataclasses.field(
        default=default, metadata={"role": role, "help": help, "plural": plural, **extra}
    )


def fields(role: str | None = None) -> list[dataclasses.Field[Any]]:
    """The settings of :class:`Config`, optionally those of one ``role``.

    Roles: ``"static"`` (a sweep axis that selects the program), ``"traced"``
    (a sweep axis on the runs axis), ``"fixed"`` (one value per sweep) and
    ``"seeds"``. Each field's ``metadata`` holds ``help``, ``plural`` (the
    sweep axis's name) and, for names, ``choices``.
    """
    out = dataclasses.fields(Config)
    return [f for f in out if role is None or f.metadata["role"] == role]


@dataclasses.dataclass(frozen=True)
class Config:
    """One point of a sweep, trained for ``seeds`` seeds.

    Attributes:
      depth: number of hidden layers.
      width: units per hidden layer.
      activation: one of :data:`jaxstab.ACTIVATIONS`.
      optimizer: ``"sgd"``, ``"momentum"`` (heavy ball) or ``"adam"``.
      schedule: ``"constant"`` or ``"warmup_cosine"`` learning rate.
      init: a weight initializer name from :data:`jaxstab.INITIALIZERS`.
      init_gain: multiplies the initializer's standard deviation.
      bias_var: variance of the Gaussian bias init (0: zeros).
      lr: (peak) learning rate.
      clip: ``None``, or the global-norm threshold of
        :func:`jaxstab.clip_by_global_norm`, chained before the optimizer.
      weight_decay: decoupled weight decay (AdamW; SGDW), per unit learning rate.
      momentum: the momentum of ``"momentum"`` (ignored by the others).
      warmup: fraction of ``steps`` of linear warmup (``"warmup_cosine"`` only).
      batch_size: examples per step, drawn with replacement.
      steps: training steps.
      eval_every: steps between evaluations (divides ``steps``).
      dataset: a name of :data:`jaxstab.data.DATASETS` or an ``.npz`` path.
      seed: base PRNG seed.
      seeds: number of seeds.
      first_seed: the first seed index; seed ``i`` uses ``fold_in(key(seed), i)``,
        so configs that differ only in traced settings share initial draws.
    """

    depth: int = _setting(8, "static", "hidden layers", "depths")
    width: int = _setting(128, "static", "units per hidden layer", "widths")
    activation: str = _setting(
        "relu", "static", "hidden activation", "activations", choices=tuple(ACTIVATIONS)
    )
    optimizer: str = _setting("sgd", "static", "optimizer", "optimizers", choices=OPTIMIZERS)
    schedule: str = _setting(
        "constant", "static", "learning-rate schedule", "schedules", choices=SCHEDULES
    )
    init: str = _setting(
        "he_normal", "traced", "weight initializer", "inits", choices=tuple(INITIALIZERS)
    )
    init_gain: float = _setting(1.0, "traced", "init standard-deviation multiplier", "init_gains")
    bias_var: float = _setting(0.0, "traced", "variance of the bias init", "bias_vars")
    lr: float = _setting(0.1, "traced", "(peak) learning rate", "lrs")
    clip: float | None = _setting(
        None, "traced", "global-norm clip threshold, none for no clipping", "clips"
    )
    weight_decay: float = _setting(0.0, "traced", "decoupled weight decay", "weight_decays")
    momentum: float = _setting(0.9, "traced", "momentum of the momentum optimizer", "momenta")
    warmup: float = _setting(0.0, "traced", "warmup fraction of warmup_cosine", "warmups")
    batch_size: int = _setting(128, "fixed", "examples per step")
    steps: int = _setting(500, "fixed", "training steps")
    eval_every: int = _setting(100, "fixed", "steps between evaluations")
    dataset: str = _setting("digits", "fixed", "digits, teacher, mixture or a .npz path")
    seed: int = _setting(0, "fixed", "base PRNG seed")
    seeds: int = _setting(8, "seeds", "seeds per configuration")
    first_seed: int = _setting(0, "seeds", "index of the first seed")

    def __post_init__(self) -> None:
        # Every check is one of jaxstab._checks, the library's one validation module.
        for f in fields():
            choices = f.metadata.get("choices")
            if choices is not None:
                checks.one_of(f.name, getattr(self, f.name), choices)
        for name in ("depth", "width", "batch_size", "steps", "eval_every", "seeds"):
            checks.positive_int(name, getattr(self, name))
        for name in ("seed", "first_seed"):
            checks.integer(name, getattr(self, name), minimum=0, maximum=2**31 - 1)
        checks.positive_number("lr", self.lr)
        checks.positive_number("init_gain", self.init_gain)
        if self.clip is not None:
            checks.positive_number("clip", self.clip)
        for name in ("bias_var", "weight_decay"):
            checks.nonnegative_number(name, getattr(self, name))
        checks.number("momentum", self.momentum, lo=0.0, hi=1.0, hi_open=True)
        checks.probability("warmup", self.warmup)
        if self.steps % self.eval_every:
            raise ValueError(f"eval_every={self.eval_every} must divide steps={self.steps}")

    @property
    def program_key(self) -> tuple[Any, ...]:
        """What selects the compiled program, as ``(name, value)`` pairs.

        The static and fixed settings (but the base seed, an input of the program)
        and the initializer's distribution; configs equal in it share one program.
        """
        static = tuple(
            (f.name, getattr(self, f.name))
            for f in fields()
            if f.metadata["role"] in ("static", "fixed") and f.name != "seed"
        )
        return (*static, ("distribution", INIT_FORMS[self.init][0]))

    def point(self) -> dict[str, Any]:
        """The settings without the seeds: what a run's result depends on, with its seed."""
        return {f.name: getattr(self, f.name) for f in fields() if f.metadata["role"] != "seeds"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def name(self) -> str:
        """A readable identifier that cannot collide: exact values go into a digest.

        Two configs have the same name only if every setting but the seeds is
        equal (``repr`` of a float is exact, so 0.1 and 0.1000001 differ).
        """
        point = self.point()
        digest = hashlib.sha256(
            json.dumps({k: repr(v) for k, v in point.items()}, sort_keys=True).encode()
        ).hexdigest()[:12]
        return (
            f"d{self.depth}-w{self.width}-{self.activation}-{self.init}-{self.optimizer}-{digest}"
        )


class Result(NamedTuple):
    """Everything measured for one :class:`Config`; arrays have a leading seeds axis."""

    config: Config
    train_loss: np.ndarray  # [seeds, steps] minibatch loss (NaN from divergence on).
    grad_norm: np.ndarray  # [seeds, steps] global gradient norm before clipping (NaN likewise).
    clipped: np.ndarray  # [seeds, steps] bool: the clip transform rescaled the step.
    eval_steps: np.ndarray  # [evals] steps at which evaluations happened (0 = init).
    eval_train_loss: np.ndarray  # [seeds, evals] loss on the training set.
    test_loss: np.ndarray  # [seeds, evals]
    test_accuracy: np.ndarray  # [seeds, evals]
    diverged: np.ndarray  # [seeds] bool: the loss or gradient turned non-finite.
    diverged_step: np.ndarray  # [seeds] int: the first non-finite step, -1 if none.
    layer_stats: dict[str, np.ndarray]  # "{init,final}/{field}" -> [seeds, depth]; {} if off.


# --- the MLP task: init, loss, optimizer, evaluate, inspect over traced hparams ---


def layer_scales(init: str, gain: float, sizes: Sequence[int]) -> np.ndarray:
    """Per layer (hidden layers, then the output layer): the traced scale of its weights.

    Normal: the standard deviation; uniform: the bound ``sqrt(3 var)``;
    orthogonal: the gain. Computed in float64 and rounded once to float32, as
    :func:`jaxstab.variance_scaling` does, so the draws equal the preset's.
    """
    distribution, scale, mode = INIT_FORMS[init]
    out = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        if distribution == "orthogonal":
            out.append(gain)
            continue
        fan = {"fan_in": n_in, "fan_out": n_out, "fan_avg": (n_in + n_out) / 2}[mode]
        variance = gain**2 * scale / max(fan, 1.0)
        out.append(math.sqrt(3.0 * variance) if distribution == "uniform" else math.sqrt(variance))
    return np.asarray(out, np.float32)


def _sample(distribution: str, key: Array, shape: tuple[int, int], scale: Array) -> Array:
    if distribution == "normal":
        return scale * jax.random.normal(key, shape, jnp.float32)
    if distribution == "uniform":
        return jax.random.uniform(key, shape, jnp.float32, -scale, scale)
    return scale * jax.nn.initializers.orthogonal()(key, shape, jnp.float32)


def _init_fn(sizes: tuple[int, ...], distribution: str) -> Callable[[Array, Any], Any]:
    """:func:`jaxstab.init_mlp`'s key layout with traced per-layer scales and bias std."""

    def init(key: Array, hp: Any) -> Any:
        keys = jax.random.split(key, len(sizes) - 1)

        def layer(k: Array, n_in: int, n_out: int, scale: Array) -> dict[str, Array]:
            k_w, k_b = jax.random.split(k)
            w = _sample(distribution, k_w, (n_in, n_out), scale)
            b = jnp.sqrt(hp["bias_var"]) * jax.random.normal(k_b, (n_out,), jnp.float32)
            return {"w": w, "b": jnp.where(hp["bias_var"] > 0, b, 0.0)}

        hidden, start = [], 0
        for count, n_in, n_out in layer_groups(sizes):
            sl = slice(start, start + count)
            hidden.append(
                jax.vmap(lambda k, s, a=n_in, b=n_out: layer(k, a, b, s))(
                    keys[sl], hp["weight_scale"][sl]
                )
            )
            start += count
        output = layer(keys[-1], sizes[-2], sizes[-1], hp["weight_scale"][-1])
        # Short stacks train as separate per-layer buffers (faster under vmap; see
        # split_stacks); long ones stay scanned so compile time stays flat in depth.
        return split_stacks({"hidden": hidden, "output": output})

    return init


def _optimizer_fn(kind: str, schedule: str, steps: int) -> Callable[[Any], Any]:
    def optimizer(hp: Any) -> optax.GradientTransformation:
        if schedule == "constant":
            lr: Any = hp["lr"]
        else:
            warmup = hp["warmup"] * steps

            def lr(count: Array) -> Array:
                t = count.astype(jnp.float32)
                ramp = (t + 1.0) / jnp.maximum(warmup, 1.0)
                progress = jnp.clip((t - warmup) / jnp.maximum(steps - warmup, 1.0), 0.0, 1.0)
                cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
                return hp["lr"] * jnp.where(t < warmup, ramp, cosine)

        base = {
            "sgd": optax.identity(),
            "momentum": optax.trace(decay=hp["momentum"]),
            "adam": optax.scale_by_adam(),
        }[kind]
        # clip = inf means no clipping. "propagate" lets a non-finite gradient through
        # so divergence is seen. The decay is decoupled (added after the adaptive
        # scaling, then multiplied by the learning rate, as AdamW does); 0 adds +0.
        return optax.chain(
            clip_by_global_norm(hp["clip"], nonfinite="propagate"),
            base,
            optax.add_decayed_weights(hp["weight_decay"]),
            optax.scale_by_learning_rate(lr),
        )

    return optimizer


def _loss_fn(activation: str) -> Callable[..., Array]:
    def loss(params: Any, batch: tuple[Array, Array], hp: Any) -> Array:
        del hp
        return jnp.mean(softmax_cross_entropy(apply_mlp(params, batch[0], activation), batch[1]))

    return loss


def _evaluate_fn(activation: str) -> Callable[..., dict[str, Array]]:
    def evaluate(params: Any, data: dict[str, Array], hp: Any) -> dict[str, Array]:
        del hp
        out = {}
        for split, prefix in (("eval", "eval_train"), ("test", "test")):
            logits = apply_mlp(params, data[f"x_{split}"], activation)
            out[f"{prefix}_loss"] = jnp.mean(softmax_cross_entropy(logits, data[f"y_{split}"]))
            if split == "test":
                out["test_accuracy"] = accuracy(logits, data["y_test"])
        return out

    return evaluate


def _inspect_fn(activation: str) -> Callable[..., dict[str, Array]]:
    def inspect(params: Any, data: dict[str, Array], hp: Any) -> dict[str, Array]:
        del hp
        fwd, bwd = diagnostics.layer_stats(params, data["x_diag"], data["y_diag"], activation)
        out = fwd._asdict()
        out.update({k: v for k, v in bwd._asdict().items() if k != "output_grad_norm"})
        return out

    return inspect


class _Task(NamedTuple):
    init: Callable[..., Any]
    loss: Callable[..., Any]
    optimizer: Callable[..., Any]
    evaluate: Callable[..., Any]
    inspect: Callable[..., Any]


@functools.lru_cache(maxsize=1)
def _source_hash() -> str:
    """A hash of jaxstab's own source: the code behind every :func:`_task` callable."""
    from pathlib import Path

    h = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _program_id(program_key: tuple[Any, ...], sizes: tuple[int, ...]) -> str:
    """The engine's ``program_id`` of :func:`_task`'s callables: their key and code
    (jaxstab's source, and optax's version for the optimizers)."""
    return (
        f"jaxstab.experiment {_source_hash()} optax {optax.__version__} {program_key!r} {sizes!r}"
    )


@functools.lru_cache(maxsize=64)
def _task(program_key: tuple[Any, ...], sizes: tuple[int, ...]) -> _Task:
    """The callables of one program key: the same objects each time, so one compile."""
    spec = dict(program_key)
    return _Task(
        init=_init_fn(sizes, spec["distribution"]),
        loss=_loss_fn(spec["activation"]),
        optimizer=_optimizer_fn(spec["optimizer"], spec["schedule"], spec["steps"]),
        evaluate=_evaluate_fn(spec["activation"]),
        inspect=_inspect_fn(spec["activation"]),
    )


def _data_arrays(data: Dataset) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    n_diag = min(DIAGNOSTIC_BATCH, data.x_train.shape[0])
    eval_data = {
        "x_eval": data.x_train[:EVAL_LIMIT],
        "y_eval": data.y_train[:EVAL_LIMIT],
        "x_test": data.x_test[:EVAL_LIMIT],
        "y_test": data.y_test[:EVAL_LIMIT],
        "x_diag": data.x_train[:n_diag],
        "y_diag": data.y_train[:n_diag],
    }
    return (data.x_train, data.y_train), eval_data


def config_runs(config: Config, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """The engine's runs pytree of one config: its traced settings for each of its seeds."""
    seeds = range(config.first_seed, config.first_seed + config.seeds)
    point: dict[str, list[Any]] = {
        "lr": [config.lr],
        "clip": [math.inf if config.clip is None else config.clip],
        "weight_decay": [config.weight_decay],
        "momentum": [config.momentum],
        "warmup": [config.warmup],
        "bias_var": [config.bias_var],
        "weight_scale": [layer_scales(config.init, config.init_gain, sizes)],
    }
    return grid(list(seeds), **point)


def group_configs(configs: Sequence[Config]) -> list[list[Config]]:
    """Groups configs by :attr:`Config.program_key` and base seed, in first-seen order."""
    groups: dict[tuple[Any, ...], list[Config]] = {}
    for config in configs:
        groups.setdefault((config.program_key, config.seed), []).append(config)
    return list(groups.values())


def run_group(
    configs: Sequence[Config],
    data: Dataset,
    *,
    devices: Sequence[jax.Device] | None = None,
    timings: dict[str, float] | None = None,
    layer_stats: bool = True,
) -> list[Result]:
    """Trains configs of one program key as one engine call; their results in order."""
    key = configs[0].program_key
    if any(c.program_key != key or c.seed != configs[0].seed for c in configs):
        raise ValueError("run_group needs configs of one program key and one base seed")
    c0 = configs[0]
    sizes = (data.d_in, *([c0.width] * c0.depth), data.d_out)
    task = _task(key, sizes)
    per_config = [config_runs(c, sizes) for c in configs]
    runs = jax.tree.map(lambda *a: np.concatenate(a), *per_config)
    train_data, eval_data = _data_arrays(data)
    out = train(
        task.init,
        task.loss,
        task.optimizer,
        train_data,
        runs,
        steps=c0.steps,
        batch_size=c0.batch_size,
        seed=c0.seed,
        evaluate=task.evaluate,
        eval_data=eval_data,
        eval_every=c0.eval_every,
        inspect=task.inspect if layer_stats else None,
        devices=devices,
        program_id=_program_id(key, sizes),
    )
    if timings is not None:
        for k, v in out.timings.items():
            timings[k] = max(timings.get(k, 0), v) if k == "devices" else timings.get(k, 0.0) + v
    results, start = [], 0
    for config in configs:
        sl = slice(start, start + config.seeds)
        start += config.seeds
        stats = {
            f"{when}/{k}": np.asarray(v[sl])
            for when, tree in out.inspections.items()
            for k, v in tree.items()
        }
        results.append(
            Result(
                config=config,
                train_loss=out.metrics["loss"][sl],
                grad_norm=out.metrics["grad_norm"][sl],
                clipped=out.metrics["clipped"][sl],
                eval_steps=out.eval_steps,
                eval_train_loss=out.evals["eval_train_loss"][sl],
                test_loss=out.evals["test_loss"][sl],
                test_accuracy=out.evals["test_accuracy"][sl],
                diverged=out.diverged[sl],
                diverged_step=out.diverged_step[sl],
                layer_stats=stats,
            )
        )
    return results


def run_many(
    configs: Sequence[Config],
    data: Dataset | None = None,
    *,
    on_group_done: Callable[[list[Result]], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
    timings: dict[str, float] | None = None,
    layer_stats: bool = True,
) -> tuple[list[Result], int]:
    """Trains every config, one engine call per program key.

    Args:
      configs: the sweep's points (all with the same ``dataset`` if ``data`` is given).
      data: the data set; by default loaded from the configs' ``dataset`` name.
      on_group_done: called with each group's results as soon as it finishes.
      devices: this process's devices to spread the runs over; default all.
      timings: if given, accumulates the engine's ``check``/``lower``/``compile``/``run``
        seconds.
      layer_stats: measure the per-layer statistics at init and at the end
        (:attr:`Result.layer_stats`; ``{}`` without). They are about a third of
        a program's compile time; the training and evaluations are the same
        bits either way (``tests/test_experiment.py``).

    Returns:
      ``(results, executables_compiled)``: results in the order of ``configs``
      (labelled with ``data.name`` when ``data`` is given), and how many
      programs were built in this process (one per program key, whatever the device
      count; 0 when already built here).
    """
    if not configs:
        return [], 0
    datasets = {c.dataset for c in configs}
    if data is None:
        if len(datasets) > 1:
            raise ValueError(f"configs use several datasets {sorted(datasets)}; pass data or split")
        data = get_dataset(configs[0].dataset)
    else:
        # A user's arrays are labelled with their own name, not the configs' default.
        configs = [dataclasses.replace(c, dataset=data.name) for c in configs]
    by_config: dict[Config, Result] = {}
    clock: dict[str, float] = {}
    for group in group_configs(configs):
        results = run_group(group, data, devices=devices, timings=clock, layer_stats=layer_stats)
        by_config.update({r.config: r for r in results})
        if on_group_done is not None:
            on_group_done(results)
    if timings is not None:
        for k, v in clock.items():
            timings[k] = timings.get(k, 0.0) + v
    return [by_config[c] for c in configs], int(clock.get("executables", 0))


def run(
    config: Config, data: Dataset | None = None, *, devices: Sequence[jax.Device] | None = None
) -> Result:
    """Trains one config's seeds (see :func:`run_many`)."""
    return run_many([config], data, devices=devices)[0][0]
