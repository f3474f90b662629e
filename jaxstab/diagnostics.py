"""Per-layer signal-propagation diagnostics of jaxstab's MLP, pure and jittable.

Each result is a NamedTuple of arrays with a leading layer axis, ordered from
the input to the output, so ``jax.vmap`` over seeds gives per-seed curves::

    stats = jax.vmap(lambda p: forward_stats(p, x, "tanh"))(params_per_seed)
    stats.second_moment  # [seeds, layers]

These are :mod:`jaxstab.probe`'s statistics of ``apply_mlp``, restricted to the
hidden layers: the same code measures any model. The statistics are computed
inside the same ``lax.scan`` as the forward pass, so no ``[layers, batch,
width]`` tensor is stored for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxstab import probe
from jaxstab._activations import get_activation
from jaxstab._losses import softmax_cross_entropy
from jaxstab._mlp import apply_mlp
from jaxstab._typing import ActivationLike, Array, ArrayLike, Params
from jaxstab.probe import SATURATION_THRESHOLD

__all__ = [
    "SATURATION_THRESHOLD",
    "BackwardStats",
    "ForwardStats",
    "backward_stats",
    "derivative",
    "forward_stats",
    "jacobian_singular_values",
    "layer_stats",
]


class ForwardStats(NamedTuple):
    """Per hidden layer statistics of the pre-activations ``z`` (each ``[layers]``)."""

    second_moment: Array  # q^l: mean of z² over units and batch.
    mean: Array  # mean of z over units and batch.
    variance: Array  # variance of z over units and batch.
    activation_second_moment: Array  # mean of phi(z)² over units and batch.
    dead_fraction: Array  # fraction of units with phi(z) == 0 on every example.
    saturated_fraction: Array  # fraction of units with |phi'(z)| < threshold on every example.


class BackwardStats(NamedTuple):
    """Per hidden layer gradient statistics (each ``[layers]``) and the output layer's."""

    grad_norm: Array  # Frobenius norm of dL/dW^l, L the batch-mean loss.
    bias_grad_norm: Array  # norm of dL/db^l.
    signal_second_moment: Array  # mean over examples and units of (dl_i/dz_i^l)², l_i per example.
    output_grad_norm: Array  # [] norm of the output layer's dL/dW.


def derivative(activation: ActivationLike) -> Callable[[Array], Array]:
    """The elementwise derivative ``phi'`` of an activation, by forward-mode autodiff."""
    phi = get_activation(activation)

    def dphi(z: Array) -> Array:
        return jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]

    return dphi


def _model(activation: ActivationLike) -> Callable[[Params, Array], Array]:
    phi = get_activation(activation)
    return lambda params, x: apply_mlp(params, x, phi)


def _mean_loss(logits: Array, labels: Array) -> Array:
    return jnp.mean(softmax_cross_entropy(logits, labels))


def _hidden(names: tuple[str, ...]) -> np.ndarray:
    """The hidden layers' entries (``hidden/g/w[i]``); the output layer is ``output/w``."""
    return np.asarray([i for i, n in enumerate(names) if n.startswith("hidden/")], dtype=np.int32)


def _forward(stats: probe.Forward) -> ForwardStats:
    idx = _hidden(stats.names)
    return ForwardStats(*(getattr(stats, f)[..., idx] for f in ForwardStats._fields))


def _backward(stats: probe.Backward, batch: int) -> BackwardStats:
    idx = _hidden(stats.names)
    # dL/dz of the batch mean is (1/batch) dl_i/dz_i: rescale to per-example signals.
    return BackwardStats(
        grad_norm=stats.weight_grad_norm[..., idx],
        bias_grad_norm=stats.bias_grad_norm[..., idx],
        signal_second_moment=batch**2 * stats.grad_second_moment[..., idx],
        output_grad_norm=stats.weight_grad_norm[..., stats.names.index("output/w")],
    )


