"""Diagnostics: constructed cases, against direct computation, and against theory."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma
from scipy.stats import binom

import jaxstab as js
from jaxstab import diagnostics as D

SIZES = [8, 32, 32, 32, 5]


def _setup(seed=0, sizes=SIZES, **init_kw):
    params = js.init_mlp(jax.random.key(seed), sizes, **init_kw)
    x = jax.random.normal(jax.random.key(seed + 100), (16, sizes[0]))
    y = jnp.arange(16) % sizes[-1]
    return params, x, y


def test_forward_stats_match_captured_preactivations():
    params, x, _ = _setup(bias_init=js.normal(0.3))
    stats = D.forward_stats(params, x, "tanh")
    _, pre = js.apply_mlp(params, x, "tanh", capture=True)
    pre = np.asarray(pre, np.float64)
    np.testing.assert_allclose(stats.second_moment, np.mean(pre**2, axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(stats.mean, np.mean(pre, axis=(1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.variance, np.var(pre, axis=(1, 2)), rtol=1e-4)
    np.testing.assert_allclose(
        stats.activation_second_moment, np.mean(np.tanh(pre) ** 2, axis=(1, 2)), rtol=1e-5
    )


def test_dead_fraction_all_negative_biases():
    params, x, _ = _setup(bias_init=js.constant(-1e3))
    stats = D.forward_stats(params, x, "relu")
    np.testing.assert_array_equal(stats.dead_fraction, np.ones(3))
    np.testing.assert_array_equal(stats.saturated_fraction, np.ones(3))  # relu' = 0 there
    # Large positive biases: nothing dead in the first layer.
    params, x, _ = _setup(bias_init=js.constant(1e3))
    assert float(D.forward_stats(params, x, "relu").dead_fraction[0]) == 0.0


def test_saturated_fraction_huge_tanh_weights():
    params, x, _ = _setup(weight_init=js.variance_scaling(1e8, "fan_in", "normal"))
    stats = D.forward_stats(params, x, "tanh")
    # |z| ~ 1e4: tanh'(z) >= 1e-2 only if |z| < 3, probability ~2e-4 per example, so
    # a unit is saturated on all 16 examples with probability ~0.996.
    assert float(jnp.min(stats.saturated_fraction)) > 0.95
    small, x, _ = _setup(weight_init=js.variance_scaling(1e-2, "fan_in", "normal"))
    assert float(jnp.max(D.forward_stats(small, x, "tanh").saturated_fraction)) == 0.0


def test_backward_stats_match_jax_grad():
    params, x, y = _setup(bias_init=js.normal(0.1))

    def loss(p):
        return jnp.mean(js.softmax_cross_entropy(js.apply_mlp(p, x, "tanh"), y))

    grads = jax.grad(loss)(params)
    stats = D.backward_stats(params, x, y, "tanh")
    np.testing.assert_allclose(
        stats.grad_norm,
        jnp.linalg.norm(grads["hidden"][0]["w"][0])[None].tolist()
        + jnp.linalg.norm(grads["hidden"][1]["w"], axis=(1, 2)).tolist(),
        rtol=1e-5,
    )
    np.testing.assert_allclose(stats.output_grad_norm, jnp.linalg.norm(grads["output"]["w"]), 1e-5)
    # The per-example signal at the last hidden layer, by hand: (softmax - onehot) W_out^T phi'(z).
    logits, pre = js.apply_mlp(params, x, "tanh", capture=True)
    delta_out = js.softmax(logits) - jax.nn.one_hot(y, 5)
    delta_last = (delta_out @ params["output"]["w"].T) * (1 - jnp.tanh(pre[-1]) ** 2)
    np.testing.assert_allclose(stats.signal_second_moment[-1], jnp.mean(delta_last**2), rtol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_layer_stats_in_one_pass_equal_the_two_functions(activation):
    params, x, y = _setup(bias_init=js.normal(0.1))
    for p in (params, js.split_stacks(params)):  # either layout
        fwd, bwd = jax.jit(D.layer_stats, static_argnums=3)(p, x, y, activation)
        chex.assert_trees_all_close(fwd, D.forward_stats(params, x, activation), rtol=1e-6)
        chex.assert_trees_all_close(bwd, D.backward_stats(params, x, y, activation), rtol=1e-5)


def test_vmap_over_seeds_equals_loop():
    keys = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(jax.random.key(2), (8, 8))
    y = jnp.arange(8) % 5
    params = jax.vmap(lambda k: js.init_mlp(k, SIZES))(keys)
    fwd = jax.jit(jax.vmap(lambda p: D.forward_stats(p, x, "relu")))(params)
    bwd = jax.jit(jax.vmap(lambda p: D.backward_stats(p, x, y, "relu")))(params)
    assert fwd.second_moment.shape == (3, 3)
    for i, k in enumerate(keys):
        p = js.init_mlp(k, SIZES)
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], fwd), D.forward_stats(p, x, "relu"), rtol=1e-5
        )
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], bwd), D.backward_stats(p, x, y, "relu"), rtol=1e-4
        )


def test_jacobian_singular_values_match_explicit_jacobian():
    params, x, _ = _setup(sizes=[6, 10, 10, 7, 3])
    sv = D.jacobian_singular_values(params, x[:3], "tanh")
    assert sv.shape == (3, 6)
    for i in range(3):
        # J = W3^T D2 W2^T D1 W1^T, written out layer by layer in numpy.
        w = [np.asarray(params["hidden"][0]["w"][0]), np.asarray(params["hidden"][1]["w"][0])]
        w.append(np.asarray(params["hidden"][2]["w"][0]))
        h, jac = np.asarray(x[i], np.float64), np.eye(6)
        for layer, wl in enumerate(w):
            z = h @ wl
            jac = jac @ wl
            if layer < 2:
                jac = jac * (1 - np.tanh(z) ** 2)[None, :]
                h = np.tanh(z)
        np.testing.assert_allclose(sv[i], np.linalg.svd(jac.T, compute_uv=False), rtol=1e-4)


def test_orthogonal_linear_net_is_an_isometry():
    params = js.init_mlp(jax.random.key(3), [16] * 10, weight_init=js.orthogonal())
    sv = D.jacobian_singular_values(params, jnp.ones((2, 16)), "linear")
    np.testing.assert_allclose(sv, np.ones((2, 16)), atol=1e-5)


# --- measured against theory -------------------------------------------------


def _log_q_ratio_per_seed(init, width=256, depth=50, seeds=96, batch=2):
    """Per seed, the mean over examples of log(q^depth / q^1), q the per-example mean of z²."""
    sizes = [width] * (depth + 1) + [10]
    keys = jax.random.split(jax.random.key(5), seeds)

    @jax.jit
    def per_seed(key):
        key_params, key_x = jax.random.split(key)
        params = js.init_mlp(key_params, sizes, weight_init=init)
        x = jax.random.normal(key_x, (batch, width))
        q = jax.vmap(lambda xi: D.forward_stats(params, xi[None], "relu").second_moment)(x)
        return jnp.mean(jnp.log(q[:, -1] / q[:, 0]))

    return np.asarray(jax.lax.map(per_seed, keys), np.float64)


def _relu_log_drift(width):
    """Exact E log(q^l / q^(l-1)) per layer of a zero-bias ReLU net at He init.

    For one example q^l/q^(l-1) = 2 B chi²_n / n, with B ~ Beta(K/2, (n-K)/2),
    K ~ Binomial(n, 1/2) the active units, independent of chi²_n (Hanin 2018):
    E log = E psi(K/2) + 2 log 2 - log n, about -2.5/n.
    """
    k = np.arange(1, width + 1)
    return (
        float(np.sum(binom.pmf(k, width, 0.5) * digamma(k / 2))) + 2 * math.log(2) - math.log(width)
    )


@pytest.mark.parametrize(
    "name,init,factor", [("he", js.he_normal(), 1.0), ("xavier", js.xavier_normal(), 0.5)]
)
def test_relu_depth_50_matches_mean_field_with_finite_width_drift(name, init, factor):
    """Mean field: q^l / q^(l-1) = sigma_w² / 2, i.e. 1 for He and 1/2 for Xavier."""
    width, depth = 256, 50
    logs = _log_q_ratio_per_seed(init, width, depth)
    mean, se = logs.mean(), logs.std(ddof=1) / math.sqrt(logs.size)
    drift = _relu_log_drift(width)
    assert -3.0 / width < drift < -2.0 / width  # about -2.5/n, as Hanin states
    expected = (depth - 1) * (math.log(factor) + drift)
    assert abs(mean - expected) < 5 * se, (name, mean, expected, se)
    if name == "xavier":  # log2(q^50/q^1) near -(49 + drift / ln 2)
        assert abs(mean / math.log(2) + 49) < 1 + 5 * se / math.log(2)
    else:  # the drift is resolved: zero is excluded
        assert mean + 3 * se < 0


@pytest.mark.parametrize("phase,factor", [("ordered", 0.6), ("critical", 1.0), ("chaotic", 2.0)])
def test_tanh_backward_factor_matches_chi1(phase, factor):
    """s^l / s^(l+1) over layers 10-49 of a wide tanh net equals chi1 within 2%."""
    from jaxstab import theory

    sigma_b2, width, depth, seeds = 0.05, 512, 50, 4
    sigma_w2 = factor * float(theory.critical_sigma_w2("tanh", sigma_b2))
    chi = float(theory.chi1("tanh", sigma_w2, sigma_b2))
    sizes = [width] * (depth + 1) + [10]
    init = js.variance_scaling(sigma_w2, "fan_in", "normal")
    bias = js.normal(math.sqrt(sigma_b2))

    @jax.jit
    def per_seed(key):
        k_p, k_x = jax.random.split(key)
        params = js.init_mlp(k_p, sizes, weight_init=init, bias_init=bias)
        x = jax.random.normal(k_x, (32, width))
        signal = D.backward_stats(params, x, jnp.arange(32) % 10, "tanh").signal_second_moment
        # Geometric mean of s^l / s^(l+1) for l = 10..49 (1-based), past q's transient.
        return jnp.mean(jnp.log(signal[9:-1] / signal[10:]))

    logs = np.asarray(jax.lax.map(per_seed, jax.random.split(jax.random.key(7), seeds)), np.float64)
    measured = math.exp(logs.mean())
    se = measured * logs.std(ddof=1) / math.sqrt(seeds)  # delta method
    assert abs(measured / chi - 1) < 0.02, (phase, measured, chi, se)
    assert 3 * se < 0.02 * chi  # the estimate is precise enough for the 2% check to bite
    expected_phase = {"ordered": chi < 0.9, "critical": abs(chi - 1) < 1e-4, "chaotic": chi > 1.1}
    assert expected_phase[phase], (phase, chi)
