"""Clipping transforms: invariants, optax parity on any layout (flax linen with an nn.scan
stack, nnx, equinox), thresholds (concrete and traced), non-finite steps skipped whole,
state under scan/vmap, clip states found in optax and nnx optimizer states."""

import re

import chex
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxstab as js


def _grads(scale, key=0):
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return {
        "w": scale * jax.random.normal(k1, (5, 4)),
        "b": scale * jax.random.normal(k2, (4,)),
        "stack": {"w": scale * jax.random.normal(k3, (3, 4, 4)), "b": jnp.zeros((3, 4))},
    }


def _apply(tx, grads, params=None):
    """One update from a fresh state, jitted (one compile instead of one per op)."""

    def run(grads, params):
        return tx.update(grads, tx.init(grads if params is None else params), params)

    return jax.jit(run)(grads, params)


def _apply_eager(tx, grads):
    return tx.update(grads, tx.init(grads))


def _cos(a, b):
    a, b = (
        jnp.concatenate([x.ravel() for x in jax.tree.leaves(a)]),
        jnp.concatenate([x.ravel() for x in jax.tree.leaves(b)]),
    )
    return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def _bits(tree):
    """Leaves as raw bytes, so equality is bit for bit (-0.0 != 0.0, NaN == NaN)."""
    return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


@jax.jit
def _random_like(tree, key):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(key), len(leaves))
    out = [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, out)


def _mlp(key, scale=1.0):
    """jaxstab's MLP layout for sizes [6, 8, 8, 8, 3]: one layer, then a stack of two."""
    shapes = {
        "hidden": [{"w": (1, 6, 8), "b": (1, 8)}, {"w": (2, 8, 8), "b": (2, 8)}],
        "output": {"w": (8, 3), "b": (3,)},
    }
    shapes = jax.tree.map(jnp.zeros, shapes, is_leaf=lambda x: isinstance(x, tuple))
    return jax.tree.map(lambda x: scale * x, _random_like(shapes, key))


# --- models --------------------------------------------------------------------------


class _ScanDense(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.tanh(nn.Dense(6)(x)), None


class _ScanNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(6)(x)
        scan = nn.scan(
            _ScanDense, variable_axes={"params": 0}, split_rngs={"params": True}, length=4
        )
        x, _ = scan(name="stack")(x, None)
        return nn.Dense(3, name="out")(x)


class _ConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(5, (3, 3))(x)  # HWIO
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def scan_params():
    return jax.jit(_ScanNet().init)(jax.random.key(0), jnp.ones((1, 4)))["params"]


# --- global norm ---------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-3, 0.1, 1.0, 10.0, 1e4])
def test_global_norm_invariants_and_optax_parity(scale):
    tau = 2.0
    g = _grads(scale)
    out, state = _apply(js.clip_by_global_norm(tau), g)
    norm = optax.tree.norm(g)
    assert float(optax.tree.norm(out)) <= tau * (1 + 1e-6)  # at most tau
    assert _cos(out, g) == pytest.approx(1.0, abs=1e-6)  # direction unchanged
    if norm < tau:  # identity below tau
        chex.assert_trees_all_equal(out, g)
    else:
        assert float(optax.tree.norm(out)) == pytest.approx(tau, rel=1e-6)
    twice, _ = _apply(js.clip_by_global_norm(tau), out)  # idempotent
    chex.assert_trees_all_close(twice, out, rtol=1e-6)
    ref, _ = _apply_eager(optax.clip_by_global_norm(tau), g)  # optax parity, bit for bit
    chex.assert_trees_all_equal(_apply_eager(js.clip_by_global_norm(tau), g)[0], ref)
    chex.assert_trees_all_close(out, ref, rtol=2e-7, atol=0)  # jitted: XLA may reassociate
    assert float(state.global_norm) == pytest.approx(float(norm), rel=1e-6)
    assert bool(state.clipped) == bool(norm >= tau)
    assert int(state.num_clipped) == int(norm >= tau)
    assert int(state.num_nonfinite) == 0


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_nonfinite_step_is_zeroed_and_counted(bad):
    g = _grads(1.0)
    g["w"] = g["w"].at[0, 0].set(bad)
    tx = js.clip_by_global_norm(1.0)
    out, state = _apply(tx, g)
    chex.assert_trees_all_equal(out, jax.tree.map(jnp.zeros_like, g))
    assert int(state.num_nonfinite) == 1 and not bool(state.clipped)
    params = jax.tree.map(jnp.ones_like, g)
    new = optax.apply_updates(params, optax.sgd(0.1).update(out, optax.sgd(0.1).init(params))[0])
    chex.assert_tree_all_finite(new)
    raw, state = _apply(js.clip_by_global_norm(1.0, nonfinite="propagate"), g)
    assert not np.all(np.isfinite(np.asarray(raw["w"])))
    assert int(state.num_nonfinite) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda tau: js.clip_by_global_norm(tau),
        lambda tau: js.clip_by_layer_norm(tau),
        lambda tau: js.adaptive_clip(tau),
    ],
    ids=["global", "layer", "adaptive"],
)
def test_inf_threshold_monitors_without_clipping(make):
    g, params = _grads(1e3), _grads(1.0, key=1)
    out, state = _apply(make(float("inf")), g, params)
    assert _bits(out) == _bits(g)
    assert float(state.global_norm) == pytest.approx(float(optax.tree.norm(g)), rel=1e-6)
    assert not bool(state.clipped) and int(state.num_clipped) == 0
    # Traced inf (a sweep point "no clipping") does the same.
    out, state = jax.jit(lambda t: _apply(make(t), g, params))(jnp.inf)
    assert _bits(out) == _bits(g) and int(state.num_nonfinite) == 0


