"""softmax_numerics: thresholds against the IEEE 754 limits, errors against float64.

The expected values come from outside the code under test: ``numpy.finfo`` and
``ml_dtypes.finfo`` for the limits, ``scipy.special.logsumexp`` in float64 for the
reference losses, and hand-computed cases.
"""

import dataclasses
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from scipy.special import logsumexp, softmax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import softmax_numerics as sm

CPU = jax.default_backend() == "cpu"
FINFO = {
    "float32": np.finfo(np.float32),
    "float16": np.finfo(np.float16),
    "bfloat16": ml_dtypes.finfo(ml_dtypes.bfloat16),
}


@pytest.mark.parametrize("dtype", sm.DTYPES)
def test_limits_are_the_ieee_ones(dtype):
    fi = FINFO[dtype]
    for flushes in (True, False):
        lim = sm.limits(dtype, flushes)
        assert lim["log_max"] == pytest.approx(math.log(float(fi.max)), rel=1e-15)
        assert lim["eps"] == float(fi.eps) and lim["u"] == float(fi.eps) / 2
        # exp rounds to 0 below the smallest normal (flushed) or half the smallest
        # subnormal (gradual underflow, round to nearest)
        tiny = float(fi.tiny) if flushes else float(fi.smallest_subnormal) / 2
        assert lim["log_tiny"] == pytest.approx(math.log(tiny), rel=1e-15)
    # the textbook numbers: 88.72 (float32, bfloat16 to 3 digits), 11.09 (float16)
    expected = {"float32": 88.7228, "bfloat16": 88.7189, "float16": 11.0899}[dtype]
    assert sm.limits(dtype, True)["log_max"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.skipif(not CPU, reason="flush-to-zero is XLA CPU's behaviour")
def test_xla_cpu_flushes_float32_and_bfloat16_not_float16():
    assert sm.flushes_subnormals("float32") and sm.flushes_subnormals("bfloat16")
    assert not sm.flushes_subnormals("float16")
    assert float(jnp.exp(jnp.float32(-87.5))) == 0.0  # Reference: exp(-87.5) reads 0


def test_error_bound_by_hand():
    # 2c + K + 2 + K/e with c = 2, K = 10
    assert sm.error_bound(10) == pytest.approx(4 + 10 + 2 + 10 / math.e, rel=1e-15)


def test_relative_gap_handles_events_that_never_happen():
    gap = sm.relative_gap(np.array([1.0, np.inf, np.inf, 2.0]), np.array([1.0, np.inf, 3.0, 1.0]))
    assert gap.tolist() == [0.0, 0.0, np.inf, 1.0]


def lims(dtype):
    flushes = {"float32": True, "bfloat16": True, "float16": False}[dtype]
    return sm.limits(dtype, flushes), sm.limits("float32", True)


@pytest.mark.parametrize(
    ("z", "y", "naive", "shifted"),
    [
        # one logit past log r_max(float32) = 88.72: naive inf / inf
        ([89.0, 0.0], 1, {"nan": True, "loss": True, "zero": True}, {"nan": False, "loss": False}),
        # just below it: nothing happens (the label's p = e^-8.5)
        ([88.5, 80.0], 1, {"nan": False, "loss": False, "zero": False}, {"loss": False}),
        # p_y = e^-88 is below float32's smallest normal e^-87.34 (flushed): -log 0
        ([88.0, 0.0], 1, {"nan": False, "loss": True, "zero": True}, {"zero": True}),
        # every exp underflows (max z < log t = -87.34): S = 0, p = 0 / 0
        ([-90.0, -91.0], 0, {"nan": True, "loss": True, "zero": False}, {"zero": False}),
        # the label's probability underflows: naive -log 0, shifted finite; p = 0 for both
        (
            [0.0, -100.0],
            1,
            {"nan": False, "loss": True, "zero": True},
            {"loss": False, "zero": True},
        ),
    ],
)
def test_closed_forms_by_hand(z, y, naive, shifted):
    lim_d, lim_c = lims("float32")
    z, y = np.array([z]), np.array([y])
    got = sm.predicted_events(z, y, "naive", lim_d, lim_c)
    assert {k: bool(got[k][0]) for k in naive} == naive
    got = sm.predicted_events(z, y, "shifted", lim_d, lim_c)
    assert {k: bool(got[k][0]) for k in shifted} == shifted


@pytest.fixture(scope="module")
def cfg():
    return dataclasses.replace(sm.get_config(quick=True), draws=16, bisection_steps=30, chunk=1024)


@pytest.mark.parametrize("dtype", sm.DTYPES)
def test_naive_nan_threshold_is_log_max(dtype, cfg):
    """Measured by bisection: the largest logit at the NaN threshold is log r_max."""
    rng = np.random.default_rng(1)
    g = rng.standard_normal((cfg.draws, cfg.classes))
    g[:, 0] = np.abs(g[:, 0]) + 0.1  # max g > 0: no all-underflow draw
    y = rng.integers(0, cfg.classes, cfg.draws)
    lim_d, lim_c = lims(dtype)
    th = sm.thresholds(g, y, dtype, cfg, lim_d, lim_c)
    s = th["measured"]["naive"]["nan"]
    expected = math.log(float(FINFO[dtype].max)) / g.max(axis=1)
    # the logits are rounded to the format: eps / 2 relative, and 2 eps is the rule
    np.testing.assert_array_less(np.abs(s / expected - 1), 2 * float(FINFO[dtype].eps))
    # the shifted forms never turn NaN, nor is their loss non-finite, up to s_hi
    for form in ("shifted", "jaxstab"):
        assert np.all(np.isinf(th["measured"][form]["nan"]))
        assert np.all(np.isinf(th["measured"][form]["loss"]))


@pytest.mark.parametrize("dtype", sm.DTYPES)
def test_stable_forms_match_float64_within_the_bound(dtype, cfg):
    """Shifted and jaxstab at scales 0.1 .. 1e3 against scipy's float64 logsumexp."""
    rng = np.random.default_rng(2)
    n, k = 64, cfg.classes
    g = rng.standard_normal((n, k))
    y = rng.integers(0, k, n)
    for scale in (0.1, 1.0, 30.0, 1e3):
        z = sm.round_to(scale * g, dtype)
        forms = sm.run_forms(z, y, dtype, cfg.chunk)
        lse = logsumexp(z, axis=-1)
        ref_loss = lse - z[np.arange(n), y]
        ref_grad = softmax(z, axis=-1) - np.eye(k)[y]
        for form in ("shifted", "jaxstab"):
            u = sm.limits(sm.compute_units(form, dtype), True)["u"]
            bound = sm.error_bound(k) * u
            loss = forms[form]["loss"].astype(np.float64)
            err = np.abs(loss - ref_loss) / np.maximum(1.0, ref_loss)
            assert np.all(err <= bound), (form, scale, err.max() / bound)
            grad_bound = bound + (FINFO[dtype].eps / 2 if form == "jaxstab" else 0.0)
            gerr = np.abs(forms[form]["grad"] - ref_grad).max()
            assert gerr <= grad_bound, (form, scale, gerr / grad_bound)
        # the naive form at scale 0.1: no threshold near, the same bound holds
        if scale == 0.1:
            err = np.abs(forms["naive"]["loss"] - ref_loss) / np.maximum(1.0, ref_loss)
            assert np.all(err <= sm.error_bound(k) * float(FINFO[dtype].eps) / 2)


def test_reference64_against_scipy():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((8, 5)) * 50
    y = rng.integers(0, 5, 8)
    loss, grad = sm.reference64(z, y)
    np.testing.assert_allclose(
        loss, logsumexp(z, axis=-1) - z[np.arange(8), y], rtol=1e-13, atol=1e-13
    )
    np.testing.assert_allclose(grad, softmax(z, axis=-1) - np.eye(5)[y], atol=1e-15)


def test_jaxstab_extreme_logits_exact(cfg):
    # docstring of softmax_cross_entropy: at [1e4, 0, -1e4] with label 1 the loss is 1e4
    # padded to the experiment's 10 classes with -1e4 (the compiled shape is shared)
    z = np.array([[1e4, 0.0] + [-1e4] * (cfg.classes - 2)])
    forms = sm.run_forms(z, np.array([1]), "float32", cfg.chunk)
    assert forms["jaxstab"]["loss"][0] == 1e4 and forms["shifted"]["loss"][0] == 1e4
    # naive: e = [inf, 1, 0, ...], p = e * (1 / inf) = [NaN, 0, 0, ...], loss -log 0 = inf
    assert np.isnan(forms["naive"]["p"][0, 0]) and forms["naive"]["loss"][0] == np.inf
    np.testing.assert_array_equal(forms["jaxstab"]["grad"][0], [1.0, -1.0] + [0.0] * 8)


@pytest.mark.skipif(not CPU, reason="XLA CPU's reciprocal and flush-to-zero")
def test_naive_probabilities_read_zero_before_the_sum_overflows(cfg):
    # S = e^87.6 = 1.1e38 is finite, but XLA's float32 1 / S < 2^-126 flushes to 0
    z = np.array([[87.6, 10.0] + [0.0] * (cfg.classes - 2)])
    forms = sm.run_forms(z, np.array([0]), "float32", cfg.chunk)
    assert np.all(forms["naive"]["p"] == 0) and np.isinf(forms["naive"]["loss"][0])
    lim_d, lim_c = lims("float32")
    assert not sm.predicted_events(z, np.array([0]), "naive", lim_d, lim_c)["loss"][0]
    xla = sm.predicted_events(z, np.array([0]), "naive", lim_d, lim_c, lim_c["log_tiny"])
    assert xla["loss"][0]


def test_training_loss_arms_equal_their_forms_and_do_not_leak_nan(cfg):
    """The one-program loss: each arm is exactly its form, value and gradient."""
    init, loss, _, _ = sm._train_fns(cfg, 6, 4)
    params = init(jax.random.key(0), {})
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((5, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 4, 5), jnp.int32)
    import jaxstab as js

    def direct(p, arm):
        z = js.apply_mlp(p, x, "relu")
        if arm == 0:
            per = sm.naive_ce(z.astype(jnp.float16), y)[1]
        elif arm == 1:
            per = js.softmax_cross_entropy(z.astype(jnp.float16), y)
        else:
            per = sm.naive_ce(z, y)[1]
        return jnp.mean(per.astype(jnp.float32))

    loss_vg = jax.jit(jax.value_and_grad(loss))
    direct_vg = jax.jit(jax.value_and_grad(direct), static_argnums=1)
    for scale in (1.0, 300.0):  # 300: float16 logits past 11.09, naive float16 breaks
        out = params["output"]
        p = {**params, "output": {**out, "w": out["w"] * scale}}
        for arm in range(3):
            hp = {"arm": jnp.float32(arm)}
            v, gv = loss_vg(p, (x, y), hp)
            d, gd = direct_vg(p, arm)
            np.testing.assert_allclose(v, d, rtol=1e-6)
            for a, b in zip(jax.tree.leaves(gv), jax.tree.leaves(gd), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        if scale == 300.0:
            bad = loss_vg(p, (x, y), {"arm": jnp.float32(0)})
            good = loss_vg(p, (x, y), {"arm": jnp.float32(1)})
            assert not np.isfinite(bad[0])
            assert np.isfinite(good[0]) and all(
                np.all(np.isfinite(a)) for a in jax.tree.leaves(good[1])
            )


@pytest.mark.skipif(not CPU, reason="XLA CPU's reciprocal")
def test_float16_reciprocal_overflows_for_all_negative_logits(cfg):
    # S = e^-11.5 + ... < 1 / 65504: 1 / S is inf in float16, and 0 * inf = NaN although
    # S > 0 (the 0 / 0 closed form needs every exp to underflow, max z < -17.33)
    z = np.array([[-11.5] + [-30.0] * (cfg.classes - 1)])
    forms = sm.run_forms(z, np.array([0]), "float16", cfg.chunk)
    assert forms["naive"]["p"][0, 0] == np.inf and np.all(np.isnan(forms["naive"]["p"][0, 1:]))
    assert forms["shifted"]["loss"][0] == pytest.approx(0.0, abs=1e-3)  # p_0 ~ 1
    z = np.array([[-11.0] + [-30.0] * (cfg.classes - 1)])  # S > 1 / 65504: finite
    assert np.all(np.isfinite(sm.run_forms(z, np.array([0]), "float16", cfg.chunk)["naive"]["p"]))
