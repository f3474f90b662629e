"""Per-layer signal-propagation diagnostics of an MLP, pure and jittable.

Each result is a NamedTuple of arrays with a leading layer axis, ordered from
the input to the output, so ``jax.vmap`` over seeds gives per-seed curves::

    stats = jax.vmap(lambda p: forward_stats(p, x, "tanh"))(params_per_seed)
    stats.second_moment  # [seeds, layers]

The statistics are computed inside the same ``lax.scan`` as the forward pass
(:func:`jaxstab._mlp.scan_hidden`), so no ``[layers, batch, width]`` tensor is
stored for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxstab._activations import get_activation
from jaxstab._losses import softmax_cross_entropy
from jaxstab._mlp import apply_mlp, scan_hidden
from jaxstab._typing import ActivationLike, Array, ArrayLike, Params

SATURATION_THRESHOLD = 1e-2
"""Default |phi'(z)| below which a unit counts as saturated: tanh at |z| > 3.0,
sigmoid at |z| > 4.6; for ReLU a saturated unit is a dead one."""

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


def _concat(per_group: list[Array]) -> Array:
    return jnp.concatenate(per_group, axis=0) if per_group else jnp.zeros((0,))


def _forward_collector(
    activation: ActivationLike, saturation_threshold: float
) -> Callable[[Array, Array], ForwardStats]:
    """``collect(z, h)`` for :func:`jaxstab._mlp.scan_hidden`: one layer's ForwardStats."""
    dphi = derivative(activation)

    def collect(z: Array, h: Array) -> ForwardStats:
        mean = jnp.mean(z)
        second = jnp.mean(jnp.square(z))
        dead = jnp.all(h == 0, axis=0)
        saturated = jnp.all(jnp.abs(dphi(z)) < saturation_threshold, axis=0)
        return ForwardStats(
            second_moment=second,
            mean=mean,
            variance=jnp.mean(jnp.square(z - mean)),
            activation_second_moment=jnp.mean(jnp.square(h)),
            dead_fraction=jnp.mean(dead.astype(jnp.float32)),
            saturated_fraction=jnp.mean(saturated.astype(jnp.float32)),
        )

    return collect


def _join_forward(per_group: list[ForwardStats]) -> ForwardStats:
    return ForwardStats(*(_concat([g[i] for g in per_group]) for i in range(6)))


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
    phi = get_activation(activation)
    collect = _forward_collector(phi, saturation_threshold)
    _, per_group = scan_hidden(params, jnp.asarray(x), phi, collect=collect)
    return _join_forward(per_group)


def _backward(
    params: Params,
    x: Array,
    labels: ArrayLike,
    activation: ActivationLike,
    collect: Callable[[Array, Array], Any] | None,
) -> tuple[BackwardStats, list[Any]]:
    """One backward pass: the BackwardStats and, per group, what ``collect`` gathered."""
    batch = x.shape[0]
    offsets = [
        jnp.zeros((g["w"].shape[0], batch, g["w"].shape[-1]), x.dtype) for g in params["hidden"]
    ]

    def loss(params: Params, offsets: list[Array]) -> tuple[Array, list[Any]]:
        h, collected = scan_hidden(params, x, activation, collect=collect, offsets=offsets)
        logits = h @ params["output"]["w"] + params["output"]["b"][None, :]
        return jnp.mean(softmax_cross_entropy(logits, labels)), collected

    (g_params, g_offsets), collected = jax.grad(loss, argnums=(0, 1), has_aux=True)(params, offsets)
    # dL/dz of the batch mean is (1/batch) dl_i/dz_i: rescale to per-example signals.
    signal = _concat([jnp.mean(jnp.square(batch * g), axis=(1, 2)) for g in g_offsets])

    def layer_norms(a: Array) -> Array:
        return jnp.sqrt(jnp.sum(jnp.square(a), axis=tuple(range(1, a.ndim))))

    stats = BackwardStats(
        grad_norm=_concat([layer_norms(g["w"]) for g in g_params["hidden"]]),
        bias_grad_norm=_concat([layer_norms(g["b"]) for g in g_params["hidden"]]),
        signal_second_moment=signal,
        output_grad_norm=jnp.linalg.norm(g_params["output"]["w"]),
    )
    return stats, collected


def backward_stats(
    params: Params,
    x: ArrayLike,
    labels: ArrayLike,
    activation: ActivationLike = "relu",
) -> BackwardStats:
    """Measures every hidden layer's gradient and back-propagated signal.

    One backward pass of the batch-mean cross-entropy gives both the weight
    gradients and ``dL/dz^l``, the latter as the gradient with respect to zero
    offsets added to each pre-activation.

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
    return _backward(params, jnp.asarray(x), labels, activation, None)[0]


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
    phi = get_activation(activation)
    collect = _forward_collector(phi, saturation_threshold)
    backward, per_group = _backward(params, jnp.asarray(x), labels, phi, collect)
    return _join_forward(per_group), backward


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
    x = jnp.asarray(x)
    if not params["hidden"]:
        raise ValueError("jacobian_singular_values needs at least one hidden layer")

    def last_preactivation(x_i: Array) -> Array:
        _, pre = apply_mlp(params, x_i[None, :], activation, capture=True)
        return pre[-1][0]

    jac = jax.vmap(jax.jacfwd(last_preactivation))(x)
    return jnp.linalg.svd(jac, compute_uv=False)
