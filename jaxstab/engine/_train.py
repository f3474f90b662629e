"""The engine: many runs of a user's init, loss and optimizer as one compiled program.

``train`` composes what the user passes, as optax's ``chain`` composes
transformations: ``init(key, hparams) -> params`` (any pytree), ``loss(params,
batch, hparams)`` and ``optimizer(hparams) -> optax.GradientTransformation``.
Each run (a seed at a grid point) is a ``lax.scan`` over steps; runs are
``vmap``-ed in fixed-size blocks (:mod:`jaxstab.engine._blocks`), so a run's
numbers are a function of its own hyperparameters and seed alone.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstab import _checks as checks
from jaxstab._train import make_train_step
from jaxstab._typing import Array
from jaxstab.engine import _blocks, _executables
from jaxstab.engine._blocks import BLOCK_SIZE, run_blocks
from jaxstab.engine._runs import as_runs, num_runs

__all__ = ["TrainResult", "train"]

Init = Callable[[Array, Any], Any]
Loss = Callable[[Any, Any, Any], Any]
Optimizer = Callable[[Any], optax.GradientTransformation]
Probe = Callable[[Any, Any, Any], Any]


class TrainResult(NamedTuple):
    """What :func:`train` measured; every array has a leading runs axis ``[R]``."""

    runs: dict[str, np.ndarray]  # the per-run hyperparameters, as trained.
    metrics: dict[str, np.ndarray]  # [R, steps]: "loss", "grad_norm", "clipped"?, aux.
    eval_steps: np.ndarray  # [E] steps after which `evaluate` ran (0 = at init).
    evals: dict[str, np.ndarray]  # [R, E] outputs of `evaluate`.
    inspections: dict[str, Any]  # {"init": pytree [R, ...], "final": pytree [R, ...]}.
    diverged: np.ndarray  # [R] bool: the loss or gradient norm turned non-finite.
    diverged_step: np.ndarray  # [R] int32: the first non-finite step, -1 if none.
    params: Any  # final parameters [R, ...] if `return_params`, else None.
    timings: dict[str, float]  # seconds: "check", "lower", "compile", "run".


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything that selects the compiled program (hashed by identity of callables)."""

    init: Init
    loss: Loss
    optimizer: Optimizer
    batch_fn: Callable[[Array, Array], Any] | None  # None: sample from array data
    batch_size: int
    steps: int
    eval_every: int
    evaluate: Probe | None
    inspect: Probe | None
    has_aux: bool
    return_params: bool


def _where_diverged(diverged: Array, value: Array) -> Array:
    """A metric from divergence on: NaN for floats, False for bools, -1 for ints."""
    if jnp.issubdtype(value.dtype, jnp.floating):
        return jnp.where(diverged, jnp.nan, value)
    if value.dtype == jnp.bool_:
        return value & ~diverged
    return jnp.where(diverged, -1, value)


def _keys(hp: Any, shared: dict[str, Any]) -> Array:
    """A run's (init, data) keys: ``split(fold_in(key(seed), hp["seed"]))``."""
    return jax.random.split(jax.random.fold_in(jax.random.wrap_key_data(shared["key"]), hp["seed"]))


def _init(hp: Any, shared: dict[str, Any], st: _Static) -> Any:
    """One run's initial parameters; vmapped over a block, compiled on its own."""
    return st.init(_keys(hp, shared)[0], hp)


