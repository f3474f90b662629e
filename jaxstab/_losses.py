"""Numerically stable softmax, log-softmax, cross-entropy and accuracy.

Low-precision logits (bfloat16, float16) are computed in float32: the
log-sum-exp of bfloat16 values loses every digit past the third.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxstab._typing import Array, ArrayLike


def _upcast(logits: ArrayLike) -> Array:
    logits = jnp.asarray(logits)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        return logits.astype(jnp.float32)
    if jnp.finfo(logits.dtype).bits < 32:
        return logits.astype(jnp.float32)
    return logits


def _shifted(logits: Array, axis: int, where: Array | None) -> Array:
    # Subtracting the max makes every exponent <= 0, so exp cannot overflow
    # (float32 exp overflows above ~88.72). softmax is invariant to the shift,
    # so its gradient is exactly zero: stop_gradient skips computing it. A row
    # whose max is -inf (every class masked) is shifted by 0 instead of NaN.
    m = jnp.max(logits, axis, where=where, initial=-jnp.inf, keepdims=True)
    m = lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    if where is None:
        return logits - m
    # Masked classes become -inf before exp, so neither exp nor its gradient
    # ever sees their (possibly huge) values.
    return jnp.where(where, logits - m, -jnp.inf)


def log_softmax(logits: ArrayLike, axis: int = -1, where: ArrayLike | None = None) -> Array:
    """``z - max z - log sum exp(z - max z)``, exact at extreme logits.

    Args:
      logits: unnormalized log-probabilities.
      axis: the class axis.
      where: optional boolean mask of the classes to include (broadcastable to
        ``logits``); excluded classes get ``-inf``.

    Returns:
      Log-probabilities, float32 or wider. A class at ``-inf`` gets ``-inf`` and
      a zero gradient.
    """
    logits = _upcast(logits)
    where = None if where is None else jnp.asarray(where)
    shifted = _shifted(logits, axis, where)
    lse = jnp.log(jnp.sum(jnp.exp(shifted), axis, keepdims=True))
    return shifted - lse


def softmax(logits: ArrayLike, axis: int = -1, where: ArrayLike | None = None) -> Array:
    """``exp(z - max z) / sum exp(z - max z)``, with the max under stop_gradient.

    Args:
      logits: unnormalized log-probabilities.
      axis: the class axis.
      where: optional boolean mask of the classes to include.

    Returns:
      Probabilities that sum to one along ``axis`` (zero at masked classes).
    """
    logits = _upcast(logits)
    where = None if where is None else jnp.asarray(where)
    exp = jnp.exp(_shifted(logits, axis, where))
    return exp / jnp.sum(exp, axis, keepdims=True)


def softmax_cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, where: ArrayLike | None = None
) -> Array:
    """Per-example cross-entropy ``-log softmax(z)[y]``, from :func:`log_softmax`.

    Never computed as ``log(softmax)``: at logits ``[1e4, 0, -1e4]`` with label 1
    it is exactly 1e4, and its gradient is ``softmax(z) - onehot(y)``.

    Args:
      logits: ``[..., num_classes]``.
      labels: integer class indices ``[...]`` (shape ``logits.shape[:-1]``), or
        probabilities/one-hot ``[..., num_classes]`` (shape of ``logits``).
      where: optional boolean mask of the classes to include (as in
        :func:`log_softmax`); masking with ``-inf`` logits works too.

    Returns:
      Losses of shape ``logits.shape[:-1]``.

    Raises:
      ValueError: if the label shape fits neither form.
    """
    logits = _upcast(logits)
    labels = jnp.asarray(labels)
    logp = log_softmax(logits, where=where)
    if labels.shape == logits.shape[:-1] and jnp.issubdtype(labels.dtype, jnp.integer):
        return -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    if labels.shape == logits.shape:
        # 0 * -inf would be NaN at masked classes: drop the terms whose label is 0.
        safe = jnp.where(labels == 0, 0.0, logp)
        return -jnp.sum(labels.astype(safe.dtype) * safe, axis=-1)
    raise ValueError(
        f"labels of shape {labels.shape} and dtype {labels.dtype} fit logits of shape "
        f"{logits.shape} neither as integer classes (shape {logits.shape[:-1]}) nor as "
        f"probabilities (shape {logits.shape})"
    )


def accuracy(logits: ArrayLike, labels: ArrayLike) -> Array:
    """Mean of ``argmax(logits) == label`` over every leading axis.

    Args:
      logits: ``[..., num_classes]``.
      labels: integer classes ``[...]`` or one-hot/probabilities ``[..., num_classes]``.

    Returns:
      A float32 scalar in ``[0, 1]``.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if labels.shape == logits.shape:
        labels = jnp.argmax(labels, axis=-1)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels, dtype=jnp.float32)