# --- per layer, on any layout ----------------------------------------------------------


def _layer_ref(g, tau, stacked):
    """numpy: each layer (leading index when stacked) rescaled to norm <= tau."""
    g = np.asarray(g, np.float64)
    layers = g if stacked else g[None]
    out, hits = [], 0
    for layer in layers:
        n = np.linalg.norm(layer)
        hits += n >= tau
        out.append(layer * tau / n if n >= tau else layer)
    return np.stack(out) if stacked else out[0], hits, len(layers)


def test_layer_norm_clips_each_layer_of_a_linen_scan_stack(scan_params):
    g = _random_like(scan_params, 1)
    # layers 1 and 3 of the stack get big gradients, the rest stay small
    big = jnp.array([0.01, 10.0, 0.01, 10.0])
    g["stack"]["Dense_0"]["kernel"] *= big[:, None, None]
    g["stack"]["Dense_0"]["bias"] *= big[:, None]
    g["Dense_0"]["kernel"] *= 0.01
    tau = 1.0
    out, state = _apply(js.clip_by_layer_norm(tau), g)
    hits = total = 0
    for path, leaf in js.layouts.array_leaves(g):
        ref, h, n = _layer_ref(leaf, tau, stacked=path.startswith("stack"))
        got = dict(js.layouts.array_leaves(out))[path]
        np.testing.assert_allclose(got, ref, rtol=1e-5, err_msg=path)
        hits, total = hits + h, total + n
    for layer in out["stack"]["Dense_0"]["kernel"]:
        assert float(jnp.linalg.norm(layer)) <= tau * (1 + 1e-6)
    # kernel and bias of layers 1 and 3 (2 x 2), plus whatever else exceeds tau
    assert hits >= 4 and total == 4 * 2 + 2 * 2
    assert float(state.fraction_clipped) == pytest.approx(hits / total, rel=1e-6)
    assert int(state.num_clipped) == 1


def test_layer_norm_on_jaxstab_stacks_per_layer():
    g = jax.tree.map(lambda p: 3.0 * jnp.ones_like(p), _mlp(0))
    out, state = _apply(js.clip_by_layer_norm(2.0), g)
    # each stacked layer's w [8, 8] has norm 24 -> 2; b [8] has norm 8.49 -> 2
    for layer in out["hidden"][1]["w"]:
        assert float(jnp.linalg.norm(layer)) == pytest.approx(2.0, rel=1e-6)
    # (the whole stack, norm 33.9, would have given each layer 2 / sqrt(2))
    # the first w [6, 8] has norm 20.8 -> 2; every slice is clipped
    assert float(state.fraction_clipped) == 1.0
    same, _ = _apply(js.clip_by_layer_norm(2.0), jax.jit(js.split_stacks)(g))  # any grouping
    np.testing.assert_allclose(same["hidden"][2]["w"][0], out["hidden"][1]["w"][1], rtol=1e-6)


