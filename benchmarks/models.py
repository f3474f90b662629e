"""The networks and training loops that the sections compare, all on the same math.

Every trainer is a pair ``(prepare, step)``: ``prepare(params) -> state`` from
jaxstab's MLP parameters and ``step(state, x, y) -> (state, loss)`` for one
minibatch, so the same :func:`train` loop (random minibatches of indices drawn
with replacement, one draw per step) drives jaxstab's library, the
hand-written reference and the library's variants, from the same initial weights. The
MLP is ``[d_in] + [width] * depth + [d_out]``: ``depth`` hidden ReLU layers,
He-normal weights (``N(0, 2 / fan_in)``), zero biases, mean softmax
cross-entropy. Initialization happens once, outside the timed programs (as
jaxstab's engine does it too).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxstab as js
from jaxstab.data import Dataset, load_digits
from jaxstab.experiment import DIAGNOSTIC_BATCH, EVAL_LIMIT

Array = jax.Array
State = Any
Prepare = Callable[[Any], State]
Step = Callable[[State, Array, Array], tuple[State, Array]]
Apply = Callable[..., Array]

D_IN, D_OUT = 64, 10  # The digits: 8x8 pixels, 10 classes.


@functools.cache
def digits() -> Dataset:
    """The digits data set (loaded once per process)."""
    return load_digits()


def mlp_sizes(depth: int, width: int, d_in: int = D_IN, d_out: int = D_OUT) -> list[int]:
    """``[d_in] + [width] * depth + [d_out]``: ``depth`` hidden layers."""
    return [d_in] + [width] * depth + [d_out]


def matmul_flops(sizes: list[int], batch: int) -> int:
    """Analytic matmul FLOPs of one training step (forward + backward) of one network.

    ``6 * batch * sum(fan_in * fan_out)``: per layer, ``2 * batch * fan_in *
    fan_out`` for the forward product and twice that for the two backward
    products (input and weight gradients). Bias adds and activations are not
    counted; the first layer's input gradient, which XLA never computes, is.
    """
    return 6 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy of integer labels, in plain jnp."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


# --------------------------------------------------------------------------- #
# The hand-written reference: a list of (w, b), nothing else.
# --------------------------------------------------------------------------- #


def init_layers(key: Array, sizes: list[int]) -> list[tuple[Array, Array]]:
    """He-normal weights and zero biases as a plain list of ``(w, b)``."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros((b,)))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def to_layers(params: Any) -> list[tuple[Array, Array]]:
    """jaxstab's stacked MLP parameters as a plain list of per-layer ``(w, b)``.

    Works on per-seed parameters and, under ``jax.vmap``, on seed-stacked ones.
    """
    layers = []
    for group in params["hidden"]:
        for i in range(group["w"].shape[0]):
            layers.append((group["w"][i], group["b"][i]))
    layers.append((params["output"]["w"], params["output"]["b"]))
    return layers


def apply_layers(params: list[tuple[Array, Array]], x: Array) -> Array:
    """The MLP as an unrolled Python loop of per-layer matmuls."""
    h = x
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b[None, :])
    w, b = params[-1]
    return h @ w + b[None, :]


