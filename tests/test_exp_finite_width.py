"""Tests of experiments/finite_width.py (its notebook runs the quick config).

The exact per-layer law against its asymptotics, against signal_propagation's
one-depth form and against a Monte Carlo of one ReLU layer in numpy; the compiled
Monte Carlo program against :func:`jaxstab.apply_mlp` on the same weights and against
the exact law at depth 3; the fits, the cells, the learning-rate rule and the claims'
verdicts on synthetic results. Tolerances are in standard errors of the estimator.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import _common
import _stats
import finite_width as fw
import signal_propagation


def test_exact_law_asymptotics():
    """n v(n) -> 5 and n m(n) -> -2.5, with gaps that shrink like 1/n."""
    for n in (100, 1000, 10000):
        m, v = fw.log_ratio_moments(n)
        assert abs(n * v - 5.0) < 25.0 / n
        assert abs(n * m + 2.5) < 6.0 / n
    # The finite-width excess is positive: narrow layers spread more than 5/n.
    assert fw.log_ratio_moments(10)[1] * 10 > fw.log_ratio_moments(50)[1] * 50 > 5.0


@pytest.mark.parametrize("width", [8, 50])
def test_exact_law_is_signal_propagations_per_layer_term(width):
    """relu_log_q_moments (He: sigma_w2 = 2) grows by (m(n), v(n)) per added layer."""
    m, v = fw.log_ratio_moments(width)
    m4, v4 = signal_propagation.relu_log_q_moments(2.0, width, 4)
    m7, v7 = signal_propagation.relu_log_q_moments(2.0, width, 7)
    assert (m7 - m4) / 3 == pytest.approx(m, rel=1e-10)
    assert (v7 - v4) / 3 == pytest.approx(v, rel=1e-10)


@pytest.mark.parametrize("width", [6, 24])
def test_one_layer_monte_carlo_against_exact_law(width):
    """numpy: M_1 / M_0 = (|relu(W^T a)|^2 / n) / (|a|^2 / n_0), a = relu(z), n_0 = n."""
    rng = np.random.default_rng(width)
    log_r = []
    for _ in range(4):  # 4 chunks of 5000 layers keep the weight draws small
        a = np.maximum(rng.standard_normal((5000, width)), 0.0)
        w = rng.standard_normal((5000, width, width)) * math.sqrt(2 / width)
        out = np.maximum(np.einsum("bi,bij->bj", a, w), 0.0)
        ok = a.any(axis=1) & out.any(axis=1)  # the law conditions on K >= 1
        log_r.append(np.log(np.sum(out[ok] ** 2, 1) / np.sum(a[ok] ** 2, 1)))
    log_r = np.concatenate(log_r)
    m, v = fw.log_ratio_moments(width)
    assert abs(log_r.mean() - m) < 4 * log_r.std(ddof=1) / math.sqrt(log_r.size)
    assert abs(np.var(log_r, ddof=1) - v) < 4 * fw.variance_se(log_r)


X = np.linspace(-1.0, 2.0, 64)  # a fixed input, |x| != 0


def test_program_computes_what_apply_mlp_computes():
    """The lax.map/fori_loop program equals jaxstab.apply_mlp on the same weights."""
    key, width, depth, chunk = jax.random.key(5), 6, 4, 4
    out = fw.simulate(key, X, width, depth, nets=8, chunk=chunk)
    m0 = np.sum(X**2) / X.size
    for c, j in ((0, 1), (1, 3)):
        params = fw.chunk_params(jax.random.fold_in(key, c), j, chunk, X.size, width, depth)
        _, z = js.apply_mlp(params, jnp.asarray(X, jnp.float32)[None], "relu", capture=True)
        z = np.asarray(z, np.float64)[:, 0]  # [depth, width]
        m = np.mean(np.maximum(z, 0.0) ** 2, axis=1)
        net = c * chunk + j
        np.testing.assert_allclose(out["log_m"][net], np.log(m[-1] / m0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["log_m_mid"][net], np.log(m[1] / m0), rtol=1e-4, atol=1e-4)
        q = np.mean(z**2, axis=1)
        np.testing.assert_allclose(out["log_q"][net], np.log(q[-1] / q[0]), rtol=1e-4, atol=1e-4)


def test_program_against_exact_law_at_depth_three():
    """4096 nets of width 16, depth 3: the variance and mean of both log ratios.

    (Width, nets and chunk as in the ``synthetic`` fixture: one compiled program.)
    """
    width, depth = 16, 3
    out = fw.simulate(jax.random.key(1), X, width, depth, nets=4096, chunk=512)
    cell = fw.summarize_cell(out, width, depth)
    assert abs(cell["var_z_exact"]) < 4 and abs(cell["mean_z_exact"]) < 4
    assert abs(cell["var_q_z_exact"]) < 4
    assert abs(cell["half_correlation"]) < 4 / math.sqrt(4096)
    assert cell["var_ci"][0] < cell["var"] < cell["var_ci"][1]


def test_variance_se_of_gaussian_samples():
    """For Gaussian data Var(s^2) = 2 sigma^4 / N, so se = sqrt(2 / N) sigma^2."""
    x = 3.0 * np.random.default_rng(0).standard_normal(200_000)
    assert fw.variance_se(x) == pytest.approx(math.sqrt(2 / x.size) * 9.0, rel=0.02)


def test_wls_through_origin_by_hand():
    x, se = np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.5, 2.0])
    got = fw.wls_through_origin(x, 2.0 * x, se)
    assert got["slope"] == pytest.approx(2.0) and got["chi2"] == pytest.approx(0.0, abs=1e-20)
    # sum w x^2 = 1 + 16 + 4 = 21.
    assert got["slope_se"] == pytest.approx(1 / math.sqrt(21.0))
    y = np.array([1.0, 2.0, 5.0])
    got = fw.wls_through_origin(x, y, se)
    slope = (1 * 1 * 1 + 4 * 2 * 2 + 0.25 * 4 * 5) / 21  # sum w x y / sum w x^2 = 22 / 21
    assert got["slope"] == pytest.approx(slope)
    resid = (y - slope * x) / se
    assert got["chi2"] == pytest.approx(np.sum(resid**2)) and got["dof"] == 2
    assert fw.chi2_of(y, 2.0 * x, se)["chi2"] == pytest.approx(np.sum(((y - 2 * x) / se) ** 2))


def test_familywise_z_and_pooled_correlation():
    assert fw.familywise_z(1) == pytest.approx(1.959964, abs=1e-6)
    assert 10 * math.erfc(fw.familywise_z(10) / math.sqrt(2)) == pytest.approx(0.05)
    cells = [{"half_correlation": 0.1, "nets": 103, "dead": 0}] * 2
    got = fw.pooled_correlation(cells)
    assert got["r"] == pytest.approx(0.1) and got["n"] == 206
    half = 1.959964 / math.sqrt(200)
    assert got["interval"][0] == pytest.approx(math.tanh(math.atanh(0.1) - half), rel=1e-5)


def test_cells_of_the_full_config_match_beta_across_sweeps():
    config = fw.get_config()
    cells = fw.init_cells(config)
    betas = {s: sorted(c["beta"] for c in cells if s in c["sweeps"]) for s in ("width", "depth")}
    assert betas["width"] == pytest.approx(betas["depth"])  # the same range of beta
    shared = [c for c in cells if len(c["sweeps"]) == 2]
    assert [(c["width"], c["depth"]) for c in shared] == [(50, 10)]
    train = fw.train_cells(config)
    assert len(train) == 2 * len(config.train_betas) - 1  # beta 0.2 is the shared cell
    assert {round(c["beta"], 9) for c in train} == set(config.train_betas)
    assert config.seeds >= 16 and config.nets >= 256
    with pytest.raises(ValueError, match="not an integer"):
        fw.train_cells(dataclasses.replace(config, train_betas=(0.3,)))


def test_best_lr_and_first_below_by_hand():
    finals = {0.01: np.array([0.5, 0.6]), 0.03: np.array([0.2, 0.3]), 0.1: np.array([0.1, np.nan])}
    assert _stats.best_lr(finals) == 0.03
    curves = np.array([[2.3, 1.5, 1.0, 0.8], [2.3, 2.2, 2.1, 2.0], [2.3, 1.0, np.nan, np.nan]])
    got = fw.first_below(curves, np.array([0, 10, 20, 30]), 1.15)
    np.testing.assert_array_equal(got, [20.0, np.nan, 10.0])


def test_worst_as_finite_keeps_diverged_seeds_last():
    a, b = fw.worst_as_finite(np.array([0.5, np.inf, 1.0]), np.array([3.0, 2.0]))
    assert a[1] == 30.0 and np.median(a) == 1.0 and b.tolist() == [3.0, 2.0]


def _trained(width, depth, sweeps, finals):
    finals = np.asarray(finals, np.float64)
    started = int(np.sum(finals < fw.STARTED_LOSS))
    return {
        "width": width,
        "depth": depth,
        "beta": depth / width,
        "sweeps": sweeps,
        "lr": 0.03,
        "lr_at_grid_edge": False,
        "started": started,
        "seeds": finals.size,
        "started_fraction": list(fw._stats.proportion_ci(started, finals.size)),
        "median_final": fw._stats.summary(finals),
        "diverged": 0,
        "steps_to_start": [10.0] * started + [None] * (finals.size - started),
        "curve_median": [2.3, float(np.median(finals))],
        "eval_steps": [0, 10],
        "per_seed_final": finals.tolist(),
    }


@pytest.fixture(scope="module")
def synthetic():
    """Small real init cells and synthetic training in which only beta matters."""
    config = dataclasses.replace(fw.get_config(quick=True), nets=4096, chunk=512, seeds=16)
    cells = fw.measure_init(config, X)
    rng = np.random.default_rng(0)
    good, bad = (lambda: rng.uniform(0.2, 0.6, 16)), (lambda: rng.uniform(1.8, 2.3, 16))
    training = [
        _trained(16, 4, ["width", "depth"], good()),
        _trained(8, 4, ["width"], bad()),
        _trained(16, 8, ["depth"], bad()),
    ]
    measured = {
        "fits": fw.fit_models(cells),
        "matched_pairs": fw.matched_pairs(cells),
        "independence": fw.pooled_correlation(cells),
        "init": [{k: v for k, v in c.items() if k != "per_net"} for c in cells],
        "training": training,
        "training_pairs": fw.training_pairs(training),
        "started_trend": [fw.started_trend(training, s) for s in ("width", "depth")],
        "rank_correlations": fw.rank_correlations(training),
    }
    return config, cells, measured


def test_fits_on_real_cells(synthetic):
    measured = synthetic[2]
    fits = measured["fits"]
    # The exact law fits (no parameter); the depth alone cannot fit the width sweep.
    assert fits["exact"]["chi2_p"] > 1e-3
    assert fits["beta"]["chi2"] < fits["depth_alone"]["chi2"]
    (pair,) = measured["matched_pairs"]
    assert pair["width_cell"] == [8, 4] and pair["depth_cell"] == [16, 8]
    assert pair["exact_difference"] == pytest.approx(
        4 * fw.log_ratio_moments(8)[1] - 8 * fw.log_ratio_moments(16)[1]
    )


def test_claims_verdicts_and_findings(synthetic):
    config, _, measured = synthetic
    claims = fw.make_claims(config, measured)
    _common.check_claims(claims)
    by = {c["claim"].split(":")[0].split(" (")[0]: c for c in claims}
    assert by["beta explains trainability better than the depth alone"]["agrees"] is True
    trends = [c for c in claims if "fewer nets start training" in c["claim"]]
    assert [c["agrees"] for c in trends] == [True, True]
    assert all(c["measured"] == -1.0 for c in trends)
    alike = next(c for c in claims if "train alike" in c["claim"])
    assert alike["agrees"] is True  # both beta = 0.5 cells fail alike
    assert next(c for c in claims if c["claim"].startswith("beta, not the depth"))["agrees"]
    result = {"config": dataclasses.asdict(config), "measured": measured, "claims": claims}
    text = fw.findings(result)
    assert f"{measured['fits']['beta']['slope']:.3g}" in text
    assert "| 8 | 4 | 0.5 | width |" in text


def test_training_init_is_he_normal_in_init_mlps_layout():
    """One flat draw, cut into init_mlp's groups: shapes, zero biases, Var W = 2 / fan-in."""
    init, loss, _, _ = fw._task(64, 3, 32, 10)
    params = jax.jit(init)(jax.random.key(0), {})
    shapes = [g["w"].shape for g in params["hidden"]] + [params["output"]["w"].shape]
    assert shapes == [(1, 32, 64), (2, 64, 64), (64, 10)]
    for w, fan_in in ((params["hidden"][0]["w"], 32), (params["hidden"][1]["w"], 64)):
        w = np.asarray(w, np.float64).ravel()
        assert abs(w.var() - 2 / fan_in) < 5 * (2 / fan_in) * math.sqrt(2 / w.size)
    assert all(not np.any(np.asarray(g["b"])) for g in params["hidden"])
    x, y = jnp.ones((4, 32)), jnp.arange(4)
    assert np.isfinite(float(loss(params, (x, y), {})))
    np.testing.assert_allclose(
        js.apply_mlp(params, x, "relu"), js.apply_mlp(js.split_stacks(params), x, "relu"), rtol=1e-5
    )


