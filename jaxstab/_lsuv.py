"""Layer-sequential unit-variance (LSUV) initialization as a pure function."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxstab._activations import get_activation
from jaxstab._mlp import scan_group
from jaxstab._typing import ActivationLike, Array, ArrayLike, Params


def lsuv(
    params: Params,
    x: ArrayLike,
    activation: ActivationLike = "relu",
    *,
    tol: float = 0.1,
    max_iters: int = 10,
) -> Params:
    """Rescales each hidden layer's weights until its output variance is 1.

    Layer by layer from the input, the pre-activation ``z = h @ w + b`` of the
    batch ``x`` is measured and ``w`` divided by ``sqrt(Var z)`` until
    ``|Var z - 1| < tol`` or ``max_iters`` rescalings; the next layer then sees
    the rescaled layer's output. Pure and jittable (each layer's loop is a
    ``lax.while_loop`` inside the scan over its group); the output layer is left
    as it is. The orthogonal start of the paper is the caller's choice:
    ``init_mlp(key, sizes, weight_init=jaxstab.orthogonal())``.

    Args:
      params: MLP parameters from :func:`jaxstab.init_mlp`.
      x: a data batch ``[batch, d_in]``.
      activation: a name or an elementwise callable.
      tol: tolerance on the variance.
      max_iters: most rescalings per layer.

    Returns:
      Parameters of the same structure with rescaled hidden weights.

    References:
      Mishkin & Matas 2016, "All you need is a good init", arXiv 1511.06422.
    """
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f"max_iters must be a positive int, got {max_iters!r}")
    phi = get_activation(activation)

    def layer(h: Array, p: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
        def variance(w: Array) -> Array:
            return jnp.var(h @ w + p["b"][None, :])

        def cond(state: tuple[Array, Array, Array]) -> Array:
            _, var, i = state
            return (jnp.abs(var - 1.0) >= tol) & (i < max_iters)

        def body(state: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
            w, var, i = state
            w = w / jnp.sqrt(var).astype(w.dtype)
            return w, variance(w), i + 1

        w, _, _ = lax.while_loop(cond, body, (p["w"], variance(p["w"]), jnp.zeros([], jnp.int32)))
        return phi(h @ w + p["b"][None, :]), {"w": w, "b": p["b"]}

    h = jnp.asarray(x)
    hidden = []
    for group in params["hidden"]:
        h, new_group = scan_group(layer, h, group, group)
        hidden.append(new_group)
    return {"hidden": hidden, "output": params["output"]}