def _run(hp: Any, params: Any, shared: dict[str, Any], st: _Static) -> dict[str, Any]:
    """Trains one run from its initial parameters; vmapped over a block of runs."""
    data_key = _keys(hp, shared)[1]
    optimizer = st.optimizer(hp)
    step_fn = make_train_step(lambda p, batch: st.loss(p, batch, hp), optimizer, has_aux=st.has_aux)
    data, eval_data = shared["data"], shared["eval_data"]

    def batch_at(step: Array) -> Any:
        k = jax.random.fold_in(data_key, step)
        if st.batch_fn is not None:
            return st.batch_fn(k, step)
        n = jax.tree.leaves(data)[0].shape[0]
        idx = jax.random.randint(k, (st.batch_size,), 0, n)
        return jax.tree.map(lambda a: a[idx], data)

    def one_step(carry: tuple[Any, ...], step: Array) -> tuple[tuple[Any, ...], dict[str, Array]]:
        params, opt_state, diverged, diverged_step = carry
        new_params, new_opt_state, m = step_fn(params, opt_state, batch_at(step))
        bad = ~(jnp.isfinite(m["loss"]) & jnp.isfinite(m["grad_norm"]))
        diverged_step = jnp.where(bad & ~diverged, step, diverged_step)
        diverged = diverged | bad
        # A diverged run is frozen at its last finite parameters; the others go on.
        keep = lambda new, old: jnp.where(diverged, old, new)
        params = jax.tree.map(keep, new_params, params)
        opt_state = jax.tree.map(keep, new_opt_state, opt_state)
        metrics = {k: _where_diverged(diverged, jnp.asarray(v)) for k, v in m.items()}
        return (params, opt_state, diverged, diverged_step), metrics

    def evaluate(params: Any, diverged: Array) -> dict[str, Array]:
        if st.evaluate is None:
            return {}
        out = st.evaluate(params, eval_data, hp)
        return {k: _where_diverged(diverged, jnp.asarray(v)) for k, v in out.items()}

    def chunk(carry: tuple[Any, ...], steps: Array) -> tuple[tuple[Any, ...], Any]:
        carry, metrics = jax.lax.scan(one_step, carry, steps)
        return carry, (metrics, evaluate(carry[0], carry[2]))

    out: dict[str, Any] = {}
    init_params = params
    eval_init = evaluate(params, jnp.zeros([], bool))
    carry = (params, optimizer.init(params), jnp.zeros([], bool), jnp.full([], -1, jnp.int32))
    step_ids = jnp.arange(st.steps, dtype=jnp.int32).reshape(-1, st.eval_every)
    (params, _, diverged, diverged_step), (metrics, evals) = jax.lax.scan(chunk, carry, step_ids)
    if st.inspect is not None:
        # One traced copy of `inspect` (often a forward and backward pass) for both
        # moments, mapped over [initial, final] parameters: half the compile time.
        both = jax.tree.map(lambda a, b: jnp.stack([a, b]), init_params, params)
        inspected = jax.lax.map(lambda p: st.inspect(p, eval_data, hp), both)
        out["inspect_init"] = jax.tree.map(lambda a: a[0], inspected)
        out["inspect_final"] = jax.tree.map(lambda a: a[1], inspected)
    out["metrics"] = {k: v.reshape(-1) for k, v in metrics.items()}
    out["evals"] = {k: jnp.concatenate([eval_init[k][None], v]) for k, v in evals.items()}
    out["diverged"] = diverged
    out["diverged_step"] = diverged_step
    if st.return_params:
        out["params"] = params
    return out


