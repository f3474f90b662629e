"""LSUV of jaxstab's MLP (``jaxstab.lsuv``): against a hand-written reference loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstab as js
from jaxstab import diagnostics as D


def _reference(params, x, phi, tol, max_iters):
    """Mishkin & Matas's loop, written out layer by layer in float64 numpy."""
    h = np.asarray(x, np.float64)
    scaled = []
    for group in params["hidden"]:
        for w, b in zip(np.asarray(group["w"], np.float64), np.asarray(group["b"], np.float64)):
            for _ in range(max_iters):
                var = np.var(h @ w + b)
                if abs(var - 1) < tol:
                    break
                w = w / np.sqrt(var)
            scaled.append(w)
            h = phi(h @ w + b)
    return scaled


def test_lsuv_gives_unit_variance_and_is_jittable():
    params = js.init_mlp(
        jax.random.key(0), [8, 64, 64, 64, 64, 5], weight_init=js.orthogonal(gain=3.0)
    )
    x = jax.random.normal(jax.random.key(4), (256, 8))
    out = jax.jit(lambda p: js.lsuv(p, x, "tanh", tol=0.01))(params)
    var = jax.jit(lambda p: D.forward_stats(p, x, "tanh"))(out).variance
    assert float(jnp.max(jnp.abs(var - 1.0))) < 0.01
    chex.assert_trees_all_equal(out["output"], params["output"])
    # Only rescaled: each layer's weights are a positive multiple of the start.
    ratio = out["hidden"][1]["w"] / params["hidden"][1]["w"]
    assert float(jnp.max(jnp.std(ratio.reshape(3, -1), axis=1))) < 1e-4
    with pytest.raises(ValueError, match=r"tol must be a finite number in \(0, 1\), got 0.0"):
        js.lsuv(params, x, tol=0.0)
    with pytest.raises(ValueError, match="max_iters must be a positive integer, got 0"):
        js.lsuv(params, x, max_iters=0)


@pytest.mark.parametrize("split", [False, True], ids=["stacked", "split_stacks"])
def test_lsuv_equals_the_reference_loop(split):
    """Same weights as the loop to float32 rounding, in either layout; max_iters binds."""
    params = js.init_mlp(
        jax.random.key(1), [6, 32, 32, 32, 4], bias_init=js.normal(0.2), weight_init=js.he_normal()
    )
    if split:
        params = js.split_stacks(params)
    x = jax.random.normal(jax.random.key(2), (64, 6))
    for tol, max_iters in ((0.01, 10), (1e-6, 2)):
        out = jax.jit(lambda p, t=tol, m=max_iters: js.lsuv(p, x, "relu", tol=t, max_iters=m))(
            params
        )
        expected = _reference(params, x, lambda z: np.maximum(z, 0), tol, max_iters)
        got = [w for g in out["hidden"] for w in np.asarray(g["w"])]
        assert len(got) == len(expected) == 3
        for w, e in zip(got, expected):
            np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-7)
        chex.assert_trees_all_equal(
            [g["b"] for g in out["hidden"]], [g["b"] for g in params["hidden"]]
        )


def test_lsuv_vmap_over_seeds_equals_loop():
    keys = jax.random.split(jax.random.key(3), 3)
    sizes = [6, 16, 16, 16, 3]
    x = jax.random.normal(jax.random.key(5), (32, 6))
    params = jax.vmap(lambda k: js.init_mlp(k, sizes))(keys)
    batched = jax.jit(jax.vmap(lambda p: js.lsuv(p, x, "tanh", tol=0.05)))(params)
    one = jax.jit(lambda p: js.lsuv(p, x, "tanh", tol=0.05))
    for i, k in enumerate(keys):
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], batched), one(js.init_mlp(k, sizes)), rtol=1e-5
        )
