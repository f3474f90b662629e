"""Tests of experiments/phase_diagram.py's pure helpers and its Monte Carlo.

Every expected value is computed by hand, by numpy/scipy, or by the mean-field theory,
never copied from the code under test. Tolerances are in standard errors.
"""

from __future__ import annotations

import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxstab as js
from jaxstab import theory
from jaxstab.data import load_digits

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import _stats
import phase_diagram as pd

# --------------------------------------------------------------------------------------
# Parameters


@pytest.mark.parametrize("sizes", [(64, 64, 64, 64, 10), (8, 16, 16, 3), (5, 7, 2)])
def test_params_have_init_mlp_layout(sizes):
    p = jax.eval_shape(lambda: pd.mean_field_params(jax.random.key(1), sizes, 2.0, 0.05))
    ref = jax.eval_shape(lambda: js.init_mlp(jax.random.key(1), list(sizes)))
    assert jax.tree.structure(p) == jax.tree.structure(ref)
    assert jax.tree.map(lambda a: a.shape, p) == jax.tree.map(lambda a: a.shape, ref)
    out = jax.eval_shape(lambda q: js.apply_mlp(q, jnp.ones((2, sizes[0])), "tanh"), p)
    assert out.shape == (2, sizes[-1])


def test_params_variances():
    sizes = (32, 128, 128, 128, 10)
    sw2, sb2 = 2.5, 0.05
    p = pd.mean_field_params(jax.random.key(2), sizes, sw2, sb2)
    w_in = np.asarray(p["hidden"][0]["w"])
    w_hidden = np.asarray(p["hidden"][1]["w"])
    b = np.concatenate([np.asarray(g["b"]).ravel() for g in p["hidden"]])
    for w, fan_in in ((w_in, 32), (w_hidden, 128)):
        v = sw2 / fan_in
        # standard error of a Gaussian sample variance: v sqrt(2 / n)
        assert abs(w.var() - v) <= 5 * v * math.sqrt(2 / w.size)
    assert abs(b.var() - sb2) <= 5 * sb2 * math.sqrt(2 / b.size)


def test_unequal_hidden_widths_are_refused():
    with pytest.raises(ValueError, match="hidden widths must be equal"):
        pd.mean_field_params(jax.random.key(0), (4, 8, 6, 2), 1.0, 0.0)


# --------------------------------------------------------------------------------------
# Training through the engine


def test_train_matches_a_plain_loop():
    """One engine program against a Python loop of the same steps, keys and rates."""
    cfg = pd.ExperimentConfig(width=8, steps=4, eval_every=2, batch_size=8)
    data = load_digits()
    runs = {
        "seed": np.array([0, 1, 5], np.int32),
        "sigma_w2": np.array([1.0, 3.0, 2.0], np.float32),
        "sigma_b2": np.full(3, 0.05, np.float32),
        "lr": np.array([0.1, 0.03, 0.01], np.float32),
    }
    got = pd._train(cfg, data, 2, runs)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    sizes = (data.d_in, 8, 8, data.num_classes)

    def loss_fn(p, batch):
        return jnp.mean(js.softmax_cross_entropy(js.apply_mlp(p, batch[0], "tanh"), batch[1]))

    # One compiled step for every run: the rate is a value in the optimizer state.
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    step = jax.jit(js.make_train_step(loss_fn, optimizer))
    for r in range(3):
        # The engine's keys of run seed s: init from the first half, minibatches the second.
        init_key, data_key = jax.random.split(
            jax.random.fold_in(jax.random.key(cfg.seed), int(runs["seed"][r]))
        )
        params = pd.mean_field_params(init_key, sizes, runs["sigma_w2"][r], 0.05)
        grad0 = float(optax.tree.norm(jax.grad(loss_fn)(params, _batch(x, y, data_key, 0))))
        opt_state = optimizer.init(params)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(runs["lr"][r])
        for t in range(cfg.steps):
            params, opt_state, _ = step(params, opt_state, _batch(x, y, data_key, t))
        logits = js.apply_mlp(params, x, "tanh")
        assert got["loss"][r] == pytest.approx(
            float(jnp.mean(js.softmax_cross_entropy(logits, y))), rel=1e-5
        )
        # An argmax near a tie may flip under rounding: one example of slack.
        assert abs(got["accuracy"][r] - float(js.accuracy(logits, y))) <= 1.5 / len(y)
        assert got["grad_norm0"][r] == pytest.approx(grad0, rel=1e-4)
    assert not got["diverged"].any()
    # budgets: after 2 and 4 steps; the last is the final accuracy
    assert got["accuracy_budgets"].shape == (3, 2)
    np.testing.assert_array_equal(got["accuracy_budgets"][:, -1], got["accuracy"])