def test_adaptive_clip_unitwise_against_numpy():
    params = _mlp(3, scale=0.5)
    grads = _mlp(4)
    lam, eps = 2.0, 1e-3  # unit ratios ||G_i|| / ||W_i|| here run from 0.91 to 4.4
    out, state = _apply(js.adaptive_clip(lam, eps), grads, params)
    hits = [0, 0]  # [clipped units, units]

    def ref(g, w, axis):  # per unit: norm over ``axis``
        g, w = np.asarray(g), np.asarray(w)
        gn = np.linalg.norm(g, axis=axis, keepdims=True)
        wn = np.maximum(np.linalg.norm(w, axis=axis, keepdims=True), eps)
        hits[0] += int(np.sum(gn >= lam * wn))
        hits[1] += gn.size
        return np.where(gn >= lam * wn, g * lam * wn / gn, g)

    for got, g_group, p_group in zip(out["hidden"], grads["hidden"], params["hidden"]):
        # weights per layer and output unit, over fan-in; biases per layer, whole
        np.testing.assert_allclose(got["w"], ref(g_group["w"], p_group["w"], -2), rtol=1e-5)
        np.testing.assert_allclose(got["b"], ref(g_group["b"], p_group["b"], -1), rtol=1e-5)
    for name, axis in (("w", -2), ("b", -1)):
        np.testing.assert_allclose(
            out["output"][name], ref(grads["output"][name], params["output"][name], axis), 1e-5
        )
    assert hits[1] == 3 * 8 + 3 + 3 + 1  # units: 3 layers x 8 outputs, 3 biases, output
    assert float(state.fraction_clipped) == pytest.approx(hits[0] / hits[1], rel=1e-6)
    assert 0 < hits[0] < hits[1] and bool(state.clipped)
    with pytest.raises(ValueError, match="adaptive_clip needs params"):
        js.adaptive_clip(0.1).update(grads, state)


def test_adaptive_clip_equals_optax_on_flax_dense_and_hwio_conv():
    params = jax.jit(_ConvNet().init)(jax.random.key(0), jnp.ones((1, 4, 4, 2)))["params"]
    grads = jax.tree.map(lambda g: 0.3 * g, _random_like(params, 2))
    lam, eps = 1.2, 1e-3  # the conv's unit ratios here run from 0.95 to 1.9
    out, _ = _apply(js.adaptive_clip(lam, eps), grads, params)
    ref, _ = _apply(optax.adaptive_grad_clip(lam, eps), grads, params)
    chex.assert_trees_all_close(out, ref, rtol=1e-6, atol=0)
    # the conv kernel's units are its 5 output channels, normed over (H, W, I)
    gn = jnp.linalg.norm(grads["Conv_0"]["kernel"].reshape(-1, 5), axis=0)
    pn = jnp.maximum(jnp.linalg.norm(params["Conv_0"]["kernel"].reshape(-1, 5), axis=0), eps)
    conv_hits = int(jnp.sum(gn >= lam * pn))
    assert 0 < conv_hits < 5
    changed = ~np.all(np.asarray(out["Conv_0"]["kernel"] == grads["Conv_0"]["kernel"]), (0, 1, 2))
    assert int(np.sum(changed)) == conv_hits


def test_adaptive_clip_on_scan_stack_equals_optax_layer_by_layer(scan_params):
    grads = _random_like(scan_params, 3)
    lam = 0.2
    out, _ = _apply(js.adaptive_clip(lam), grads, scan_params)
    stack_p, stack_g = scan_params["stack"], grads["stack"]
    tx = optax.adaptive_grad_clip(lam)
    for i in range(4):
        layer = lambda t, i=i: jax.tree.map(lambda x: x[i], t)
        ref, _ = _apply(tx, layer(stack_g), layer(stack_p))
        chex.assert_trees_all_close(layer(out["stack"]), ref, rtol=1e-6, atol=0)
    # optax on the whole stack would norm the bias across layers: not what we do
    whole, _ = _apply(tx, stack_g, stack_p)
    assert not np.allclose(whole["Dense_0"]["bias"], out["stack"]["Dense_0"]["bias"])


