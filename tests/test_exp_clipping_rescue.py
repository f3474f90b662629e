"""Tests of experiments/clipping_rescue.py beyond its notebook's quick run.

The pure helpers (grids, the best-of rule, stable edges, the range ratio and its
grid interval, the per-arm summary) against hand computations; normalized SGD as
clipping below every norm against optax's own ``normalize_by_update_norm``; the
``lr tau`` bound measured on the parameters against a plain loop of the same steps;
and the claims and the findings prose computed from a synthetic result.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxstab as js
from jaxstab.data import load_digits
from jaxstab.experiment import Config, Result, group_configs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import _findings
import clipping_rescue as cr

# A tiny net for the tests that train (one compile each, shared through the lru_cache).
TINY = cr.ExperimentConfig(depth=2, width=8, seeds=2, bound_steps=3)


def test_geometric_grid_by_hand():
    assert cr.geometric_grid(0.25, 2.0, 2.0) == [0.25, 0.5, 1.0, 2.0]
    grid = cr.geometric_grid(2.0**-8, 2.0, math.sqrt(2.0))
    assert len(grid) == 19  # 9 octaves in half-octave steps, both ends included
    np.testing.assert_allclose(np.diff(np.log2(grid)), 0.5, rtol=1e-12)
    assert grid[-1] == pytest.approx(2.0, rel=1e-12)
    full = cr.get_config()
    names = ["sgd", "clip_0.5", "clip_1", "clip_2", "clip_5", "clip_10", "nsgd"]
    assert cr.arm_names(full) == names


def test_best_index_lowest_median_diverged_worst():
    losses = np.array(
        [
            [1.0, 1.1, 1.2],  # median 1.1
            [0.5, np.inf, np.inf],  # median inf: two of three diverged
            [0.9, 1.0, np.inf],  # median 1.0: the best, one diverged seed
            [1.0, 0.95, 1.05],  # median 1.0: a tie, the smaller value wins
        ]
    )
    assert cr.best_index(losses) == 2


def test_stable_edges_by_hand():
    # grid of 5 values x 3 seeds; the arm's best is index 1.
    fails = np.array(
        [
            [True, False, False],  # below the best: ignored
            [False, True, False],  # seed 1 fails at the best itself -> edge 0
            [False, False, False],
            [True, False, False],  # seed 0 fails first at 3 -> edge 2
            [False, False, False],  # seed 2 never fails -> edge 4 (top of grid)
        ]
    )
    assert cr.stable_edges(fails, best=1).tolist() == [2, 0, 4]
    # A failure above a recovery still ends the range (the first failure counts).
    fails = np.array([[False], [True], [False]])
    assert cr.stable_edges(fails, best=0).tolist() == [0]
    assert cr.stable_edges(np.array([[True], [False]]), best=0).tolist() == [-1]


def test_range_ratio_and_its_grid_interval():
    grid = [0.25, 0.5, 1.0, 2.0, 4.0]
    a = np.array([4, 3, 2, -1])  # edges 4.0, 2.0, 1.0, below the grid (0.125)
    b = np.array([2, 2, 1, 0])  # edges 1.0, 1.0, 0.5, 0.25
    r = cr.range_ratio(grid, a, b, factor=2.0)
    assert r["per_seed"] == pytest.approx([4.0, 2.0, 2.0, 0.5])
    assert r["median"] == pytest.approx(2.0)
    # each edge is known to a factor 2, so the ratio to a factor 2 either way
    assert r["grid_interval"] == pytest.approx([1.0, 4.0])
    lo, hi = r["seed_interval"]
    assert 0.5 <= lo <= 2.0 <= hi <= 4.0
    assert r["censored_a"] == 1 and r["censored_b"] == 0


def _result(
    config: Config, final: list[float], diverged: list[bool], clipped: list[list[bool]]
) -> Result:
    """A result of two steps: gradient norm 2 until a seed diverges (step 1) and NaN after."""
    seeds = len(final)
    steps = len(clipped[0])
    loss = np.array([[2.3, v] for v in final], np.float32)
    div = np.asarray(diverged)
    grad = np.where(div[:, None] & (np.arange(steps) >= 1), np.nan, 2.0)
    return Result(
        config=dataclasses.replace(config, seeds=seeds),
        train_loss=np.zeros((seeds, steps), np.float32),
        grad_norm=grad,
        clipped=np.asarray(clipped) & ~np.isnan(grad),
        eval_steps=np.array([0, steps]),
        eval_train_loss=loss,
        test_loss=loss,
        test_accuracy=np.full((seeds, 2), 0.5, np.float32),
        diverged=div,
        diverged_step=np.where(div, 1, -1),
        layer_stats={"final/saturated_fraction": np.full((seeds, 3), 0.125)},
    )


def test_per_seed_helpers_by_hand():
    c = cr.base_config(TINY, steps=2, seeds=3)
    r = _result(
        c,
        [0.5, np.nan, 2.4],
        [False, True, False],
        [[True, False], [True, True], [False, False]],
    )
    assert cr.final_losses(r).tolist() == pytest.approx([0.5, np.inf, 2.4])
    assert cr.failed(r).tolist() == [False, True, True]  # 2.4 >= ln 10, NaN diverged
    assert cr.live_steps(r).tolist() == [[True, True], [True, False], [True, True]]
    # the diverged seed counts only its step 0 (clipped); the frozen step is left out
    assert cr.clip_fraction(r).tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_summarize_arm_by_hand():
    c = cr.base_config(TINY, steps=2, seeds=3)
    clip = [[True, True]] * 3
    results = [
        _result(c, [1.0, 1.1, 1.2], [False] * 3, clip),
        _result(c, [0.4, 0.6, 0.5], [False] * 3, clip),
        _result(c, [0.3, np.nan, 2.5], [False, True, False], clip),
    ]
    s = cr.summarize_arm(results, [0.1, 0.2, 0.4])
    assert s["best"] == 1 and s["best_value"] == 0.2
    assert s["median_final_loss"] == pytest.approx([1.1, 0.5, 2.5])
    assert s["failure_rate"] == pytest.approx([0.0, 0.0, 2 / 3])
    assert s["divergence_rate"] == pytest.approx([0.0, 0.0, 1 / 3])
    assert s["final_loss_per_seed"][2][1] is None
    assert s["edges"] == [2, 1, 1]  # seed 0 stable to the top; seeds 1 and 2 fail at 0.4
    assert s["best_clip_rate"] == 1.0
    assert s["saturated_final_median"] == pytest.approx([0.125] * 3)
    assert s["best_summary"]["median"] == pytest.approx(0.5)


def test_every_arm_shares_one_program_and_nsgd_steps_are_eta():
    config = cr.get_config()
    configs = cr.engine_configs(config, median_norm=300.0)
    assert list(configs) == cr.arm_names(config)
    flat = [c for cs in configs.values() for c in cs]
    assert len(group_configs(flat)) == 1
    assert [c.clip for c in configs["clip_0.5"]] == [150.0] * len(configs["clip_0.5"])
    assert all(c.clip is None for c in configs["sgd"])
    etas = cr.arm_grid(config, "nsgd")
    np.testing.assert_allclose([c.lr * c.clip for c in configs["nsgd"]], etas, rtol=1e-12)
    # sigma_w^2 = init_gain^2 x lecun's 1/n_in
    assert configs["sgd"][0].init_gain ** 2 == pytest.approx(config.sigma_w2)


def test_nsgd_as_clipping_equals_optax_normalize_by_update_norm():
    """clip(tau_0) then sgd(eta / tau_0) is eta g/||g|| whenever ||g|| > tau_0."""
    tau0, eta = 1e-4, 0.3
    ours = optax.chain(js.clip_by_global_norm(tau0), optax.sgd(eta / tau0))
    ref = optax.chain(optax.normalize_by_update_norm(scale_factor=eta, eps=0.0), optax.scale(-1))
    keys = jax.random.split(jax.random.key(0), 8)
    for k, scale in zip(keys, np.geomspace(1e-3, 1e3, 8)):
        g = {"w": scale * jax.random.normal(k, (5, 3)), "b": scale * jnp.ones(3)}
        u, _ = ours.update(g, ours.init(g))
        v, _ = ref.update(g, ref.init(g))
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=0)
        assert float(optax.tree.norm(u)) == pytest.approx(eta, rel=1e-6)
    # below tau_0 the step is eta ||g|| / tau_0 < eta: never longer than eta
    g = {"w": jnp.full((2, 2), 1e-6)}
    u, _ = ours.update(g, ours.init(g))
    assert float(optax.tree.norm(u)) == pytest.approx(eta * 2e-6 / tau0, rel=1e-5)


def test_clipped_sgd_step_is_at_most_lr_tau():
    data = load_digits()
    tight = cr.step_bound(TINY, data, lr=0.5, tau=1e-3)
    # tau far below every gradient norm: every step is clipped and moves exactly lr tau.
    assert tight["clipped_steps"] == tight["steps"] == 6
    assert 0 < tight["rounding"] < 1e-2
    assert abs(tight["max_ratio"] - 1) <= tight["rounding"]
    assert abs(tight["min_ratio_clipped"] - 1) <= tight["rounding"]
    loose = cr.step_bound(TINY, data, lr=0.5, tau=1e6)
    # tau far above: nothing is clipped and each step moves lr ||g|| << lr tau.
    assert loose["clipped_steps"] == 0 and loose["min_ratio_clipped"] is None
    assert 0 < loose["max_ratio"] < 1e-3


def test_step_bound_steps_match_a_plain_loop():
    """The one-step engine calls, chained, against a Python loop of the same steps and keys."""
    data = load_digits()
    lr, tau = 0.5, 2.0
    got = cr.step_bound(TINY, data, lr=lr, tau=tau)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    sizes = [data.d_in, 8, 8, data.d_out]
    optimizer = optax.chain(js.clip_by_global_norm(tau), optax.sgd(lr))

    def loss_fn(p, batch):
        return jnp.mean(js.softmax_cross_entropy(js.apply_mlp(p, batch[0], "tanh"), batch[1]))

    step = jax.jit(js.make_train_step(loss_fn, optimizer))
    init_key = jax.random.split(jax.random.key(TINY.seed))[0]  # as step_bound
    weight_init = js.variance_scaling(TINY.sigma_w2, "fan_in", "normal")
    ratios, clipped = [], []
    for s in range(TINY.seeds):
        params = js.init_mlp(jax.random.fold_in(init_key, s), sizes, weight_init=weight_init)
        for t in range(TINY.bound_steps):
            # The engine's minibatch of step 0 of run seed t * seeds + s.
            run_key = jax.random.fold_in(jax.random.key(TINY.seed), t * TINY.seeds + s)
            data_key = jax.random.split(run_key)[1]
            idx = jax.random.randint(jax.random.fold_in(data_key, 0), (32,), 0, x.shape[0])
            new, _, m = step(params, optimizer.init(params), (x[idx], y[idx]))
            moved = jax.tree.map(
                lambda a, b: np.asarray(a, np.float64) - np.asarray(b), new, params
            )
            ratios.append(math.sqrt(sum(float(np.sum(d**2)) for d in jax.tree.leaves(moved))))
            clipped.append(bool(m["clipped"]))
            params = new
    ratios = np.asarray(ratios) / (lr * tau)
    assert got["clipped_steps"] == sum(clipped) and got["steps"] == len(clipped)
    assert 0 < sum(clipped) < len(clipped)  # tau 2 sits inside the norms: both kinds
    assert got["max_ratio"] == pytest.approx(ratios.max(), rel=1e-6)
    assert got["min_ratio_clipped"] == pytest.approx(ratios[clipped].min(), rel=1e-6)


def _synthetic_measured(config: cr.ExperimentConfig) -> dict:
    """A full ``measured`` dict from synthetic results: clipping at 1x wins by 0.5."""
    rng = np.random.default_rng(0)
    base = cr.base_config(config, steps=2, seeds=config.seeds)
    by_arm = {}
    for arm in cr.arm_names(config):
        grid = cr.arm_grid(config, arm)
        shift = -0.5 if arm == "clip_1" else 0.0
        by_arm[arm] = [
            _result(
                base,
                list(1.0 + shift + 0.1 * k + 0.01 * rng.standard_normal(config.seeds)),
                [False] * config.seeds,
                [[arm != "sgd", False]] * config.seeds,
            )
            for k in range(len(grid))
        ]
    measured = {
        "median_init_norm": 10.0,
        "median_init_norm_ci": [9.0, 11.0],
        "init_norm_percentiles": [8.0, 10.0, 12.0],
        "pilot_seeds": 8,
        "chi1": 1.36,
        "programs_compiled": 1,
        **cr.summarize(by_arm, config, 10.0),
    }
    measured["step_bound"] = {
        "lr": 1.0,
        "tau": 5.0,
        "max_ratio": 1.0 + 1e-8,
        "min_ratio_clipped": 1.0 - 1e-8,
        "rounding": 1e-6,
        "clipped_steps": 4,
        "steps": 6,
        "seeds": 2,
    }
    return measured


def test_claims_and_findings_from_a_synthetic_result():
    config = dataclasses.replace(cr.get_config(quick=True), seeds=6)
    measured = _synthetic_measured(config)
    claims = cr.claims(measured, config)
    assert [c["agrees"] for c in claims] == [True, False, True, True]
    # clip_1 beats plain SGD and normalized SGD by 0.5 in median final loss
    assert claims[2]["measured"] == pytest.approx(-0.5, abs=0.03)
    assert claims[3]["measured"] == pytest.approx(-0.5, abs=0.03)
    # the range claim: every seed stable to the top of the grid in both arms -> ratio 1
    assert claims[1]["measured"] == 1.0
    assert claims[1]["interval"] == pytest.approx([1 / config.grid_factor, config.grid_factor])
    result = {"config": dataclasses.asdict(config), "measured": measured, "claims": claims}
    text = cr.findings(result)
    assert _findings.fmt(measured["median_init_norm"]) in text
    assert text.count("\n| ") == len(measured["arms"]) + 1  # header + one row per arm
    assert "TODO" not in text