def _batch(x, y, data_key, t):
    idx = jax.random.randint(jax.random.fold_in(data_key, t), (8,), 0, x.shape[0])
    return x[idx], y[idx]


# --------------------------------------------------------------------------------------
# The learning-rate rule, the constant k


def test_choose_lr_by_hand():
    acc = np.array(
        [
            [[0.2, 0.3, 0.4], [0.5, 0.6, 0.1], [0.5, 0.6, 0.2]],  # medians .3 .5 .5: tie
            [[0.9, 0.9, 0.9], [0.1, 0.1, 0.1], [0.9, 0.9, 0.9]],  # tie on accuracy and loss
        ]
    )
    loss = np.array(
        [
            [[1.0, 1.0, 1.0], [0.8, 0.8, 0.8], [0.7, np.nan, 0.7]],  # lr 2 has the lower loss
            [[0.3, 0.3, 0.3], [2.0, 2.0, 2.0], [0.3, 0.3, 0.3]],  # -> the smaller rate, 0
        ]
    )
    np.testing.assert_array_equal(pd.choose_lr(acc, loss), [2, 0])
    # NaN loss (a diverged run) counts as +inf: median of (nan, nan, 0.1) is inf.
    acc2 = np.array([[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]])
    loss2 = np.array([[[np.nan, np.nan, 0.1], [0.9, 0.9, 0.9]]])
    np.testing.assert_array_equal(pd.choose_lr(acc2, loss2), [1])


def test_predicted_trainable_and_agreement_by_hand():
    depths = np.array([10, 30])
    xi_c = np.array([1.0, 4.0, np.inf])  # 6 xi_c = 6, 24, inf
    predicted = pd.predicted_trainable(depths, xi_c)
    np.testing.assert_array_equal(predicted, [[False, True, True], [False, False, True]])
    measured = np.array([[False, True, True], [True, False, False]])
    assert pd.agreement(measured, predicted) == pytest.approx(4 / 6)


def test_agreement_curve_and_best_k_by_hand():
    depths = np.array([10, 20])
    xi_c = np.array([2.0, 5.0])
    # trainable: depth 10 at both; depth 20 only at xi 5. Perfect agreement needs
    # 10 < 2k (k > 5), 20 >= 2k (k <= 10), 20 < 5k (k > 4): k in (5, 10].
    trainable = np.array([[True, True], [False, True]])
    k = np.array([4.0, 5.0, 6.0, 8.0, 10.0, 11.0])
    curve = pd.agreement_curve(trainable, depths, xi_c, k)
    # k=4: [[F,T],[F,F]] -> 2 of 4; k=5: [[F,T],[F,T]] -> 3; 6, 8, 10: 4; 11: all T -> 3
    np.testing.assert_allclose(curve, [0.5, 0.75, 1.0, 1.0, 1.0, 0.75])
    assert pd.best_k(curve, k) == 8.0  # median of 6, 8, 10


def test_k_bootstrap_of_constant_seeds_is_the_full_sample_k():
    depths = np.array([10, 20])
    xi_c = np.array([2.0, 5.0])
    acc = np.where(np.array([[True, True], [False, True]])[..., None], 0.9, 0.1)
    acc = np.broadcast_to(acc, (2, 2, 16))
    k = np.linspace(1, 15, 57)
    boot = pd.k_bootstrap(acc, depths, xi_c, k, 0.5, resamples=50)
    full = pd.best_k(pd.agreement_curve(np.median(acc, -1) >= 0.5, depths, xi_c, k), k)
    np.testing.assert_array_equal(boot, np.full(50, full))


