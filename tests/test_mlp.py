"""The scanned MLP: grouping, scan against layer-by-layer, vmap against a loop, grads."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxstab as js

SIZES = [6, 16, 16, 16, 16, 4]


def _unrolled(params, x, phi):
    """The same network written as a plain Python loop over single layers."""
    h = x
    pre = []
    for group in params["hidden"]:
        for i in range(group["w"].shape[0]):
            z = h @ group["w"][i] + group["b"][i][None]
            pre.append(z)
            h = phi(z)
    return h @ params["output"]["w"] + params["output"]["b"][None], pre


def test_structure_groups_equal_layers():
    params = js.init_mlp(jax.random.key(0), [64, 128, 128, 128, 64, 64, 10])
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == {
        "hidden": [
            {"w": (1, 64, 128), "b": (1, 128)},
            {"w": (2, 128, 128), "b": (2, 128)},
            {"w": (1, 128, 64), "b": (1, 64)},
            {"w": (1, 64, 64), "b": (1, 64)},
        ],
        "output": {"w": (64, 10), "b": (10,)},
    }
    assert js.mlp_sizes(params) == [64, 128, 128, 128, 64, 64, 10]


def test_layer_weights_follow_their_own_key_and_init():
    key = jax.random.key(1)
    params = js.init_mlp(key, SIZES, weight_init=js.xavier_normal(), bias_init=js.normal(0.1))
    keys = jax.random.split(key, len(SIZES) - 1)
    k_w, k_b = jax.random.split(keys[2])
    np.testing.assert_array_equal(
        params["hidden"][1]["w"][1], js.xavier_normal()(k_w, (16, 16), jnp.float32)
    )
    np.testing.assert_array_equal(params["hidden"][1]["b"][1], js.normal(0.1)(k_b, (16,)))


@pytest.mark.parametrize("activation", ["relu", "tanh", "selu"])
@pytest.mark.parametrize("sizes", [SIZES, [6, 16, 8, 8, 12, 4], [6, 4]])
def test_scan_equals_layer_by_layer(activation, sizes):
    params = js.init_mlp(jax.random.key(2), sizes, bias_init=js.normal(0.1))
    x = jax.random.normal(jax.random.key(3), (5, sizes[0]))
    logits, pre = js.apply_mlp(params, x, activation, capture=True)
    ref_logits, ref_pre = _unrolled(params, x, js.get_activation(activation))
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert len(pre) == len(sizes) - 2
    for z, z_ref in zip(pre, ref_pre):
        np.testing.assert_allclose(z, z_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(js.apply_mlp(params, x, activation), logits)


def test_capture_stacks_equal_widths():
    params = js.init_mlp(jax.random.key(0), SIZES)
    _, pre = js.apply_mlp(params, jnp.ones((3, 6)), capture=True)
    chex.assert_shape(pre, (4, 3, 16))


def test_vmap_over_seeds_equals_loop():
    keys = jax.random.split(jax.random.key(4), 4)
    x = jax.random.normal(jax.random.key(5), (7, SIZES[0]))
    params = jax.vmap(lambda k: js.init_mlp(k, SIZES))(keys)
    batched = jax.vmap(lambda p: js.apply_mlp(p, x, "tanh"))(params)
    for i, k in enumerate(keys):
        single = js.apply_mlp(js.init_mlp(k, SIZES), x, "tanh")
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)


def test_callable_activation_matches_name():
    params = js.init_mlp(jax.random.key(6), SIZES)
    x = jnp.ones((2, 6))
    np.testing.assert_array_equal(
        js.apply_mlp(params, x, jnp.tanh), js.apply_mlp(params, x, "tanh")
    )


def _loss(params, x, y, activation="tanh", remat=False):
    logits = js.apply_mlp(params, x, activation, remat=remat)
    return jnp.mean(js.softmax_cross_entropy(logits, y))


def test_check_grads_through_the_scan():
    params = js.init_mlp(jax.random.key(7), [3, 5, 5, 5, 2], weight_init=js.xavier_normal())
    x = jax.random.normal(jax.random.key(8), (4, 3))
    y = jnp.array([0, 1, 1, 0])
    # float32 finite differences: eps 1e-2 balances truncation against rounding.
    check_grads(
        lambda p: _loss(p, x, y), (params,), order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2
    )
    check_grads(
        lambda xx: js.apply_mlp(params, xx, "tanh"),
        (x,),
        order=2,
        modes=("fwd", "rev"),
        eps=1e-2,
        atol=2e-2,
        rtol=2e-2,
    )


# Hidden stacks of 1, 11 (prime), 16 (a square) and 31 layers (31 = 5 blocks of 5 + 6 more).
@pytest.mark.parametrize(
    "remat, depth",
    [(True, 12), ("layer", 2), ("sqrt", 2), ("sqrt", 12), ("sqrt", 17), ("sqrt", 32)],
)
def test_remat_gives_the_same_gradients(remat, depth):
    params = js.init_mlp(jax.random.key(9), [8] + [32] * depth + [3])
    x = jax.random.normal(jax.random.key(10), (16, 8))
    y = jnp.arange(16) % 3
    g = jax.grad(_loss)(params, x, y, "relu", False)
    g_remat = jax.grad(_loss)(params, x, y, "relu", remat)
    chex.assert_trees_all_close(g, g_remat, rtol=1e-5, atol=1e-6)
    _, pre = js.apply_mlp(params, x, "relu", capture=True)
    _, pre_remat = js.apply_mlp(params, x, "relu", capture=True, remat=remat)
    np.testing.assert_array_equal(pre_remat, pre)


def _temp_bytes(remat, depth, width=64, batch=256):
    params = jax.eval_shape(lambda: js.init_mlp(jax.random.key(0), [16] + [width] * depth + [4]))
    x = jax.ShapeDtypeStruct((batch, 16), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    grad = jax.jit(jax.grad(lambda p, x, y: _loss(p, x, y, "relu", remat)))
    return grad.lower(params, x, y).compile().memory_analysis().temp_size_in_bytes


def test_sqrt_remat_keeps_o_sqrt_depth_activations():
    # XLA's memory analysis of the compiled gradient is deterministic. Per-layer
    # remat keeps every layer input ([256, 64] f32 = 64 KiB) of a 255-layer
    # stack; two-level remat keeps 15 block inputs plus one block's activations.
    layer_input = 256 * 64 * 4
    per_layer = {d: _temp_bytes(True, d) for d in (256, 1024)}
    two_level = {d: _temp_bytes("sqrt", d) for d in (256, 1024)}
    assert per_layer[256] >= 255 * layer_input
    assert two_level[256] < per_layer[256] / 4
    # 4x the depth: per-layer remat keeps 4x as much, two-level about sqrt(4) = 2x.
    assert per_layer[1024] / per_layer[256] > 3.5
    assert two_level[1024] / two_level[256] < 2.5


@pytest.mark.parametrize("remat", ["block", 1, None])
def test_bad_remat(remat):
    params = js.init_mlp(jax.random.key(0), [3, 4, 4, 2])
    with pytest.raises(ValueError, match="remat must be one of"):
        js.apply_mlp(params, jnp.ones((2, 3)), remat=remat)


def test_split_stacks_regroups_short_stacks_only():
    params = js.init_mlp(jax.random.key(11), [6] + [8] * 4 + [5] * 20 + [3])
    split = js.split_stacks(params, max_len=16)
    shapes = [g["w"].shape for g in split["hidden"]]
    # 3 equal (8, 8) layers split; the 19-layer (5, 5) stack stays scanned.
    assert shapes == [(1, 6, 8)] + [(1, 8, 8)] * 3 + [(1, 8, 5), (19, 5, 5)]
    assert js.mlp_sizes(split) == js.mlp_sizes(params)
    assert jax.tree.leaves(js.split_stacks(params, max_len=0)) == jax.tree.leaves(params)
    np.testing.assert_array_equal(split["hidden"][2]["w"][0], params["hidden"][1]["w"][1])
    np.testing.assert_array_equal(split["hidden"][3]["b"][0], params["hidden"][1]["b"][2])


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_split_stacks_computes_the_same_function_and_gradient(activation):
    sizes = [6] + [16] * 9 + [4]
    params = js.init_mlp(jax.random.key(12), sizes, bias_init=js.normal(0.1))
    split = js.split_stacks(params)
    x = jax.random.normal(jax.random.key(13), (8, 6))
    y = jnp.arange(8) % 4
    logits, pre = js.apply_mlp(params, x, activation, capture=True)
    logits_s, pre_s = js.apply_mlp(split, x, activation, capture=True)
    np.testing.assert_allclose(logits_s, logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pre_s, pre, rtol=1e-6, atol=1e-6)
    g = jax.grad(_loss)(params, x, y, activation)
    g_split = jax.grad(_loss)(split, x, y, activation)
    # The split gradient is the stacked one, regrouped the same way.
    chex.assert_trees_all_close(g_split, js.split_stacks(g), rtol=1e-5, atol=1e-7)


def test_split_stacks_under_vmap_equals_per_seed():
    keys = jax.random.split(jax.random.key(14), 3)
    sizes = [5, 7, 7, 7, 2]
    stacked = jax.vmap(lambda k: js.init_mlp(k, sizes))(keys)
    split = jax.vmap(js.split_stacks)(stacked)
    for i, k in enumerate(keys):
        one = js.split_stacks(js.init_mlp(k, sizes))
        chex.assert_trees_all_equal(jax.tree.map(lambda a, i=i: a[i], split), one)


@pytest.mark.parametrize(
    "sizes", [[6, 8, 8, 8, 8, 3], [6] + [8] * 4 + [5] * 20 + [3], [6, 6, 6, 2], [6, 9, 4, 4, 2]]
)
def test_merge_stacks_undoes_split_stacks(sizes):
    params = js.init_mlp(jax.random.key(15), sizes)
    for max_len in (0, 1, 4, 16):
        merged = js.merge_stacks(js.split_stacks(params, max_len))
        chex.assert_trees_all_equal(merged, params)
    # Any grouping of the same layers merges back to init_mlp's layout.
    one_per_layer = js.split_stacks(params, max_len=10**6)
    chex.assert_trees_all_equal(js.merge_stacks(one_per_layer), params)


@pytest.mark.parametrize("max_len", [-1, 1.5, True])
def test_split_stacks_bad_max_len(max_len):
    params = js.init_mlp(jax.random.key(0), [3, 4, 4, 2])
    with pytest.raises(ValueError, match=f"max_len must be an integer >= 0, got {max_len!r}"):
        js.split_stacks(params, max_len=max_len)


def test_one_trace_per_jitted_function():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def grad_fn(params, x, y):
        return jax.grad(_loss)(params, x, y)

    y = jnp.array([0, 1, 2])
    for seed in range(3):
        params = js.init_mlp(jax.random.key(seed), [4, 8, 8, 8, 3])
        grad_fn(params, jax.random.normal(jax.random.key(seed), (3, 4)), y)


def test_depth_does_not_grow_the_program():
    """The jaxpr of a deep net is the size of a shallow one: depth is a scan length."""

    def n_eqns(depth):
        params = jax.eval_shape(lambda: js.init_mlp(jax.random.key(0), [8] + [16] * depth + [2]))
        jaxpr = jax.make_jaxpr(jax.grad(_loss))(params, jnp.ones((4, 8)), jnp.zeros(4, int))
        return len(jaxpr.eqns)

    assert n_eqns(256) == n_eqns(4)


@pytest.mark.parametrize(
    "sizes,match",
    [
        ([5], r"at least 2 positive integers, got \[5\]"),
        ([5, 0, 3], r"got \[5, 0, 3\] \(sizes\[1\] is 0\)"),
        ([5, 2.5, 3], r"got \[5, 2.5, 3\] \(sizes\[1\] is 2.5\)"),
        ([5, True, 3], r"sizes\[1\] is True"),
        (np.array([4, -8, 3]), r"got \[4, -8, 3\]"),
        (7, "a sequence of at least 2 positive integers, got 7"),
        ("48", "got '48'"),
    ],
)
def test_bad_sizes(sizes, match):
    with pytest.raises(ValueError, match=match):
        js.init_mlp(jax.random.key(0), sizes)


@pytest.mark.parametrize(
    "sizes", [np.array([4, 8, 3]), [np.int64(4), np.int32(8), 3], (jnp.array(4), 8, 3)]
)
def test_numpy_and_jax_integer_sizes(sizes):
    # Same key, same layers: the weights equal those from plain Python ints.
    params = js.init_mlp(jax.random.key(0), sizes)
    chex.assert_trees_all_equal(params, js.init_mlp(jax.random.key(0), [4, 8, 3]))
    assert js.mlp_sizes(params) == [4, 8, 3]
    assert all(type(n) is int for n in js.mlp_sizes(params))


def test_bad_input_rank():
    params = js.init_mlp(jax.random.key(0), [4, 3])
    with pytest.raises(ValueError, match=r"x must be a batch \[batch, d_in\], got shape \(4,\)"):
        js.apply_mlp(params, jnp.ones(4))


@pytest.mark.parametrize("sizes", [[4, 8, 8, 3], [4, 3]])
def test_wrong_input_width_names_d_in_at_trace_time(sizes):
    params = js.init_mlp(jax.random.key(0), sizes)
    x = jax.ShapeDtypeStruct((2, 5), jnp.float32)
    message = f"x has 5 features (shape (2, 5)), but the MLP takes d_in=4 (sizes {sizes})"
    with pytest.raises(ValueError, match=re.escape(message)):
        js.apply_mlp(params, jnp.ones((2, 5)))
    # Under jit, from the shapes alone, before anything runs.
    with pytest.raises(ValueError, match="x has 5 features"):
        jax.eval_shape(jax.jit(js.apply_mlp), params, x)


@pytest.mark.parametrize(
    "params,match",
    [
        ({}, r"params must be MLP parameters .* got a dict with keys \[\]"),
        ([1, 2], "params must be MLP parameters .* got a list"),
        ({"hidden": {}, "output": {}}, r'params\["hidden"\] must be a list of layer groups'),
        (
            {"hidden": [], "output": {"w": jnp.ones((4, 3))}},
            r'params\["output"\] must be a dict with "w" and "b", got a dict with keys \[\'w\'\]',
        ),
        (
            {"hidden": [{"w": jnp.ones((4, 8)), "b": jnp.ones(8)}], "output": {}},
            r'params\["hidden"\]\[0\]\["w"\] must have shape \[k, n_in, n_out\], '
            r"got shape \(4, 8\)",
        ),
        (
            {
                "hidden": [{"w": jnp.ones((1, 4, 8)), "b": jnp.ones((1, 8))}],
                "output": {"w": jnp.ones((6, 3)), "b": jnp.ones(3)},
            },
            r'params\["output"\]\["w"\] of shape \(6, 3\) takes 6 inputs, '
            r"but the layer below gives 8",
        ),
        (
            {"hidden": [], "output": {"w": jnp.ones((4, 3)), "b": jnp.ones(4)}},
            r'params\["output"\]\["b"\] must have shape \(3,\) to match "w" of shape \(4, 3\)',
        ),
    ],
)
def test_bad_params_layout(params, match):
    with pytest.raises(ValueError, match=match):
        js.apply_mlp(params, jnp.ones((2, 4)))


def test_initializer_returning_the_wrong_shape_is_rejected():
    def transposed(key, shape, dtype=None):  # an (out, in) initializer used as (in, out)
        return js.he_normal()(key, shape[::-1], dtype)

    with pytest.raises(
        ValueError, match=r"weight_init .* returned shape \(8, 4\) when called with shape \(4, 8\)"
    ):
        js.init_mlp(jax.random.key(0), [4, 8, 3], weight_init=transposed)
    with pytest.raises(ValueError, match=r"output_init .* returned shape \(3, 8\)"):
        js.init_mlp(jax.random.key(0), [4, 8, 3], output_init=transposed)
    with pytest.raises(ValueError, match=r"bias_init .* returned shape \(1, 8\)"):
        js.init_mlp(jax.random.key(0), [4, 8, 3], bias_init=lambda k, s, d=None: jnp.zeros((1, *s)))
    with pytest.raises(ValueError, match=r"bias_init .* returned a NoneType"):
        js.init_mlp(jax.random.key(0), [4, 8, 3], bias_init=lambda k, s, d=None: None)
    with pytest.raises(
        ValueError, match=r"weight_init must be an initializer init.*got 'he_normal'"
    ):
        js.init_mlp(jax.random.key(0), [4, 8, 3], weight_init="he_normal")
    with pytest.raises(ValueError, match="dtype must be a floating dtype, got int32"):
        js.init_mlp(jax.random.key(0), [4, 8, 3], dtype=jnp.int32)
