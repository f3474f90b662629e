"""Training many seeds and hyperparameters of one architecture as one jitted program.

A :class:`Config` is one point of a sweep. :func:`run_many` groups configs by
their :attr:`Config.program_key` (depth, width, activation, optimizer kind and
the loop sizes): within a group, seeds, learning rates, clip thresholds and
initializers are traced values stacked on one "runs" axis, so the whole group
is ``jax.vmap`` over runs of a ``lax.scan`` over steps, compiled once. The runs
axis is sharded over all local devices (``jax.sharding.Mesh`` +
``NamedSharding``), so the same code fills a multi-GPU host or a TPU slice.

Multi-host: start every host with the same command after
``jax.distributed.initialize()`` (e.g. ``python -c "import jax;
jax.distributed.initialize(); from jaxstab import cli; cli.main()" sweep ...``
on each host, with the coordinator address in ``JAX_COORDINATOR_ADDRESS``);
:func:`run_many` then shards the runs axis over ``jax.devices()``, every host's.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxstab import diagnostics
from jaxstab._activations import ACTIVATIONS
from jaxstab._clipping import clip_by_global_norm
from jaxstab._initializers import INITIALIZERS, get_initializer
from jaxstab._losses import accuracy, softmax_cross_entropy
from jaxstab._mlp import apply_mlp, init_mlp, split_stacks
from jaxstab._train import make_train_step
from jaxstab._typing import Array
from jaxstab.data import Dataset, get_dataset

OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM = 0.9  # of the "momentum" optimizer (heavy ball, optax.sgd(lr, momentum=0.9))
DIAGNOSTIC_BATCH = 256  # training examples on which per-layer statistics are measured
EVAL_LIMIT = 4096  # at most this many examples per split in each evaluation

__all__ = [
    "OPTIMIZERS",
    "Config",
    "Result",
    "run",
    "run_many",
]


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    """One point of a sweep, trained for ``seeds`` seeds.

    Attributes:
      depth: number of hidden layers.
      width: units per hidden layer.
      activation: one of :data:`jaxstab.ACTIVATIONS`.
      init: a weight initializer name from :data:`jaxstab.INITIALIZERS`.
      optimizer: ``"sgd"``, ``"momentum"`` (0.9) or ``"adam"``.
      lr: learning rate.
      clip: ``None``, or the global-norm threshold of
        :func:`jaxstab.clip_by_global_norm`, chained before the optimizer.
      batch_size: examples per step, drawn with replacement.
      steps: training steps.
      eval_every: steps between evaluations (divides ``steps``).
      seeds: number of seeds; seed ``i`` uses ``fold_in(key(seed), i)``, so
        configs that differ only in hyperparameters share initial draws.
      dataset: a name of :data:`jaxstab.data.DATASETS` or an ``.npz`` path.
      seed: base PRNG seed.
    """

    depth: int = 8
    width: int = 128
    activation: str = "relu"
    init: str = "he_normal"
    optimizer: str = "sgd"
    lr: float = 0.1
    clip: float | None = None
    batch_size: int = 128
    steps: int = 500
    eval_every: int = 100
    seeds: int = 8
    dataset: str = "digits"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("depth", "width", "batch_size", "steps", "eval_every", "seeds"):
            _positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        if self.init not in INITIALIZERS:
            raise ValueError(f"unknown init {self.init!r}; valid: {', '.join(INITIALIZERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        if not isinstance(self.lr, (int, float)) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.clip is not None and (
            not isinstance(self.clip, (int, float))
            or not (math.isfinite(self.clip) and self.clip > 0)
        ):
            raise ValueError(f"clip must be None or a positive finite number, got {self.clip!r}")
        if self.steps % self.eval_every:
            raise ValueError(f"eval_every={self.eval_every} must divide steps={self.steps}")

    @property
    def program_key(self) -> tuple[Any, ...]:
        """What selects the compiled program; configs equal in it share one."""
        return (
            self.depth,
            self.width,
            self.activation,
            self.optimizer,
            self.batch_size,
            self.steps,
            self.eval_every,
            self.dataset,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def name(self) -> str:
        """A short readable identifier, unique within a sweep."""
        clip = "none" if self.clip is None else f"{self.clip:g}"
        return (
            f"d{self.depth}-w{self.width}-{self.activation}-{self.init}-{self.optimizer}"
            f"-lr{self.lr:g}-clip{clip}-s{self.seeds}x{self.seed}-b{self.batch_size}"
            f"-t{self.steps}-e{self.eval_every}-{self.dataset}"
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
    layer_stats: dict[str, np.ndarray]  # "{init,final}/{field}" -> [seeds, depth]


def _make_optimizer(kind: str, lr: Array, clip: Array) -> optax.GradientTransformation:
    base = {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=MOMENTUM),
        "adam": lambda: optax.adam(lr),
    }[kind]()
    # clip = inf means no clipping: g_norm < inf for every finite gradient.
    # "propagate" lets a non-finite gradient through so divergence is seen.
    return optax.chain(clip_by_global_norm(clip, nonfinite="propagate"), base)


def _layer_stats(params: Any, x: Array, y: Array, activation: str) -> dict[str, Array]:
    fwd, bwd = diagnostics.layer_stats(params, x, y, activation)
    out = fwd._asdict()
    out.update({k: v for k, v in bwd._asdict().items() if k != "output_grad_norm"})
    return out


def _evaluate(params: Any, x: Array, y: Array, activation: str) -> tuple[Array, Array]:
    logits = apply_mlp(params, x, activation)
    return jnp.mean(softmax_cross_entropy(logits, y)), accuracy(logits, y)


def _train_run(
    params: Any, lr: Array, clip: Array, key: Array, data: dict[str, Array], *, spec: Config
) -> dict[str, Any]:
    """Trains one run (one seed at one hyperparameter point); vmapped over runs."""
    activation = spec.activation
    # Short stacks train as separate per-layer buffers (faster under vmap; see
    # split_stacks); long ones stay scanned so compile time stays flat in depth.
    params = split_stacks(params)
    optimizer = _make_optimizer(spec.optimizer, lr, clip)

    def loss_fn(p: Any, batch: tuple[Array, Array]) -> Array:
        return jnp.mean(softmax_cross_entropy(apply_mlp(p, batch[0], activation), batch[1]))

    step_fn = make_train_step(loss_fn, optimizer)
    n_train = data["x_train"].shape[0]

    def one_step(carry: tuple[Any, ...], step: Array) -> tuple[tuple[Any, ...], dict[str, Array]]:
        params, opt_state, diverged, diverged_step = carry
        idx = jax.random.randint(jax.random.fold_in(key, step), (spec.batch_size,), 0, n_train)
        new_params, new_opt_state, m = step_fn(
            params, opt_state, (data["x_train"][idx], data["y_train"][idx])
        )
        bad = ~(jnp.isfinite(m["loss"]) & jnp.isfinite(m["grad_norm"]))
        diverged_step = jnp.where(bad & ~diverged, step, diverged_step)
        diverged = diverged | bad
        # A diverged run is frozen at its last finite parameters; the others go on.
        keep = lambda new, old: jnp.where(diverged, old, new)
        params = jax.tree.map(keep, new_params, params)
        opt_state = jax.tree.map(keep, new_opt_state, opt_state)
        # From divergence on, a run records NaN losses and norms and no clipping.
        metrics = {
            "train_loss": jnp.where(diverged, jnp.nan, m["loss"]),
            "grad_norm": jnp.where(diverged, jnp.nan, m["grad_norm"]),
            "clipped": m["clipped"] & ~diverged,
        }
        return (params, opt_state, diverged, diverged_step), metrics

    def evaluate(params: Any, diverged: Array) -> dict[str, Array]:
        train_loss, _ = _evaluate(params, data["x_eval"], data["y_eval"], activation)
        test_loss, test_acc = _evaluate(params, data["x_test"], data["y_test"], activation)
        nan_if = lambda v: jnp.where(diverged, jnp.nan, v)
        return {
            "eval_train_loss": nan_if(train_loss),
            "test_loss": nan_if(test_loss),
            "test_accuracy": nan_if(test_acc),
        }

    def chunk(carry: tuple[Any, ...], steps: Array) -> tuple[tuple[Any, ...], Any]:
        carry, metrics = jax.lax.scan(one_step, carry, steps)
        return carry, (metrics, evaluate(carry[0], carry[2]))

    stats_init = _layer_stats(params, data["x_diag"], data["y_diag"], activation)
    eval_init = evaluate(params, jnp.zeros([], bool))
    carry = (params, optimizer.init(params), jnp.zeros([], bool), jnp.full([], -1, jnp.int32))
    step_ids = jnp.arange(spec.steps, dtype=jnp.int32).reshape(-1, spec.eval_every)
    (params, _, diverged, diverged_step), (metrics, evals) = jax.lax.scan(chunk, carry, step_ids)
    stats_final = _layer_stats(params, data["x_diag"], data["y_diag"], activation)
    out = {k: v.reshape(-1) for k, v in metrics.items()}
    out.update({k: jnp.concatenate([eval_init[k][None], v]) for k, v in evals.items()})
    out["diverged"] = diverged
    out["diverged_step"] = diverged_step
    out.update({f"init/{k}": v for k, v in stats_init.items()})
    out.update({f"final/{k}": v for k, v in stats_final.items()})
    return out


@functools.lru_cache(maxsize=64)
def _program(spec: Config) -> Callable[..., dict[str, Any]]:
    """The jitted, vmapped training program of one program key.

    ``spec`` carries only the fields of ``program_key`` that matter (the
    others are fixed), so equal keys hit the same cache entry, and jax's own
    cache then compiles once per number of runs.
    """
    vmapped = jax.vmap(functools.partial(_train_run, spec=spec), in_axes=(0, 0, 0, 0, None))
    return jax.jit(vmapped)


def _spec(config: Config) -> Config:
    return dataclasses.replace(
        config, init="he_normal", lr=1.0, clip=None, seeds=1, seed=0, dataset=config.dataset
    )


def _data_arrays(data: Dataset) -> dict[str, Array]:
    n_diag = min(DIAGNOSTIC_BATCH, data.x_train.shape[0])
    return {
        "x_train": jnp.asarray(data.x_train),
        "y_train": jnp.asarray(data.y_train),
        "x_eval": jnp.asarray(data.x_train[:EVAL_LIMIT]),
        "y_eval": jnp.asarray(data.y_train[:EVAL_LIMIT]),
        "x_test": jnp.asarray(data.x_test[:EVAL_LIMIT]),
        "y_test": jnp.asarray(data.y_test[:EVAL_LIMIT]),
        "x_diag": jnp.asarray(data.x_train[:n_diag]),
        "y_diag": jnp.asarray(data.y_train[:n_diag]),
    }


@functools.lru_cache(maxsize=64)
def _init_program(init: str, sizes: tuple[int, ...], seeds: int) -> Callable[[Array], Any]:
    """The per-seed initialization, compiled at XLA's backend optimization level 1.

    It runs once per configuration, so compile time counts as much as run time.
    Measured for 32 seeds of ``[64, 128 x 16, 10]`` on 2 CPU cores: level 1
    compiles in 1.5 s and runs in 0.15 s; the default compiles in about 6-9 s
    (level 3); level 0 compiles in 1.1 s but runs in 0.6 s (the threefry draws
    unfused). Every level gives the same draws to float32 rounding.
    """
    weight_init = get_initializer(init)
    program = jax.jit(jax.vmap(lambda k: init_mlp(k, sizes, weight_init=weight_init)))
    keys = jax.ShapeDtypeStruct((seeds,), jax.random.key(0).dtype)
    options: dict[str, Any] = {"xla_backend_optimization_level": 1}
    return program.lower(keys).compile(options)


def _seed_keys(config: Config) -> tuple[Array, Array]:
    """Per seed: the initialization key and the minibatch-order key."""
    base = jax.random.key(config.seed)
    keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(base, i)))(
        jnp.arange(config.seeds)
    )
    return keys[:, 0], keys[:, 1]


def _runs_sharding(n_runs: int, devices: Sequence[jax.Device] | None) -> tuple[NamedSharding, int]:
    """Shards the runs axis over ``devices`` (default all); the sharding and padded size."""
    mesh_devices = np.asarray(jax.devices() if devices is None else list(devices))
    mesh = Mesh(mesh_devices, ("runs",))
    padded = -(-n_runs // mesh_devices.size) * mesh_devices.size
    return NamedSharding(mesh, PartitionSpec("runs")), padded


def _group(
    configs: Sequence[Config],
    data: Dataset,
    arrays: dict[str, Array],
    devices: Sequence[jax.Device] | None,
) -> list[Result]:
    spec = _spec(configs[0])
    sizes = (data.d_in, *([spec.width] * spec.depth), data.d_out)
    params, lrs, clips, keys = [], [], [], []
    for config in configs:
        init_keys, data_keys = _seed_keys(config)
        params.append(_init_program(config.init, sizes, config.seeds)(init_keys))
        lrs.append(np.full(config.seeds, config.lr, np.float32))
        clips.append(
            np.full(config.seeds, np.inf if config.clip is None else config.clip, np.float32)
        )
        keys.append(data_keys)
    inputs = (
        jax.tree.map(lambda *a: jnp.concatenate(a), *params),
        jnp.asarray(np.concatenate(lrs)),
        jnp.asarray(np.concatenate(clips)),
        jnp.concatenate(keys),
    )
    n_runs = int(inputs[1].shape[0])
    sharding, padded = _runs_sharding(n_runs, devices)
    # Pad the runs axis to a multiple of the device count by repeating run 0.
    pad = lambda a: jnp.concatenate([a, jnp.repeat(a[:1], padded - n_runs, axis=0)])
    inputs = jax.device_put(jax.tree.map(pad, inputs), sharding)
    out = _program(spec)(*inputs, arrays)
    if jax.process_count() > 1:  # multi-host: gather every host's shard of the runs axis
        from jax.experimental import multihost_utils

        out = multihost_utils.process_allgather(out, tiled=True)
    out = jax.tree.map(lambda a: np.asarray(a)[:n_runs], out)
    results, start = [], 0
    for config in configs:
        sl = slice(start, start + config.seeds)
        start += config.seeds
        results.append(
            Result(
                config=config,
                train_loss=out["train_loss"][sl],
                grad_norm=out["grad_norm"][sl],
                clipped=out["clipped"][sl],
                eval_steps=np.arange(0, config.steps + 1, config.eval_every),
                eval_train_loss=out["eval_train_loss"][sl],
                test_loss=out["test_loss"][sl],
                test_accuracy=out["test_accuracy"][sl],
                diverged=out["diverged"][sl],
                diverged_step=out["diverged_step"][sl],
                layer_stats={k: v[sl] for k, v in out.items() if "/" in k},
            )
        )
    return results


def group_configs(configs: Sequence[Config]) -> list[list[Config]]:
    """Groups configs by :attr:`Config.program_key`, in first-seen order."""
    groups: dict[tuple[Any, ...], list[Config]] = {}
    for config in configs:
        groups.setdefault(config.program_key, []).append(config)
    return list(groups.values())


def run_many(
    configs: Sequence[Config],
    data: Dataset | None = None,
    *,
    on_group_done: Callable[[list[Result]], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> tuple[list[Result], int]:
    """Trains every config, one compiled program per distinct program key.

    Args:
      configs: the sweep's points (all with the same ``dataset`` if ``data`` is given).
      data: the data set; by default loaded from the configs' ``dataset`` name.
      on_group_done: called with each group's results as soon as it finishes
        (the command line writes them to disk there, for resuming).
      devices: the devices to shard the runs axis over; default
        ``jax.devices()``, every host's (on a CPU, see
        :func:`jaxstab.set_cpu_devices` for one device per core).

    Returns:
      ``(results, programs_compiled)``: results in the order of ``configs``, and
      how many training programs were compiled (0 when all were cached).
    """
    if not configs:
        return [], 0
    if devices is not None and (
        not list(devices) or not all(isinstance(d, jax.Device) for d in devices)
    ):
        raise ValueError(f"devices must be a non-empty sequence of jax.Device, got {devices!r}")
    datasets = {c.dataset for c in configs}
    if data is None:
        if len(datasets) > 1:
            raise ValueError(f"configs use several datasets {sorted(datasets)}; pass data or split")
        data = get_dataset(configs[0].dataset)
    arrays = _data_arrays(data)
    by_config: dict[Config, Result] = {}
    compiled = 0
    for group in group_configs(configs):
        program = _program(_spec(group[0]))
        before = program._cache_size()  # type: ignore[attr-defined]
        results = _group(group, data, arrays, devices)
        compiled += program._cache_size() - before  # type: ignore[attr-defined]
        by_config.update({r.config: r for r in results})
        if on_group_done is not None:
            on_group_done(results)
    return [by_config[c] for c in configs], compiled


def run(
    config: Config, data: Dataset | None = None, *, devices: Sequence[jax.Device] | None = None
) -> Result:
    """Trains one config's seeds as one vmapped, jitted program (see :func:`run_many`)."""
    results, _ = run_many([config], data, devices=devices)
    return results[0]
