"""Changes to the library, prototyped here to measure them before they are made.

Nothing in this module is imported by ``jaxstab``: each function is the
library's way of doing something with one change, and the sections time it
next to the original. BENCHMARKS.md's findings say what is recommended and why.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxstab import get_activation
from jaxstab._typing import ActivationLike, Array, Params

# --------------------------------------------------------------------------- #
# 1. Short stacks split into single-layer groups.
# --------------------------------------------------------------------------- #

SPLIT_MAX = 16
"""Prototype: a stack of at most this many equal layers trains as single-layer groups."""


def split_short_stacks(params: Params, max_len: int = SPLIT_MAX) -> Params:
    """The same MLP with every stack of at most ``max_len`` layers split into groups of one.

    ``{"w": [k, n, m], "b": [k, m]}`` becomes ``k`` groups ``{"w": [1, n, m],
    "b": [1, m]}``, which ``jaxstab.apply_mlp`` already accepts (it runs each
    group in turn; a scan of length one compiles to straight-line code). Under
    ``jax.vmap`` over seeds the per-layer arrays are separate buffers: no
    slicing out of ``[seeds, k, n, m]``, no gathering of the gradient back
    into it, no loop state. Longer stacks stay stacked and scanned, so compile
    time still does not grow with depth. Works on per-seed parameters; vmap it
    for seed-stacked ones.
    """
    hidden = []
    for group in params["hidden"]:
        count = group["w"].shape[0]
        if count > max_len:
            hidden.append(group)
            continue
        hidden += [jax.tree.map(lambda a, i=i: a[i : i + 1], group) for i in range(count)]
    return {"hidden": hidden, "output": params["output"]}


# --------------------------------------------------------------------------- #
# 2. Two-level remat: O(sqrt(depth)) saved activations.
# --------------------------------------------------------------------------- #


def apply_mlp_nested_remat(
    params: Params, x: Array, activation: ActivationLike = "relu", *, block: int = 0
) -> Array:
    """``jaxstab.apply_mlp(remat=True)`` with two-level (sqrt(L)) checkpointing.

    A stack of ``L = outer * block`` equal layers runs as an outer scan over
    ``outer`` blocks whose body, a checkpointed inner scan over ``block``
    layers, saves only its input: the backward pass keeps ``outer`` block
    inputs plus one block's activations, ``O(sqrt(L))`` instead of the
    ``O(L)`` layer inputs that per-layer ``jax.checkpoint`` keeps.

    Args:
      params: MLP parameters from ``jaxstab.init_mlp``.
      x: inputs ``[batch, d_in]``.
      activation: a name or callable.
      block: layers per checkpointed block; 0 picks the divisor of ``L``
        closest to ``sqrt(L)``.
    """
    phi = get_activation(activation)
    h = jnp.asarray(x)

    def layer(h: Array, p: dict[str, Array]) -> tuple[Array, None]:
        return phi(h @ p["w"] + p["b"][None, :]), None

    @jax.checkpoint
    def run_block(h: Array, p: dict[str, Array]) -> tuple[Array, None]:
        return lax.scan(layer, h, p)[0], None

    for group in params["hidden"]:
        count, n_in, n_out = group["w"].shape[-3:]
        if n_in != n_out:
            h, _ = layer(h, jax.tree.map(lambda a: a[0], group))
            continue
        size = block or sqrt_divisor(count)
        blocks = jax.tree.map(lambda a, s=size, c=count: a.reshape(c // s, s, *a.shape[1:]), group)
        h, _ = lax.scan(run_block, h, blocks)
    return h @ params["output"]["w"] + params["output"]["b"][None, :]


def sqrt_divisor(n: int) -> int:
    """The divisor of ``n`` closest to ``sqrt(n)`` (1 for a prime).

    Example:
      >>> sqrt_divisor(1023), sqrt_divisor(16), sqrt_divisor(7)
      (31, 4, 1)
    """
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: abs(d - n**0.5))
