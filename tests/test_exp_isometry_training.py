"""Tests of experiments/isometry_training.py's helpers (its notebook runs the quick config).

The threshold and learning-rate rules against hand computations; the traced model
against the library (``apply_mlp`` with the named activation, and
``diagnostics.jacobian_singular_values``); the initial weights against their laws
(orthogonal: ``W^T W = sigma_w2 I`` exactly; Gaussian: ``n Var W = sigma_w2`` within
standard errors); the critical point against ``chi1 = 1``; the exact isometry of a
near-linear orthogonal chain (Saxe et al. 2014); the growth statistic and the claims'
verdicts on synthetic data.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstab as js
from jaxstab import diagnostics, theory
from jaxstab.data import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import isometry_training as it

CRIT = {"sigma_w2": 1.0395211284844823, "sigma_b2": 1e-5, "q_star": 0.020337953119314498}


def _hp(arm: str) -> dict[str, jax.Array]:
    return {k: jnp.float32(v) for k, v in it.arm_hparams(arm, CRIT).items()}


def test_steps_to_threshold_by_hand():
    loss = np.array(
        [
            [3.0, 2.0, 1.0, 0.5, 0.4],  # trailing means (w=2): 2.5, 1.5, 0.75 < 1 at t=4
            [3.0, 0.5, 3.0, 0.5, 3.0],  # means 1.75 each: never
            [0.1, 0.1, np.nan, np.nan, np.nan],  # below at t=2, but diverged
            [2.0, 2.0, 2.0, 0.9, 0.9],  # means 2, 2, 1.45, 0.9 < 1 at t=5
        ]
    )
    got = it.steps_to_threshold(loss, 2, 1.0, np.array([False, False, True, False]))
    np.testing.assert_array_equal(got, [4.0, np.inf, np.inf, 5.0])
    # Without the divergence flag the NaN tail does not erase the earlier crossing.
    assert it.steps_to_threshold(loss[2:3], 2, 1.0)[0] == 2.0
    np.testing.assert_array_equal(it.capped(got, 5), [4.0, 6.0, 6.0, 5.0])
    with pytest.raises(ValueError, match="window"):
        it.steps_to_threshold(loss, 6, 1.0)


def test_best_lr_rule():
    inf = np.inf
    cells = {
        0.01: (np.array([50.0, 60.0, 70.0]), np.array([0.5, 0.6, 0.7])),
        0.03: (np.array([30.0, 40.0, inf]), np.array([0.3, 0.4, np.nan])),  # fastest median
        0.1: (np.array([inf, inf, inf]), np.array([2.0, 2.1, 2.2])),
    }
    assert it.best_lr(cells) == 0.03
    # All never: the lowest median final loss decides, NaN ranked worst.
    never = {
        0.01: (np.full(3, inf), np.array([1.0, 1.1, 1.2])),
        0.03: (np.full(3, inf), np.array([0.9, np.nan, np.nan])),
    }
    assert it.best_lr(never) == 0.01
    with pytest.raises(ValueError, match="empty"):
        it.best_lr({})


def test_runs_one_block_per_arm_and_lr():
    config = it.get_config()
    runs, cells = it.runs_and_cells(config, CRIT)
    assert len(cells) == sum(len(it.lr_grid(config, a)) for a in it.ARMS)
    assert runs["seed"].shape == (len(cells) * config.seeds,)
    for i, (arm, lr) in enumerate(cells):
        sl = slice(i * config.seeds, (i + 1) * config.seeds)
        np.testing.assert_array_equal(runs["seed"][sl], np.arange(config.seeds))
        np.testing.assert_allclose(runs["lr"][sl], lr, rtol=1e-7)
        assert np.all(runs["relu"][sl] == (arm == "relu_he"))
        assert np.all(runs["orthogonal"][sl] == (arm == "orthogonal_tanh"))
    assert config.seeds >= 16 and len(config.depths) >= 2


def test_critical_point_is_critical():
    crit = it.critical_point(1e-5)
    assert crit["sigma_w2"] == pytest.approx(CRIT["sigma_w2"], rel=1e-9)
    assert crit["q_star"] == pytest.approx(CRIT["q_star"], rel=1e-9)
    with jax.enable_x64(True):
        chi1 = float(theory.chi1("tanh", crit["sigma_w2"], crit["sigma_b2"]))
    assert chi1 == pytest.approx(1.0, abs=1e-9)


@pytest.fixture(scope="module")
def nets():
    """Parameters of each arm at depth 3, width 64, from one key."""
    key = jax.random.key(7)
    return {arm: it.init_params(key, _hp(arm), 3, 64, 10) for arm in it.ARMS}


def test_orthogonal_weights_are_scaled_isometries(nets):
    w = np.asarray(nets["orthogonal_tanh"]["hidden"][0]["w"], np.float64)  # [3, 64, 64]
    eye = np.eye(64) * CRIT["sigma_w2"]
    for layer in w:
        np.testing.assert_allclose(layer.T @ layer, eye, atol=2e-5)
    out = np.asarray(nets["orthogonal_tanh"]["output"]["w"], np.float64)  # [64, 10]
    np.testing.assert_allclose(out.T @ out, np.eye(10) * CRIT["sigma_w2"], atol=2e-5)


def test_gaussian_weights_and_biases_have_their_variances():
    keys = jax.random.split(jax.random.key(1), 16)
    hp = _hp("gaussian_tanh")
    stack = jax.vmap(lambda k: it.init_params(k, hp, 4, 64, 10)["hidden"][0])(keys)
    for name, target in (("w", CRIT["sigma_w2"] / 64), ("b", CRIT["sigma_b2"])):
        v = np.asarray(stack[name], np.float64).reshape(-1)
        se = target * math.sqrt(2 / v.size)  # SE of a Gaussian sample variance (mean known 0)
        assert abs(np.mean(v**2) - target) < 4 * se, name
    relu = it.init_params(keys[0], _hp("relu_he"), 4, 64, 10)
    assert float(jnp.max(jnp.abs(relu["hidden"][0]["b"]))) == 0.0


def test_traced_model_is_the_library_mlp(nets):
    """The traced activation gives what apply_mlp gives with the named one."""
    x = jnp.asarray(load_digits().x_train[:32])
    for arm, name in (("orthogonal_tanh", "tanh"), ("gaussian_tanh", "tanh"), ("relu_he", "relu")):
        got = js.apply_mlp(nets[arm], x, it.activation(_hp(arm)))
        want = js.apply_mlp(nets[arm], x, name)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)


def test_jacobian_is_the_library_jacobian(nets):
    x = jnp.asarray(load_digits().x_train[:2])
    for arm, name in (("orthogonal_tanh", "tanh"), ("relu_he", "relu")):
        want = np.asarray(diagnostics.jacobian_singular_values(nets[arm], x, name))
        hp = _hp(arm)
        got = np.stack(
            [
                np.linalg.svd(np.asarray(it.jacobian(nets[arm], x[i], hp)), compute_uv=False)
                for i in range(2)
            ]
        )
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_near_linear_orthogonal_chain_is_isometric():
    """Zero biases and tiny inputs: tanh ~ identity, so J = sigma_w^L Q and every
    singular value is sigma_w^L (Saxe et al. 2014); Gaussian weights spread them."""
    depth = 6
    config = it.ExperimentConfig(depths=(depth,), jacobian_nets=3, jacobian_inputs=2)
    crit = {**CRIT, "sigma_b2": 0.0}
    x = 1e-4 * load_digits().x_train[:2]
    sv = it.jacobian_singular_values(config, depth, "orthogonal_tanh", crit, x)
    np.testing.assert_allclose(sv, crit["sigma_w2"] ** (depth / 2), rtol=1e-3)
    s = it.spectrum_summary(sv)
    assert s["spread"] < 1e-5 and s["fraction_within_factor_2"] == 1.0
    gauss = it.spectrum_summary(
        it.jacobian_singular_values(config, depth, "gaussian_tanh", crit, x)
    )
    assert gauss["spread"] > 1.0  # a product of 6 Gaussian matrices: Var/mean^2 ~ depth


def test_growth_statistic():
    rng = np.random.default_rng(0)
    a32, b32 = 50 + rng.normal(0, 2, 16), 80 + rng.normal(0, 2, 16)
    a128, b128 = 60 + rng.normal(0, 2, 16), 200 + rng.normal(0, 2, 16)
    got = it.growth(a32, b32, a128, b128)
    want = (np.median(b128) - np.median(a128)) - (np.median(b32) - np.median(a32))
    assert got["value"] == pytest.approx(want)
    lo, hi = got["interval"]
    assert 0 < lo <= want <= hi
    flat = it.growth(a32, b32, a32 + 10, b32 + 10)
    assert flat["interval"][0] < 0 < flat["interval"][1]
    same = it.growth(np.ones(4), np.ones(4), np.ones(4), np.ones(4))
    assert same == {"value": 0.0, "interval": [0.0, 0.0]}


def _synthetic_measured(config: it.ExperimentConfig, orth_fast: bool) -> dict:
    rng = np.random.default_rng(1)
    n, arms, chosen = config.seeds, {}, {}
    for depth in config.depths:
        for k, arm in enumerate(it.ARMS):
            speed = {0: 40 if orth_fast else 200, 1: 100 + depth, 2: 250}[k]
            steps = np.minimum(speed + rng.normal(0, 5, n), np.inf)
            final = 0.3 + 0.001 * speed + rng.normal(0, 0.01, n)
            chosen[(depth, arm)] = (steps, final)
            arms[f"d{depth}/{arm}"] = {
                "lr": 0.01,
                "lr_at_grid_edge": False,
                "best": it.cell_summary(steps, final, config.steps),
            }
    comps = {}
    for depth in config.depths:
        o = chosen[(depth, "orthogonal_tanh")]
        for other in ("gaussian_tanh", "relu_he"):
            b = chosen[(depth, other)]
            comps[f"d{depth}/orthogonal_tanh-{other}"] = {
                "steps": it.difference(o[0], b[0], o[0], b[0]),
                "final_loss": it.difference(o[1], b[1], o[1], b[1]),
            }
    s, d = min(config.depths), max(config.depths)
    grows = {
        other: it.growth(
            chosen[(s, "orthogonal_tanh")][0],
            chosen[(s, other)][0],
            chosen[(d, "orthogonal_tanh")][0],
            chosen[(d, other)][0],
        )
        for other in ("gaussian_tanh", "relu_he")
    }
    jac = {}
    for depth in config.depths:
        for k, arm in enumerate(it.ARMS):
            spread = (0.1, 1.0, 3.0)[k] * depth * (1 + 0.1 * rng.random(8))
            jac[f"d{depth}/{arm}"] = {"nets": 8, "spread_per_net": spread.tolist()}
    return {"arms": arms, "comparisons": comps, "advantage_growth": grows, "jacobian": jac}


def test_claims_verdicts_on_synthetic_results():
    config = it.ExperimentConfig(depths=(8, 64), steps=300)
    fast = it.claims(_synthetic_measured(config, orth_fast=True), config)
    assert len(fast) == 4 * len(config.depths) + 2 + 2 * len(config.depths)
    by = {c["claim"]: c["agrees"] for c in fast}
    # Gaussian's steps grow by 56 from 8 to 64 layers, orthogonal's do not; ReLU's do not.
    growth_g = [v for k, v in by.items() if "grows" in k and "Gaussian" in k]
    growth_r = [v for k, v in by.items() if "grows" in k and "ReLU" in k]
    assert growth_g == [True] and growth_r == [False]
    assert all(v for k, v in by.items() if "grows" not in k)
    slow = it.claims(_synthetic_measured(config, orth_fast=False), config)
    steps_claims = [c for c in slow if "fewer steps than Gaussian" in c["claim"]]
    assert [c["agrees"] for c in steps_claims] == [False, False]


def test_orthonormal_columns_is_the_sign_fixed_qr():
    """Gram-Schmidt gives QR's Q with diag R > 0: the Haar law of jaxstab.orthogonal."""
    a = jax.random.normal(jax.random.key(3), (64, 64), jnp.float32)
    q = np.asarray(jax.jit(it.orthonormal_columns)(a), np.float64)
    q_ref, r = np.linalg.qr(np.asarray(a, np.float64))
    q_ref = q_ref * np.sign(np.diag(r))[None, :]
    np.testing.assert_allclose(q, q_ref, atol=2e-4)
    np.testing.assert_allclose(q.T @ q, np.eye(64), atol=2e-5)
    tall = np.asarray(it.orthonormal_columns(a[:, :10]), np.float64)
    np.testing.assert_allclose(tall, q[:, :10], atol=1e-5)
    with pytest.raises(ValueError, match="n_out <= n_in"):
        it.orthonormal_columns(a[:10])