def hand_trainer(*, lr: float, clip: float) -> tuple[Prepare, Step]:
    """The no-abstraction reference: manual clip by global norm, then SGD."""

    def loss_fn(params: list[tuple[Array, Array]], x: Array, y: Array) -> Array:
        return cross_entropy(apply_layers(params, x), y)

    def step(params: list[tuple[Array, Array]], x: Array, y: Array) -> tuple[State, Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
        scale = jnp.minimum(1.0, clip / norm)
        return jax.tree.map(lambda p, g: p - lr * scale * g, params, grads), loss

    return to_layers, step


def hand_measurements(
    layers: list[tuple[Array, Array]], data: dict[str, Array]
) -> tuple[Array, ...]:
    """By hand, what the engine measures at init and at the end of a run.

    The loss on the training set, the loss and accuracy on the test set, and
    per-layer statistics of one batch from one forward and backward pass
    (second moment of the pre-activations, dead fraction, weight-gradient norm,
    back-propagated signal): the same matmuls as ``jaxstab.experiment``'s
    evaluation and ``diagnostics.layer_stats``, written directly.
    """
    train_loss = cross_entropy(apply_layers(layers, data["x_eval"]), data["y_eval"])
    test_logits = apply_layers(layers, data["x_test"])
    test_loss = cross_entropy(test_logits, data["y_test"])
    test_acc = jnp.mean(jnp.argmax(test_logits, -1) == data["y_test"])
    x = data["x_diag"]
    offsets = [jnp.zeros((x.shape[0], w.shape[1])) for w, _ in layers[:-1]]

    def loss(layers: list[tuple[Array, Array]], offsets: list[Array]) -> tuple[Array, Any]:
        h, moments, dead = x, [], []
        for (w, b), offset in zip(layers[:-1], offsets):
            z = h @ w + b[None, :] + offset
            h = jax.nn.relu(z)
            moments.append(jnp.mean(z * z))
            dead.append(jnp.mean(jnp.all(h == 0, axis=0)))
        w, b = layers[-1]
        return cross_entropy(h @ w + b[None, :], data["y_diag"]), (moments, dead)

    grads, aux = jax.grad(loss, argnums=(0, 1), has_aux=True)(layers, offsets)
    grad_norms = [jnp.linalg.norm(gw) for gw, _ in grads[0][:-1]]
    signals = [jnp.mean(jnp.square(x.shape[0] * g)) for g in grads[1]]
    return (
        train_loss,
        test_loss,
        test_acc,
        jnp.stack(aux[0]),
        jnp.stack(aux[1]),
        (jnp.stack(grad_norms)),
        jnp.stack(signals),
    )


def eval_data(data: Dataset, diag: int = DIAGNOSTIC_BATCH) -> dict[str, Array]:
    """The arrays the engine evaluates on, with ``jaxstab.experiment``'s limits."""
    return {
        "x_eval": jnp.asarray(data.x_train[:EVAL_LIMIT]),
        "y_eval": jnp.asarray(data.y_train[:EVAL_LIMIT]),
        "x_test": jnp.asarray(data.x_test[:EVAL_LIMIT]),
        "y_test": jnp.asarray(data.y_test[:EVAL_LIMIT]),
        "x_diag": jnp.asarray(data.x_train[:diag]),
        "y_diag": jnp.asarray(data.y_train[:diag]),
    }


def hand_engine_run(
    *, lr: float, clip: float, steps: int, batch: int, eval_every: int | None = None
) -> Callable[..., Any]:
    """The engine's whole job, by hand: measure, train (evaluating), measure.

    ``run(params, key, x, y, data) -> (losses [steps], evaluations, measurements
    at init, statistics at the end)``: the per-layer statistics of :func:`hand_measurements`
    at init and at the end, and its three losses and accuracy every
    ``eval_every`` steps (default ``steps``: at the end only), as the engine's
    ``evaluate`` runs. Training is a scan over chunks of ``eval_every`` steps.
    """
    prepare, step = hand_trainer(lr=lr, clip=clip)
    every = steps if eval_every is None else eval_every
    if steps % every:
        raise ValueError(f"eval_every={every} must divide steps={steps}")

    def run(params: Any, key: Array, x: Array, y: Array, data: dict[str, Array]) -> Any:
        layers = prepare(params)
        before = hand_measurements(layers, data)

        def chunk(layers: Any, start: Array) -> tuple[Any, Any]:
            k = jax.random.fold_in(key, start)
            layers, losses = train(step, layers, k, x, y, steps=every, batch=batch)
            return layers, (losses, hand_measurements(layers, data)[:3])

        layers, (losses, evals) = lax.scan(chunk, layers, jnp.arange(0, steps, every))
        # The end's losses are the last chunk's evaluation: only the statistics are new.
        return losses.reshape(-1), evals, before, hand_measurements(layers, data)[3:]

    return run


# --------------------------------------------------------------------------- #
# jaxstab's library: init_mlp, apply_mlp, clip_by_global_norm, make_train_step.
# --------------------------------------------------------------------------- #


def jaxstab_trainer(
    *, lr: float, clip: float, apply: Apply = js.apply_mlp, split: bool = True
) -> tuple[Prepare, Step]:
    """jaxstab's training step (``make_train_step``, ``clip_by_global_norm``, SGD).

    Args:
      lr: learning rate.
      clip: global-norm threshold.
      apply: the forward pass, ``jaxstab.apply_mlp`` or a variant of it.
      split: train on :func:`jaxstab.split_stacks` of the parameters, as the
        engine does; False keeps :func:`jaxstab.init_mlp`'s layout, every
        stack scanned (the library before ``split_stacks``).
    """
    optimizer = optax.chain(js.clip_by_global_norm(clip), optax.sgd(lr))

    def loss_fn(params: Any, batch: tuple[Array, Array]) -> Array:
        x, y = batch
        return js.softmax_cross_entropy(apply(params, x, "relu"), y).mean()

    train_step = js.make_train_step(loss_fn, optimizer)

    def prepare(params: Any) -> State:
        if split:
            params = js.split_stacks(params)
        return params, optimizer.init(params)

    def step(state: State, x: Array, y: Array) -> tuple[State, Array]:
        params, opt_state, metrics = train_step(*state, (x, y))
        return (params, opt_state), metrics["loss"]

    return prepare, step


# --------------------------------------------------------------------------- #
# The shared loop.
# --------------------------------------------------------------------------- #


def train(
    step: Step, state: State, key: Array, x: Array, y: Array, *, steps: int, batch: int
) -> tuple[State, Array]:
    """``steps`` steps of ``lax.scan``, each on ``batch`` indices drawn with replacement.

    Returns:
      The final state and the ``[steps]`` minibatch losses.
    """
    n = x.shape[0]

    def body(state: State, i: Array) -> tuple[State, Array]:
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, n)
        return step(state, x[idx], y[idx])

    return lax.scan(body, state, jnp.arange(steps))