def test_adaptive_clip_on_equinox_out_in_weights():
    keys = jax.random.split(jax.random.key(4), 2)
    model = {"a": eqx.nn.Linear(6, 8, key=keys[0]), "b": eqx.nn.Linear(8, 3, key=keys[1])}
    params = eqx.filter(model, eqx.is_array)
    grads = _random_like(params, 5)
    out, _ = _apply(js.adaptive_clip(0.1), grads, params)
    # optax on the (in, out) transposes: the same units
    t = lambda tree: {k: {"kernel": v.weight.T, "bias": v.bias} for k, v in tree.items()}
    ref, _ = _apply(optax.adaptive_grad_clip(0.1), t(grads), t(params))
    chex.assert_trees_all_close(t(out), ref, rtol=1e-6, atol=0)


# --- thresholds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tau", [2, 2.0, np.float32(2.0), np.array(2.0), jnp.array(2.0), jnp.array(2, jnp.int32)]
)
def test_concrete_thresholds_of_any_scalar_type(tau):
    g = _grads(10.0)
    out, _ = _apply(js.clip_by_global_norm(tau), g)
    assert float(optax.tree.norm(out)) == pytest.approx(2.0, rel=1e-6)
    out, _ = _apply(js.adaptive_clip(tau, eps=tau), g, g)
    chex.assert_trees_all_equal(out, g)  # ratio 1 < 2 everywhere


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (
            lambda: js.clip_by_global_norm(0.0),
            ValueError,
            "max_norm must be a positive number or inf, got 0.0",
        ),
        (lambda: js.clip_by_global_norm(-1), ValueError, "got -1$"),
        (lambda: js.clip_by_global_norm(float("-inf")), ValueError, "got -inf"),
        (lambda: js.clip_by_layer_norm(float("nan")), ValueError, "got nan"),
        (
            lambda: js.clip_by_layer_norm(jnp.array(jnp.nan)),
            ValueError,
            r"max_norm.*got Array\(nan",
        ),
        (
            lambda: js.adaptive_clip(0.0),
            ValueError,
            "clipping must be a positive number or inf, got 0.0",
        ),
        (
            lambda: js.adaptive_clip(0.1, eps=-1.0),
            ValueError,
            "eps must be a positive finite number, got -1.0",
        ),
        (lambda: js.adaptive_clip(0.1, eps=float("inf")), ValueError, "eps.*got inf"),
        (
            lambda: js.clip_by_global_norm(np.array([1.0, 2.0])),
            ValueError,
            r"max_norm must be a positive number or inf, got array\(\[1., 2.\]\)",
        ),
        (lambda: js.clip_by_global_norm(True), ValueError, "max_norm must be .*got True"),
        (lambda: js.clip_by_global_norm("1.0"), ValueError, "got '1.0'"),
        (lambda: js.clip_by_global_norm(jnp.array(True)), ValueError, "max_norm must be"),
        (
            lambda: js.clip_by_global_norm(1.0, nonfinite="skip"),
            ValueError,
            "unknown nonfinite='skip'; valid: zero, propagate",
        ),
        (
            lambda: js.clip_by_layer_norm(1.0, layout="keras").update(_grads(1.0), None),
            ValueError,
            "unknown layout 'keras'",
        ),
    ],
)
def test_bad_thresholds(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


_G3 = _grads(3.0)


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.floats(width=32), st.integers(-3, 3)))
def test_concrete_threshold_property(tau):
    """Any concrete threshold is rejected with its value named, or clips to norm <= tau."""
    if not tau > 0:  # 0, negatives, NaN, -inf
        with pytest.raises(ValueError, match=re.escape(f"got {tau!r}")):
            js.clip_by_global_norm(tau)
        return
    g = _G3
    out, state = _apply_eager(js.clip_by_global_norm(tau), g)  # op by op: no compile per tau
    chex.assert_tree_all_finite(out)
    norm = float(optax.tree.norm(g))
    if norm < np.float32(tau):
        assert _bits(out) == _bits(g) and not bool(state.clipped)
    else:
        assert float(optax.tree.norm(out)) <= float(np.float32(tau)) * (1 + 1e-5)


_TRACED = jax.jit(chex.assert_max_traces(lambda tau, g: _apply(js.clip_by_global_norm(tau), g), 1))


