"""signal_propagation's new helpers: the exact finite-width law of a ReLU net's log
length against networks and Hanin's approximation, the paired bootstrap over networks,
and the float64 theory (tolerances in standard errors)."""

import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstab as js
from jaxstab import theory

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))

import _stats
import signal_propagation as sp


@pytest.mark.parametrize("sigma_w2", [1.0, 2.0])
def test_relu_log_q_law_against_networks(sigma_w2):
    """Mean and variance of one input's log q^L over 4000 ReLU nets (width 8, L = 6)."""
    width, depth, nets = 8, 6, 4000
    mean, var = sp.relu_log_q_moments(sigma_w2, width, depth)
    x = sp.sphere_inputs(jax.random.key(1), 1, width)

    def log_q_last(key):
        params = sp.mean_field_params(key, width, depth, 2, jnp.float32(sigma_w2), 0.0)
        _, z = js.apply_mlp(params, x, "relu", capture=True)
        return jnp.log(jnp.mean(z[-1, 0] ** 2))

    v = np.asarray(jax.jit(jax.vmap(log_q_last))(jax.random.split(jax.random.key(2), nets)))
    v = v[np.isfinite(v)]  # a dead net (about 1 in 40 at width 8) has log q = -inf
    # The law conditions every layer on K >= 1 live units; dropping dead nets does too.
    assert nets - v.size < 0.05 * nets
    se = math.sqrt(var / v.size)
    assert abs(v.mean() - mean) <= 4 * se, (v.mean(), mean, se)
    # Sample variance: standard error about var sqrt(2 / n) (heavier tails: 2x room).
    assert abs(v.var(ddof=1) - var) <= 8 * var * math.sqrt(2 / v.size)
    # Far below the mean-field log length at this width.
    assert mean < math.log(sigma_w2) + (depth - 1) * math.log(sigma_w2 / 2) - 0.5


def test_relu_log_q_law_is_hanins_approximation_at_large_width():
    # E log R = -2.5 / n and Var log R = 5 / n per layer to O(1 / n^2); the last layer's
    # chi2(n) / n adds -1 / n and 2 / n.
    width, depth = 512, 50
    mean, var = sp.relu_log_q_moments(2.0, width, depth)
    shift = mean - math.log(2.0)  # the mean-field log q^L at He is log 2
    assert shift == pytest.approx(-(2.5 * (depth - 1) + 1) / width, rel=0.02)
    assert var == pytest.approx((5 * (depth - 1) + 2) / width, rel=0.02)
    # Infinite width: the mean-field value.
    big, _ = sp.relu_log_q_moments(1.0, 10**6, depth)
    assert big == pytest.approx((depth - 1) * math.log(0.5), abs=1e-3)


def test_index_bootstrap_of_a_mean_is_the_plain_bootstrap():
    v = np.random.default_rng(0).lognormal(size=40)
    got = sp.index_bootstrap_ci(lambda idx: float(v[idx].mean()), v.size)
    np.testing.assert_allclose(got, _stats.bootstrap_ci(v), rtol=1e-12)


def test_index_bootstrap_of_a_ratio_covers_the_truth():
    # Ratio of means of paired columns: 40 draws, true ratio 2; the interval covers it
    # and is narrower than an unpaired one would be (the columns share a factor).
    rng = np.random.default_rng(1)
    common = rng.lognormal(sigma=0.8, size=40)
    a, b = 2 * common * rng.lognormal(sigma=0.05, size=40), common
    lo, hi = sp.index_bootstrap_ci(lambda idx: float(a[idx].mean() / b[idx].mean()), 40)
    assert lo < 2.0 < hi
    assert hi - lo < 0.2


def test_sphere_inputs_have_the_right_norm():
    x = sp.sphere_inputs(jax.random.key(0), 5, 64)
    np.testing.assert_allclose(np.sum(np.asarray(x) ** 2, axis=1), 64.0, rtol=1e-5)


def test_theory_f64_is_float64():
    # The ReLU length map is affine: q^{l+1} = (sigma_w2 / 2) q^l, exactly in float64.
    q = sp.theory_f64(theory.q_profile, "relu", 1.0, 0.0, 1.0, 30)
    assert q.dtype == np.float64
    np.testing.assert_allclose(q, 0.5 ** np.arange(30), rtol=1e-13)
    assert sp.theory_f64(theory.critical_sigma_w2, "tanh", 0.0) == pytest.approx(1.0, abs=1e-12)
    assert not jax.config.jax_enable_x64  # restored afterwards
