"""Tests of experiments/he2015_depth.py's helpers (its notebook runs the quick config).

The learning-rate rule and the outcome counts against hand computations, the claims'
verdicts on synthetic results, the exact finite-width log ratio against a Monte Carlo
of one ReLU layer, and the at-init program against mean field, the library's
``forward_stats`` and the positive homogeneity that makes Xavier's ratio He's times
``2^-(L-1)``. Tolerances are in standard errors of the estimator.
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
from jaxstab import diagnostics
from jaxstab.data import load_digits
from jaxstab.experiment import Result, group_configs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import _stats
import he2015_depth as he

LN10 = math.log(10.0)


def test_outcomes_by_hand():
    loss = np.array([0.1, 1.0, 1.2, 2.26, 2.30, np.nan, np.inf])
    got = he.outcomes(loss, stall_margin=0.05)
    # converged: < ln 10 / 2 = 1.151 -> 0.1, 1.0; stalled: > 2.253 -> 2.26, 2.30.
    assert got == {"n": 7, "stalled": 2, "converged": 2, "diverged": 2}


def test_best_lr_skips_learning_rates_with_a_diverged_seed():
    finals = {
        0.01: np.array([0.5, 0.6, 0.7]),
        0.03: np.array([0.2, 0.3, 0.4]),
        0.1: np.array([0.01, 0.02, np.nan]),  # lowest median, but a seed diverged
    }
    assert _stats.best_lr(finals) == 0.03


def test_best_lr_when_every_learning_rate_lost_a_seed():
    finals = {
        0.01: np.array([0.5, np.nan, 0.7]),
        0.03: np.array([0.2, np.nan, np.nan]),
        0.1: np.array([0.9, 1.0, np.nan]),
    }
    # Fewest diverged first (0.01 and 0.1), then the lower median with NaN ranked worst:
    # 0.01 -> median(0.5, inf, 0.7) = 0.7 < median(0.9, 1.0, inf) = 1.0.
    assert _stats.best_lr(finals) == 0.01
    with pytest.raises(ValueError, match="empty"):
        _stats.best_lr({})


def test_lr_grids_need_one_grid_per_init():
    config = he.ExperimentConfig(lr_grids=((0.1,),))
    with pytest.raises(ValueError, match="one grid per init"):
        he.engine_configs(config)


def test_one_program_per_depth():
    config = he.get_config()
    configs = he.engine_configs(config)
    assert len(configs) == len(config.depths) * sum(len(g) for g in config.lr_grids)
    groups = group_configs(configs)
    assert len(groups) == len(config.depths)
    for g in groups:
        assert {(c.init, c.lr) for c in g} == {
            (init, lr) for init in config.inits for lr in he.lr_grid(config, init)
        }
    assert config.seeds >= 16 and min(config.depths) == 22 and max(config.depths) == 30


def _fake(depth: int, init: str, lr: float, finals: np.ndarray) -> Result:
    """A Result whose final evaluated training loss is ``finals`` (the rest constant)."""
    config = he.engine_configs(he.get_config(quick=True))[0]
    config = type(config)(**{**config.to_dict(), "depth": depth, "init": init, "lr": lr})
    seeds = finals.size
    curve = np.stack([np.full(seeds, LN10), finals], axis=1)
    zeros = np.zeros((seeds, 2))
    return Result(
        config=config,
        train_loss=zeros,
        grad_norm=zeros,
        clipped=zeros.astype(bool),
        eval_steps=np.array([0, 1]),
        eval_train_loss=curve,
        test_loss=curve,
        test_accuracy=np.full((seeds, 2), 0.5),
        diverged=~np.isfinite(finals),
        diverged_step=np.where(np.isfinite(finals), -1, 1),
        layer_stats={},
    )


def _measured(config: he.ExperimentConfig, deep_xavier: np.ndarray) -> dict:
    """Synthetic results: He converges everywhere, Xavier converges shallow."""
    rng = np.random.default_rng(0)
    results = []
    for depth in config.depths:
        for init in config.inits:
            for lr in he.lr_grid(config, init):
                if init == "he_normal":
                    finals = rng.uniform(0.01, 0.1, 16)
                elif depth == min(config.depths):
                    finals = rng.uniform(0.3, 0.6, 16)
                else:
                    finals = deep_xavier + rng.uniform(0, 1e-3, 16)
                results.append(_fake(depth, init, lr, finals))
    measured = he.summarize_training(results, config)
    measured["signal"] = {
        "nets": 100,
        "per_depth": {
            f"d{max(config.depths)}": {
                "ratio_mean": 1.02,
                "ratio_interval": [0.9, 1.1],
                "log2_per_layer_per_input": [-0.06, -0.07, -0.05],
            }
        },
        "hanin_leading_log2_per_layer": -0.056,
        "exact_log2_per_layer": -0.058,
        "nets_with_a_dead_input": 0,
    }
    return measured


def test_claims_verdicts_on_synthetic_results():
    config = he.get_config(quick=True)
    stalled = _measured(config, np.full(16, LN10 - 0.001))
    verdicts = [c["agrees"] for c in he.claims(stalled, config)]
    assert verdicts == [True] * 8
    # Xavier trains at the deep depth: the stall claim fails, the others hold.
    trains = _measured(config, np.full(16, 0.4))
    by_claim = {c["claim"]: c for c in he.claims(trains, config)}
    stall = by_claim[f"{max(config.depths)} hidden layers: Xavier stalls at the chance loss"]
    assert stall["agrees"] is False and stall["measured"] == 0.0
    assert stall["interval"][1] == pytest.approx(0.194, abs=1e-3)  # Wilson 0/16 upper bound


def test_findings_are_formatted_from_the_result():
    config = he.get_config(quick=True)
    measured = _measured(config, np.full(16, LN10 - 0.001))
    d = measured["signal"]["per_depth"][f"d{max(config.depths)}"]
    d.update(ratio_median=0.8, log2_slope_batch_q=[-0.04, -0.05, -0.03])
    for depth in config.depths:
        measured["signal"]["per_depth"].setdefault(f"d{depth}", d)
    measured["programs_compiled"] = 2
    text = he.findings({"config": he.dataclasses.asdict(config), "measured": measured})
    assert "| 8 | Xavier |" in text and "16 of 16 Xavier seeds" in text
    assert "resolved from zero" in text


def test_compare_ranks_diverged_seeds_worst():
    he_loss = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    xavier = np.array([2.3, 2.2, 2.25, np.nan, 2.1])
    got = he.compare(he_loss, xavier)
    assert got["median_difference"] == pytest.approx(0.3 - 2.225)
    lo, hi = got["interval"]
    assert lo <= got["median_difference"] <= hi < 0
    # Every He loss is below every Xavier loss: the exact one-sided p is 1 / C(10, 5).
    assert got["p_less"] == pytest.approx(1 / math.comb(10, 5), rel=1e-6)
    assert he.compare(np.array([0.1, np.nan, np.nan]), xavier)["interval"] is None


def test_per_net_slopes_of_geometric_profiles():
    layers = np.arange(7)
    log2_q = np.stack([3.0 - layers, 1.0 + 0.0 * layers, -2.0 + 0.5 * layers])
    np.testing.assert_allclose(he.per_net_slopes(log2_q), [-1.0, 0.0, 0.5], atol=1e-12)


@pytest.mark.parametrize("width", [8, 24])
def test_finite_width_log_ratio_against_monte_carlo(width):
    """One He ReLU layer on an isotropic Gaussian input: E ln(||W relu(z)||^2 / ||z||^2)."""
    rng = np.random.default_rng(width)
    log_r = []
    for _ in range(8):  # 8 chunks of 4000 layers keep the weight draws small
        z = rng.standard_normal((4000, width))
        w = rng.standard_normal((4000, width, width)) * math.sqrt(2 / width)
        a = np.maximum(z, 0.0)
        alive = a.any(axis=1)  # the formula leaves out k = 0 (probability 2^-n)
        out = np.einsum("bi,bij->bj", a[alive], w[alive])
        log_r.append(np.log(np.sum(out**2, 1) / np.sum(z[alive] ** 2, 1)))
    log_r = np.concatenate(log_r)
    se = log_r.std(ddof=1) / math.sqrt(log_r.size)
    exact = he.finite_width_log_ratio(width)
    assert abs(log_r.mean() - exact) < 4 * se
    # ... and -2.5 / n is its leading order: the gap shrinks like 1/n^2.
    assert abs(exact + 2.5 / width) < 6 / width**2
    assert abs(he.finite_width_log_ratio(1000) + 2.5e-3) < 6e-6


@pytest.fixture(scope="module")
def profiles():
    x = jnp.asarray(load_digits().x_train[:64])
    key = jax.random.key(3)
    depth, width, nets = 5, 32, 1024
    out = {
        init: he.init_profiles(key, x, width, depth, nets, init=init)
        for init in ("he_normal", "xavier_normal")
    }
    return x, key, depth, width, nets, out


def test_init_profiles_second_moment_is_forward_stats(profiles):
    x, key, depth, width, nets, out = profiles
    sizes = [x.shape[1], *[width] * depth, 10]
    k0 = jax.random.split(key, nets)[0]
    params = js.init_mlp(k0, sizes, weight_init=js.get_initializer("he_normal"))
    expected = diagnostics.forward_stats(params, x, "relu").second_moment
    np.testing.assert_allclose(out["he_normal"][0][0], expected, rtol=1e-5)


def test_xavier_is_he_scaled_by_half_per_layer(profiles):
    """Shared draws and positive homogeneity: past the first layer, Xavier's square
    layers scale He's q by exactly 1/2 each; the first (64 -> 32) by 32/48."""
    x, _, depth, width, _, out = profiles
    q_he, q_xavier = out["he_normal"][0], out["xavier_normal"][0]
    first = (2 / (x.shape[1] + width)) / (2 / x.shape[1])
    np.testing.assert_allclose(q_xavier[:, 0], first * q_he[:, 0], rtol=1e-5)
    halving = 2.0 ** -np.arange(depth)
    np.testing.assert_allclose(q_xavier / q_xavier[:, :1], q_he / q_he[:, :1] * halving, rtol=1e-5)
    np.testing.assert_allclose(
        out["xavier_normal"][1], out["he_normal"][1] + np.log(halving), atol=1e-4
    )


def test_init_profiles_against_mean_field_and_finite_width(profiles):
    """He: E[q^L / q^1] = 1 exactly; per input, E ln R per layer = the exact formula."""
    _, _, depth, width, nets, out = profiles
    q, log_ratio = out["he_normal"]
    ratio = q[:, -1] / q[:, 0]
    se = ratio.std(ddof=1) / math.sqrt(nets)
    assert abs(ratio.mean() - 1.0) < 4 * se
    per_layer = log_ratio[:, -1] / (depth - 1)
    se = per_layer.std(ddof=1) / math.sqrt(nets)
    assert abs(per_layer.mean() - he.finite_width_log_ratio(width)) < 4 * se
    assert per_layer.mean() + 6 * se < 0  # the finite-width shift is resolved here