def full_run(prepare: Prepare, step: Step, *, steps: int, batch: int) -> Callable[..., Array]:
    """``run(params, key, x, y) -> losses [steps]``: a whole training run from ``params``."""

    def run(params: Any, key: Array, x: Array, y: Array) -> Array:
        _, losses = train(step, prepare(params), key, x, y, steps=steps, batch=batch)
        return losses

    return run


def init_params(sizes: list[int], seeds: int, seed: int = 0) -> tuple[Any, Array]:
    """Seed-stacked jaxstab MLP parameters (He-normal) and per-seed minibatch keys."""
    keys = jax.random.split(jax.random.key(seed), (2, seeds))
    init = jax.jit(jax.vmap(lambda k: js.init_mlp(k, sizes, weight_init=js.he_normal())))
    return init(keys[0]), keys[1]


def seed_sharding(n_seeds: int, devices: list[jax.Device] | None = None) -> NamedSharding:
    """Shards a leading seeds axis over the most of ``devices`` (default all) that divide it."""
    devices = jax.devices() if devices is None else devices
    count = max(k for k in range(1, len(devices) + 1) if n_seeds % k == 0)
    return NamedSharding(Mesh(np.asarray(devices[:count]), ("seeds",)), PartitionSpec("seeds"))


def shard_seeds(tree: Any, devices: list[jax.Device] | None = None) -> Any:
    """``tree`` (leading axis: seeds) placed with :func:`seed_sharding`; None: one device."""
    if devices is not None and len(devices) == 1:
        return jax.device_put(tree, devices[0])
    n = jax.tree.leaves(tree)[0].shape[0]
    return jax.device_put(tree, seed_sharding(n, devices))


def sharded_count(n_seeds: int) -> int:
    """How many devices :func:`shard_seeds` spreads ``n_seeds`` seeds over."""
    return math.prod(seed_sharding(n_seeds).mesh.devices.shape)


def unstack(tree: Any, n: int) -> list[Any]:
    """The ``n`` slices of a pytree along its leading axis."""
    return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(n)]


def device_data(data: Dataset) -> tuple[Array, Array]:
    """The training split on the default device."""
    return jnp.asarray(data.x_train), jnp.asarray(data.y_train)