# --------------------------------------------------------------------------------------
# Fits, windows, crossings, the network bootstrap


def test_fit_log_slope_is_exact_on_an_exponential_and_matches_polyfit():
    layers = np.arange(40)
    curve = 3.0 * np.exp(-layers / 7.0)
    window = (layers >= 5) & (layers <= 30)
    assert pd.fit_log_slope(curve, window) == pytest.approx(-1 / 7.0, rel=1e-12)
    noisy = curve * np.exp(np.random.default_rng(0).normal(0, 0.1, 40))
    ref = np.polyfit(layers[window], np.log(noisy[window]), 1)[0]
    assert pd.fit_log_slope(noisy, window) == pytest.approx(ref, rel=1e-10)
    # vectorized over leading axes
    both = pd.fit_log_slope(np.stack([curve, noisy]), window)
    np.testing.assert_allclose(both, [-1 / 7.0, ref], rtol=1e-10)


def test_windows_by_hand():
    gap = np.array([1e-6, 1e-7, 1e-8, 1e-9, 1e-30, 1e-10])
    np.testing.assert_array_equal(pd.close_window(gap, 1e-24, 1e-2, start=1), [0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(pd._first_run(np.array([0, 1, 1, 0, 1], bool)), [0, 1, 1, 0, 0])
    assert not pd._first_run(np.zeros(3, bool)).any()


def test_zero_crossing_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert pd.zero_crossing(x, np.array([-2.0, -1.0, 1.0, 2.0])) == pytest.approx(2.5)
    assert pd.zero_crossing(x, np.array([-3.0, -1.0, 3.0, 2.0])) == pytest.approx(2.25)
    assert np.isnan(pd.zero_crossing(x, np.array([-3.0, -1.0, -0.5, -0.1])))
    both = pd.zero_crossing(x, np.array([[-2.0, -1.0, 1.0, 2.0], [-1.0, 1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(both, [2.5, 1.5])


def test_network_bootstrap_interval_matches_scipy():
    """The multinomial resampling of networks against scipy's percentile bootstrap."""
    values = np.random.default_rng(3).lognormal(0.0, 0.5, size=32)
    means = pd.resample_networks(values[:, None], 4000, seed=1)[:, 0]
    lo, hi = pd.percentile_interval(means)
    ref_lo, ref_hi = _stats.bootstrap_ci(values, np.mean, method="percentile")
    se = values.std(ddof=1) / math.sqrt(values.size)
    # Two Monte Carlo estimates of the same percentiles: they differ by a small
    # fraction of the standard error (4000 and 9999 resamples).
    assert abs(lo - ref_lo) <= 0.15 * se
    assert abs(hi - ref_hi) <= 0.15 * se
    assert means.mean() == pytest.approx(values.mean(), abs=0.05 * se)


# --------------------------------------------------------------------------------------
# The Monte Carlo against mean-field theory


@pytest.fixture(scope="module")
def traces():
    cfg = pd.ExperimentConfig(
        mc_sigma_w2=(1.0, 3.0), mc_width=128, mc_depth=60, mc_networks=16, close_gap=1e-6
    )
    return cfg, pd.correlation_traces(cfg)


def test_close_pairs_shrink_at_chi1_per_layer(traces):
    """Per-layer log ratio of 1 - c (ordered sigma_w2 = 1) against log chi1."""
    cfg, tr = traces
    gap = tr["gap"][:, :30, 0]  # [networks, layers]; 1 - c stays above 1e-24 here
    per_net = np.mean(np.diff(np.log(gap), axis=1), axis=1)
    with jax.enable_x64(True):
        log_chi1 = math.log(float(theory.chi1("tanh", 1.0, cfg.sigma_b2)))
    se = per_net.std(ddof=1) / math.sqrt(per_net.size)
    # A network's mean log ratio sits below log E[ratio] by about Var/2 = 1/width
    # (the chi-square of the width's units): that bias is allowed on top of 4 SE.
    assert abs(per_net.mean() - log_chi1) <= 4 * se + 2.0 / cfg.mc_width


def test_far_pairs_reach_the_theory_c_star(traces):
    """Plateau of the far pairs' correlation at chaotic sigma_w2 = 3 against c*."""
    cfg, tr = traces
    plateau = tr["c"][:, 30:, 1, 0].mean(axis=1)  # per network, layers 30-60 (xi_c ~ 9)
    with jax.enable_x64(True):
        c_star = float(theory.c_star("tanh", 3.0, cfg.sigma_b2))
    se = plateau.std(ddof=1) / math.sqrt(plateau.size)
    assert abs(plateau.mean() - c_star) <= 4 * se + 2.0 / cfg.mc_width
    # and the start is exact: c^0 = 0 and 1 - c^0 = close_gap
    np.testing.assert_allclose(tr["c"][:, 0, :, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(tr["c"][:, 0, :, 1], pd.ABOVE, atol=1e-12)
    np.testing.assert_allclose(tr["gap"][:, 0, :], cfg.close_gap, rtol=1e-6)


def test_map_fixed_point_of_a_quadratic_map():
    """Trajectories of c' = f(c), f quadratic: the fit recovers f's fixed point and slope."""

    def f(c):
        return 0.2 + 0.5 * c + 0.3 * c**2  # fixed point: 0.3 c^2 - 0.5 c + 0.2 = 0 -> 2/3, 1

    below, above = [0.0], [0.9]
    for _ in range(40):
        below.append(f(below[-1]))
        above.append(f(above[-1]))
    c_star, chi_c, n = pd.map_fixed_point(np.array(below), np.array(above), 0.65, 0.3)
    assert c_star == pytest.approx(2 / 3, abs=1e-9)
    assert chi_c == pytest.approx(0.5 + 0.6 * (2 / 3), abs=1e-9)  # f'(c*)
    assert n >= 5
    nan = pd.map_fixed_point(np.zeros(3), np.zeros(3), 0.5, 0.1)
    assert np.isnan(nan[0]) and nan[2] == 0


def test_measure_xi_c_on_exact_decays():
    """measure_xi_c on synthetic traces: ordered and chaotic xi_c, and the crossing."""
    layers = np.arange(121)
    cfg = pd.ExperimentConfig(mc_sigma_w2=(1.0, 2.0, 3.0), bootstrap=50)
    # Ordered at 1.0 (xi 4) and 2.0 (xi 30): close pairs shrink; chaotic at 3.0: they
    # grow, and the far pairs approach c* = 0.3 linearly with chi_c = exp(-1/6).
    gap = np.stack(
        [1e-6 * np.exp(-layers / 4.0), 1e-6 * np.exp(-layers / 30.0), 1e-6 * np.exp(layers / 50)],
        axis=-1,
    )
    decay = np.exp(-layers / 6.0)
    far = np.stack([0.3 - 0.3 * decay, 0.3 + (pd.ABOVE - 0.3) * decay], axis=-1)  # [L, 2]
    c = np.stack([np.ones_like(far), np.ones_like(far), far], axis=1)  # [L, S, 2]
    rng = np.random.default_rng(0)
    traces = {
        "gap": np.broadcast_to(gap, (8, *gap.shape)),
        "c": c[None] + rng.normal(0, 1e-5, (8, *c.shape)),
    }
    out = pd.measure_xi_c(cfg, traces)
    assert out["ordered"] == [True, True, False]
    assert out["xi_c"][0] == pytest.approx(4.0, rel=1e-9)
    assert out["xi_c"][1] == pytest.approx(30.0, rel=1e-9)
    assert out["xi_c"][2] == pytest.approx(6.0, rel=0.01)
    assert out["c_star"][2] == pytest.approx(0.3, abs=1e-4)
    lo, hi = out["xi_c_ci"][2]
    assert lo <= 6.0 * 1.01 and hi >= 6.0 * 0.99
    # log chi1 = -1/30 at 2.0 and +1/50 at 3.0: linear zero at 2 + (1/30)/(1/30 + 1/50)
    assert out["critical_crossing"] == pytest.approx(2.0 + (1 / 30) / (1 / 30 + 1 / 50))
