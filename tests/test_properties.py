"""Property-based tests (hypothesis) of the library's boundaries.

Shapes, dtypes, axes, logits and labels are drawn at random; each property holds
for every draw. Runs are small (40 examples, derandomized, no example database on
disk) so the file stays fast and reproducible.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxstab as js
from jaxstab import _checks

SMALL = settings(max_examples=40, deadline=None, database=None, derandomize=True)
KEY = jax.random.key(0)

_BIG = float(np.float32(1e30))  # exactly representable, so hypothesis takes it as a bound
ROWS = 3
CLASSES = (1, 5)  # few shapes: every shape compiles the jitted functions below once


@st.composite
def logits_and_labels(draw: st.DrawFn, bound: float = _BIG) -> tuple:
    classes = draw(st.sampled_from(CLASSES))
    values = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32)
    n = ROWS * classes
    logits = np.array(draw(st.lists(values, min_size=n, max_size=n)), np.float32)
    labels = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=ROWS, max_size=ROWS)))
    return logits.reshape(ROWS, classes), labels


_softmax = jax.jit(js.softmax)
_log_softmax = jax.jit(js.log_softmax)
_loss = jax.jit(js.softmax_cross_entropy)
_loss_grad = jax.jit(jax.grad(lambda z, y, m: jnp.sum(js.softmax_cross_entropy(z, y, where=m))))


# --------------------------------------------------------------------------------------
# Initializers: axes, shapes, dtypes.


@st.composite
def shapes_and_axes(draw: st.DrawFn) -> tuple:
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    in_axis = draw(st.integers(-6, 5))
    out_axis = draw(st.integers(-6, 5))
    return shape, in_axis, out_axis


@SMALL
@given(shapes_and_axes())
def test_variance_scaling_accepts_exactly_the_valid_axes(case):
    shape, in_axis, out_axis = case
    ndim = len(shape)
    in_range = -ndim <= in_axis < ndim and -ndim <= out_axis < ndim
    valid = in_range and in_axis % ndim != out_axis % ndim
    if in_axis == out_axis:
        with pytest.raises(ValueError, match="name the same axis"):
            js.variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis)
        return
    init = js.variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis)
    if not valid:
        with pytest.raises(ValueError, match=r"out of range|must be distinct"):
            init(KEY, shape)
        return
    assert jax.eval_shape(lambda k: init(k, shape), KEY).shape == shape
    # fan_in = n_in times the receptive field (every axis that is neither in nor out).
    receptive = math.prod(
        d for i, d in enumerate(shape) if i not in (in_axis % ndim, out_axis % ndim)
    )
    fan_in = shape[in_axis] * receptive
    assert js.compute_fans(shape, in_axis, out_axis) == (fan_in, shape[out_axis] * receptive)


@SMALL
@given(st.lists(st.integers(-3, 4), min_size=0, max_size=4))
def test_initializers_accept_exactly_shapes_of_positive_dims(dims):
    shape = tuple(dims)
    # Shapes are checked before anything is traced: eval_shape is enough (and fast).
    if len(shape) >= 2 and all(d >= 1 for d in shape):
        assert jax.eval_shape(lambda k: js.he_normal()(k, shape), KEY).shape == shape
    else:
        with pytest.raises(ValueError, match="shape"):
            jax.eval_shape(lambda k: js.he_normal()(k, shape), KEY)
    # Bias initializers take any shape of non-negative dims, including () and empty ones.
    if all(d >= 0 for d in shape):
        assert jax.eval_shape(lambda k: js.zeros(k, shape), KEY).shape == shape
    else:
        with pytest.raises(ValueError, match=r"shape must be a tuple of integers >= 0"):
            jax.eval_shape(lambda k: js.zeros(k, shape), KEY)


@SMALL
@given(
    st.sampled_from(["float32", "bfloat16", "float16", "int32", "int8", "bool", "complex64"]),
    st.sampled_from(["he_normal", "xavier_uniform", "lecun_normal", "orthogonal", "torch_linear"]),
)
def test_initializer_dtypes(dtype, name):
    init = js.get_initializer(name)
    if jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
        assert jax.eval_shape(lambda k: init(k, (8, 8), jnp.dtype(dtype)), KEY).dtype == jnp.dtype(
            dtype
        )
    else:
        with pytest.raises(ValueError, match=f"floating dtype, got {dtype}"):
            jax.eval_shape(lambda k: init(k, (8, 8), jnp.dtype(dtype)), KEY)


# --------------------------------------------------------------------------------------
# Losses.


@SMALL
@given(logits_and_labels())
def test_softmax_is_finite_and_sums_to_one(case):
    logits, _ = case
    p = np.asarray(_softmax(logits), np.float64)
    assert np.all(np.isfinite(p)) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=logits.shape[-1] * 1.2e-7)
    logp = np.asarray(_log_softmax(logits), np.float64)
    assert np.all(logp <= 0) and np.all(np.isfinite(logp))
    # The largest class has log-probability -log(sum exp(z - max z)) in [-log k, 0].
    assert np.all(logp.max(-1) >= -math.log(logits.shape[-1]) - 1e-6)


@SMALL
@given(logits_and_labels(1e4))
def test_cross_entropy_gradient_is_softmax_minus_onehot(case):
    logits, labels = case
    k = logits.shape[-1]
    grad = _loss_grad(logits, labels, np.ones_like(logits, bool))
    # The reference softmax in float64 numpy.
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    reference = e / e.sum(-1, keepdims=True) - np.eye(k)[labels]
    np.testing.assert_allclose(grad, reference, rtol=0, atol=1e-6)
    # Integer and one-hot labels give the same loss.
    np.testing.assert_allclose(
        _loss(logits, labels),
        _loss(logits, np.eye(k, dtype=np.float32)[labels]),
        rtol=1e-6,
        atol=1e-6,
    )


@SMALL
@given(logits_and_labels(50.0), st.data())
def test_masked_classes_and_ignored_rows(case, data):
    logits, labels = case
    rows, k = logits.shape
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=rows * k, max_size=rows * k)))
    mask = mask.reshape(rows, k)
    p = np.asarray(_softmax(logits, where=mask))
    assert np.all(np.isfinite(p))
    assert np.all(p[~mask] == 0)
    live = mask.any(-1)
    np.testing.assert_allclose(p[live].sum(-1), 1.0, atol=k * 1.2e-7)
    assert np.all(p[~live] == 0)
    loss = np.asarray(_loss(logits, labels, where=mask))
    assert np.all(loss[~live] == 0)
    # A label on a masked class of a live row has probability 0: loss inf; else finite.
    on_masked = live & ~mask[np.arange(rows), labels]
    assert np.all(np.isinf(loss[on_masked])) and np.all(np.isfinite(loss[~on_masked]))
    grad = _loss_grad(logits, labels, mask)
    assert np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[~mask] == 0)


@SMALL
@given(st.sampled_from([2, 5]), st.lists(st.integers(-3, 7), min_size=4, max_size=4))
def test_labels_out_of_range(k, labels):
    labels = np.array(labels)
    logits = np.zeros((4, k), np.float32)
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        with pytest.raises(ValueError, match=rf"label {labels[bad][0]} .*\[0, {k}\)"):
            js.softmax_cross_entropy(logits, labels)
    else:
        np.testing.assert_allclose(js.softmax_cross_entropy(logits, labels), math.log(k), 1e-6)
    # Traced: NaN exactly at the out-of-range rows, log k (uniform logits) elsewhere.
    traced = np.asarray(_loss(logits, labels))
    assert np.array_equal(np.isnan(traced), bad)
    np.testing.assert_allclose(traced[~bad], math.log(k), rtol=1e-6)


# --------------------------------------------------------------------------------------
# The MLP.


@SMALL
@given(
    st.lists(st.integers(1, 6), min_size=2, max_size=5),
    st.sampled_from(["list", "numpy", "numpy-list"]),
    st.integers(1, 7),
)
def test_mlp_sizes_and_input_width(sizes, form, width):
    as_given = {
        "list": sizes,
        "numpy": np.array(sizes),
        "numpy-list": [np.int64(s) for s in sizes],
    }[form]
    # Every check here is on shapes, at trace time: eval_shape runs them all, fast.
    params = jax.eval_shape(lambda: js.init_mlp(KEY, as_given))
    assert js.mlp_sizes(params) == sizes
    x = jax.ShapeDtypeStruct((3, width), jnp.float32)
    if width == sizes[0]:
        assert jax.eval_shape(js.apply_mlp, params, x).shape == (3, sizes[-1])
    else:
        message = f"x has {width} features (shape (3, {width})), but the MLP takes d_in={sizes[0]}"
        with pytest.raises(ValueError, match=re.escape(message)):
            jax.eval_shape(js.apply_mlp, params, x)


# --------------------------------------------------------------------------------------
# The shared validators.


@SMALL
@given(
    st.one_of(st.floats(width=32), st.integers(-(2**62), 2**62)),
    st.sampled_from(["python", "numpy", "numpy32", "jax"]),
)
def test_positive_number_accepts_exactly_positive_finite_reals(value, form):
    # float32-representable floats and int64 integers: every form holds the same value.
    if isinstance(value, int):
        converted = {"python": value, "numpy": np.int64(value)}.get(form, value)
    else:
        converted = {
            "python": value,
            "numpy": np.float64(value),
            "numpy32": np.float32(value),
            "jax": jnp.asarray(value, jnp.float32),
        }[form]
    if math.isfinite(value) and value > 0:
        assert _checks.positive_number("lr", converted) == float(value)
    else:
        with pytest.raises(ValueError, match="lr must be a positive finite number, got"):
            _checks.positive_number("lr", converted)


@SMALL
@given(
    st.one_of(st.integers(-5, 5), st.floats(-5, 5), st.booleans(), st.text(max_size=2)),
    st.integers(-2, 2),
)
def test_integer_accepts_exactly_ints_at_least_the_minimum(value, minimum):
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    for form in (value, np.int64(value)) if isinstance(value, int) and ok else (value,):
        if ok:
            assert _checks.integer("n", form, minimum=minimum) == value
        else:
            with pytest.raises(ValueError, match=f"n must be an integer >= {minimum}, got"):
                _checks.integer("n", form, minimum=minimum)
