"""Layer-sequential unit-variance (LSUV) initialization of jaxstab's MLP."""

from __future__ import annotations

from jaxstab import probe
from jaxstab._activations import get_activation
from jaxstab._mlp import apply_mlp
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
    ``init_mlp(key, sizes, weight_init=jaxstab.orthogonal())``. This is
    :func:`jaxstab.probe.lsuv` (LSUV of any model) on ``apply_mlp``, with the
    hidden weights as its layers.

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
    phi = get_activation(activation)

    def apply(p: Params, x: Array) -> Array:
        return apply_mlp(p, x, phi)

    hidden = [f"hidden/{g}/w" for g in range(len(params["hidden"]))]
    return probe.lsuv(apply, params, x, layers=hidden, tol=tol, max_iters=max_iters)
