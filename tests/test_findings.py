"""Claims as code: the statistics, the claim records, and docs/findings.md from the results."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import _common  # noqa: E402
import _findings  # noqa: E402
import _stats  # noqa: E402

SAMPLE = np.random.default_rng(7).normal(1.0, 2.0, size=400)


# --- statistics ------------------------------------------------------------------------


def test_bootstrap_ci_is_scipy_bca_at_95_percent():
    lo, hi = _stats.bootstrap_ci(SAMPLE[:40], np.mean, seed=3)
    ref = scipy.stats.bootstrap(
        (SAMPLE[:40],),
        np.mean,
        confidence_level=0.95,
        n_resamples=9999,
        method="BCa",
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert (lo, hi) == (ref.low, ref.high)


def test_bootstrap_mean_interval_matches_the_t_interval_on_a_large_normal_sample():
    # For n = 400 normal draws, the bootstrap and Student-t intervals of the mean agree to
    # a few percent of their width (both are 1.96 sigma/sqrt(n) to leading order).
    lo, hi = _stats.bootstrap_ci(SAMPLE)
    mean, tlo, thi = _stats.mean_ci(SAMPLE)
    width = thi - tlo
    assert width == pytest.approx(2 * 1.966 * SAMPLE.std(ddof=1) / math.sqrt(400), rel=1e-3)
    assert abs(lo - tlo) < 0.06 * width and abs(hi - thi) < 0.06 * width
    assert lo < mean < hi


def test_difference_ci_finds_a_known_shift():
    a, b = SAMPLE[:100], SAMPLE[100:200] - 3.0  # true difference of means: 3
    diff, lo, hi = _stats.difference_ci(a, b)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert lo < diff < hi and lo < 3.0 < hi
    # Its half-width is about 1.96 * sqrt(2 sigma^2 / 100) = 1.96 * 0.283 * 2 (sigma = 2).
    assert (hi - lo) / 2 == pytest.approx(1.96 * 2.0 * math.sqrt(2 / 100), rel=0.15)


def test_proportion_ci_is_the_wilson_interval():
    p, lo, hi = _stats.proportion_ci(3, 16)
    z, n = scipy.stats.norm.ppf(0.975), 16
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (p, lo, hi) == pytest.approx((3 / 16, center - half, center + half), rel=1e-9)
    assert _stats.proportion_ci(0, 16)[1] == 0.0
    with pytest.raises(ValueError, match="successes=17"):
        _stats.proportion_ci(17, 16)


def test_rank_test_counts_a_diverged_run_as_worst():
    a = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    b = [0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, math.nan]
    with_inf = [0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, math.inf]
    assert _stats.rank_test(a, b) == scipy.stats.mannwhitneyu(a, with_inf).pvalue
    assert _stats.rank_test(SAMPLE[:50], SAMPLE[50:100] + 5.0, "less") < 1e-6


def test_degenerate_and_too_small_samples():
    assert _stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError, match="1 finite values"):
        _stats.bootstrap_ci([1.0, math.nan])
    s = _stats.summary([1.0, 2.0, math.nan])
    assert s["median"] == 1.5 and s["n"] == 3 and s["n_nonfinite"] == 1


# --- claim records ---------------------------------------------------------------------


def _claim(**overrides):
    kwargs = dict(
        source="Paper (2000), Fig. 1",
        published=1.0,
        measured=1.1,
        interval=[0.9, 1.3],
        n=16,
        rule="1 in the interval",
        agrees=True,
    )
    kwargs.update(overrides)
    return _common.claim("x equals one", **kwargs)


def test_claim_records_every_field():
    c = _claim()
    assert tuple(c) == _common.CLAIM_FIELDS and c["interval"] == [0.9, 1.3]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"interval": [1.3, 0.9]}, "not \\[low, high\\]"),
        ({"agrees": "yes"}, "agrees='yes'"),
        ({"interval": None}, "needs a note"),
        ({"agrees": None}, "needs a note"),
    ],
)
def test_claim_refuses_incomplete_records(overrides, message):
    with pytest.raises(ValueError, match=message):
        _claim(**overrides)


def test_write_results_refuses_a_claim_without_its_fields(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        _common.write_results(
            tmp_path,
            experiment="x",
            quick=True,
            config={},
            measured={},
            claims=[{"claim": "c", "agrees": True}],
            figures=[],
        )
    assert not (tmp_path / "results.json").exists()


def test_claims_table_shows_interval_verdict_and_notes():
    table = _findings.claims_table(
        [_claim(), _claim(agrees=None, note="the source could not be checked")]
    )
    rows = table.splitlines()
    assert rows[2].endswith("| 1.1 [0.9, 1.3] | 16 | 1 in the interval | agrees |")
    assert rows[3].endswith("| unverified (1) |")
    assert rows[-1].startswith("(1) the source could not be checked")


# --- the committed results and the findings page ---------------------------------------


@pytest.mark.parametrize("name", _findings.EXPERIMENTS)
def test_committed_result_is_a_full_config_with_complete_claims(name):
    result = _findings.load(name)
    assert result["experiment"] == name and result["quick"] is False
    _common.check_claims(result["claims"])
    for c in result["claims"]:
        assert c["agrees"] in (True, False, None), c
        assert c["source"] and c["rule"] and c["measured"] is not None, c
        if c["interval"] is not None:
            lo, hi = c["interval"]
            assert lo <= hi, c
        if c["interval"] is None or c["agrees"] is None:
            assert c.get("note"), c
    for fig in result["figures"]:
        assert (_findings.FIGURES / f"{name}_{fig}").read_bytes()[:4] == b"\x89PNG"


def test_findings_page_is_generated_from_the_committed_results():
    # Regenerate with `make findings` after committing a new result.
    assert _findings.FINDINGS.read_text() == _findings.render()


def test_every_results_file_has_a_section():
    committed = {p.stem for p in _findings.RESULTS.glob("*.json")}
    assert committed == set(_findings.EXPERIMENTS)
    for path in _findings.RESULTS.glob("*.json"):
        json.loads(path.read_text())  # strict JSON


CACHE_SCRIPT = """
import sys
sys.path.insert(0, "experiments")
import jax
import _common
_common.parse_args("x", None, sys.argv[1:])
values = jax.config.values
print(values["jax_enable_compilation_cache"], values["jax_compilation_cache_dir"])
"""


@pytest.mark.parametrize("flag", [[], ["--no-compile-cache"]])
def test_experiments_use_the_persistent_compilation_cache_unless_told_not_to(flag, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", CACHE_SCRIPT, *flag],
        cwd=_findings.ROOT, env=env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.split()  # fmt: skip
    if flag:
        assert out[0] == "False"
    else:
        assert out == ["True", str(tmp_path / "jaxstab" / "jax")]
