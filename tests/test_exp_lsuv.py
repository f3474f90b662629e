"""Tests of experiments/lsuv.py's helpers (its notebook runs the quick config).

The arms' weight laws against their formulas (variances within standard errors,
orthogonality), the one-program init against the library's ``jaxstab.lsuv``, LSUV's
target at every layer, the training statistics against hand computations, and the
claims' verdicts and findings on synthetic results.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstab as js
from jaxstab import diagnostics, engine
from jaxstab.data import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import _stats
import lsuv  # the experiment, not the library function jaxstab.lsuv


def test_import_gets_the_experiment_and_leaves_the_library_alone():
    assert lsuv.NAME == "lsuv" and callable(lsuv.main)
    assert js.lsuv.__module__ == "jaxstab._lsuv"


def test_arm_settings_by_hand():
    sizes = [64, 32, 32, 10]
    xavier = lsuv.arm_settings("xavier_normal", "relu", sizes)
    # scale^2 * Var(lecun) = scale^2 / fan_in must be 2 / (fan_in + fan_out).
    for (n_in, n_out), s in zip([(64, 32), (32, 32), (32, 10)], xavier["scale"]):
        assert s**2 / n_in == pytest.approx(2 / (n_in + n_out), rel=1e-6)
    he = lsuv.arm_settings("he_normal", "tanh", sizes)
    np.testing.assert_allclose(he["scale"], math.sqrt(2), rtol=1e-6)
    assert (he["orthogonal"], he["lsuv"]) == (0, 0)
    ortho = lsuv.arm_settings("orthogonal", "tanh", sizes)
    np.testing.assert_allclose(ortho["scale"], 5 / 3, rtol=1e-6)
    assert (ortho["orthogonal"], ortho["lsuv"]) == (1, 0)
    np.testing.assert_allclose(
        lsuv.arm_settings("orthogonal", "relu", sizes)["scale"], math.sqrt(2), rtol=1e-6
    )
    start = lsuv.arm_settings("lsuv", "relu", sizes)
    assert (start["orthogonal"], start["lsuv"]) == (1, 1)
    with pytest.raises(ValueError, match="unknown arm"):
        lsuv.arm_settings("lecun", "relu", sizes)


def test_scale_layers_multiplies_each_layer():
    sizes = [6, 4, 4, 4, 3]  # groups: (6, 4) x 1, (4, 4) x 2; then the output layer
    params = js.init_mlp(jax.random.key(0), sizes)
    scale = jnp.array([2.0, 3.0, 5.0, 7.0])
    out = lsuv.scale_layers(params, scale)
    np.testing.assert_allclose(out["hidden"][0]["w"], 2 * params["hidden"][0]["w"])
    np.testing.assert_allclose(out["hidden"][1]["w"][0], 3 * params["hidden"][1]["w"][0])
    np.testing.assert_allclose(out["hidden"][1]["w"][1], 5 * params["hidden"][1]["w"][1])
    np.testing.assert_allclose(out["output"]["w"], 7 * params["output"]["w"])
    np.testing.assert_array_equal(out["hidden"][1]["b"], params["hidden"][1]["b"])


@pytest.fixture(scope="module")
def cell():
    """Every run's initial parameters of a small tanh cell: one compiled init program."""
    config = dataclasses.replace(
        lsuv.get_config(quick=True),
        depths=(4,),
        width=16,
        seeds=2,
        lrs=(0.01, 0.03),
        lsuv_batch=128,
        tol=0.05,
    )
    data = load_digits()
    runs = lsuv.arm_runs(config)
    params, variance = lsuv.initial_params(config, data, "tanh", 4, runs)
    x = jnp.asarray(data.x_train[: config.lsuv_batch])
    sizes = lsuv.mlp_sizes(config, 4)
    return config, runs, params, variance, x, sizes


def _hidden(params, run):
    """Run ``run``'s hidden weights, one array per layer."""
    one = js.merge_stacks(jax.tree.map(lambda a: a[run], params))
    return [np.asarray(w, np.float64) for g in one["hidden"] for w in g["w"]]


def _runs_of(runs, arm):
    return np.flatnonzero(runs["arm"] == lsuv.ARMS.index(arm))


def test_arm_runs_share_draws_across_arms_not_learning_rates(cell):
    config, runs, *_ = cell
    assert runs["seed"].size == len(lsuv.ARMS) * len(config.lrs) * config.seeds
    per_arm = [sorted(runs["seed"][_runs_of(runs, arm)]) for arm in lsuv.ARMS]
    assert all(s == per_arm[0] for s in per_arm)
    assert len(set(per_arm[0])) == config.seeds * len(config.lrs)  # independent per lr


