"""The `theory` experiments: pure helpers against hand computations, and the dying-ReLU
Monte Carlo against the closed form of Lu et al. 2019 (tolerances in standard errors).

The notebooks run each experiment's quick config end to end (tests/test_notebooks.py);
this file covers what that run does not check.
"""

import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstab as js

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))

import dying_relu
import signal_propagation

# --------------------------------------------------------------------------------------
# dying_relu


@pytest.mark.parametrize(
    "width, depth, expected",
    [(2, 1, 0.25), (2, 2, 1 - 0.75**2), (3, 1, 0.125), (1, 3, 1 - 0.5**3), (4, 0, 0.0)],
)
def test_closed_form_dead_by_hand(width, depth, expected):
    assert dying_relu.closed_form_dead(width, depth) == pytest.approx(expected, abs=1e-15)


def test_binomial_se_by_hand():
    assert dying_relu.binomial_se(0.5, 100) == pytest.approx(0.05)
    np.testing.assert_allclose(dying_relu.binomial_se(np.array([0.0, 1.0, 0.1]), 900), [0, 0, 0.01])


def test_dead_events_by_hand():
    # 3 layers, 2 inputs, 2 units. Input 0: layer 2 (index 1) is all zero, so it is dead
    # from depth 2 on even though layer 3 is not zero (a positive bias revived it).
    # Input 1 is never dead. Layer 3 is identical for both inputs: constant from there.
    h = jnp.array(
        [
            [[1.0, 0.0], [0.0, 2.0]],
            [[0.0, 0.0], [3.0, 0.0]],
            [[0.5, 0.5], [0.5, 0.5]],
        ]
    )
    events = dying_relu.dead_events(h)
    np.testing.assert_array_equal(events["dead_BxL"], [[False, True, True], [False, False, False]])
    np.testing.assert_array_equal(events["constant_L"], [False, False, True])


def test_leaky_is_relu_at_zero_slope():
    z = jnp.array([-2.0, -0.0, 0.0, 3.0])
    np.testing.assert_array_equal(dying_relu.leaky(jnp.float32(0.0))(z), jax.nn.relu(z))
    np.testing.assert_allclose(dying_relu.leaky(jnp.float32(0.1))(z), jax.nn.leaky_relu(z, 0.1))


@pytest.mark.parametrize("width", [2, 3, 4])
def test_dead_at_an_input_matches_closed_form(width):
    """P(dead at a given input) = 1 - (1 - 2^-N)^L within 4 binomial standard errors.

    One fixed input per network, 4000 networks: independent Bernoulli trials.
    """
    n = 4000
    events = dying_relu.monte_carlo(
        jax.random.key(100 + width), width, 20, seeds=n, batch=4, chunk=1000
    )
    assert events["dead_first"].shape == (n, 20)
    for depth in (5, 10, 20):
        p = float(dying_relu.closed_form_dead(width, depth))
        p_hat = events["dead_first"][:, depth - 1].mean()
        se = math.sqrt(p * (1 - p) / n)
        assert abs(p_hat - p) <= 4 * se, (width, depth, p_hat, p, se)
    # With zero biases a constant output over the batch means every input is dead,
    # so it can only be rarer than death at one input, and death never reverses.
    assert np.all(events["constant"] <= events["dead_first"])
    assert np.all(np.diff(events["dead_first"].astype(int), axis=1) >= 0)


def test_leaky_relu_is_never_dead():
    # The same shapes as the width-2 test above: its compiled program is reused.
    events = dying_relu.monte_carlo(
        jax.random.key(7), 2, 20, seeds=4000, batch=4, slope=0.01, chunk=1000
    )
    assert not events["dead_first"].any() and not events["constant"].any()


# --------------------------------------------------------------------------------------
# signal_propagation


