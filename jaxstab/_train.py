"""A pure training step over any loss and any optax optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxstab._clipping import SkipState, find_clip_state
from jaxstab._typing import Array, Params

TrainStep = Callable[[Params, Any, Any], tuple[Params, Any, dict[str, Array]]]


def make_train_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    *,
    has_aux: bool = False,
) -> TrainStep:
    """Builds ``step(params, opt_state, batch) -> (params, opt_state, metrics)``.

    The step is pure, so it can be jitted, run inside ``lax.scan`` over steps
    and vmapped over seeds. ``metrics`` holds ``loss``, ``grad_norm`` (the
    global norm of the raw gradient, before any clipping) and, when the
    optimizer contains a jaxstab clipping transform, ``clipped`` (bool) from
    its :class:`~jaxstab.ClipState` (the first one, see
    :func:`~jaxstab.find_clip_state`), and, when the optimizer is wrapped in
    :func:`~jaxstab.skip_nonfinite`, ``skipped`` (bool): on a skipped step the
    parameters and the optimizer's state stay as they were.

    Args:
      loss_fn: ``loss_fn(params, batch)`` returning a scalar (or
        ``(scalar, aux)`` with ``has_aux``; a dict ``aux`` is merged into metrics).
      optimizer: e.g. ``optax.chain(jaxstab.clip_by_global_norm(1.0), optax.sgd(0.1))``;
        wrap it in :func:`jaxstab.skip_nonfinite` to skip non-finite steps entirely.
      has_aux: whether ``loss_fn`` returns auxiliary outputs.

    Returns:
      The step function.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxstab as js
      >>> params = js.init_mlp(jax.random.key(0), [4, 8, 3])
      >>> def loss_fn(p, batch):
      ...     x, y = batch
      ...     return js.softmax_cross_entropy(js.apply_mlp(p, x), y).mean()
      >>> optimizer = optax.chain(js.clip_by_global_norm(1.0), optax.sgd(0.1))
      >>> step = jax.jit(js.make_train_step(loss_fn, optimizer))
      >>> batch = (jnp.ones((2, 4)), jnp.array([0, 2]))
      >>> params, opt_state, metrics = step(params, optimizer.init(params), batch)
      >>> sorted(metrics)
      ['clipped', 'grad_norm', 'loss']
    """

    def step(params: Params, opt_state: Any, batch: Any) -> tuple[Params, Any, dict[str, Array]]:
        if has_aux:
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
        else:
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            aux = None
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics: dict[str, Array] = {
            "loss": jnp.asarray(loss),
            "grad_norm": optax.tree.norm(grads),
        }
        clip_state = find_clip_state(opt_state)
        if clip_state is not None:
            metrics["clipped"] = clip_state.clipped
        if isinstance(opt_state, SkipState):
            metrics["skipped"] = opt_state.skipped
        if isinstance(aux, dict):
            metrics.update(aux)
        return params, opt_state, metrics

    return step
