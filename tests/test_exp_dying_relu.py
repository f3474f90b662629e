"""dying_relu's statistics: the family-wise bound, the cell summaries (per-input Wilson
intervals, batch-averaged t intervals) and the claims, against hand computations and a
small Monte Carlo (tolerances in standard errors)."""

import dataclasses
import math
import pathlib
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))

import _common
import dying_relu


def test_familywise_z_is_the_bonferroni_bound():
    # P(|Z| > z) = erfc(z / sqrt 2); Bonferroni: cells * P(|Z| > z) = 0.05.
    assert dying_relu.familywise_z(1) == pytest.approx(1.959964, abs=1e-6)
    for cells in (8, 36):
        z = dying_relu.familywise_z(cells)
        assert cells * math.erfc(z / math.sqrt(2.0)) == pytest.approx(0.05, rel=1e-9)


def _fake_results(seeds, depth, dead_first, dead_mean):
    zeros = np.zeros((seeds, depth), bool)
    relu = {"dead_first": dead_first, "dead_mean": dead_mean, "constant": zeros}
    quiet = {"dead_first": zeros, "dead_mean": zeros.astype(float), "constant": zeros}
    return {"relu": {2: relu}, "leaky": {2: quiet}, "positive_bias": {2: quiet}}


def test_summarize_cells_by_hand():
    seeds, depth = 100, 2
    cfg = dying_relu.ExperimentConfig(widths=(2,), max_depth=depth, seeds=seeds, table_depths=(1,))
    dead_first = np.zeros((seeds, depth), bool)
    dead_first[:30] = True  # 30 of 100 dead at L = 1 (closed form 0.25)
    dead_mean = np.zeros((seeds, depth))
    dead_mean[::2] = 0.5  # per-network fractions 0.5, 0, 0.5, ...: mean 0.25, sd 0.2513
    out = dying_relu.summarize(cfg, _fake_results(seeds, depth, dead_first, dead_mean))
    (cell,) = out["cells"]
    assert cell["closed_form"] == 0.25 and cell["at_input"] == 0.3
    assert cell["at_input_z"] == pytest.approx(0.05 / math.sqrt(0.25 * 0.75 / 100))
    # Wilson score interval by hand, z = 1.959964.
    z, n, p = 1.959964, 100, 0.3
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    np.testing.assert_allclose(cell["at_input_ci"], [center - half, center + half], rtol=1e-5)
    # Batch average: z from the spread of the per-network fractions, not binomial.
    sd = np.std(dead_mean[:, 0], ddof=1)
    assert cell["all_inputs"] == pytest.approx(0.25)
    assert cell["all_inputs_z"] == pytest.approx(0.0, abs=1e-12)
    half_t = 1.984217 * sd / 10  # t_{0.975, 99}
    np.testing.assert_allclose(cell["all_inputs_ci"], [0.25 - half_t, 0.25 + half_t], rtol=1e-5)
    assert out["max_abs_z_at_input"] == pytest.approx(cell["at_input_z"])


def test_batch_average_matches_closed_form_in_its_own_standard_errors():
    """The dead fraction over a batch has the closed form as its expectation.

    Its standard error is that of the per-network fractions (the inputs of one
    network die together), larger than a binomial one over seeds x batch inputs.
    """
    n = 4000  # the shapes of tests/test_experiments_theory.py: the compiled program is shared
    events = dying_relu.monte_carlo(jax.random.key(11), 2, 20, seeds=n, batch=4, chunk=1000)
    for depth in (2, 5, 10):
        p = float(dying_relu.closed_form_dead(2, depth))
        frac = events["dead_mean"][:, depth - 1]
        se = frac.std(ddof=1) / math.sqrt(n)
        assert abs(frac.mean() - p) <= 4 * se, (depth, frac.mean(), p, se)
        assert se > math.sqrt(p * (1 - p) / (4 * n))  # correlated inputs


def test_claims_and_findings_of_a_small_run():
    cfg = dying_relu.ExperimentConfig(
        widths=(2,), max_depth=20, seeds=1000, batch=4, table_depths=(1, 5, 20), chunk=1000
    )
    measured = dying_relu.summarize(cfg, dying_relu.run_all(cfg))
    claims = dying_relu.make_claims(cfg, measured)
    _common.check_claims(claims)
    by_claim = {c["claim"].split(":")[0]: c for c in claims}
    assert len(claims) == 6  # L = 20 is both the mid and the deepest leaky depth
    for c in claims:
        assert set(_common.CLAIM_FIELDS) <= set(c)
        assert c["interval"] is not None or c.get("note")
    # 3 cells: both closed-form checks are maxima of 3 |z|, below the 2.39 bound.
    closed = [c for c in claims if c["published"] == "exact formula"]
    assert [c["agrees"] for c in closed] == [True, True]
    assert all(c["measured"] <= dying_relu.familywise_z(3) for c in closed)
    positive = [c for c in claims if c["agrees"] is None]
    assert len(positive) == 2 and all("unverified" in c["note"] for c in positive)
    assert any(k.startswith("a deep ReLU net") for k in by_claim)
    result = {"config": dataclasses.asdict(cfg), "measured": measured, "claims": claims}
    text = dying_relu.findings(result)
    assert f"{measured['max_abs_z_at_input']:.3g}" in text
    assert "| 2 | 20 |" in text
