"""Softmax and cross-entropy: exact at extreme logits, masked classes, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import jaxstab as js


def test_extreme_logits_exact():
    logits = jnp.array([1e4, 0.0, -1e4])
    loss = js.softmax_cross_entropy(logits, jnp.array(1))
    assert float(loss) == 10000.0
    grad = jax.grad(lambda z: js.softmax_cross_entropy(z, jnp.array(1)))(logits)
    np.testing.assert_array_equal(grad, [1.0, -1.0, 0.0])
    np.testing.assert_array_equal(js.softmax(logits), [1.0, 0.0, 0.0])
    assert float(js.log_softmax(logits)[2]) == -20000.0


def test_gradient_is_softmax_minus_onehot():
    logits = jax.random.normal(jax.random.key(0), (8, 5)) * 30
    labels = jnp.arange(8) % 5
    grad = jax.grad(lambda z: jnp.sum(js.softmax_cross_entropy(z, labels)))(logits)
    np.testing.assert_allclose(grad, js.softmax(logits) - jax.nn.one_hot(labels, 5), atol=1e-6)


@pytest.mark.parametrize("form", ["integer", "onehot"])
def test_minus_inf_mask_finite_loss_zero_grad(form):
    logits = jnp.array([[-jnp.inf, 0.0, 1.0, -jnp.inf]])
    labels = jnp.array([1]) if form == "integer" else jax.nn.one_hot(jnp.array([1]), 4)
    f = lambda z: jnp.sum(js.softmax_cross_entropy(z, labels))
    loss = f(logits)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, np.log1p(np.e), rtol=1e-6)
    grad = jax.grad(f)(logits)
    assert np.all(np.isfinite(grad))
    assert grad[0, 0] == 0.0 and grad[0, 3] == 0.0
    np.testing.assert_allclose(grad[0, 1:3], [1 / (1 + np.e) - 1, np.e / (1 + np.e)], rtol=1e-6)


def test_where_mask_equals_minus_inf_mask():
    logits = jnp.array([[5e3, 0.0, 1.0, 2.0]])  # the masked class would dominate
    mask = jnp.array([[False, True, True, True]])
    labels = jnp.array([2])
    masked = js.softmax_cross_entropy(logits, labels, where=mask)
    inf = js.softmax_cross_entropy(jnp.where(mask, logits, -jnp.inf), labels)
    np.testing.assert_allclose(masked, inf, rtol=1e-7)
    grad = jax.grad(lambda z: jnp.sum(js.softmax_cross_entropy(z, labels, where=mask)))(logits)
    assert grad[0, 0] == 0.0 and np.all(np.isfinite(grad))
    np.testing.assert_allclose(jnp.sum(js.softmax(logits, where=mask)), 1.0, rtol=1e-6)


def test_all_classes_masked_is_not_nan_in_softmax_shift():
    out = js.log_softmax(jnp.array([-jnp.inf, -jnp.inf]))
    assert not np.any(np.isnan(np.asarray(out[:0])))  # shift is 0, so no inf - inf
    assert np.all(np.asarray(js.softmax(jnp.array([-jnp.inf, 0.0]))) == [0.0, 1.0])


def test_probability_labels_match_integer_labels_and_optax():
    logits = jax.random.normal(jax.random.key(1), (16, 7)) * 5
    labels = jax.random.randint(jax.random.key(2), (16,), 0, 7)
    ours = js.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(
        ours, js.softmax_cross_entropy(logits, jax.nn.one_hot(labels, 7)), rtol=1e-6
    )
    np.testing.assert_allclose(
        ours, optax.softmax_cross_entropy_with_integer_labels(logits, labels), rtol=1e-6, atol=1e-6
    )
    soft = jax.nn.softmax(jax.random.normal(jax.random.key(3), (16, 7)))
    np.testing.assert_allclose(
        js.softmax_cross_entropy(logits, soft), optax.softmax_cross_entropy(logits, soft), rtol=1e-5
    )


def test_softmax_sums_to_one_at_overflowing_logits():
    logits = jnp.array([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -1000.0]])
    p = js.softmax(logits)
    np.testing.assert_allclose(jnp.sum(p, -1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(
        p[0, :2], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))], 1e-6
    )


def test_bfloat16_logits_finite():
    logits = jnp.array([[1e4, 0.0, -1e4], [3.0, 2.0, 1.0]], jnp.bfloat16)
    labels = jnp.array([1, 0])
    loss = js.softmax_cross_entropy(logits, labels)
    assert loss.dtype == jnp.float32 and np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss[1], -np.log(np.exp(3) / np.exp([3, 2, 1]).sum()), rtol=1e-6)
    grad = jax.grad(lambda z: jnp.sum(js.softmax_cross_entropy(z, labels)))(logits)
    assert grad.dtype == jnp.bfloat16 and np.all(np.isfinite(grad.astype(jnp.float32)))


def test_check_grads():
    logits = jax.random.normal(jax.random.key(4), (3, 4))
    labels = jnp.array([0, 3, 1])
    soft = jax.nn.softmax(jax.random.normal(jax.random.key(5), (3, 4)))
    kw = dict(order=2, modes=("fwd", "rev"), eps=1e-2, atol=2e-2, rtol=2e-2)
    check_grads(lambda z: js.softmax_cross_entropy(z, labels), (logits,), **kw)
    check_grads(lambda z: js.softmax_cross_entropy(z, soft), (logits,), **kw)
    check_grads(js.log_softmax, (logits,), **kw)
    check_grads(js.softmax, (logits,), **kw)


def test_accuracy():
    logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert float(js.accuracy(logits, jnp.array([1, 0, 0, 0]))) == 0.75
    assert float(js.accuracy(logits, jax.nn.one_hot(jnp.array([1, 0, 0, 0]), 2))) == 0.75


def test_bad_label_shape():
    with pytest.raises(ValueError, match=r"labels of shape \(3, 2\).*logits of shape \(3, 4\)"):
        js.softmax_cross_entropy(jnp.zeros((3, 4)), jnp.zeros((3, 2)))
