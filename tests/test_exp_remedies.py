"""Tests of experiments/remedies.py's helpers (its notebook runs the quick config).

The matching He gain against the library's ``calculate_gain``, the init's layout and
scales, the death measures on hand-built activations, the traced SGD/Adam switch
against optax, the learning-rate rule and the gap closed by hand, and the at-init
Monte Carlo against exact statements (a ReLU net with zero biases is born dead
exactly when a layer collapses; the matching gain keeps the layer-to-layer
second-moment ratio at 1 in expectation, ReLU's gain does not). Tolerances are in
standard errors.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxstab as js

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import _stats
import remedies as rm


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.1, 0.3])
def test_he_std_is_the_leaky_gain_over_sqrt_fan_in(slope):
    for n in (4, 64):
        assert rm.he_std(n, slope) ** 2 * n * (1 + slope**2) == pytest.approx(2.0, rel=1e-12)
        assert rm.he_std(n, slope) == pytest.approx(
            js.calculate_gain("leaky_relu", slope) / math.sqrt(n), rel=1e-12
        )


def test_layer_stds_he_and_xavier():
    sizes = (64, 8, 8, 10)
    he = rm.layer_stds(sizes, rm.Arm("leaky_0.3", 0.3, 0.0, "he"))
    np.testing.assert_allclose(he**2, [2 / (1.09 * 64), 2 / (1.09 * 8), 2 / (1.09 * 8)], rtol=1e-6)
    xavier = rm.layer_stds(sizes, rm.Arm("xavier", 0.0, 0.0, "xavier"))
    np.testing.assert_allclose(xavier**2, [2 / 72, 2 / 16, 2 / 18], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown init"):
        rm.layer_stds(sizes, rm.Arm("x", 0.0, 0.0, "orthogonal"))


def test_remedy_arms_from_the_config():
    arms = rm.remedy_arms(rm.get_config())
    assert [a.name for a in arms] == ["relu", "leaky_0.01", "leaky_0.1", "leaky_0.3", "bias_0.1"]
    assert arms[-1].slope == 0.0 and arms[-1].bias == 0.1
    assert all(a.init == "he" for a in arms)
    with pytest.raises(ValueError, match="ReLU arm"):
        rm.remedy_arms(rm.ExperimentConfig(slopes=(0.1,)))


def test_init_layout_scales_and_bias():
    sizes = (64, 8, 8, 8, 10)
    arm = rm.Arm("bias_0.1", 0.0, 0.1, "he")
    hp = {"weight_std": jnp.asarray(rm.layer_stds(sizes, arm)), "bias": jnp.float32(0.1)}
    params = rm.make_init(sizes)(jax.random.key(0), hp)
    assert js.mlp_sizes(params) == list(sizes)
    hidden = params["hidden"]
    np.testing.assert_array_equal(
        np.concatenate([g["b"].reshape(-1) for g in hidden]), np.float32(0.1)
    )
    np.testing.assert_array_equal(params["output"]["b"], 0.0)
    # Sample variance of the 64 x 8 input layer's weights within 4 standard errors.
    w = np.asarray(hidden[0]["w"]).reshape(-1)
    var, target = w.var(), 2.0 / 64
    se = target * math.sqrt(2.0 / w.size)
    assert abs(var - target) < 4 * se


def test_death_measures_by_hand():
    # Two layers, batch 3, width 2. Layer 0: unit 0 dead (<= 0 everywhere), unit 1 alive.
    pre = jnp.array(
        [
            [[-1.0, 2.0], [0.0, -1.0], [-3.0, 0.5]],
            [[-1.0, -2.0], [-0.5, -1.0], [0.0, -0.1]],  # layer 1: every unit dead
        ]
    )
    logits = jnp.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    out = rm.death(pre, logits)
    assert float(out["dead_units"]) == pytest.approx(3 / 4)
    assert float(out["collapsed"]) == 1.0 and float(out["constant"]) == 1.0
    out = rm.death(pre[:1], logits.at[2, 0].set(1.5))
    assert float(out["collapsed"]) == 0.0 and float(out["constant"]) == 0.0


@pytest.mark.parametrize("use_adam", [False, True])
def test_sgd_or_adam_matches_optax(use_adam):
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = [{"w": jnp.array([0.5, -1.0, 2.0])}, {"w": jnp.array([-0.1, 0.3, 1.0])}]
    hp = {"lr": jnp.float32(0.01), "adam": jnp.float32(1.0 if use_adam else 0.0)}
    mine = rm.sgd_or_adam(hp)
    ref = optax.adam(0.01) if use_adam else optax.sgd(0.01)
    s_mine, s_ref = mine.init(params), ref.init(params)
    for g in grads:
        u_mine, s_mine = mine.update(g, s_mine, params)
        u_ref, s_ref = ref.update(g, s_ref, params)
        np.testing.assert_allclose(u_mine["w"], u_ref["w"], rtol=1e-6, atol=1e-9)


def test_best_lr_skips_diverged_and_breaks_ties_by_median():
    finals = {0.01: np.array([0.5, 0.6, 0.7]), 0.1: np.array([0.1, 0.2, np.nan])}
    assert _stats.best_lr(finals) == 0.01
    finals[0.1] = np.array([0.1, 0.2, 0.3])
    assert _stats.best_lr(finals) == 0.1
    with pytest.raises(ValueError, match="empty"):
        _stats.best_lr({})


def test_gap_closed_by_hand_and_its_interval():
    xs = np.array([2.3, 2.3, 2.2, 2.3, 2.25])  # median 2.3
    hs = np.array([0.3, 0.35, 0.25, 0.3, 0.4])  # median 0.3
    xa = np.array([1.3, 1.2, 1.35, 1.3, 1.25])  # median 1.3
    assert rm.gap_closed(xs, xa, hs) == pytest.approx(0.5)
    value, lo, hi = rm.gap_closed_ci(xs, xa, hs)
    assert value == pytest.approx(0.5) and lo <= 0.5 <= hi and lo > 0.3 and hi < 0.7
    assert rm.gap_closed(xs, hs, hs) == pytest.approx(1.0)
    # A diverged seed counts as the worst loss: the median of Xavier-Adam moves up.
    value, _, _ = rm.gap_closed_ci(xs, np.array([1.3, np.nan, np.nan, 1.2, 1.25]), hs)
    assert value == pytest.approx((2.3 - 1.3) / 2.0)


def test_runs_for_lays_out_cells_and_seeds():
    sizes = (64, 4, 4, 10)
    arms = rm.remedy_arms(rm.get_config(quick=True))
    cells = [(arms[0], 0.1, False), (arms[3], 0.3, True)]
    runs = rm.runs_for(cells, sizes, seeds=3)
    assert runs["seed"].tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(runs["lr"], [0.1] * 3 + [0.3] * 3)
    np.testing.assert_allclose(runs["slope"], [0.0] * 3 + [0.3] * 3)
    np.testing.assert_allclose(runs["adam"], [0.0] * 3 + [1.0] * 3)
    assert runs["weight_std"].shape == (6, 3)
    np.testing.assert_allclose(runs["weight_std"][3], rm.layer_stds(sizes, arms[3]))


def test_adam_grids_need_one_grid_per_arm():
    cells = rm.adam_cells(rm.get_config())
    assert len(cells) == sum(len(g) for g in rm.get_config().adam_grids)
    with pytest.raises(ValueError, match="one per arm"):
        rm.adam_cells(rm.ExperimentConfig(adam_grids=((0.1,),)))


def test_init_monte_carlo_against_exact_statements():
    """ReLU, zero biases: born dead exactly when some layer collapses; the matching
    gain keeps E[q^(l+1)/q^l] = 1 for leaky ReLU, ReLU's gain gives 1 + a^2."""
    x = np.asarray(jax.random.normal(jax.random.key(1), (64, 64)))
    sizes = (64, *([4] * 10), 10)
    key = jax.random.key(2)
    relu = rm.init_death(key, sizes, rm.Arm("relu", 0.0, 0.0, "he"), x, 512)
    np.testing.assert_array_equal(relu["constant"], relu["collapsed"])
    # Closed form at one input is 1 - (1 - 2^-4)^9 for the 9 square layers (+ the first
    # layer's chance 2^-4 of collapse); over a batch the event is rarer but frequent here.
    assert 0.05 < relu["constant"].mean() < 1 - (1 - 2**-4) ** 10 + 0.05
    a = 0.3
    matched = rm.init_death(key, sizes, rm.Arm("leaky_0.3", a, 0.0, "he"), x, 512)
    assert matched["constant"].sum() == 0  # leaky units are never exactly zero
    mean, se = matched["q_ratio"].mean(), matched["q_ratio"].std(ddof=1) / math.sqrt(512)
    assert abs(mean - 1.0) < 4 * se
    # ReLU's gain with the leaky activation: the ratio is 1 + a^2 per layer.
    hp = {
        "slope": jnp.float32(a),
        "bias": jnp.float32(0.0),
        "weight_std": jnp.asarray(rm.layer_stds(sizes, rm.Arm("relu", 0.0, 0.0, "he"))),
    }
    keys = jax.random.split(key, 512).reshape(2, 256)
    wrong = np.asarray(rm._init_program(sizes, 256)(keys, hp, jnp.asarray(x))["q_ratio"])
    se_wrong = wrong.std(ddof=1) / math.sqrt(wrong.size)
    assert abs(wrong.mean() - (1 + a**2)) < 4 * se_wrong
    assert wrong.mean() - 1.0 > 5 * se_wrong  # the test can tell the two gains apart