@functools.lru_cache(maxsize=128)
def _programs(st: _Static) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The jitted block programs (init, train) of one static structure.

    Two programs: the initialization runs once per run, so it compiles at a low
    optimization level (see ``_blocks.INIT_OPTIONS``); its parameters stay on the
    device and feed the training program.
    """
    init = jax.jit(jax.vmap(functools.partial(_init, st=st), in_axes=(0, None)))
    run = jax.jit(jax.vmap(functools.partial(_run, st=st), in_axes=(0, 0, None)))
    return init, run


def _base_key(seed: Any) -> np.ndarray:
    """The raw data of ``key(seed)``: placed on each device and wrapped in the program."""
    seed = checks.integer("seed", seed, minimum=0, maximum=2**32 - 1)
    return np.asarray(jax.random.key_data(jax.random.key(seed)))


def _describe(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _check_callables(st: _Static, hp0: Any, data: Any, eval_data: Any) -> tuple[bool, Any]:
    """Traces one run abstractly (``jax.eval_shape``, no compilation) to check signatures.

    Returns:
      ``(has_aux, params_shape)``.
    """
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    try:
        params = jax.eval_shape(st.init, key, hp0)
    except Exception as e:
        raise TypeError(f"init(key, hparams) -> params failed on one run: {_describe(e)}") from e
    if not jax.tree.leaves(params):
        raise ValueError("init(key, hparams) returned a pytree with no arrays to train")
    try:
        jax.eval_shape(lambda p, h: st.optimizer(h).init(p), params, hp0)
    except Exception as e:
        raise TypeError(
            f"optimizer(hparams) -> optax.GradientTransformation failed on one run: {_describe(e)}"
        ) from e
    if st.batch_fn is not None:
        try:
            batch = jax.eval_shape(st.batch_fn, key, jax.ShapeDtypeStruct((), jnp.int32))
        except Exception as e:
            raise TypeError(f"data(key, step) -> batch failed: {_describe(e)}") from e
    else:
        batch = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((st.batch_size, *np.shape(a)[1:]), a.dtype), data
        )
    try:
        out = jax.eval_shape(st.loss, params, batch, hp0)
    except Exception as e:
        raise TypeError(f"loss(params, batch, hparams) failed on one run: {_describe(e)}") from e
    has_aux = isinstance(out, tuple)
    value = out[0] if has_aux else out
    if has_aux and (len(out) != 2 or not isinstance(out[1], Mapping)):
        raise TypeError(
            "loss(params, batch, hparams) must return a scalar or (scalar, dict of aux); "
            f"got a tuple of {len(out)} with {type(out[-1]).__name__}"
        )
    if (
        not hasattr(value, "shape")
        or value.shape != ()
        or not jnp.issubdtype(value.dtype, jnp.floating)
    ):
        raise ValueError(
            "loss(params, batch, hparams) must return a floating scalar; got "
            f"{getattr(value, 'shape', type(value).__name__)} {getattr(value, 'dtype', '')}"
        )
    for name, fn in (("evaluate", st.evaluate), ("inspect", st.inspect)):
        if fn is None:
            continue
        try:
            got = jax.eval_shape(fn, params, eval_data, hp0)
        except Exception as e:
            raise TypeError(
                f"{name}(params, eval_data, hparams) failed on one run: {_describe(e)}"
            ) from e
        if name == "evaluate" and (
            not isinstance(got, Mapping) or any(np.shape(v) != () for v in got.values())
        ):
            raise ValueError(f"evaluate must return a dict of scalars, got {got!r}")
    return has_aux, params


def train(
    init: Init,
    loss: Loss,
    optimizer: Optimizer,
    data: Any,
    runs: Mapping[str, Any],
    *,
    steps: int,
    batch_size: int | None = None,
    seed: int = 0,
    evaluate: Probe | None = None,
    eval_data: Any = None,
    eval_every: int | None = None,
    inspect: Probe | None = None,
    return_params: bool = False,
    devices: Sequence[jax.Device] | None = None,
    block_size: int = BLOCK_SIZE,
    program_id: str | None = None,
) -> TrainResult:
    """Trains every run of ``runs`` as ``vmap`` over runs of a ``lax.scan`` over steps.

    Run ``r`` draws its keys from ``fold_in(key(seed), runs["seed"][r])``: one
    half initializes, the other draws the batch of step ``t`` as
    ``fold_in(data_key, t)``. Everything in ``runs`` is a traced value, so one
    program (compiled once per static structure; on a CPU, once for all its
    devices) serves any grid. A run whose loss or gradient norm turns
    non-finite is frozen at its last finite parameters and reports NaN from then
    on; the other runs are untouched.
    Its numbers are a function of its hyperparameters, seed and ``seed`` alone:
    bit-identical on any number of devices and whatever other runs share the
    program (for one accelerator kind and XLA version).

    Args:
      init: ``init(key, hparams) -> params``, any pytree of arrays (flax
        variables, an equinox module's arrays after ``eqx.partition``, ...).
      loss: ``loss(params, batch, hparams) -> scalar`` or ``(scalar, dict)``;
        the dict's entries are recorded per step.
      optimizer: ``optimizer(hparams) -> optax.GradientTransformation``; a
        jaxstab clip transform in it is reported as the ``"clipped"`` metric.
      data: a pytree of arrays with a leading example axis (each step samples
        ``batch_size`` examples with replacement), or a jittable
        ``batch(key, step) -> batch``.
      runs: per-run hyperparameters with a leading runs axis and an integer
        ``"seed"`` entry; see :func:`jaxstab.engine.grid`.
      steps: training steps per run.
      batch_size: examples per step (required with array ``data``).
      seed: the base seed of every run's keys.
      evaluate: ``evaluate(params, eval_data, hparams) -> dict of scalars``, run at
        init and after every ``eval_every`` steps.
      eval_data: a pytree of arrays passed to ``evaluate`` and ``inspect``.
      eval_every: steps between evaluations (divides ``steps``); default ``steps``.
      inspect: ``inspect(params, eval_data, hparams) -> pytree``, run at init and
        at the end (per-layer diagnostics, for example).
      return_params: also return every run's final parameters.
      devices: this process's devices to spread the blocks over; default all.
      block_size: runs per compiled block (a run's rounding is fixed by it).
      program_id: a name for the code of ``init``, ``loss``, ``optimizer``,
        ``data`` (a function), ``evaluate`` and ``inspect`` that stays the same
        across processes, and must change whenever that code or anything it
        closes over changes. With it, and jax's persistent cache on (see
        :mod:`jaxstab.compile_cache`), a later process with the same sizes loads
        the compiled program without tracing or checking the callables.
        ``jaxstab.experiment`` passes one made from its config and a hash of
        jaxstab's source.

    Returns:
      A :class:`TrainResult`.

    Raises:
      TypeError, ValueError: before any compilation, for callables with wrong
        signatures or outputs, inconsistent ``runs``, or bad sizes.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from jaxstab import engine
      >>> x = jax.random.normal(jax.random.key(0), (64, 3)); y = x @ jnp.ones(3)
      >>> result = engine.train(
      ...     init=lambda key, hp: {"w": jax.random.normal(key, (3,))},
      ...     loss=lambda p, b, hp: jnp.mean((b[0] @ p["w"] - b[1]) ** 2),
      ...     optimizer=lambda hp: optax.sgd(hp["lr"]),
      ...     data=(x, y), runs=engine.grid(4, lr=[0.1, 0.01]), steps=50, batch_size=16)
      >>> result.metrics["loss"].shape
      (8, 50)
    """
    t0 = time.perf_counter()
    steps = checks.positive_int("steps", steps)
    eval_every = steps if eval_every is None else checks.positive_int("eval_every", eval_every)
    if steps % eval_every:
        raise ValueError(f"eval_every={eval_every} must divide steps={steps}")
    block_size = checks.positive_int("block_size", block_size)
    required: dict[str, Any] = {"init": init, "loss": loss, "optimizer": optimizer}
    for name, fn in required.items():
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {fn!r}")
    optional: dict[str, Any] = {"evaluate": evaluate, "inspect": inspect}
    for name, fn in optional.items():
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable or None, got {fn!r}")
    if devices is not None:
        devices = list(devices)
        if not devices or not all(isinstance(d, jax.Device) for d in devices):
            raise ValueError(f"devices must be a non-empty sequence of jax.Device, got {devices!r}")
    runs = as_runs(runs)
    n_runs = num_runs(runs)
    batch_fn = data if callable(data) else None
    if batch_fn is None:
        if batch_size is None:
            raise ValueError("batch_size is required when data is arrays")
        batch_size = checks.positive_int("batch_size", batch_size)
        data = jax.tree.map(jnp.asarray, data)
        leaves = jax.tree.leaves(data)
        sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
        if not leaves or len(sizes) != 1 or None in sizes or 0 in sizes:
            raise ValueError(
                "data must be a pytree of arrays with one shared, non-empty leading example "
                f"axis, or a batch(key, step) function; got leading sizes {sorted(map(str, sizes))}"
            )
    else:
        data = None
        batch_size = 0 if batch_size is None else checks.positive_int("batch_size", batch_size)
    eval_data = None if eval_data is None else jax.tree.map(jnp.asarray, eval_data)
    st = _Static(
        init=init,
        loss=loss,
        optimizer=optimizer,
        batch_fn=batch_fn,
        batch_size=batch_size,
        steps=steps,
        eval_every=eval_every,
        evaluate=evaluate,
        inspect=inspect,
        has_aux=False,
        return_params=bool(return_params),
    )
    shared = {"key": _base_key(seed), "data": data, "eval_data": eval_data}
    key, stored = None, None
    if program_id is not None:
        if not isinstance(program_id, str):
            raise TypeError(f"program_id must be a str or None, got {program_id!r}")
        blocks, used = _blocks.layout(runs, n_runs, devices, block_size)
        sigs = _blocks.signatures(blocks[0], shared)
        static = (st.batch_size, st.steps, st.eval_every, st.return_params)
        given = tuple(f is not None for f in (st.batch_fn, st.evaluate, st.inspect))
        options = (_blocks.INIT_OPTIONS, _blocks.TRAIN_OPTIONS)
        key = _executables.program_key(
            program_id, (static, given, sigs, block_size, options), used[0]
        )
        stored = _executables.read_program(key, tuple(used))
    if stored is None:
        hp0 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), runs)
        has_aux, _ = _check_callables(st, hp0, data, eval_data)
        st = dataclasses.replace(st, has_aux=has_aux)
        init_program, train_program = _programs(st)
    else:
        init_program, train_program = None, None
    timings = {"check": time.perf_counter() - t0}
    out = run_blocks(
        train_program,
        runs,
        shared,
        n_runs=n_runs,
        init_program=init_program,
        devices=devices,
        block_size=block_size,
        timings=timings,
        executables=stored,
    )
    if key is not None and stored is None:
        stages = _blocks.lowered_stages(train_program, init_program, sigs, used[0])
        _executables.write_program(key, stages)
    return TrainResult(
        runs=runs,
        metrics=out["metrics"],
        eval_steps=np.arange(0, steps + 1, eval_every),
        evals=out["evals"],
        inspections={k: out[f"inspect_{k}"] for k in ("init", "final") if f"inspect_{k}" in out},
        diverged=out["diverged"],
        diverged_step=out["diverged_step"],
        params=out.get("params"),
        timings=timings,
    )
