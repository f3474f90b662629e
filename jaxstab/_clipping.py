"""Gradient clipping as optax transformations whose state reports what they did.

Chain them before the optimizer::

    optimizer = optax.chain(jaxstab.clip_by_global_norm(1.0), optax.sgd(0.1))

Each state is a :class:`ClipState` with one fixed structure from ``init`` on,
so the transforms run inside ``lax.scan`` and under ``jax.vmap`` over seeds.
A step whose gradient norm is not finite passes on a zero gradient (SGD then
leaves the parameters where they were; a momentum optimizer after the clip
still moves by its momentum) and is counted; ``nonfinite="propagate"`` passes
the raw gradient on instead.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstab._typing import Array

NONFINITE_MODES = ("zero", "propagate")


class ClipState(NamedTuple):
    """What the last update of a clipping transform did, and running counts."""

    global_norm: Array  # [] float32: global L2 norm of the last gradient, before clipping.
    clipped: Array  # [] bool: whether the last update was rescaled at all.
    fraction_clipped: Array  # [] float32: fraction of the clipped units (1/0 for global).
    num_clipped: Array  # [] int32: number of updates that were rescaled.
    num_nonfinite: Array  # [] int32: number of updates whose norm was inf or NaN.


def _check_threshold(name: str, value: float | Array) -> float | Array:
    if isinstance(value, jax.core.Tracer):
        return value  # a traced hyperparameter (vmapped sweeps): checked by the caller
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_nonfinite(nonfinite: str) -> None:
    if nonfinite not in NONFINITE_MODES:
        raise ValueError(f"unknown nonfinite={nonfinite!r}; valid: {', '.join(NONFINITE_MODES)}")


def _init(params: Any) -> ClipState:
    del params
    return ClipState(
        global_norm=jnp.zeros([], jnp.float32),
        clipped=jnp.zeros([], bool),
        fraction_clipped=jnp.zeros([], jnp.float32),
        num_clipped=jnp.zeros([], jnp.int32),
        num_nonfinite=jnp.zeros([], jnp.int32),
    )


def _finish(
    raw: Any,
    clipped_updates: Any,
    state: ClipState,
    fraction: Array,
    nonfinite: str,
    norm: Array | None = None,
) -> tuple[Any, ClipState]:
    """Zeroes a non-finite step (unless propagating) and advances the counts.

    ``norm`` is the global norm of ``raw`` when the caller has it already.
    """
    norm = (optax.tree.norm(raw) if norm is None else norm).astype(jnp.float32)
    finite = jnp.isfinite(norm)
    if nonfinite == "zero":
        updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), clipped_updates)
    else:
        updates = clipped_updates
    fraction = jnp.where(finite, fraction, 0.0).astype(jnp.float32)
    did_clip = fraction > 0
    new_state = ClipState(
        global_norm=norm,
        clipped=did_clip,
        fraction_clipped=fraction,
        num_clipped=state.num_clipped + did_clip.astype(jnp.int32),
        num_nonfinite=state.num_nonfinite + (~finite).astype(jnp.int32),
    )
    return updates, new_state


def clip_by_global_norm(
    max_norm: float | Array, *, nonfinite: str = "zero"
) -> optax.GradientTransformation:
    """Rescales the whole gradient to global norm at most ``max_norm``.

    ``g <- g * min(1, tau / ||g||)``: the direction is unchanged, and with SGD a
    step moves the parameters by at most ``lr * tau``. Numerically equal to
    ``optax.clip_by_global_norm`` on finite gradients.

    Args:
      max_norm: the threshold ``tau``, positive and finite.
      nonfinite: ``"zero"`` passes on a zero gradient when the norm is inf or
        NaN; ``"propagate"`` passes the raw gradient on.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ClipState`.

    References:
      Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent
      neural networks", arXiv 1211.5063.
    """
    max_norm = _check_threshold("max_norm", max_norm)
    _check_nonfinite(nonfinite)

    def update_fn(updates: Any, state: ClipState, params: Any = None) -> tuple[Any, ClipState]:
        del params
        g_norm = optax.tree.norm(updates)
        trigger = g_norm < max_norm
        # Same expression as optax: (g / ||g||) * tau, so results match bit for bit.
        clipped = jax.tree.map(
            lambda t: jnp.where(trigger, t, (t / g_norm.astype(t.dtype)) * max_norm), updates
        )
        fraction = (~trigger).astype(jnp.float32)
        return _finish(updates, clipped, state, fraction, nonfinite, norm=g_norm)

    return optax.GradientTransformation(_init, update_fn)


def clip_by_layer_norm(
    max_norm: float | Array, *, nonfinite: str = "zero"
) -> optax.GradientTransformation:
    """Rescales each parameter array on its own to norm at most ``max_norm``.

    A stacked group of layers (leading depth axis) is one array here; its
    layers are clipped together.

    Args:
      max_norm: the per-array threshold, positive and finite.
      nonfinite: as in :func:`clip_by_global_norm`.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ClipState`;
      ``fraction_clipped`` is the fraction of arrays that were rescaled.
    """
    max_norm = _check_threshold("max_norm", max_norm)
    _check_nonfinite(nonfinite)

    def update_fn(updates: Any, state: ClipState, params: Any = None) -> tuple[Any, ClipState]:
        del params
        leaves, treedef = jax.tree.flatten(updates)
        norms = [jnp.linalg.norm(jnp.ravel(g)) for g in leaves]
        clipped = [
            jnp.where(n < max_norm, g, (g / n.astype(g.dtype)) * max_norm)
            for g, n in zip(leaves, norms)
        ]
        fraction = jnp.mean(jnp.stack([n >= max_norm for n in norms]).astype(jnp.float32))
        return _finish(updates, jax.tree.unflatten(treedef, clipped), state, fraction, nonfinite)

    return optax.GradientTransformation(_init, update_fn)


def _unit_norm(path: tuple[Any, ...], x: Array) -> Array:
    """Norm of each output unit's slice, broadcastable against ``x``.

    Weights ``[..., fan_in, fan_out]`` (stacked or not): per output unit, over the
    fan-in axis. Biases (a leaf named ``b``, or any leaf of rank <= 1): per
    layer, over the whole bias vector, as optax's ``unitwise_norm`` does.
    """
    name = getattr(path[-1], "key", getattr(path[-1], "name", None)) if path else None
    if x.ndim <= 1 or name == "b":
        return jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=-2, keepdims=True))


def adaptive_clip(
    clipping: float | Array, eps: float | Array = 1e-3, *, nonfinite: str = "zero"
) -> optax.GradientTransformation:
    """Adaptive gradient clipping: unit-wise ``||G_i|| <= clipping * max(||W_i||, eps)``.

    For every output unit ``i`` whose ratio ``||G_i|| / max(||W_i||, eps)``
    exceeds ``clipping``, ``G_i`` is rescaled so the ratio equals ``clipping``.
    Needs ``params`` in ``update``. Brock et al. leave the final linear layer
    unclipped; to do so, use ``optax.partition`` or ``optax.masked``.

    Args:
      clipping: the ratio threshold ``lambda``, positive and finite.
      eps: the floor on parameter norms (so zero-initialized biases can move).
      nonfinite: as in :func:`clip_by_global_norm`.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ClipState`;
      ``fraction_clipped`` is the fraction of units that were rescaled.

    References:
      Brock, De, Smith & Simonyan 2021, "High-Performance Large-Scale Image
      Recognition Without Normalization", arXiv 2102.06171.
    """
    clipping = _check_threshold("clipping", clipping)
    eps = _check_threshold("eps", eps)
    _check_nonfinite(nonfinite)

    def update_fn(updates: Any, state: ClipState, params: Any = None) -> tuple[Any, ClipState]:
        if params is None:
            raise ValueError("adaptive_clip needs params: call update(grads, state, params)")
        g_norms = jax.tree_util.tree_map_with_path(_unit_norm, updates)
        p_norms = jax.tree_util.tree_map_with_path(_unit_norm, params)

        def clip_leaf(g: Array, g_norm: Array, p_norm: Array) -> Array:
            max_norm = clipping * jnp.maximum(p_norm, eps).astype(g.dtype)
            # Where the unit is not clipped the denominator is unused; keep it
            # away from 0 so no NaN reaches the untaken branch of where.
            scale = max_norm / jnp.maximum(g_norm, 1e-30).astype(g.dtype)
            return jnp.where(g_norm > max_norm, g * scale, g)

        clipped = jax.tree.map(clip_leaf, updates, g_norms, p_norms)
        hits = [
            (gn > clipping * jnp.maximum(pn, eps)).astype(jnp.float32)
            for gn, pn in zip(jax.tree.leaves(g_norms), jax.tree.leaves(p_norms))
        ]
        total = sum(h.size for h in hits)
        fraction = sum(jnp.sum(h) for h in hits) / max(total, 1)
        return _finish(updates, clipped, state, jnp.asarray(fraction), nonfinite)

    return optax.GradientTransformation(_init, update_fn)


def find_clip_state(opt_state: Any) -> ClipState | None:
    """The first :class:`ClipState` inside an optimizer state (e.g. of ``optax.chain``)."""
    for node in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, ClipState)):
        if isinstance(node, ClipState):
            return node
    return None
