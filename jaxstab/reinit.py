"""Re-initialize any parameter pytree by path rules.

::

    params = jaxstab.reinit(key, params, {
        "kernel": jaxstab.he_normal(),            # every .../kernel
        "bias": jaxstab.zeros,                    # every .../bias
        "out/kernel": jaxstab.xavier_uniform(gain=0.1),  # the last rule that matches wins
    })

Fans come from :mod:`jaxstab.layouts`, so an equinox ``(out, in)`` weight, an
``OIHW`` or ``HWIO`` conv kernel and a stack of scanned layers each get the
fans of one of their layers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstab import layouts
from jaxstab._typing import Array, Params, PRNGKey

__all__ = ["reinit"]


def _path_id(path: str) -> int:
    # A stable 32-bit id of the path (Python's hash() is salted per process).
    return int.from_bytes(hashlib.blake2s(path.encode(), digest_size=4).digest(), "little")


def _check_key(key: Any) -> None:
    ok = isinstance(key, jax.Array) and (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        or (key.dtype == jnp.uint32 and key.shape == (2,))
    )
    if not ok:
        raise TypeError(f"reinit needs one PRNG key, e.g. jax.random.key(0), got {key!r}")


def _draw(
    key: PRNGKey,
    init: Any,
    layout: layouts.Layout,
    leaf: Array,
    path: str,
    pattern: str,
) -> Array:
    """Draws ``leaf``'s replacement, one layer at a time, in the initializer's axis order."""
    shape = tuple(leaf.shape)
    ndim = len(shape)
    order = layouts.canonical_order(layout, ndim)
    stack_shape = tuple(shape[a] for a in layout.stack_axes)
    dims = tuple(shape[a] for a in order[len(stack_shape) :])  # one layer, canonical order
    if layout.kind == "kernel":
        # Initializers take (*receptive, fan_in, fan_out): merge several in or out axes.
        receptive = tuple(shape[a] for a in layout.receptive_axes(ndim))
        fan_in = math.prod(shape[a] for a in layout.in_axes)
        fan_out = math.prod(shape[a] for a in layout.out_axes)
        layer_shape: tuple[int, ...] = (*receptive, fan_in, fan_out)
    else:
        layer_shape = dims

    def one(k: PRNGKey) -> Array:
        try:
            w = init(k, layer_shape, leaf.dtype)
        except (ValueError, TypeError) as err:
            raise type(err)(
                f"reinit rule {pattern!r} on {path!r} (a {layout.kind}; one layer has shape "
                f"{layer_shape}): {err}"
            ) from err
        if tuple(w.shape) != layer_shape:
            raise ValueError(
                f"reinit rule {pattern!r}: the initializer returned shape {tuple(w.shape)} "
                f"for {path!r}, expected {layer_shape}"
            )
        return jnp.asarray(w).astype(leaf.dtype)

    n_layers = math.prod(stack_shape)
    if stack_shape:
        # Each stacked layer is drawn as a layer of its own, from its own key.
        w = jax.vmap(one)(jax.random.split(key, n_layers))
    else:
        w = one(key)
    w = w.reshape(stack_shape + dims)
    return jnp.transpose(w, tuple(np.argsort(order)))


def reinit(
    key: PRNGKey,
    params: Params,
    rules: Mapping[str, Any],
    *,
    layout: layouts.LayoutSpec = None,
) -> Params:
    """Re-draws the leaves of ``params`` that ``rules`` name; the others stay as they are.

    Rules map a path pattern to an initializer ``init(key, shape, dtype)``.
    Patterns are globs on the ``/``-joined path, matched against the whole
    path or any ``/``-aligned suffix (``"out/kernel"`` names
    ``params/out/kernel``; a leading ``/`` anchors at the root; ``*``
    crosses ``/``). When several rules name a leaf, the last one wins: write
    general rules first, exceptions after.

    Each leaf's :class:`~jaxstab.layouts.Layout` (inferred, or from
    ``layout``) says how to call the initializer. A kernel is drawn one layer
    at a time with shape ``(*receptive, fan_in, fan_out)``, the axis order
    jax's initializers assume, then transposed into the leaf's own order: an
    equinox ``(out, in)`` weight gets ``fan_in = in``. Stacked layers are
    drawn one by one, each with the fans of one layer. A bias or vector is
    drawn per layer with its per-layer shape. So pass initializers with their
    default axes (no ``in_axis``/``out_axis``).

    The draw of a leaf depends only on ``key``, its path and its rule: adding
    or removing other rules leaves it unchanged. Non-array leaves (an equinox
    module's functions) are never matched. Jittable: ``rules`` and ``layout``
    are static; ``key`` and ``params`` may be traced.

    Args:
      key: a PRNG key.
      params: any parameter pytree: flax linen variables, an ``nnx.State``,
        an equinox module or its ``eqx.partition`` arrays, jaxstab's MLP.
      rules: ``{pattern: initializer}``, in order.
      layout: see :func:`jaxstab.layouts.resolve` (default: inferred).

    Returns:
      A pytree of the same structure (nnx Variables stay Variables), with the
      named leaves re-drawn in their own dtypes.

    Raises:
      ValueError: for a rule that names no leaf, an unknown or impossible
        layout, or an initializer that cannot draw a leaf (e.g. a fan-based
        initializer on a bias); the message names the rule and the path.
      TypeError: for a key that is not a PRNG key or a rule that is not
        callable.

    Example:
      >>> import jax, jax.numpy as jnp, jaxstab as js
      >>> params = {"w": jnp.zeros((3, 64, 64)), "b": jnp.ones((3, 64))}  # 3 stacked layers
      >>> new = js.reinit(jax.random.key(0), params, {"w": js.he_normal(), "b": js.zeros})
      >>> [round(float(jnp.var(w) * 64), 2) for w in new["w"]]  # 2 per layer, SE 0.06
      [2.0, 1.94, 1.97]
      >>> new["b"].tolist() == [[0.0] * 64] * 3
      True
    """
    _check_key(key)
    if not isinstance(rules, Mapping) or not rules:
        raise TypeError(
            f"rules must be a non-empty mapping {{pattern: initializer}}, got {rules!r}"
        )
    patterns: Sequence[str] = list(rules)
    for pattern, init in rules.items():
        if not callable(init):
            raise TypeError(
                f"reinit rule {pattern!r} needs an initializer init(key, shape, dtype), "
                f"got {init!r}"
            )
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    arrays = [
        (i, layouts.path_str(kp), x) for i, (kp, x) in enumerate(flat) if layouts._is_array(x)
    ]
    paths = [p for _, p, _ in arrays]
    chosen = layouts.match_rules(patterns, paths, what="reinit rule")
    named = [(i, p, x, r) for (i, p, x), r in zip(arrays, chosen) if r >= 0]
    found = layouts.resolve(params, layout, only=[p for _, p, _, _ in named])
    leaves = [x for _, x in flat]
    for i, path, x, r in named:
        pattern = patterns[r]
        leaf_key = jax.random.fold_in(key, _path_id(path))
        leaves[i] = _draw(leaf_key, rules[pattern], found[path], x, path, pattern)
    return jax.tree_util.tree_unflatten(treedef, leaves)