@pytest.mark.parametrize("arm", ["xavier_normal", "he_normal"])
def test_gaussian_arms_have_their_weight_variance(cell, arm):
    _, runs, params, _, _, sizes = cell
    scale = lsuv.arm_settings(arm, "tanh", sizes)["scale"]
    layers = list(zip(*[_hidden(params, r) for r in _runs_of(runs, arm)]))
    for ws, n_in, s in zip(layers, sizes[:-2], scale):
        w = np.concatenate([w.ravel() for w in ws])
        expected = s**2 / n_in
        se = expected * math.sqrt(2 / w.size)  # sd of a Gaussian sample variance
        assert abs(np.mean(w**2) - expected) < 4 * se


def test_orthogonal_arm_is_gain_times_orthogonal(cell):
    _, runs, params, *_ = cell
    for r in _runs_of(runs, "orthogonal"):
        for w in _hidden(params, r):
            gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
            np.testing.assert_allclose(gram, (5 / 3) ** 2 * np.eye(gram.shape[0]), atol=1e-4)


def test_lsuv_arm_meets_its_target_and_matches_the_library(cell):
    config, runs, params, variance, x, sizes = cell
    idx = _runs_of(runs, "lsuv")
    assert np.all(np.abs(variance[idx] - 1.0) < config.tol), variance[idx]
    r = idx[0]
    one = jax.tree.map(lambda a: a[r], params)
    np.testing.assert_allclose(
        variance[r], diagnostics.forward_stats(one, x, "tanh").variance, rtol=1e-5
    )
    # The library's LSUV of jaxstab's MLP from the same orthogonal draw: same hidden
    # weights (it leaves the output layer alone, which no hidden layer depends on).
    key = jax.random.fold_in(jax.random.key(config.seed), int(runs["seed"][r]))
    start = js.init_mlp(key, sizes, weight_init=js.orthogonal())
    expected = js.lsuv(start, x, "tanh", tol=config.tol, max_iters=config.max_iters)
    for got, want in zip(_hidden(params, r), _hidden(jax.tree.map(lambda a: a[None], expected), 0)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
    # ... and the classifier is rescaled too, as in the paper: unit-variance logits.
    assert abs(float(jnp.var(js.apply_mlp(one, x, "tanh"))) - 1.0) < config.tol


def test_smoothed_and_steps_to_threshold_by_hand():
    loss = np.array([[4.0, 2.0, 1.0, 0.5, 0.1, 0.1], [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]])
    s = lsuv.smoothed(loss, 2)
    np.testing.assert_allclose(s[0], [3.0, 1.5, 0.75, 0.3, 0.1])
    # Row 0: window means 3, 1.5, 0.75, 0.3 -> first below 1 is the third, after step 4.
    got = lsuv.steps_to_threshold(loss, 2, 1.0)
    assert got[0] == 4 and got[1] == np.inf
    # The engine reports NaN from a divergence on: windows holding a NaN never count.
    late = np.array([[4.0, 0.5, 0.5, np.nan, np.nan], [4.0, 4.0, np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(lsuv.steps_to_threshold(late, 2, 1.0), [3, np.inf])
    with pytest.raises(ValueError, match="window"):
        lsuv.smoothed(loss, 7)


def test_best_lr_rule():
    finals = {
        0.01: np.array([0.5, 0.6, 0.7]),
        0.03: np.array([0.2, 0.3, 0.4]),
        0.1: np.array([0.01, 0.02, np.inf]),  # lowest median, but a seed diverged
    }
    assert _stats.best_lr(finals) == 0.03
    with pytest.raises(ValueError, match="empty"):
        _stats.best_lr({})


def test_ratio_of_medians():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    got = lsuv.ratio_of_medians(a, 2 * a)
    assert got["ratio"] == pytest.approx(0.5)
    lo, hi = got["interval"]
    assert lo <= 0.5 <= hi
    # A censored seed is ranked worst: it becomes twice the largest finite value.
    got = lsuv.ratio_of_medians(np.array([1.0, np.inf, np.inf]), np.array([1.0, 1.0, 2.0]))
    assert got["worst_fill"] == 4.0 and got["ratio"] == pytest.approx(4.0)


def test_summarize_init():
    v = {
        "lsuv": np.array([[1.0, 1.02, 0.99], [1.0, 0.95, 1.2]]),
        "xavier_normal": np.array([[1.0, 0.1, 0.01], [2.0, 0.2, 0.02]]),
    }
    out = lsuv.summarize_init(v, tol=0.1)
    assert out["lsuv"]["within_tol"] == 1 and out["lsuv"]["nets"] == 2
    assert out["xavier_normal"]["drift"] == [-2.0, -2.0, -2.0]  # exact: one value
    np.testing.assert_allclose(
        out["xavier_normal"]["log10_variance_mean"][1], np.log10(0.1 * 0.2) / 2
    )


def _fake_cell(config, final_by_arm, accuracy_by_arm):
    """A TrainResult whose runs finish at ``final_by_arm[arm]`` (one loss per seed)."""
    runs = engine.grid(config.seeds, arm=list(range(len(lsuv.ARMS))), lr=list(config.lrs))
    n = runs["seed"].size
    final, acc = np.empty(n), np.empty(n)
    for a, arm in enumerate(lsuv.ARMS):
        for lr in config.lrs:
            m = (runs["arm"] == a) & np.isclose(runs["lr"], lr)
            # The middle learning rate is the best for every arm.
            bump = 0.0 if np.isclose(lr, config.lrs[1]) else 0.5
            final[m] = final_by_arm[arm] + bump
            acc[m] = accuracy_by_arm[arm]
    # Minibatch losses: linear from ln 10 down to the final value.
    curve = np.linspace(0, 1, config.steps)[None, :]
    loss = math.log(10) * (1 - curve) + final[:, None] * curve
    return engine.TrainResult(
        runs=runs,
        metrics={"loss": loss},
        eval_steps=np.array([0, config.steps]),
        evals={
            "train_loss": np.stack([np.full(n, math.log(10)), final], 1),
            "test_accuracy": np.stack([np.full(n, 0.1), acc], 1),
        },
        inspections={},
        diverged=np.zeros(n, bool),
        diverged_step=np.full(n, -1),
        params=None,
        timings={},
    )


def _measured(config, lsuv_final):
    rng = np.random.default_rng(0)
    measured = {"init": {}, "training": {}, "seconds": {"total": 3.0}}
    for act in config.activations:
        measured["init"][act], measured["training"][act] = {}, {}
        for depth in config.depths:
            v = {arm: np.exp(rng.normal(0, 0.01, (128, depth))) for arm in lsuv.ARMS}
            measured["init"][act][f"d{depth}"] = lsuv.summarize_init(v, config.tol)
            finals = {arm: rng.uniform(0.3, 0.35, config.seeds) for arm in lsuv.ARMS}
            finals["lsuv"] = lsuv_final + rng.uniform(0, 0.01, config.seeds)
            accuracy = {arm: np.full(config.seeds, 0.9) for arm in lsuv.ARMS}
            result = _fake_cell(config, finals, accuracy)
            measured["training"][act][f"d{depth}"] = lsuv.summarize_cell(result, config, act)
    measured["curve_steps"] = list(range(config.smooth, config.steps + 1))[:: config.smooth // 2]
    return measured


def test_claims_verdicts_on_synthetic_results():
    config = dataclasses.replace(lsuv.get_config(quick=True), seeds=8, threshold=1.0)
    good = lsuv.claims(_measured(config, 0.2), config)
    assert len(good) == 2 + 4 * len(config.depths) + 2
    assert all(c["agrees"] for c in good), [c["claim"] for c in good if not c["agrees"]]
    chosen = _measured(config, 0.2)["training"]["relu"][f"d{config.depths[0]}"]["arms"]
    assert {e["lr"] for e in chosen.values()} == {config.lrs[1]}
    # LSUV twice as bad: the final-loss claims fail (ratio ~ 2 > margin).
    bad = {c["claim"]: c for c in lsuv.claims(_measured(config, 0.65), config)}
    loss_claims = [c for k, c in bad.items() if "training loss" in k]
    assert loss_claims and all(c["agrees"] is False for c in loss_claims)
    assert all(c["measured"] > config.margin for c in loss_claims)


def test_findings_are_formatted_from_the_result():
    config = dataclasses.replace(lsuv.get_config(quick=True), seeds=8, threshold=1.0)
    measured = _measured(config, 0.2)
    result = {
        "config": dataclasses.asdict(config),
        "measured": measured,
        "claims": lsuv.claims(measured, config),
    }
    text = lsuv.findings(result)
    assert f"| relu | {config.depths[-1]} | He (tailored) |" in text
    assert f"{len(result['claims'])} of {len(result['claims'])} claims agree" in text


def test_censoring_note_only_when_a_median_seed_never_got_there():
    config = lsuv.get_config()  # 16 seeds: the median needs 9 seeds that reached it
    assert lsuv._censoring_note({"reached": 9}, {"reached": 16}, config) == ""
    note = lsuv._censoring_note({"reached": 4}, {"reached": 0}, config)
    assert "LSUV and the other arm" in note
