"""Softmax and cross-entropy: exact at extreme logits, masked classes, gradients."""

import doctest

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


def _ignored_row_cases():
    """Two rows, the first fully masked (by -inf logits or by `where`), the second live."""
    live = jnp.array([1.0, 2.0, 3.0])
    by_inf = jnp.stack([jnp.full(3, -jnp.inf), live])
    # Under `where`, the masked row's logits are huge and NaN: neither may leak.
    by_where = jnp.stack([jnp.array([1e30, -5.0, jnp.nan]), live])
    mask = jnp.array([[False] * 3, [True] * 3])
    return [(by_inf, None), (by_where, mask)]


@pytest.mark.parametrize("case", [0, 1], ids=["minus_inf", "where"])
def test_ignored_row_is_nan_free_with_zero_loss_and_gradient(case):
    logits, where = _ignored_row_cases()[case]
    p_live = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    # softmax: zeros (no distribution to give), log_softmax: -inf (log of those zeros).
    np.testing.assert_array_equal(js.softmax(logits, where=where)[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(js.log_softmax(logits, where=where)[0], [-np.inf] * 3)
    np.testing.assert_allclose(js.softmax(logits, where=where)[1], p_live, rtol=1e-6)
    # Their vector-Jacobian products, with a cotangent that is non-zero everywhere,
    # are exactly zero on the ignored row; on the live row they are the analytic ones.
    u = jnp.array([[0.3, -1.0, 2.0], [0.5, 0.1, -0.2]])
    _, vjp = jax.vjp(lambda z: js.softmax(z, where=where), logits)
    (g,) = vjp(u)
    np.testing.assert_array_equal(g[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(g[1], p_live * (u[1] - p_live @ u[1]), rtol=1e-5, atol=1e-7)
    _, vjp = jax.vjp(lambda z: js.log_softmax(z, where=where), logits)
    (g,) = vjp(u)
    np.testing.assert_array_equal(g[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(g[1], u[1] - p_live * u[1].sum(), rtol=1e-5, atol=1e-7)
    # Cross-entropy: 0 for the ignored row, -log p for the live one; the gradient is
    # 0 on the ignored row and softmax - onehot on the live one.
    for labels in (jnp.array([0, 2]), jax.nn.one_hot(jnp.array([0, 2]), 3)):
        loss = js.softmax_cross_entropy(logits, labels, where=where)
        np.testing.assert_allclose(loss, [0.0, -np.log(p_live[2])], rtol=1e-6)
        g = jax.grad(lambda z, y=labels: jnp.sum(js.softmax_cross_entropy(z, y, where=where)))(
            logits
        )
        np.testing.assert_array_equal(g[0], [0.0, 0.0, 0.0])
        np.testing.assert_allclose(g[1], p_live - np.eye(3)[2], rtol=1e-6, atol=1e-7)


def test_label_on_a_masked_class_is_infinite_with_finite_gradient():
    # Probability 0 for the true class: the loss is +inf (not NaN, not 0), and the
    # gradient is still softmax - onehot.
    logits = jnp.array([[-jnp.inf, 0.0, 0.0]])
    assert float(js.softmax_cross_entropy(logits, jnp.array([0]))[0]) == np.inf
    g = jax.grad(lambda z: jnp.sum(js.softmax_cross_entropy(z, jnp.array([0]))))(logits)
    np.testing.assert_allclose(g, [[-1.0, 0.5, 0.5]])


def test_nan_logits_stay_nan():
    # A NaN logit is a diverged model, not a masked class: it must not read as 0 loss.
    loss = js.softmax_cross_entropy(jnp.array([[jnp.nan, 0.0]]), jnp.array([1]))
    assert np.isnan(loss).all()
    assert np.isnan(js.softmax(jnp.array([jnp.nan, 0.0]))).all()


@pytest.mark.parametrize("bad", [-1, 3, 100])
def test_concrete_out_of_range_label_is_an_error(bad):
    labels = jnp.array([0, bad, 1])
    with pytest.raises(ValueError, match=rf"label {bad} \(labels\[1\].*must be in \[0, 3\)"):
        js.softmax_cross_entropy(jnp.zeros((3, 3)), labels)
    # Also when closed over as a constant inside jit (concrete at trace time).
    with pytest.raises(ValueError, match=rf"label {bad} "):
        jax.jit(lambda z: js.softmax_cross_entropy(z, labels))(jnp.zeros((3, 3)))


def test_traced_out_of_range_label_is_nan_and_checkify_reports_it():
    from jax.experimental import checkify

    loss_fn = jax.jit(js.softmax_cross_entropy)
    logits = jnp.zeros((3, 4))
    labels = jnp.array([1, -1, 4])
    # -1 no longer wraps around to the last class's loss (log 4): NaN, row by row.
    out = np.asarray(loss_fn(logits, labels))
    np.testing.assert_allclose(out[0], np.log(4), rtol=1e-6)
    assert np.isnan(out[1:]).all()
    # The bad rows' gradients are NaN too (not zero, which would silently drop the
    # rows), even under nanmean; the valid row's is softmax - onehot.
    g = jax.grad(lambda z: jnp.nanmean(loss_fn(z, labels)))(logits)
    np.testing.assert_allclose(g[0], np.full(4, 0.25) - np.eye(4)[1], rtol=1e-6)
    assert np.isnan(g[1:]).all()
    # vmapped over a batch axis and forward-mode alike.
    per_row = jax.vmap(jax.grad(lambda z, y: loss_fn(z[None], y[None])[0]))(logits, labels)
    np.testing.assert_array_equal(np.isnan(per_row).all(-1), [False, True, True])
    _, tangent = jax.jvp(lambda z: loss_fn(z, labels), (logits,), (jnp.ones_like(logits),))
    np.testing.assert_array_equal(np.isnan(tangent), [False, True, True])
    # Under checkify the same call is an error naming the labels.
    err, _ = checkify.checkify(loss_fn, errors=checkify.user_checks)(logits, labels)
    assert "integer labels must be in [0, 4), got labels [ 1 -1  4]" in err.get()
    err, _ = checkify.checkify(loss_fn, errors=checkify.user_checks)(logits, jnp.array([0, 1, 3]))
    assert err.get() is None


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


def test_docstring_examples():
    import jaxstab._losses

    result = doctest.testmod(jaxstab._losses)
    assert result.attempted == 2 and result.failed == 0
