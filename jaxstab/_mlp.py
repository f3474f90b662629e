"""MLP parameters as plain pytrees, with equal hidden layers stacked and scanned.

Parameters of ``sizes = [d_in, h1, ..., hL, d_out]`` are a dict::

    {"hidden": [{"w": [k, n_in, n_out], "b": [k, n_out]}, ...],   # groups of layers
     "output": {"w": [hL, d_out], "b": [d_out]}}

Consecutive hidden layers of identical shape form one group whose arrays are
stacked along a leading depth axis ``k``; each group runs as one ``lax.scan``,
so the traced program (and its compile time) does not grow with depth. A
``[64, 256 x 50, 10]`` net has two groups: the input layer ``(64, 256)`` with
``k = 1`` and 49 layers ``(256, 256)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
from jax import lax

from jaxstab._activations import get_activation
from jaxstab._initializers import Initializer, he_normal, zeros
from jaxstab._typing import ActivationLike, Array, ArrayLike, DTypeLike, Params, PRNGKey


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise ValueError(f"sizes must be a sequence of positive ints, got {sizes!r}") from None
    bad = [s for s in sizes if isinstance(s, bool) or not isinstance(s, int) or s < 1]
    if len(sizes) < 2 or bad:
        raise ValueError(
            f"sizes must be [d_in, hidden..., d_out] with at least 2 positive ints, "
            f"got {list(sizes)!r}"
        )
    return sizes


def layer_groups(sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """Splits the hidden layers of ``sizes`` into runs of equal shape.

    Returns:
      ``(count, n_in, n_out)`` for each group, in order from the input.
    """
    sizes = _check_sizes(sizes)
    groups: list[tuple[int, int, int]] = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        if groups and groups[-1][1:] == (n_in, n_out):
            groups[-1] = (groups[-1][0] + 1, n_in, n_out)
        else:
            groups.append((1, n_in, n_out))
    return groups


def init_mlp(
    key: PRNGKey,
    sizes: Sequence[int],
    *,
    weight_init: Initializer | None = None,
    bias_init: Initializer = zeros,
    output_init: Initializer | None = None,
    dtype: DTypeLike = jnp.float32,
) -> Params:
    """Builds the parameters of an MLP with layer sizes ``[d_in, h1, ..., d_out]``.

    Layer ``l`` (from 0, the output layer last) uses the ``l``-th of
    ``len(sizes) - 1`` keys split from ``key``, whatever the grouping, so its
    weights do not depend on how layers are stacked. vmap over keys gives
    per-seed parameters: ``jax.vmap(lambda k: init_mlp(k, sizes))(keys)``.

    Args:
      key: a PRNG key.
      sizes: ``[d_in, hidden..., d_out]``, at least two positive ints.
      weight_init: initializer of every weight ``(fan_in, fan_out)``; default
        :func:`jaxstab.he_normal`.
      bias_init: initializer of every bias; default zeros.
      output_init: initializer of the output layer's weight; default ``weight_init``.
      dtype: parameter dtype.

    Returns:
      ``{"hidden": [{"w", "b"}, ...], "output": {"w", "b"}}`` (see the module doc).
    """
    groups = layer_groups(sizes)
    weight_init = he_normal() if weight_init is None else weight_init
    output_init = weight_init if output_init is None else output_init
    keys = jax.random.split(key, len(sizes) - 1)

    def layer(init: Initializer, k: PRNGKey, n_in: int, n_out: int) -> dict[str, Array]:
        k_w, k_b = jax.random.split(k)
        return {"w": init(k_w, (n_in, n_out), dtype), "b": bias_init(k_b, (n_out,), dtype)}

    hidden = []
    start = 0
    for count, n_in, n_out in groups:
        group_keys = keys[start : start + count]
        hidden.append(jax.vmap(lambda k, a=n_in, b=n_out: layer(weight_init, k, a, b))(group_keys))
        start += count
    output = layer(output_init, keys[-1], sizes[-2], sizes[-1])
    return {"hidden": hidden, "output": output}


def mlp_sizes(params: Params) -> list[int]:
    """The layer sizes ``[d_in, hidden..., d_out]`` of MLP parameters."""
    sizes = []
    for group in params["hidden"]:
        count, n_in, n_out = group["w"].shape[-3:]
        sizes += [n_in] + [n_out] * (count - 1)
    sizes += list(params["output"]["w"].shape[-2:])
    return sizes


def scan_hidden(
    params: Params,
    x: Array,
    activation: ActivationLike = "relu",
    *,
    collect: Callable[[Array, Array], Any] | None = None,
    offsets: Sequence[Array] | None = None,
    remat: bool = False,
) -> tuple[Array, list[Any]]:
    """Runs the hidden layers, one ``lax.scan`` per group; the shared forward pass.

    Args:
      params: MLP parameters from :func:`init_mlp`.
      x: inputs ``[batch, d_in]``.
      activation: a name or an elementwise callable.
      collect: ``collect(z, h)`` of each layer's pre-activation ``z`` and
        activation ``h = phi(z)``, stacked by the scan; default nothing.
      offsets: per group, an array ``[k, batch, n_out]`` added to the
        pre-activations. Differentiating with respect to zero offsets gives
        ``dL/dz`` of every layer from one backward pass.
      remat: rematerialize each layer in the backward pass, so only the layer
        inputs are stored across the depth (``jax.checkpoint``).

    Returns:
      ``(h, collected)``: the last hidden activation ``[batch, hL]`` and, per
      group, the stacked output of ``collect`` (leading axis ``k``).
    """
    phi = get_activation(activation)
    collected = []
    h = x
    for i, group in enumerate(params["hidden"]):

        def layer(h: Array, xs: tuple[dict[str, Array], Array | None]) -> tuple[Array, Any]:
            p, offset = xs
            z = h @ p["w"] + p["b"][None, :]
            if offset is not None:
                z = z + offset
            h_next = phi(z)
            return h_next, (collect(z, h_next) if collect is not None else None)

        body = jax.checkpoint(layer) if remat else layer
        group_offsets = None if offsets is None else offsets[i]
        h, out = scan_group(body, h, group, (group, group_offsets))
        collected.append(out)
    return h, collected


def scan_group(
    body: Callable[[Array, Any], tuple[Array, Any]], h: Array, group: dict[str, Array], xs: Any
) -> tuple[Array, Any]:
    """``lax.scan(body, h, xs)`` over one group's stacked layers.

    A group that changes the width has one layer (the carry changes shape, so
    it cannot be scanned): ``body`` is applied to it directly and its output
    given the same leading axis of length 1.
    """
    if group["w"].shape[-2] == group["w"].shape[-1]:
        return lax.scan(body, h, xs)
    h, out = body(h, jax.tree.map(lambda a: a[0], xs))
    return h, jax.tree.map(lambda a: a[None], out)


@overload
def apply_mlp(
    params: Params,
    x: ArrayLike,
    activation: ActivationLike = ...,
    *,
    capture: Literal[False] = ...,
    remat: bool = ...,
) -> Array: ...


@overload
def apply_mlp(
    params: Params,
    x: ArrayLike,
    activation: ActivationLike = ...,
    *,
    capture: Literal[True],
    remat: bool = ...,
) -> tuple[Array, Any]: ...


def apply_mlp(
    params: Params,
    x: ArrayLike,
    activation: ActivationLike = "relu",
    *,
    capture: bool = False,
    remat: bool = False,
) -> Array | tuple[Array, Any]:
    """Applies the MLP: hidden layers ``h = phi(h @ w + b)``, then linear logits.

    Args:
      params: parameters from :func:`init_mlp`.
      x: inputs ``[batch, d_in]``.
      activation: a name from :data:`jaxstab.ACTIVATIONS` or an elementwise callable.
      capture: also return every hidden layer's pre-activation.
      remat: rematerialize the scanned layers in the backward pass (bounded
        activation memory for very deep stacks, at the cost of a second forward).

    Returns:
      ``logits [batch, d_out]``; with ``capture=True``, ``(logits, preactivations)``
      where ``preactivations`` has one ``[batch, width]`` entry per hidden layer:
      one stacked array ``[L, batch, width]`` when all hidden widths are equal,
      else a tuple of arrays.
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a batch [batch, d_in], got shape {x.shape}")
    collect = (lambda z, h: z) if capture else None
    h, collected = scan_hidden(params, x, activation, collect=collect, remat=remat)
    logits = h @ params["output"]["w"] + params["output"]["b"][None, :]
    if not capture:
        return logits
    return logits, stack_layers(collected)


def stack_layers(per_group: Sequence[Any]) -> Any:
    """Joins per-group stacked outputs into one per-layer sequence.

    Concatenates along the layer axis when every leaf agrees in shape past it
    (equal widths), else returns a tuple of per-layer pytrees.
    """
    if not per_group:
        return ()
    leaves = [jax.tree.leaves(g) for g in per_group]
    if all(len({g[i].shape[1:] for g in leaves}) == 1 for i in range(len(leaves[0]))):
        return jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *per_group)
    layers = []
    for group, group_leaves in zip(per_group, leaves):
        for i in range(group_leaves[0].shape[0]):
            layers.append(jax.tree.map(lambda a, i=i: a[i], group))
    return tuple(layers)