@settings(max_examples=40, deadline=None)
@given(st.floats(width=32, allow_subnormal=False))
def test_traced_threshold_property(tau):
    """Under jit: an invalid threshold (<= 0, NaN) counts as non-finite with a zero update;
    a valid one clips to norm <= tau. One trace for all thresholds."""
    out, state = _TRACED(jnp.float32(tau), _G3)
    chex.assert_tree_all_finite(out)
    if not tau > 0:
        assert all(not np.any(x) for x in jax.tree.leaves(out))
        assert int(state.num_nonfinite) == 1 and not bool(state.clipped)
    else:
        assert int(state.num_nonfinite) == 0
        assert float(optax.tree.norm(out)) <= tau * (1 + 1e-5)


@pytest.mark.parametrize("nonfinite", ["zero", "propagate"])
@pytest.mark.parametrize("tau", [-1.0, 0.0, float("nan")])
def test_invalid_traced_thresholds_never_flip_or_nan(tau, nonfinite):
    g, params = _grads(3.0), _grads(1.0, key=1)
    for make in (js.clip_by_global_norm, js.clip_by_layer_norm, js.adaptive_clip):
        out, state = jax.jit(lambda t, make=make: _apply(make(t, nonfinite=nonfinite), g, params))(
            tau
        )
        assert all(not np.any(x) for x in jax.tree.leaves(out)), make
        assert int(state.num_nonfinite) == 1
    bad_eps = jax.jit(lambda e: _apply(js.adaptive_clip(0.1, e), g, params))
    out, state = bad_eps(tau)
    assert all(not np.any(x) for x in jax.tree.leaves(out)) and int(state.num_nonfinite) == 1
    _, state = bad_eps(jnp.inf)  # eps must be finite
    assert int(state.num_nonfinite) == 1


def test_tiny_threshold_keeps_a_zero_gradient_zero():
    # 1e-45 is 0 (flushed) in float32: a zero gradient used to become 0/0 = NaN.
    zero = jax.tree.map(jnp.zeros_like, _grads(1.0))
    for make in (js.clip_by_global_norm, js.clip_by_layer_norm):
        for tx in (make(1e-45), make(jnp.float32(1e-45))):
            out, state = _apply(tx, zero)
            assert _bits(out) == _bits(zero) and int(state.num_nonfinite) == 0
        out, _ = jax.jit(lambda t, make=make: _apply(make(t), zero))(1e-45)
        assert all(not np.any(x) for x in jax.tree.leaves(out))
    out, _ = _apply(js.clip_by_global_norm(1e-45), _grads(1.0))
    chex.assert_tree_all_finite(out)
    assert float(optax.tree.norm(out)) <= 1e-38


# --- skipping non-finite steps ---------------------------------------------------------


def _nan_like(g):
    return jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), g)


def test_skip_nonfinite_leaves_params_and_adam_state_bit_identical():
    params = _grads(1.0, key=7)
    g1, g2 = _grads(0.5, key=8), _grads(0.5, key=9)
    inner = optax.chain(js.clip_by_global_norm(1.0), optax.adam(1e-2))
    opt = js.skip_nonfinite(inner)
    update = jax.jit(opt.update)

    def run(grads_seq):
        p, s = params, opt.init(params)
        for g in grads_seq:
            u, s = update(g, s, p)
            p = optax.apply_updates(p, u)
        return p, s

    p1, s1 = run([g1])
    p_nan, s_nan = run([g1, _nan_like(g2)])
    assert _bits(p_nan) == _bits(p1)  # parameters untouched
    assert _bits(s_nan.inner_state[1]) == _bits(s1.inner_state[1])  # Adam's mu, nu, count
    assert int(s_nan.inner_state[1][0].count) == 1
    clip = js.find_clip_state(s_nan)
    assert int(clip.num_nonfinite) == 1 and np.isnan(float(clip.global_norm))  # counted
    assert bool(s_nan.skipped) and int(s_nan.num_skipped) == 1
    # A skipped step is as if it never happened: the next step is bit-identical.
    p_after, _ = run([g1, _nan_like(g2), g2])
    p_ref, _ = run([g1, g2])
    assert _bits(p_after) == _bits(p_ref)
    # Without the wrapper, "zero" hands Adam a zero gradient: it still moves and counts.
    s = inner.init(params)
    u, s = inner.update(g1, s, params)
    p = optax.apply_updates(params, u)
    u, s = inner.update(_nan_like(g2), s, p)
    assert float(optax.tree.norm(u)) > 0 and int(s[1][0].count) == 2


