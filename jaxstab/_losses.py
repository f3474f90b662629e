"""Numerically stable softmax, log-softmax, cross-entropy and accuracy.

Low-precision logits (bfloat16, float16) are computed in float32: the
log-sum-exp of bfloat16 values loses every digit past the third.

Masked classes and ignored rows. A class is masked by a ``-inf`` logit or by
``where=False``; it gets probability 0, log-probability ``-inf`` and a zero
gradient. A row whose every class is masked is an *ignored row*: softmax gives
zeros there (not a distribution), log-softmax ``-inf`` everywhere, the
cross-entropy 0, and all three a zero gradient. Nothing is NaN unless a logit is.

Integer labels out of range. Concrete labels (outside ``jit``/``vmap``/``grad``
tracing, or closed over as constants) are checked when the loss is called: a label
outside ``[0, num_classes)`` raises ``ValueError`` naming it. Traced labels cannot be
checked by Python; there such a row's loss *and* its gradient are NaN (never another
class's loss, as a wrapped-around ``-1`` would give, and never a silently dropped
row), so the mean loss and the update are non-finite and the step is visibly broken
(:func:`jaxstab.clip_by_global_norm` counts it as a non-finite step). The check is
also a ``checkify`` check: run the loss (or the whole training step) under
``jax.experimental.checkify.checkify(f, errors=checkify.user_checks)`` to get an
error naming the labels instead.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify

from jaxstab import _checks
from jaxstab._typing import Array, ArrayLike


def _upcast(logits: ArrayLike) -> Array:
    logits = jnp.asarray(logits)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        return logits.astype(jnp.float32)
    if jnp.finfo(logits.dtype).bits < 32:
        return logits.astype(jnp.float32)
    return logits


def _class_axis(logits: Array, axis: int | tuple[int, ...]) -> tuple[int, ...]:
    if logits.ndim == 0:
        raise ValueError("logits must have a class axis, got a scalar (shape ())")
    return _checks.axes("axis", axis, logits.ndim, shape=logits.shape)


def _shifted(logits: Array, axis: tuple[int, ...], where: Array | None) -> Array:
    # Subtracting the max makes every exponent <= 0, so exp cannot overflow
    # (float32 exp overflows above ~88.72). softmax is invariant to the shift,
    # so its gradient is exactly zero: stop_gradient skips computing it.
    m = jnp.max(logits, axis, where=where, initial=-jnp.inf, keepdims=True)
    # An ignored row (every class masked: its max is -inf) is a constant -inf, so
    # that neither it nor its gradient holds an inf - inf = NaN. (A NaN max is live:
    # a NaN logit stays visible.)
    live = m != -jnp.inf
    m = lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    keep = live if where is None else live & where
    # Masked classes become -inf before exp, so neither exp nor its gradient ever
    # sees their (possibly huge) values.
    return jnp.where(keep, logits - m, -jnp.inf)


def _log_sum_exp_shifted(shifted: Array, axis: tuple[int, ...]) -> tuple[Array, Array]:
    """``(exp(shifted), sum)`` with the sum of an ignored row (0) replaced by 1."""
    exp = jnp.exp(shifted)
    total = jnp.sum(exp, axis, keepdims=True)
    # Every live row sums to >= 1 (its max class contributes exp(0)); an ignored
    # row sums to 0, and dividing by or taking the log of 1 leaves it at 0 / -inf.
    return exp, jnp.where(total == 0, 1.0, total)


def log_softmax(
    logits: ArrayLike, axis: int | tuple[int, ...] = -1, where: ArrayLike | None = None
) -> Array:
    """``z - max z - log sum exp(z - max z)``, exact at extreme logits.

    Args:
      logits: unnormalized log-probabilities.
      axis: the class axis (or axes).
      where: optional boolean mask of the classes to include (broadcastable to
        ``logits``); excluded classes get ``-inf``.

    Returns:
      Log-probabilities, float32 or wider. A masked class (``-inf`` logit or
      ``where=False``) gets ``-inf`` and a zero gradient; a row with every class
      masked is ``-inf`` throughout, with a zero gradient (not NaN).

    Raises:
      ValueError: for scalar logits or an axis out of range.

    Example:
      >>> log_softmax(jnp.array([0.0, -jnp.inf])).tolist()
      [0.0, -inf]
    """
    logits = _upcast(logits)
    axes = _class_axis(logits, axis)
    where = None if where is None else jnp.asarray(where)
    shifted = _shifted(logits, axes, where)
    _, total = _log_sum_exp_shifted(shifted, axes)
    return shifted - jnp.log(total)


def softmax(
    logits: ArrayLike, axis: int | tuple[int, ...] = -1, where: ArrayLike | None = None
) -> Array:
    """``exp(z - max z) / sum exp(z - max z)``, with the max under stop_gradient.

    Args:
      logits: unnormalized log-probabilities.
      axis: the class axis (or axes).
      where: optional boolean mask of the classes to include.

    Returns:
      Probabilities that sum to one along ``axis`` (zero at masked classes); a row
      with every class masked is all zeros, with a zero gradient.

    Raises:
      ValueError: for scalar logits or an axis out of range.
    """
    logits = _upcast(logits)
    axes = _class_axis(logits, axis)
    where = None if where is None else jnp.asarray(where)
    exp, total = _log_sum_exp_shifted(_shifted(logits, axes, where), axes)
    return exp / total


@jax.custom_jvp
def _nan_unless(x: Array, ok: Array) -> Array:
    """``x`` where ``ok``, NaN elsewhere, with a NaN derivative there too.

    Plain ``where(ok, x, nan)`` would give the rejected entries a zero gradient, so
    a batch with an invalid label would train on as if the row were absent. Here
    its gradient is NaN (that row's only), so the step is non-finite, as its loss.
    """
    return jnp.where(ok, x, jnp.nan)


@_nan_unless.defjvp
def _nan_unless_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Any]) -> tuple:
    x, ok = primals
    dx, _ = tangents
    # Linear in dx (a product with a constant), so reverse mode transposes it.
    return _nan_unless(x, ok), dx * jnp.where(ok, 1.0, jnp.nan).astype(dx.dtype)


def _check_concrete_labels(labels: Array, num_classes: int) -> None:
    values = np.asarray(labels)
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"label {int(values[index])} (labels{list(index)}, {int(bad.sum())} of "
            f"{values.size} out of range) is not a class: integer labels must be in "
            f"[0, {num_classes}) for logits with {num_classes} classes"
        )


def softmax_cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, where: ArrayLike | None = None
) -> Array:
    """Per-example cross-entropy ``-log softmax(z)[y]``, from :func:`log_softmax`.

    Never computed as ``log(softmax)``: at logits ``[1e4, 0, -1e4]`` with label 1
    it is exactly 1e4, and its gradient is ``softmax(z) - onehot(y)``.

    A label on a masked class has probability 0: its loss is ``inf``, with a finite
    gradient. A row with every class masked is ignored: loss 0, gradient 0.

    Args:
      logits: ``[..., num_classes]``.
      labels: integer class indices ``[...]`` (shape ``logits.shape[:-1]``) in
        ``[0, num_classes)``, or probabilities/one-hot ``[..., num_classes]``
        (shape of ``logits``).
      where: optional boolean mask of the classes to include (as in
        :func:`log_softmax`); masking with ``-inf`` logits works too.

    Returns:
      Losses of shape ``logits.shape[:-1]``. Under tracing, a row whose integer
      label is out of range is NaN, with a NaN gradient; see the module doc for
      ``checkify``.

    Raises:
      ValueError: if the label shape fits neither form, or a concrete integer
        label is outside ``[0, num_classes)`` (the message names it).

    Example:
      >>> softmax_cross_entropy(jnp.array([[0.0, 0.0], [-jnp.inf, -jnp.inf]]),
      ...                       jnp.array([1, 0])).tolist()
      [0.6931471824645996, 0.0]
    """
    logits = _upcast(logits)
    labels = jnp.asarray(labels)
    if logits.ndim == 0:
        raise ValueError("logits must have a class axis, got a scalar (shape ())")
    logp = log_softmax(logits, where=where)
    # An ignored row is -inf throughout; a row with a NaN logit is not ignored, so
    # the NaN stays visible.
    ignored = jnp.all(logp == -jnp.inf, axis=-1)
    num_classes = logits.shape[-1]
    if labels.shape == logits.shape[:-1] and jnp.issubdtype(labels.dtype, jnp.integer):
        in_range = (labels >= 0) & (labels < num_classes)
        if _checks.is_traced(labels):
            checkify.debug_check(
                jnp.all(in_range),
                f"softmax_cross_entropy: integer labels must be in [0, {num_classes}), "
                "got labels {}",
                labels,
            )
        else:
            _check_concrete_labels(labels, num_classes)
        safe = jnp.where(in_range, labels, 0)
        nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
        nll = jnp.where(ignored, 0.0, nll)
        # A traced out-of-range label is NaN, loss and gradient, never another
        # class's loss.
        return _nan_unless(nll, in_range)
    if labels.shape == logits.shape:
        # 0 * -inf would be NaN at masked classes: drop the terms whose label is 0.
        safe_logp = jnp.where(labels == 0, 0.0, logp)
        nll = -jnp.sum(labels.astype(safe_logp.dtype) * safe_logp, axis=-1)
        return jnp.where(ignored, 0.0, nll)
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
