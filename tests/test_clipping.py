"""Clipping transforms: invariants, optax parity, non-finite steps, state under scan/vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxstab as js


def _grads(scale, key=0):
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return {
        "w": scale * jax.random.normal(k1, (5, 4)),
        "b": scale * jax.random.normal(k2, (4,)),
        "stack": {"w": scale * jax.random.normal(k3, (3, 4, 4))},
    }


def _apply(tx, grads, params=None):
    state = tx.init(grads if params is None else params)
    return tx.update(grads, state, params)


def _cos(a, b):
    a, b = (
        jnp.concatenate([x.ravel() for x in jax.tree.leaves(a)]),
        jnp.concatenate([x.ravel() for x in jax.tree.leaves(b)]),
    )
    return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


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
    ref, _ = _apply(optax.clip_by_global_norm(tau), g)  # optax parity
    chex.assert_trees_all_equal(out, ref)
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


def test_layer_norm_clips_each_array_on_its_own():
    g = {"small": jnp.full((4,), 0.1), "big": jnp.full((2, 2), 10.0)}
    out, state = _apply(js.clip_by_layer_norm(1.0), g)
    chex.assert_trees_all_equal(out["small"], g["small"])
    assert float(jnp.linalg.norm(out["big"])) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(out["big"], np.full((2, 2), 0.5), rtol=1e-6)
    assert float(state.fraction_clipped) == 0.5 and int(state.num_clipped) == 1


def test_adaptive_clip_unitwise_against_numpy():
    key = jax.random.key(3)
    params = js.init_mlp(key, [6, 8, 8, 8, 3], bias_init=js.normal(0.5))
    grads = jax.tree.map(lambda p: 3.0 * jnp.sign(p) * (1 + jnp.abs(p)), params)
    lam, eps = 0.05, 1e-3
    out, state = _apply(js.adaptive_clip(lam, eps), grads, params)

    def ref_weight(g, w):  # per output unit: norm over the fan-in axis
        g, w = np.asarray(g), np.asarray(w)
        gn = np.linalg.norm(g, axis=-2, keepdims=True)
        wn = np.maximum(np.linalg.norm(w, axis=-2, keepdims=True), eps)
        return np.where(gn > lam * wn, g * lam * wn / gn, g)

    def ref_bias(g, b):  # per layer: the whole bias vector
        g, b = np.asarray(g), np.asarray(b)
        gn = np.linalg.norm(g, axis=-1, keepdims=True)
        bn = np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), eps)
        return np.where(gn > lam * bn, g * lam * bn / gn, g)

    for got_group, g_group, p_group in zip(out["hidden"], grads["hidden"], params["hidden"]):
        np.testing.assert_allclose(
            got_group["w"], ref_weight(g_group["w"], p_group["w"]), rtol=1e-5
        )
        np.testing.assert_allclose(got_group["b"], ref_bias(g_group["b"], p_group["b"]), rtol=1e-5)
    np.testing.assert_allclose(
        out["output"]["w"], ref_weight(grads["output"]["w"], params["output"]["w"]), rtol=1e-5
    )
    assert 0.0 < float(state.fraction_clipped) <= 1.0 and bool(state.clipped)
    with pytest.raises(ValueError, match="adaptive_clip needs params"):
        js.adaptive_clip(0.1).update(grads, state)


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


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: js.clip_by_global_norm(0.0), "max_norm must be a positive finite number, got 0.0"),
        (lambda: js.clip_by_global_norm(-1.0), "got -1.0"),
        (lambda: js.clip_by_global_norm(float("inf")), "got inf"),
        (lambda: js.clip_by_layer_norm(float("nan")), "got nan"),
        (lambda: js.adaptive_clip(0.0), "clipping must be a positive finite number, got 0.0"),
        (lambda: js.adaptive_clip(0.1, eps=-1.0), "eps.*got -1.0"),
        (
            lambda: js.clip_by_global_norm(1.0, nonfinite="skip"),
            "unknown nonfinite='skip'; valid: zero, propagate",
        ),
    ],
)
def test_bad_thresholds(make, match):
    with pytest.raises(ValueError, match=match):
        make()
