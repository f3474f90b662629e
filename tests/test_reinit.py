"""reinit: variances per layout and per rule on real flax.linen, flax.nnx, equinox and
jaxstab models; determinism per path; jit; every bad input a clear error.

Tolerances are in standard errors of the variance estimator: for n iid samples
of variance v, SE(s²) = v sqrt((kurtosis - 1) / n): sqrt(2/n) for a Gaussian,
sqrt(0.8/n) for a uniform.
"""

import math

import chex
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxstab as js

Z = 5.0  # tolerance in standard errors
GAUSS, UNIFORM = 2.0, 0.8  # kurtosis - 1


def assert_var(x, expected, excess=GAUSS):
    x = np.asarray(x, np.float64).ravel()
    se = expected * math.sqrt(excess / x.size)
    assert abs(x.var() - expected) < Z * se, (x.var(), expected, se)
    assert abs(x.mean()) < Z * math.sqrt(expected / x.size), (x.mean(), expected)


class _ScanDense(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.relu(nn.Dense(64)(x)), None


class _LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(32, (3, 3))(x)  # HWIO (3, 3, 16, 32)
        x = nn.Dense(64)(x.reshape(x.shape[0], -1))
        scan = nn.scan(
            _ScanDense, variable_axes={"params": 0}, split_rngs={"params": True}, length=4
        )
        x, _ = scan(name="stack")(x, None)  # 4 x (64, 64)
        return nn.Dense(16, name="out")(x)


@pytest.fixture(scope="module")
def linen_vars():
    return jax.jit(_LinenNet().init)(jax.random.key(0), jnp.ones((1, 2, 2, 16)))


def _reinit(key, params, rules, **kwargs):
    """reinit, jitted: one compile instead of one per op."""
    return jax.jit(lambda k, p: js.reinit(k, p, rules, **kwargs))(key, params)


RULES = {
    "*kernel": js.he_normal(),
    "*bias": js.normal(0.5),
    "out/kernel": js.xavier_uniform(gain=0.1),
}


def test_flax_linen_variance_per_layout_and_rule(linen_vars):
    new = _reinit(jax.random.key(1), linen_vars, RULES)
    p = new["params"]
    assert_var(p["Conv_0"]["kernel"], 2.0 / (3 * 3 * 16))  # fan_in with the receptive field
    assert_var(p["Dense_0"]["kernel"], 2.0 / 128)
    for layer in p["stack"]["Dense_0"]["kernel"]:  # each layer with its own fan: 2/64
        assert_var(layer, 2.0 / 64)  # (whole-array fans would give 2/256)
    k = p["stack"]["Dense_0"]["kernel"]
    assert not np.allclose(k[0], k[1])  # the layers are separate draws
    assert_var(p["out"]["kernel"], 0.01 * 2.0 / (64 + 16), UNIFORM)  # the last rule wins
    limit = 0.1 * math.sqrt(6.0 / (64 + 16))
    assert float(jnp.max(jnp.abs(p["out"]["kernel"]))) <= limit
    biases = [p[m]["bias"] for m in ("Conv_0", "Dense_0", "out")]
    assert_var(jnp.concatenate([*biases, p["stack"]["Dense_0"]["bias"].ravel()]), 0.25)


def test_equinox_out_in_weights_and_oihw_conv():
    @eqx.filter_jit
    def make(key):
        k = jax.random.split(key, 3)
        return {
            "lin": eqx.nn.Linear(64, 256, key=k[0]),  # weight (256, 64): fan_in 64
            "conv": eqx.nn.Conv2d(16, 32, 3, key=k[1]),  # OIHW (32, 16, 3, 3)
            "stack": eqx.filter_vmap(lambda key: eqx.nn.Linear(64, 32, key=key))(
                jax.random.split(k[2], 3)
            ),
        }

    model = make(jax.random.key(0))
    new = _reinit(jax.random.key(2), model, {"weight": js.he_normal(), "bias": js.zeros})
    assert_var(new["lin"].weight, 2.0 / 64)  # read as (in, out) it would be 2/256
    assert_var(new["conv"].weight, 2.0 / (16 * 9))
    for layer in new["stack"].weight:
        assert_var(layer, 2.0 / 64)
    assert new["conv"].bias.shape == (32, 1, 1) and not np.any(new["conv"].bias)
    fans = _reinit(jax.random.key(2), model, {"lin/weight": js.he_normal(mode="fan_out")})
    assert_var(fans["lin"].weight, 2.0 / 256)


@pytest.mark.parametrize(
    "make,transpose",
    [
        (lambda: {"kernel": jnp.zeros((48, 16)), "bias": jnp.zeros(16)}, False),  # flax (in, out)
        (lambda: {"weight": jnp.zeros((16, 48)), "bias": jnp.zeros(16)}, True),  # eqx (out, in)
    ],
)
def test_orthogonal_is_drawn_in_the_function_orientation(make, transpose):
    name = "weight" if transpose else "kernel"
    new = _reinit(jax.random.key(3), make(), {name: js.orthogonal()})
    w = new["weight"].T if transpose else new["kernel"]  # as (in, out): x @ w
    chex.assert_trees_all_close(w.T @ w, jnp.eye(16), atol=1e-5)  # orthonormal columns


def test_flax_nnx_state_keeps_variables():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(64, 128, rngs=rngs)
            self.l2 = nnx.Linear(128, 4, rngs=rngs)

    graphdef = nnx.split(nnx.eval_shape(lambda: Net(nnx.Rngs(0))))[0]
    state = jax.jit(lambda: nnx.split(Net(nnx.Rngs(0)))[1])()
    rules = {"kernel": js.lecun_normal(), "l2/bias": js.constant(1.0)}
    new = _reinit(jax.random.key(4), state, rules)
    assert isinstance(new["l1"]["kernel"], nnx.Param)
    model = nnx.merge(graphdef, new)
    assert isinstance(model.l1.kernel, nnx.Param)
    assert_var(model.l1.kernel[...], 1.0 / 64)
    assert_var(model.l2.kernel[...], 1.0 / 128)
    np.testing.assert_array_equal(model.l2.bias[...], np.ones(4, np.float32))
    np.testing.assert_array_equal(model.l1.bias[...], state["l1"]["bias"][...])  # unmatched


def test_jaxstab_mlp_stacks_per_layer_and_split_stacks():
    # init_mlp's layout for sizes [32, 64, 64, 64, 10]: one layer, then a stack of two
    params = {
        "hidden": [
            {"w": jnp.ones((1, 32, 64)), "b": jnp.ones((1, 64))},
            {"w": jnp.ones((2, 64, 64)), "b": jnp.ones((2, 64))},
        ],
        "output": {"w": jnp.ones((64, 10)), "b": jnp.ones(10)},
    }
    new = _reinit(jax.random.key(5), params, {"w": js.xavier_normal(), "output/w": js.zeros})
    for layer, n_in in zip(new["hidden"][1]["w"], (64, 64)):
        assert_var(layer, 2.0 / (n_in + 64))
    assert_var(new["hidden"][0]["w"][0], 2.0 / (32 + 64))
    assert not np.any(new["output"]["w"])
    chex.assert_trees_all_equal(new["hidden"][0]["b"], params["hidden"][0]["b"])
    split = _reinit(jax.random.key(5), js.split_stacks(params), {"w": js.xavier_normal()})
    assert_var(jnp.concatenate([g["w"].ravel() for g in split["hidden"][1:]]), 2.0 / 128)


def test_deterministic_per_path_jittable_one_trace(linen_vars):
    key = jax.random.key(6)
    one = _reinit(key, linen_vars, {"out/kernel": js.he_normal()})
    both = _reinit(
        key, linen_vars, {"Dense_0/kernel": js.he_normal(), "out/kernel": js.he_normal()}
    )
    # A leaf's draw depends on the key and its path only, not on the other rules.
    chex.assert_trees_all_equal(one["params"]["out"], both["params"]["out"])
    chex.assert_trees_all_equal(one["params"]["Dense_0"], linen_vars["params"]["Dense_0"])
    fn = jax.jit(chex.assert_max_traces(lambda k, v: js.reinit(k, v, RULES), n=1))
    eager = js.reinit(key, linen_vars, RULES)
    chex.assert_trees_all_close(fn(key, linen_vars), eager, rtol=1e-6)
    other = fn(jax.random.key(7), linen_vars)
    assert not np.allclose(other["params"]["out"]["kernel"], eager["params"]["out"]["kernel"])
    # A raw uint32 key works too, and vmap over keys gives per-seed parameters.
    per_seed = jax.vmap(lambda k: js.reinit(k, linen_vars, {"out/kernel": js.he_normal()}))(
        jax.random.split(jax.random.PRNGKey(0), 2)
    )
    assert per_seed["params"]["out"]["kernel"].shape == (2, 64, 16)


def test_dtype_is_kept():
    params = {"kernel": jnp.zeros((64, 64), jnp.bfloat16), "bias": jnp.zeros(64, jnp.float16)}
    new = _reinit(jax.random.key(8), params, {"kernel": js.he_normal(), "bias": js.normal(1.0)})
    assert new["kernel"].dtype == jnp.bfloat16 and new["bias"].dtype == jnp.float16
    assert_var(new["kernel"].astype(jnp.float32), 2.0 / 64)


@pytest.mark.parametrize(
    "rules,kwargs,exc,match",
    [
        (
            {"kernel": js.zeros, "outt/kernel": js.zeros},
            {},
            ValueError,
            "reinit rule 'outt/kernel' matches no parameter; the paths are: params/",
        ),
        (
            {"bias": js.he_normal()},
            {},
            ValueError,
            r"reinit rule 'bias' on 'params/Conv_0/bias' \(a bias; one layer has shape \(32,\)\)",
        ),
        ({"kernel": "he_normal"}, {}, TypeError, "reinit rule 'kernel' needs an initializer"),
        ({}, {}, TypeError, "rules must be a non-empty mapping"),
        ({"kernel": js.zeros}, {"layout": "keras"}, ValueError, "unknown layout 'keras'"),
        (
            {"out/kernel": js.zeros},
            {"layout": {"out/kernel": js.Layout("kernel", 0, 2)}},
            ValueError,
            r"out_axes=\(2,\) is out of range for the leaf 'params/out/kernel'",
        ),
    ],
)
def test_bad_inputs(linen_vars, rules, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        js.reinit(jax.random.key(0), linen_vars, rules, **kwargs)


def test_bad_key_and_wrong_shape():
    params = {"kernel": jnp.zeros((4, 4))}
    with pytest.raises(TypeError, match=r"reinit needs one PRNG key.*got 0"):
        js.reinit(0, params, {"kernel": js.zeros})
    with pytest.raises(ValueError, match=r"returned shape \(3,\) for 'kernel', expected \(4, 4\)"):
        js.reinit(jax.random.key(0), params, {"kernel": lambda k, s, d: jnp.zeros(3)})


def test_doctest():
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("jaxstab.reinit"))
    assert result.attempted > 0 and result.failed == 0
