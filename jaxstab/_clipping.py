"""Gradient clipping as optax transformations whose state reports what they did.

Chain them before the optimizer::

    optimizer = optax.chain(jaxstab.clip_by_global_norm(1.0), optax.sgd(0.1))

Each state is a :class:`ClipState` with one fixed structure from ``init`` on,
so the transforms run inside ``lax.scan`` and under ``jax.vmap`` over seeds.

Per-layer clipping (:func:`clip_by_layer_norm`, :func:`adaptive_clip`) reads
each leaf's layout from :mod:`jaxstab.layouts`: a scanned stack is clipped one
layer at a time, biases are found by path and layout, and a conv kernel's unit
is one output channel. Inferred by default; ``layout=`` states it.

Thresholds: a concrete threshold (a Python or numpy number, or a concrete 0-d
array) is checked when the transform is built: it must be positive, and
``inf`` means "monitor only" (the state still reports norms). A traced
threshold (a vmapped sweep) is checked on every step: a step with a threshold
<= 0 or NaN is counted in ``num_nonfinite`` and passes on a zero update.

Non-finite steps: a step whose gradient norm is inf or NaN is counted in
``num_nonfinite``. With ``nonfinite="zero"`` (the default) the clip passes on a
zero gradient. An optimizer chained after the clip still acts on that zero:
SGD leaves the parameters where they were, but momentum or Adam moves them by
its momentum and advances its step count. To leave the parameters and the
optimizer's state untouched, wrap the whole chain in :func:`skip_nonfinite`.
``nonfinite="propagate"`` passes the raw gradient on, so divergence is seen.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxstab import _checks, layouts
from jaxstab._typing import Array

NONFINITE_MODES = ("zero", "propagate")


class ClipState(NamedTuple):
    """What the last update of a clipping transform did, and running counts."""

    global_norm: Array  # [] float32: global L2 norm of the last gradient, before clipping.
    clipped: Array  # [] bool: whether the last update was rescaled at all.
    fraction_clipped: Array  # [] float32: fraction of the clipped units (1/0 for global).
    num_clipped: Array  # [] int32: number of updates that were rescaled.
    num_nonfinite: Array  # [] int32: updates with an inf/NaN norm or an invalid traced threshold.


def _threshold(name: str, value: Any, *, allow_inf: bool) -> tuple[Any, Array | None]:
    """``(value, valid)``: a concrete value checked now (``valid`` None), or a traced one.

    A traced value is checked on every step: ``valid`` is a traced bool.
    """
    value = _checks.positive_number(name, value, allow_inf=allow_inf, allow_traced=True)
    if not _checks.is_traced(value):
        return value, None
    value = value.astype(jnp.result_type(value, jnp.float32))
    valid = value > 0  # False for NaN
    return value, (valid if allow_inf else valid & jnp.isfinite(value))


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


def _scale(t: Array, g_norm: Array, max_norm: Any) -> Array:
    """``t * min(1, max_norm / g_norm)``, as optax writes it, safe at ``g_norm = 0``.

    The denominator is kept >= the smallest normal float, so a zero gradient
    with a threshold that rounds to 0 (1e-45 in float32) stays 0 instead of 0/0.
    """
    tiny = jnp.finfo(t.dtype).tiny
    safe = jnp.maximum(g_norm.astype(t.dtype), tiny)
    return jnp.where(g_norm < max_norm, t, (t / safe) * jnp.asarray(max_norm, t.dtype))


def _finish(
    raw: Any,
    clipped_updates: Any,
    state: ClipState,
    fraction: Array,
    nonfinite: str,
    valid: Array | None,
    norm: Array | None = None,
) -> tuple[Any, ClipState]:
    """Zeroes a non-finite step (unless propagating) and advances the counts.

    ``norm`` is the global norm of ``raw`` when the caller has it already;
    ``valid`` is the check of a traced threshold (None when concrete).
    """
    norm = (optax.tree.norm(raw) if norm is None else norm).astype(jnp.float32)
    ok = jnp.isfinite(norm)
    if valid is not None:
        ok = ok & valid
    # "propagate" lets a non-finite gradient through, never an invalid threshold's result.
    keep = ok if nonfinite == "zero" else valid
    if keep is None:
        updates = clipped_updates
    else:
        updates = jax.tree.map(lambda u: jnp.where(keep, u, jnp.zeros_like(u)), clipped_updates)
    fraction = jnp.where(ok, fraction, 0.0).astype(jnp.float32)
    did_clip = fraction > 0
    new_state = ClipState(
        global_norm=norm,
        clipped=did_clip,
        fraction_clipped=fraction,
        num_clipped=state.num_clipped + did_clip.astype(jnp.int32),
        num_nonfinite=state.num_nonfinite + (~ok).astype(jnp.int32),
    )
    return updates, new_state


def clip_by_global_norm(
    max_norm: float | Array, *, nonfinite: str = "zero"
) -> optax.GradientTransformation:
    """Rescales the whole gradient to global norm at most ``max_norm``.

    ``g <- g * min(1, tau / ||g||)``: the direction is unchanged, and with SGD a
    step moves the parameters by at most ``lr * tau``. Numerically equal to
    ``optax.clip_by_global_norm`` on finite gradients. ``max_norm=inf``
    monitors without clipping: the update passes unchanged and the state
    reports the norm.

    Args:
      max_norm: the threshold ``tau``: positive, or ``inf``. A traced value
        that is <= 0 or NaN makes the step count as non-finite with a zero
        update (see the module doc).
      nonfinite: ``"zero"`` passes on a zero gradient when the norm is inf or
        NaN; ``"propagate"`` passes the raw gradient on.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ClipState`.

    Raises:
      ValueError: for a concrete threshold <= 0, NaN or -inf, or not a real
        scalar (see ``jaxstab._checks``).

    References:
      Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent
      neural networks", arXiv 1211.5063.
    """
    max_norm, valid = _threshold("max_norm", max_norm, allow_inf=True)
    _check_nonfinite(nonfinite)
    monitor = valid is None and max_norm == math.inf  # concrete inf: nothing to rescale

    def update_fn(updates: Any, state: ClipState, params: Any = None) -> tuple[Any, ClipState]:
        del params
        g_norm = optax.tree.norm(updates)
        if monitor:
            clipped, fraction = updates, jnp.zeros([], jnp.float32)
        else:
            # Same expression as optax: (g / ||g||) * tau, so results match bit for bit.
            clipped = jax.tree.map(lambda t: _scale(t, g_norm, max_norm), updates)
            fraction = (g_norm >= max_norm).astype(jnp.float32)
        return _finish(updates, clipped, state, fraction, nonfinite, valid, norm=g_norm)

    return optax.GradientTransformation(_init, update_fn)


def _unit_norms(tree: Any, found: dict[str, layouts.Layout], per_layer: bool) -> list[Array]:
    """Norm of each unit (``per_layer``: each layer) of every leaf, broadcastable against it.

    In the order of ``jax.tree.leaves(tree)``.
    """
    norms = []
    for keypath, x in jax.tree_util.tree_leaves_with_path(tree):
        lay = found[layouts.path_str(keypath)]
        axes = lay.layer_axes(x.ndim) if per_layer else lay.unit_axes(x.ndim)
        norms.append(jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True)))
    return norms


def clip_by_layer_norm(
    max_norm: float | Array,
    *,
    layout: layouts.LayoutSpec = None,
    nonfinite: str = "zero",
) -> optax.GradientTransformation:
    """Rescales each layer's gradient, leaf by leaf, to norm at most ``max_norm``.

    A layer is one index of a leaf's stack axes (a scanned stack of ``L``
    layers is clipped as ``L`` layers), or the whole leaf when it has none.

    Args:
      max_norm: the per-layer threshold: positive, or ``inf`` (monitor only);
        traced values as in :func:`clip_by_global_norm`.
      layout: the parameter layout (:func:`jaxstab.layouts.resolve`); only
        its stack axes matter here. Default: inferred from the paths.
      nonfinite: as in :func:`clip_by_global_norm`.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ClipState`;
      ``fraction_clipped`` is the fraction of (leaf, layer) slices rescaled.
    """
    max_norm, valid = _threshold("max_norm", max_norm, allow_inf=True)
    _check_nonfinite(nonfinite)
    monitor = valid is None and max_norm == math.inf

    def update_fn(updates: Any, state: ClipState, params: Any = None) -> tuple[Any, ClipState]:
        del params
        found = layouts.resolve(updates, layout)
        leaves, treedef = jax.tree.flatten(updates)
        norms = _unit_norms(updates, found, per_layer=True)
        if monitor:
            return _finish(updates, updates, state, jnp.zeros([]), nonfinite, valid)
        clipped = [_scale(g, n, max_norm) for g, n in zip(leaves, norms)]
        hits = [(n >= max_norm).astype(jnp.float32) for n in norms]
        fraction = sum(jnp.sum(h) for h in hits) / max(sum(h.size for h in hits), 1)
        out = jax.tree.unflatten(treedef, clipped)
        return _finish(updates, out, state, jnp.asarray(fraction), nonfinite, valid)

    return optax.GradientTransformation(_init, update_fn)


def adaptive_clip(
    clipping: float | Array,
    eps: float | Array = 1e-3,
    *,
    layout: layouts.LayoutSpec = None,
    nonfinite: str = "zero",
) -> optax.GradientTransformation:
    """Adaptive gradient clipping: unit-wise ``||G_i|| <= clipping * max(||W_i||, eps)``.

    For every unit ``i`` whose ratio ``||G_i|| / max(||W_i||, eps)`` reaches
    ``clipping``, ``G_i`` is rescaled so the ratio equals ``clipping``. A
    kernel's unit is one output unit of one layer, its norm taken over the
    fan-in and receptive-field axes (the ``HWI`` axes of an ``HWIO`` conv,
    the ``in`` axis of an equinox ``(out, in)`` weight, each layer of a stack
    on its own); a bias's or vector's unit is one layer's whole vector. Where
    the layouts coincide with optax's defaults (flax Dense and ``HWIO`` conv
    kernels, unstacked) this equals ``optax.adaptive_grad_clip``. Needs
    ``params`` in ``update``. Brock et al. leave the final linear layer
    unclipped; to do so, use ``optax.partition`` or ``optax.masked``.

    Args:
      clipping: the ratio threshold ``lambda``: positive, or ``inf`` (monitor
        only); traced values as in :func:`clip_by_global_norm`.
      eps: the floor on parameter norms (so zero-initialized biases can move),
        positive and finite.
      layout: the parameter layout (:func:`jaxstab.layouts.resolve`); default
        inferred from the paths.
      nonfinite: as in :func:`clip_by_global_norm`.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ClipState`;
      ``fraction_clipped`` is the fraction of units that were rescaled.

    References:
      Brock, De, Smith & Simonyan 2021, "High-Performance Large-Scale Image
      Recognition Without Normalization", arXiv 2102.06171.
    """
    clipping, clip_valid = _threshold("clipping", clipping, allow_inf=True)
    eps, eps_valid = _threshold("eps", eps, allow_inf=False)
    _check_nonfinite(nonfinite)

    def update_fn(updates: Any, state: ClipState, params: Any = None) -> tuple[Any, ClipState]:
        if params is None:
            raise ValueError("adaptive_clip needs params: call update(grads, state, params)")
        valid = clip_valid
        if eps_valid is not None:
            valid = eps_valid if valid is None else valid & eps_valid
        found = layouts.resolve(params, layout)
        leaves, treedef = jax.tree.flatten(updates)
        g_norms = _unit_norms(updates, found, per_layer=False)
        p_norms = _unit_norms(params, found, per_layer=False)
        max_norms = [clipping * jnp.maximum(pn, eps) for pn in p_norms]
        # As optax's unitwise_clip: g * (max / max(||g||, floor)) where ||g|| >= max.
        clipped = [
            jnp.where(
                gn < mn,
                g,
                g * (mn / jnp.maximum(gn, jnp.finfo(gn.dtype).tiny)).astype(g.dtype),
            )
            for g, gn, mn in zip(leaves, g_norms, max_norms)
        ]
        hits = [(gn >= mn).astype(jnp.float32) for gn, mn in zip(g_norms, max_norms)]
        fraction = sum(jnp.sum(h) for h in hits) / max(sum(h.size for h in hits), 1)
        out = jax.tree.unflatten(treedef, clipped)
        return _finish(updates, out, state, jnp.asarray(fraction), nonfinite, valid)

    return optax.GradientTransformation(_init, update_fn)


# ---------------------------------------------------------------------------
# Skipping non-finite steps


class SkipState(NamedTuple):
    """State of :func:`skip_nonfinite`."""

    inner_state: Any  # the wrapped optimizer's state.
    skipped: Array  # [] bool: whether the last step was skipped.
    num_skipped: Array  # [] int32: number of skipped steps.


def _all_finite(tree: Any) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def skip_nonfinite(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """Wraps a whole optimizer so a non-finite step changes nothing but the counts.

    A step is skipped when the gradient has an inf or NaN, when a jaxstab clip
    inside counts it as non-finite (its norm overflowed, or a traced threshold
    is invalid), or when the optimizer's own update is not finite. A skipped
    step returns a zero update (``params + 0`` is ``params``) and keeps the
    optimizer's previous state bit for bit (Adam's ``mu``, ``nu`` and
    ``count``), except the :class:`ClipState` s inside, which advance so the
    step is still counted in ``num_nonfinite``.

    This differs from a clip's ``nonfinite="zero"``, which only replaces the
    gradient by zeros: an optimizer chained after the clip still runs on
    those zeros, so momentum or Adam still moves the parameters and advances
    its step count. Like ``optax.apply_if_finite``, but counted in the clip
    state and with no limit on consecutive skips.

    Args:
      optimizer: the whole chain, e.g.
        ``optax.chain(jaxstab.clip_by_global_norm(1.0), optax.adam(1e-3))``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with :class:`SkipState`.

    Example:
      >>> import jax.numpy as jnp, optax, jaxstab as js
      >>> opt = js.skip_nonfinite(optax.chain(js.clip_by_global_norm(1.0), optax.adam(0.1)))
      >>> params = {"w": jnp.ones(3)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.array([1.0, jnp.nan, 0.0])}, state, params)
      >>> updates["w"].tolist(), int(state.num_skipped), int(state.inner_state[1][0].count)
      ([0.0, 0.0, 0.0], 1, 0)
      >>> int(js.find_clip_state(state).num_nonfinite)  # the step is counted
      1
    """
    inner = optax.with_extra_args_support(optimizer)

    def init_fn(params: Any) -> SkipState:
        return SkipState(inner.init(params), jnp.zeros([], bool), jnp.zeros([], jnp.int32))

    def update_fn(
        updates: Any, state: SkipState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, SkipState]:
        new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
        is_clip = lambda s: isinstance(s, ClipState)
        old_clips = jax.tree.leaves(state.inner_state, is_leaf=is_clip)
        new_clips = jax.tree.leaves(new_inner, is_leaf=is_clip)
        clip_bad = [
            n.num_nonfinite > o.num_nonfinite
            for o, n in zip(old_clips, new_clips)
            if isinstance(n, ClipState)
        ]
        bad = ~_all_finite(updates) | ~_all_finite(new_updates)
        for b in clip_bad:
            bad = bad | b
        # Keep the old state, except the clip states, which count the step.
        kept = jax.tree.map(
            lambda o, n: n if isinstance(n, ClipState) else jnp.where(bad, o, n),
            state.inner_state,
            new_inner,
            is_leaf=is_clip,
        )
        out = jax.tree.map(lambda u: jnp.where(bad, jnp.zeros_like(u), u), new_updates)
        return out, SkipState(kept, bad, state.num_skipped + bad.astype(jnp.int32))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------
# Finding clip states


def find_clip_states(opt_state: Any) -> dict[str, ClipState]:
    """Every :class:`ClipState` inside an optimizer state, keyed by its path.

    Works on optax states (``optax.chain`` gives paths ``"0"``, ``"1"``, ...;
    :func:`skip_nonfinite` adds ``"inner_state/"``), on a ``flax.nnx``
    optimizer's ``opt_state`` (whose fields are wrapped in Variables) and on
    the ``nnx.State`` from ``nnx.split(optimizer)`` (where a ClipState is a
    dict of its fields). Fields come back as plain arrays.

    Args:
      opt_state: any pytree holding optimizer states.

    Returns:
      ``{path: ClipState}`` in tree order (an empty dict when there is none).
    """
    fields = ClipState._fields
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    # Flattening goes through nnx Variables to their arrays; their ".value"
    # key is dropped from the path, so wrapped and plain states look alike.
    for keypath, leaf in jax.tree_util.tree_leaves_with_path(opt_state):
        names = layouts._names(keypath)
        if names and names[-1] in fields:
            groups.setdefault(names[:-1], {})[names[-1]] = leaf
    return {
        "/".join(prefix): ClipState(**{f: members[f] for f in fields})
        for prefix, members in groups.items()
        if set(members) == set(fields)
    }


def find_clip_state(opt_state: Any) -> ClipState | None:
    """The first :class:`ClipState` inside an optimizer state, or None.

    "First" is in tree order: in ``optax.chain`` the earliest clip. When there
    are several, :func:`find_clip_states` returns all of them with their paths.
    Works on optax and ``flax.nnx`` optimizer states (see :func:`find_clip_states`).
    """
    found = find_clip_states(opt_state)
    return next(iter(found.values())) if found else None