@pytest.mark.parametrize("width", [4, 30])
def test_length_second_moment_is_one_plus_five_over_n_per_layer(width):
    """(4/n^2) E[K (K + 2)] over K ~ Binomial(n, 1/2), K = 0 included, is 1 + 5/n."""
    k = np.arange(width + 1)
    p = fw.stats.binom.pmf(k, width, 0.5)
    per_layer = 4 / width**2 * np.sum(p * k * (k + 2))
    assert fw.length_second_moment(width, 3) == pytest.approx(per_layer**3, rel=1e-12)
    assert per_layer == pytest.approx(1 + 5 / width, rel=1e-12)
    assert 2 / width * np.sum(p * k) == pytest.approx(1.0)  # E[R] = 1: the mean is kept


def test_rank_correlations_are_scipys_spearman():
    rng = np.random.default_rng(3)
    cells = [
        _trained(16, 4, ["width"], rng.uniform(0, 1, 8)),
        _trained(8, 4, ["width"], np.r_[rng.uniform(0.5, 2, 7), np.inf]),
        _trained(16, 8, ["depth"], rng.uniform(1, 2, 8)),
    ]
    got = fw.rank_correlations(cells, resamples=200)
    y = np.concatenate([fw._final(c) for c in cells])
    b = np.repeat([c["beta"] for c in cells], 8)
    d = np.repeat([float(c["depth"]) for c in cells], 8)
    assert got["rho_beta"] == pytest.approx(fw.stats.spearmanr(y, b).statistic)
    assert got["rho_depth"] == pytest.approx(fw.stats.spearmanr(y, d).statistic)
    assert got["interval"][0] <= got["difference"] <= got["interval"][1] and got["n"] == 24