def forward_stats(
    params: Params,
    x: ArrayLike,
    activation: ActivationLike = "relu",
    *,
    saturation_threshold: float = SATURATION_THRESHOLD,
) -> ForwardStats:
    """Measures every hidden layer's pre-activation statistics on a batch.

    Args:
      params: MLP parameters from :func:`jaxstab.init_mlp`.
      x: a batch ``[batch, d_in]``.
      activation: a name or an elementwise callable.
      saturation_threshold: ``|phi'(z)|`` under which a unit is saturated.

    Returns:
      A :class:`ForwardStats` with one entry per hidden layer. ``second_moment``
      is the mean-field ``q^l`` to compare with :func:`jaxstab.theory.q_profile`.

    References:
      Glorot & Bengio 2010 (saturation); Lu et al. 2019, arXiv 1903.06733 (dead units).
    """
    stats = probe.forward(
        _model(activation), params, jnp.asarray(x), saturation_threshold=saturation_threshold
    )
    return _forward(stats)


def backward_stats(
    params: Params,
    x: ArrayLike,
    labels: ArrayLike,
    activation: ActivationLike = "relu",
) -> BackwardStats:
    """Measures every hidden layer's gradient and back-propagated signal.

    One backward pass of the batch-mean cross-entropy gives both the weight
    gradients and ``dL/dz^l``, the latter read by :func:`jaxstab.probe.layer_stats`'s
    identity taps on each pre-activation.

    Args:
      params: MLP parameters.
      x: a batch ``[batch, d_in]``.
      labels: integer classes ``[batch]`` (or probabilities ``[batch, d_out]``).
      activation: a name or an elementwise callable.

    Returns:
      A :class:`BackwardStats`. Mean-field theory predicts
      ``signal_second_moment[l] / signal_second_moment[l + 1] = chi1(q^l)``
      for equal widths (see :func:`jaxstab.theory.gradient_profile`).

    References:
      Schoenholz et al. 2017, "Deep Information Propagation", arXiv 1611.01232.
    """
    return layer_stats(params, x, labels, activation)[1]


def layer_stats(
    params: Params,
    x: ArrayLike,
    labels: ArrayLike,
    activation: ActivationLike = "relu",
    *,
    saturation_threshold: float = SATURATION_THRESHOLD,
) -> tuple[ForwardStats, BackwardStats]:
    """:func:`forward_stats` and :func:`backward_stats` of one batch from one pass.

    The forward statistics are gathered during the backward pass's own forward
    pass, so this costs one forward and one backward pass instead of two
    forwards and a backward.

    Args:
      params: MLP parameters.
      x: a batch ``[batch, d_in]``.
      labels: integer classes ``[batch]`` (or probabilities ``[batch, d_out]``).
      activation: a name or an elementwise callable.
      saturation_threshold: as in :func:`forward_stats`.

    Returns:
      ``(ForwardStats, BackwardStats)``, equal to the two functions' results.
    """
    x = jnp.asarray(x)
    fwd, bwd = probe.layer_stats(
        _model(activation),
        params,
        (x, labels),
        loss=_mean_loss,
        saturation_threshold=saturation_threshold,
    )
    return _forward(fwd), _backward(bwd, x.shape[0])


def jacobian_singular_values(
    params: Params, x: ArrayLike, activation: ActivationLike = "relu"
) -> Array:
    """Singular values of ``d z^L / d x`` per example (dynamical isometry).

    ``z^L`` is the last hidden layer's pre-activation. At criticality the squared
    singular values have mean 1 and a spread that grows with depth, unless the
    weights are orthogonal and phi' is near 1 (Pennington et al. 2017).

    Args:
      params: MLP parameters (at least one hidden layer).
      x: a batch ``[batch, d_in]``.
      activation: a name or an elementwise callable.

    Returns:
      ``[batch, min(width_L, d_in)]`` singular values, in descending order.

    References:
      Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep
      learning through dynamical isometry", arXiv 1711.04735.
    """
    if not params["hidden"]:
        raise ValueError("jacobian_singular_values needs at least one hidden layer")
    # Entry -2: the last hidden layer's z (the output layer is the last entry).
    return probe.jacobian_singular_values(_model(activation), params, x, at=-2)
