"""Layouts: inferred from real flax.linen, flax.nnx, equinox and jaxstab models; stated
by name, rule or Layout; every bad input a clear error."""

import doctest
import importlib

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import jaxstab as js
from jaxstab.layouts import Layout, path_matches, resolve


class _ScanDense(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.relu(nn.Dense(6)(x)), None


class _LinenNet(nn.Module):
    """Conv HWIO, Dense (in, out), an nn.scan stack of 3 Dense, a named output."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 2))(x)
        x = nn.Dense(6)(x.reshape(x.shape[0], -1))
        scan = nn.scan(
            _ScanDense, variable_axes={"params": 0}, split_rngs={"params": True}, length=3
        )
        x, _ = scan(name="stack")(x, None)
        return nn.Dense(2, name="out")(nn.LayerNorm()(x))


def _linen_params():
    # Layouts need shapes only: abstract evaluation, nothing computed.
    return jax.eval_shape(_LinenNet().init, jax.random.key(0), jnp.ones((1, 5, 5, 2)))


def _fans(found, shapes):
    return {p: found[p].fans(shapes[p]) for p in found if found[p].kind == "kernel"}


def _shapes(tree):
    return {p: x.shape for p, x in js.layouts.array_leaves(tree)}


def test_flax_linen_conv_dense_scan_and_layernorm():
    v = _linen_params()
    found, shapes = resolve(v), _shapes(v)
    assert _fans(found, shapes) == {
        "params/Conv_0/kernel": (3 * 2 * 2, 3 * 2 * 4),  # HWIO: receptive field in both fans
        "params/Dense_0/kernel": (100, 6),
        "params/stack/Dense_0/kernel": (6, 6),  # one layer of the stack
        "params/out/kernel": (6, 2),
    }
    scan_k, scan_b = (found[f"params/stack/Dense_0/{n}"] for n in ("kernel", "bias"))
    assert scan_k.stack_axes == (0,) and scan_b.stack_axes == (0,)
    assert found["params/Conv_0/kernel"].unit_axes(4) == (0, 1, 2)  # optax's HWI
    assert found["params/Conv_0/bias"] == Layout("bias", out_axes=0)
    assert found["params/LayerNorm_0/scale"].kind == "vector"
    assert found["params/LayerNorm_0/bias"].kind == "bias"


def test_flax_nnx_linear_conv_and_vmapped_stack():
    @nnx.split_rngs(splits=3)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def stack(rngs):
        return nnx.Linear(8, 16, rngs=rngs)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
            self.lin = nnx.Linear(5, 7, rngs=rngs)
            self.stack = stack(rngs)

    state = nnx.split(nnx.eval_shape(lambda: Net(nnx.Rngs(0))), nnx.Param)[1]
    found, shapes = resolve(state), _shapes(state)
    assert _fans(found, shapes) == {
        "conv/kernel": (27, 36),
        "lin/kernel": (5, 7),
        "stack/kernel": (8, 16),
    }
    assert found["stack/kernel"].stack_axes == (0,) and found["stack/bias"].stack_axes == (0,)


def test_equinox_linear_conv_and_vmapped_stack():
    def make(key):
        k = jax.random.split(key, 3)
        return {
            "lin": eqx.nn.Linear(5, 7, key=k[0]),
            "conv": eqx.nn.Conv2d(3, 4, (3, 2), key=k[1]),
            "stack": eqx.filter_vmap(lambda key: eqx.nn.Linear(8, 16, key=key))(
                jax.random.split(k[2], 3)
            ),
            "norm": eqx.nn.LayerNorm(7),
        }

    params = eqx.filter_eval_shape(make, jax.random.key(0))  # a module of shapes
    found, shapes = resolve(params), _shapes(params)
    assert _fans(found, shapes) == {
        "lin/weight": (5, 7),  # (out, in)
        "conv/weight": (3 * 6, 4 * 6),  # OIHW
        "stack/weight": (8, 16),
    }
    assert found["conv/bias"] == Layout("bias", out_axes=0)  # (out, 1, 1)
    assert found["conv/bias"].unit_axes(3) == (0, 1, 2)
    assert found["stack/weight"] == Layout("kernel", in_axes=2, out_axes=1, stack_axes=0)
    assert found["norm/weight"].kind == "vector"


@pytest.mark.parametrize("split", [False, True])
def test_jaxstab_mlp_inferred_equals_named(split):
    params = jax.eval_shape(lambda k: js.init_mlp(k, [4, 8, 8, 8, 3]), jax.random.key(0))
    params = jax.eval_shape(js.split_stacks, params) if split else params
    inferred, named = resolve(params), resolve(params, "jaxstab")
    assert inferred == named
    assert inferred["hidden/1/w"] == Layout("kernel", in_axes=1, out_axes=2, stack_axes=0)
    assert inferred["output/w"] == Layout("kernel", in_axes=0, out_axes=1)
    assert inferred["output/b"] == Layout("bias", out_axes=0)


def test_stated_layouts_by_name_rule_and_layout():
    params = {"blk": {"kernel": jnp.zeros((3, 8, 6))}, "emb": jnp.zeros((10, 4))}
    # A bias-less 3-D kernel is a stack or a conv: it must be stated.
    assert resolve(params, {"blk/*": "flax_scan", "emb": "flax"})["blk/kernel"].fans((3, 8, 6)) == (
        8,
        6,
    )
    found = resolve(params, {"*": "flax", "blk/kernel": "flax_scan"})  # the last rule wins
    assert found["blk/kernel"].stack_axes == (0,)
    assert found["emb"] == Layout("kernel", in_axes=0, out_axes=1)
    lay = Layout("kernel", in_axes=(-2,), out_axes=-1, stack_axes=[0])
    assert resolve(params, {"blk/kernel": lay, "emb": "equinox"})["blk/kernel"].fans((3, 8, 6)) == (
        8,
        6,
    )
    assert resolve(params, {"blk/kernel": lay, "emb": "equinox"})["emb"].fans((10, 4)) == (4, 10)
    # One name for everything: a plain list of (w, b) pairs.
    pairs = [(jnp.zeros((4, 8)), jnp.zeros(8)), (jnp.zeros((8, 2)), jnp.zeros(2))]
    assert [lay.kind for lay in resolve(pairs, "flax").values()] == ["kernel", "vector"] * 2


@pytest.mark.parametrize(
    "pattern,path,expected",
    [
        ("kernel", "params/out/kernel", True),  # any /-aligned suffix
        ("out/kernel", "params/out/kernel", True),
        ("ut/kernel", "params/out/kernel", False),  # not inside a name
        ("*kernel", "params/out/kernel", True),  # * crosses /
        ("/params/*/bias", "params/out/bias", True),  # anchored at the root
        ("/out/bias", "params/out/bias", False),
        ("hidden/[0-2]/w", "hidden/1/w", True),
        ("hidden/?/w", "hidden/10/w", False),
    ],
)
def test_path_matches(pattern, path, expected):
    assert path_matches(pattern, path) is expected


@pytest.mark.parametrize(
    "tree,layout,exc,match",
    [
        ({"w": jnp.zeros((2, 3))}, "haiku", ValueError, "unknown layout 'haiku'; valid: flax, "),
        ({"w": jnp.zeros((2, 3))}, {"w": "torch"}, ValueError, "unknown layout 'torch'"),
        ({"w": jnp.zeros((2, 3))}, {"kernel": "flax"}, ValueError, "layout rule 'kernel' matches"),
        ({"w": jnp.zeros((2, 3))}, 3, ValueError, "unknown layout 3"),
        (
            {"w": jnp.zeros((2, 3))},
            Layout("kernel", in_axes=2, out_axes=1),
            ValueError,
            r"in_axes=\(2,\) is out of range for the leaf 'w' of shape \(2, 3\).*-2..1",
        ),
        (
            {"w": jnp.zeros((2, 3))},
            Layout("kernel", in_axes=0, out_axes=-2),
            ValueError,
            "names an axis twice",
        ),
        (
            {"conv": {"kernel": jnp.zeros((3, 3, 2, 4))}, "blk": {"kernel": jnp.zeros((3, 4, 4))}},
            None,
            ValueError,
            r"'blk/kernel' \(shape \(3, 4, 4\)\): with no bias.*'flax_scan' or 'flax'",
        ),
        (
            {"kernel": jnp.zeros((3, 4, 4)), "bias": jnp.zeros(5)},
            None,
            ValueError,
            r"its bias of shape \(5,\) fits no",
        ),
        ({"emb": jnp.zeros((10, 4))}, None, ValueError, "cannot infer the layout of 'emb'"),
        (
            {"b": jnp.zeros((2, 3))},
            "flax",
            ValueError,
            r"layout 'flax' expects a bias of rank 1, got 'b' of shape \(2, 3\)",
        ),
        ({"x": jnp.zeros(())}, "flax_scan", ValueError, "'x' is a scalar"),
    ],
)
def test_bad_layouts(tree, layout, exc, match):
    with pytest.raises(exc, match=match):
        resolve(tree, layout)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: Layout("weights"), ValueError, "unknown layout kind 'weights'; valid: kernel"),
        (lambda: Layout("kernel", in_axes=0), ValueError, "needs in_axes and out_axes"),
        (lambda: Layout("bias", in_axes=0, out_axes=1), ValueError, "a bias layout has no in_"),
        (lambda: Layout("kernel", in_axes="0", out_axes=1), TypeError, "in_axes must be an int"),
        (lambda: Layout("kernel", in_axes=0, out_axes=True), TypeError, "out_axes must be an"),
    ],
)
def test_bad_layout_objects(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_doctests():
    result = doctest.testmod(importlib.import_module("jaxstab.layouts"))
    assert result.attempted > 0 and result.failed == 0