def test_derivative_moments_by_hand():
    assert signal_propagation.derivative_moments("relu", 3.0) == (0.5, 0.5)
    assert signal_propagation.derivative_moments("linear", 2.0) == pytest.approx((1.0, 1.0))
    # tanh: a brute-force Riemann sum of the Gaussian integrals.
    z = np.linspace(-12, 12, 200001)
    w = np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    d2 = (1 - np.tanh(math.sqrt(0.7) * z) ** 2) ** 2
    mu1, mu2 = signal_propagation.derivative_moments("tanh", 0.7)
    assert mu1 == pytest.approx(np.sum(w * d2), rel=1e-6)
    assert mu2 == pytest.approx(np.sum(w * d2**2), rel=1e-6)
    # Near q = 0 tanh is linear: phi'^2 = 1 - 2 q z^2 + O(q^2), so mu1 ~ 1 - 2q.
    mu1, _ = signal_propagation.derivative_moments("tanh", 1e-4)
    assert mu1 == pytest.approx(1 - 2e-4, abs=1e-6)


def test_predicted_spectrum_by_hand():
    # ReLU, He: mean 2^3 (1/2)^2 = 2; Gaussian 3 x 1 + 2 x (0.5 / 0.25 - 1) = 5.
    mean, nvar = signal_propagation.predicted_spectrum(2.0, 0.5, 0.5, 3, orthogonal=False)
    assert (mean, nvar) == pytest.approx((2.0, 5.0))
    assert signal_propagation.predicted_spectrum(2.0, 0.5, 0.5, 3, orthogonal=True)[1] == 2.0
    # Linear orthogonal network: an isometry.
    assert signal_propagation.predicted_spectrum(1.0, 1.0, 1.0, 50, True) == (1.0, 0.0)


def test_backward_factors_and_tail_factor_on_a_geometric_signal():
    chi = 0.8
    layers = np.arange(10)
    signal = np.stack([3.0 * chi ** (-layers), 5.0 * chi ** (-layers)])  # s^l / s^{l+1} = chi
    np.testing.assert_allclose(signal_propagation.backward_factors(signal), np.full(9, chi))
    assert signal_propagation.tail_factor(signal, 5) == pytest.approx(chi)
    # Means over seeds, not per-seed ratios: [1, 2] and [3, 2] give (1 + 3) / (2 + 2) = 1.
    two = np.array([[1.0, 2.0], [3.0, 2.0]])
    np.testing.assert_allclose(signal_propagation.backward_factors(two), [1.0])
    with pytest.raises(ValueError, match="no layer pair"):
        signal_propagation.tail_factor(signal, 9)


def test_orthogonalize_gives_an_orthogonal_matrix_like_jax_random_orthogonal():
    key = jax.random.key(3)
    q = signal_propagation.orthogonalize(jax.random.normal(key, (16, 16)))
    np.testing.assert_allclose(q.T @ q, np.eye(16), atol=1e-5)
    # jax.random.orthogonal is the same construction from the same Gaussian draw.
    np.testing.assert_allclose(q, jax.random.orthogonal(key, 16), atol=1e-5)


def test_signal_propagation_params_layout_and_variances():
    width, depth, d_out, sw2, sb2 = 64, 6, 10, 1.7, 0.3
    p = signal_propagation.mean_field_params(jax.random.key(0), width, depth, d_out, sw2, sb2)
    ref = jax.eval_shape(lambda: js.init_mlp(jax.random.key(0), [width] * (depth + 1) + [d_out]))
    assert jax.tree.structure(p) == jax.tree.structure(ref)
    assert jax.tree.map(lambda a: a.shape, p) == jax.tree.map(lambda a: a.shape, ref)
    w, b = np.asarray(p["hidden"][0]["w"]), np.asarray(p["hidden"][0]["b"])
    # Sample variances against sigma^2, within 5 standard errors sigma^2 sqrt(2 / n).
    assert abs(w.var() - sw2 / width) <= 5 * (sw2 / width) * math.sqrt(2 / w.size)
    assert abs(b.var() - sb2) <= 5 * sb2 * math.sqrt(2 / b.size)