def test_skip_nonfinite_on_invalid_traced_threshold_and_huge_gradient():
    params = _grads(1.0, key=7)

    @jax.jit
    def step(tau, g):
        opt = js.skip_nonfinite(optax.chain(js.clip_by_global_norm(tau), optax.adam(1e-2)))
        s = opt.init(params)
        u, s = opt.update(g, s, params)
        return u, s

    u, s = step(-1.0, _grads(1.0))  # an invalid threshold flips no gradient
    assert all(not np.any(x) for x in jax.tree.leaves(u)) and int(s.num_skipped) == 1
    assert int(s.inner_state[1][0].count) == 0
    u, s = step(1.0, _grads(1e30))  # finite entries, but the norm overflows float32
    assert int(s.num_skipped) == 1 and int(js.find_clip_state(s).num_nonfinite) == 1
    u, s = step(1.0, _grads(1.0))
    assert int(s.num_skipped) == 0 and int(s.inner_state[1][0].count) == 1


# --- state ----------------------------------------------------------------------------


def test_state_has_fixed_structure_under_scan_and_vmap():
    tx = js.clip_by_global_norm(1.0)
    scales = jnp.array([0.1, 5.0, jnp.nan, 3.0, 0.2])
    g0 = _grads(1.0)

    def run(scales):
        def body(state, s):
            out, state = tx.update(jax.tree.map(lambda x: s * x, g0), state)
            return state, optax.tree.norm(out)

        return jax.lax.scan(body, tx.init(g0), scales)

    state, norms = jax.jit(run)(scales)
    norm0 = float(optax.tree.norm(g0))
    expected_clips = sum(1 for s in [0.1, 5.0, 3.0, 0.2] if s * norm0 >= 1.0)
    assert int(state.num_clipped) == expected_clips and int(state.num_nonfinite) == 1
    assert float(norms[2]) == 0.0
    # vmapped over seeds (rows of scales), each equals its own run.
    batch = jnp.stack([scales, scales[::-1] * 0.5])
    vstate, _ = jax.vmap(run)(batch)
    for i in range(2):
        single, _ = run(batch[i])
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], vstate), single)


def test_chain_with_optimizer_and_find_state():
    tx = optax.chain(js.clip_by_global_norm(0.5), optax.sgd(1.0))
    g = _grads(10.0)
    updates, state = tx.update(g, tx.init(g))
    # With SGD each step moves the parameters by at most lr * tau.
    assert float(optax.tree.norm(updates)) == pytest.approx(0.5, rel=1e-6)
    found = js.find_clip_state(state)
    assert isinstance(found, js.ClipState) and bool(found.clipped)
    assert js.find_clip_state(optax.sgd(1.0).init(g)) is None
    assert js.find_clip_states(optax.sgd(1.0).init(g)) == {}


def test_find_clip_states_on_nnx_optimizer():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(4, 8, rngs=rngs)
            self.l2 = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.relu(self.l1(x)))

    model = Net(nnx.Rngs(0))
    tx = optax.chain(js.clip_by_global_norm(1e-3), js.adaptive_clip(1e-3), optax.adam(1e-3))
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (16, 4))
    loss = lambda m: jnp.mean(m(x) ** 2)

    @nnx.jit
    def step(model, opt):
        grads = nnx.grad(loss)(model)
        opt.update(model, grads)
        return grads

    grads = step(model, opt)
    found = js.find_clip_states(opt.opt_state)  # fields wrapped in nnx Variables
    assert list(found) == ["0", "1"]
    assert all(isinstance(f, jax.Array) for s in found.values() for f in s)
    g_norm = float(optax.tree.norm(nnx.state(grads, nnx.Param)))
    assert float(found["0"].global_norm) == pytest.approx(g_norm, rel=1e-6)
    assert int(found["0"].num_clipped) == 1 and int(found["1"].num_clipped) == 1
    # adaptive_clip sees the already-clipped gradient: norm 1e-3
    assert float(found["1"].global_norm) == pytest.approx(1e-3, rel=1e-5)
    assert js.find_clip_state(opt.opt_state) == found["0"]  # the first in the chain
    split = js.find_clip_states(nnx.split(opt)[1])  # ClipStates as dicts of Variables
    assert list(split) == ["opt_state/0", "opt_state/1"]
    chex.assert_trees_all_equal(split["opt_state/1"], found["1"])
