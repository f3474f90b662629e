"""probe: per-layer statistics of real flax.linen, flax.nnx, equinox and plain-JAX models.

Every expected value is captured from the model by other means (flax
``capture_intermediates`` / ``perturb``, a hand-written forward with zero
offsets, ``jax.grad``), never from the probe itself.
"""

import doctest
import math

import chex
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

import jaxstab as js
from jaxstab import probe, theory

F32_RTOL = 1e-5  # float32 rounding of means over a few hundred elements


def _moments(z, units_axis=-1):
    """q, mean, variance of z, and the example axes for the per-unit fractions."""
    z = np.asarray(z, np.float64)
    axes = tuple(a for a in range(z.ndim) if a != units_axis % z.ndim)
    return np.mean(z**2), np.mean(z), np.var(z), axes


def _assert_entry(stats, i, z, a, dphi, threshold=probe.SATURATION_THRESHOLD, units_axis=-1):
    q, mean, var, axes = _moments(z, units_axis)
    a = np.asarray(a, np.float64)
    np.testing.assert_allclose(stats.second_moment[i], q, rtol=F32_RTOL)
    np.testing.assert_allclose(stats.mean[i], mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.variance[i], var, rtol=1e-4)
    np.testing.assert_allclose(stats.activation_second_moment[i], np.mean(a**2), rtol=F32_RTOL)
    dead = np.mean(np.all(a == 0, axis=axes))
    saturated = np.mean(np.all(np.abs(np.asarray(dphi)) < threshold, axis=axes))
    assert float(stats.dead_fraction[i]) == pytest.approx(dead, abs=1e-7)
    assert float(stats.saturated_fraction[i]) == pytest.approx(saturated, abs=1e-7)


# --- flax.linen: an MLP, and the same MLP as an nn.scan stack ---------------------


class LinenMLP(nn.Module):
    width: int = 16
    depth: int = 4
    activation: str = "relu"
    kernel_std: float = 0.5
    bias: float = -0.3

    @nn.compact
    def __call__(self, x):
        phi = getattr(nn, self.activation)
        dense = dict(
            kernel_init=nn.initializers.normal(self.kernel_std),
            bias_init=nn.initializers.constant(self.bias),
        )
        for i in range(self.depth):
            x = phi(self.perturb(f"z{i}", nn.Dense(self.width, **dense)(x)))
        return nn.Dense(3)(x)


class Block(nn.Module):
    width: int
    activation: str

    @nn.compact
    def __call__(self, x, _):
        return getattr(nn, self.activation)(nn.Dense(self.width)(x)), None


class LinenScanMLP(nn.Module):
    width: int = 16
    depth: int = 4
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        x = getattr(nn, self.activation)(nn.Dense(self.width)(x))
        stack = nn.scan(
            Block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            length=self.depth - 1,
        )
        x, _ = stack(self.width, self.activation)(x, None)
        return nn.Dense(3)(x)


def _stack_params(unrolled, depth):
    """The unrolled LinenMLP's params in LinenScanMLP's layout (the same function)."""
    p = unrolled["params"]
    layers = [p[f"Dense_{i}"] for i in range(1, depth)]
    return {
        "params": {
            "Dense_0": p["Dense_0"],
            "ScanBlock_0": {"Dense_0": jax.tree.map(lambda *a: jnp.stack(a), *layers)},
            "Dense_1": p[f"Dense_{depth}"],
        }
    }


@pytest.fixture(scope="module")
def linen():
    model = LinenMLP()
    x = jax.random.normal(jax.random.key(1), (12, 5))
    variables = model.init(jax.random.key(0), x)
    params = {"params": variables["params"]}
    return model, params, x, variables["perturbations"]


def test_linen_forward_equals_capture_intermediates(linen):
    model, params, x, _ = linen
    stats = jax.jit(lambda p: probe.forward(model.apply, p, x))(params)
    assert stats.names == tuple(f"params/Dense_{i}/kernel" for i in range(5))
    assert stats.kinds == ("dense",) * 5
    _, state = model.apply(params, x, capture_intermediates=True, mutable=["intermediates"])
    captured = state["intermediates"]
    dead_seen = []
    for i in range(5):
        (z,) = captured[f"Dense_{i}"]["__call__"]
        last = i == 4
        a = z if last else jax.nn.relu(z)
        dphi = np.ones_like(z) if last else (np.asarray(z) > 0).astype(np.float64)
        _assert_entry(stats, i, z, a, dphi)
        dead_seen.append(float(stats.dead_fraction[i]))
        kernel = params["params"][f"Dense_{i}"]["kernel"]
        bias = params["params"][f"Dense_{i}"]["bias"]
        np.testing.assert_allclose(
            stats.sigma_w2[i], kernel.shape[0] * np.mean(np.square(kernel)), rtol=F32_RTOL
        )
        np.testing.assert_allclose(stats.sigma_b2[i], np.mean(np.square(bias)), rtol=F32_RTOL)
    assert 0 < max(dead_seen[:4]) < 1  # the negative biases kill some units, not all


def test_linen_backward_equals_perturb_and_grad(linen):
    model, params, x, perturbations = linen
    y = jnp.arange(12) % 3

    def loss(out, labels):
        return jnp.mean(js.softmax_cross_entropy(out, labels))

    _, bwd = jax.jit(lambda p: probe.layer_stats(model.apply, p, (x, y), loss=loss))(params)

    def full(params, perturbations):
        return loss(model.apply({**params, "perturbations": perturbations}, x), y)

    g_params, g_pert = jax.grad(full, argnums=(0, 1))(params, perturbations)
    for i in range(4):
        np.testing.assert_allclose(
            bwd.grad_second_moment[i], np.mean(np.square(g_pert[f"z{i}"])), rtol=1e-5
        )
    for i in range(5):
        g = g_params["params"][f"Dense_{i}"]
        np.testing.assert_allclose(bwd.weight_grad_norm[i], np.linalg.norm(g["kernel"]), rtol=1e-5)
        np.testing.assert_allclose(bwd.bias_grad_norm[i], np.linalg.norm(g["bias"]), rtol=1e-5)
        for leaf in ("kernel", "bias"):
            np.testing.assert_allclose(
                bwd.param_grad_norm[f"params/Dense_{i}/{leaf}"], np.linalg.norm(g[leaf]), rtol=1e-5
            )


def test_linen_scan_gives_the_unrolled_entries():
    x = jax.random.normal(jax.random.key(2), (10, 5))
    unrolled = LinenMLP(activation="tanh")
    params = {"params": unrolled.init(jax.random.key(3), x)["params"]}
    stacked = _stack_params(params, 4)
    scanned = LinenScanMLP(activation="tanh")
    chex.assert_trees_all_close(scanned.apply(stacked, x), unrolled.apply(params, x), rtol=1e-6)
    y = jnp.arange(10) % 3

    def loss(out, labels):
        return jnp.mean(js.softmax_cross_entropy(out, labels))

    f_u, b_u = jax.jit(lambda p: probe.layer_stats(unrolled.apply, p, (x, y), loss=loss))(params)
    f_s, b_s = jax.jit(lambda p: probe.layer_stats(scanned.apply, p, (x, y), loss=loss))(stacked)
    assert f_s.names == (
        "params/Dense_0/kernel",
        *(f"params/ScanBlock_0/Dense_0/kernel[{i}]" for i in range(3)),
        "params/Dense_1/kernel",
    )
    fields = lambda s: {
        k: v for k, v in vars(s).items() if k not in ("names", "kinds", "param_grad_norm")
    }
    chex.assert_trees_all_close(fields(f_s), fields(f_u), rtol=1e-5)
    chex.assert_trees_all_close(fields(b_s), fields(b_u), rtol=1e-5)
    # Only the scan's stats are stacked: the probe keeps the scan.
    jaxpr = jax.make_jaxpr(lambda p: probe.forward(scanned.apply, p, x))(stacked)
    assert "scan" in str(jaxpr)


def test_vmap_over_seeds_equals_loop():
    model = LinenScanMLP(width=8, depth=3, activation="tanh")
    x = jax.random.normal(jax.random.key(4), (6, 5))
    y = jnp.arange(6) % 3
    keys = jax.random.split(jax.random.key(5), 3)
    params = jax.vmap(lambda k: {"params": model.init(k, x)["params"]})(keys)

    def stats(p):
        return probe.layer_stats(
            model.apply,
            p,
            (x, y),
            loss=lambda out, labels: jnp.mean(js.softmax_cross_entropy(out, labels)),
        )

    batched = jax.jit(jax.vmap(stats))(params)
    assert batched[0].second_moment.shape == (3, 4)
    for i in range(3):
        one = jax.tree.map(lambda a, i=i: a[i], params)
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], batched), stats(one), rtol=1e-5, atol=1e-8
        )


def test_one_trace_per_jitted_function():
    model = LinenScanMLP(width=8, depth=3)
    x = jnp.ones((4, 5))
    params = {"params": model.init(jax.random.key(0), x)["params"]}

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(p, x):
        return probe.forward(model.apply, p, x)

    run(params, x)
    run(jax.tree.map(lambda a: a + 1.0, params), x + 1.0)


# --- flax.nnx (nnx.split) with a LayerNorm -------------------------------------------


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(5, 16, rngs=rngs)
        self.ln = nnx.LayerNorm(16, rngs=rngs)
        self.l2 = nnx.Linear(16, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        h = self.ln(nnx.relu(self.l1(x)))
        return self.out(nnx.gelu(self.l2(h), approximate=False))


def test_nnx_mlp_with_layernorm_equals_hand_forward():
    graphdef, state = nnx.split(NnxMLP(nnx.Rngs(0)))
    # A non-trivial scale and shift, so the norm entry's output is not unit variance.
    state["ln"]["scale"][...] = 1.0 + 0.5 * jax.random.normal(jax.random.key(6), (16,))
    state["ln"]["bias"][...] = 0.2 * jax.random.normal(jax.random.key(7), (16,))
    x = jax.random.normal(jax.random.key(8), (20, 5))

    def apply(s, x):
        return nnx.merge(graphdef, s)(x)

    stats = jax.jit(lambda s: probe.forward(apply, s, x))(state)
    assert stats.names == ("l1/kernel", "ln/scale", "l2/kernel", "out/kernel")
    assert stats.kinds == ("dense", "norm", "dense", "dense")
    s = jax.tree.map(np.asarray, nnx.to_pure_dict(state))
    z1 = np.asarray(x) @ s["l1"]["kernel"] + s["l1"]["bias"]
    a1 = np.maximum(z1, 0)
    mu = a1.mean(-1, keepdims=True)
    var = np.maximum((a1**2).mean(-1, keepdims=True) - mu**2, 0)
    n = (a1 - mu) / np.sqrt(var + 1e-6) * s["ln"]["scale"] + s["ln"]["bias"]
    z2 = n @ s["l2"]["kernel"] + s["l2"]["bias"]
    gelu = lambda z: jax.nn.gelu(z, approximate=False)
    a2 = gelu(z2)
    dphi2 = jax.vmap(jax.vmap(jax.grad(gelu)))(jnp.asarray(z2))
    z3 = np.asarray(a2) @ s["out"]["kernel"] + s["out"]["bias"]
    _assert_entry(stats, 0, z1, a1, (z1 > 0).astype(float))
    _assert_entry(stats, 1, n, n, np.ones_like(n))
    _assert_entry(stats, 2, z2, a2, dphi2)
    _assert_entry(stats, 3, z3, z3, np.ones_like(z3))


# --- equinox (eqx.partition): weights (out, in), vmap over examples ------------------


def _equinox():
    model = eqx.nn.MLP(5, 3, 12, 3, activation=jnp.tanh, key=jax.random.key(9))
    params, static = eqx.partition(model, eqx.is_array)

    def apply(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    return params, apply


def test_equinox_mlp_equals_hand_forward():
    params, apply = _equinox()
    x = 3.0 * jax.random.normal(jax.random.key(10), (16, 5))
    stats = jax.jit(lambda p: probe.forward(apply, p, x))(params)
    assert stats.names == tuple(f"layers/{i}/weight" for i in range(4))
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(params.layers):
        z = h @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias)
        last = i == 3
        a = z if last else np.tanh(z)
        _assert_entry(stats, i, z, a, np.ones_like(z) if last else 1 - np.tanh(z) ** 2)
        fan_in = layer.weight.shape[1]  # equinox: (out, in)
        np.testing.assert_allclose(
            stats.sigma_w2[i], fan_in * np.mean(np.square(layer.weight)), rtol=F32_RTOL
        )
        h = a


def test_equinox_jacobian_singular_values_match_explicit_product():
    params, apply = _equinox()
    x = jax.random.normal(jax.random.key(11), (3, 5))
    sv = jax.jit(lambda p: probe.jacobian_singular_values(apply, p, x))(params)
    assert sv.shape == (3, 3)
    for n in range(3):
        h, jac = np.asarray(x[n], np.float64), np.eye(5)
        for i, layer in enumerate(params.layers):
            w = np.asarray(layer.weight, np.float64)
            z = w @ h + np.asarray(layer.bias)
            jac = w @ jac
            if i < 3:
                jac = (1 - np.tanh(z) ** 2)[:, None] * jac
                h = np.tanh(z)
        np.testing.assert_allclose(sv[n], np.linalg.svd(jac, compute_uv=False), rtol=1e-4)
    # At an entry: the first layer's z = W x + b has the Jacobian W.
    sv0 = jax.jit(lambda p: probe.jacobian_singular_values(apply, p, x, at="layers/0/weight"))(
        params
    )
    expected = np.linalg.svd(np.asarray(params.layers[0].weight), compute_uv=False)
    np.testing.assert_allclose(sv0, np.broadcast_to(expected, (3, 5)), rtol=1e-5)


def test_lsuv_on_equinox_keeps_the_module():
    params, apply = _equinox()
    x = jax.random.normal(jax.random.key(12), (64, 5))
    out = jax.jit(lambda p: probe.lsuv(apply, p, x, tol=0.02))(params)
    assert type(out) is type(params)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    var = jax.jit(lambda p: probe.forward(apply, p, x))(out).variance
    assert float(jnp.max(jnp.abs(var - 1))) < 0.02


# --- a residual MLP with LayerNorm, in plain JAX; unrolled and scanned ---------------


def _layer_norm(h, g, beta):
    mu = jnp.mean(h, -1, keepdims=True)
    var = jnp.mean(jnp.square(h - mu), -1, keepdims=True)
    return (h - mu) * lax.rsqrt(var + 1e-5) * g[None] + beta[None]


def _res_params(key, d_in=6, width=16, blocks=3, d_out=4):
    ks = jax.random.split(key, 4)

    def dense(k, n, m, scale=1.0):
        kw, kb = jax.random.split(k)
        return (
            scale * jax.random.normal(kw, (n, m)) / math.sqrt(n),
            0.1 * jax.random.normal(kb, (m,)),
        )

    w_in, b_in = dense(ks[0], d_in, width)
    bk = jax.random.split(ks[1], blocks * 3).reshape(blocks, 3)
    blk = []
    for b in range(blocks):
        w1, b1 = dense(bk[b, 0], width, width, math.sqrt(2.0))
        w2, b2 = dense(bk[b, 1], width, width)
        g = 1.0 + 0.3 * jax.random.normal(bk[b, 2], (width,))
        blk.append({"w1": w1, "b1": b1, "w2": w2, "b2": b2, "g": g, "beta": 0.1 * g})
    w_out, b_out = dense(ks[2], width, d_out)
    return {"in": {"w": w_in, "b": b_in}, "blocks": blk, "out": {"w": w_out, "b": b_out}}


def _res_block(h, p, offsets=None):
    o = offsets if offsets is not None else [0.0] * 4
    z1 = h @ p["w1"] + p["b1"][None] + o[0]
    a1 = jax.nn.relu(z1)
    z2 = a1 @ p["w2"] + p["b2"][None] + o[1]
    r = h + z2 + o[2]
    n = _layer_norm(r, p["g"], p["beta"]) + o[3]
    return n, (z1, a1, z2, r, n)


def _res_apply(p, x, offsets=None):
    """Unrolled; ``offsets`` (zeros) are added at each captured point for dL/dz."""
    o = offsets if offsets is not None else {"in": 0.0, "blocks": [None] * 3, "out": 0.0}
    h = x @ p["in"]["w"] + p["in"]["b"][None] + o["in"]
    captured = [h]
    for blk, ob in zip(p["blocks"], o["blocks"]):
        h, points = _res_block(h, blk, ob)
        captured += points
    out = h @ p["out"]["w"] + p["out"]["b"][None] + o["out"]
    return out, [*captured, out]


def _res_apply_scanned(p, x):
    h = x @ p["in"]["w"] + p["in"]["b"][None]
    h, _ = lax.scan(lambda h, blk: (_res_block(h, blk)[0], None), h, p["blocks"])
    return h @ p["out"]["w"] + p["out"]["b"][None]


def test_residual_layernorm_mlp_forward_backward_by_hand():
    params = _res_params(jax.random.key(13))
    x = jax.random.normal(jax.random.key(14), (24, 6))
    y = jnp.arange(24) % 4

    def loss(out, labels):
        return jnp.mean(js.softmax_cross_entropy(out, labels))

    fwd, bwd = jax.jit(
        lambda p: probe.layer_stats(lambda p, x: _res_apply(p, x)[0], p, (x, y), loss=loss)
    )(params)
    block_names = lambda b: (
        f"blocks/{b}/w1",
        f"blocks/{b}/w2",
        f"blocks/{b}/w2+residual",
        f"blocks/{b}/g",
    )
    assert fwd.names == ("in/w", *sum((block_names(b) for b in range(3)), ()), "out/w")
    assert fwd.kinds == ("dense", *("dense", "dense", "residual", "norm") * 3, "dense")
    _, captured = _res_apply(params, x)
    # Points: z_in, then per block z1 (a = relu z1), z2, r, n; then the output.
    values = [captured[0]]
    acts = [captured[0]]
    for b in range(3):
        z1, a1, z2, r, n = captured[1 + 5 * b : 6 + 5 * b]
        values += [z1, z2, r, n]
        acts += [a1, z2, r, n]
    values.append(captured[-1])
    acts.append(captured[-1])
    for i, (z, a) in enumerate(zip(values, acts)):
        relu = fwd.names[i].endswith("w1")
        _assert_entry(fwd, i, z, a, (np.asarray(z) > 0) if relu else np.ones(z.shape))

    # dL/dz at every point, from zero offsets in the hand-written forward.
    offsets = {
        "in": jnp.zeros((24, 16)),
        "blocks": [[jnp.zeros((24, 16)) for _ in range(4)] for _ in range(3)],
        "out": jnp.zeros((24, 4)),
    }
    g_params, g_off = jax.grad(lambda p, o: loss(_res_apply(p, x, o)[0], y), argnums=(0, 1))(
        params, offsets
    )
    grads = [g_off["in"], *(g for block in g_off["blocks"] for g in block), g_off["out"]]
    for i, g in enumerate(grads):
        np.testing.assert_allclose(bwd.grad_second_moment[i], np.mean(np.square(g)), rtol=1e-5)
    for b in range(3):
        gb = g_params["blocks"][b]
        np.testing.assert_allclose(bwd.weight_grad_norm[1 + 4 * b], np.linalg.norm(gb["w1"]), 1e-5)
        np.testing.assert_allclose(bwd.bias_grad_norm[2 + 4 * b], np.linalg.norm(gb["b2"]), 1e-5)
    assert np.all(np.isnan(np.asarray(bwd.weight_grad_norm[3::4])))  # residuals have no weight
    np.testing.assert_allclose(
        bwd.param_grad_norm["blocks/2/beta"], np.linalg.norm(g_params["blocks"][2]["beta"]), 1e-5
    )


def test_residual_layernorm_scanned_equals_unrolled():
    params = _res_params(jax.random.key(15))
    stacked = {**params, "blocks": jax.tree.map(lambda *a: jnp.stack(a), *params["blocks"])}
    x = jax.random.normal(jax.random.key(16), (8, 6))
    unrolled = jax.jit(lambda p: probe.forward(lambda p, x: _res_apply(p, x)[0], p, x))(params)
    scanned = jax.jit(lambda p: probe.forward(_res_apply_scanned, p, x))(stacked)
    assert scanned.names[1:5] == (
        "blocks/w1[0]",
        "blocks/w2[0]",
        "blocks/w2[0]+residual",
        "blocks/g[0]",
    )
    assert scanned.kinds == unrolled.kinds
    fields = lambda s: {k: v for k, v in vars(s).items() if k not in ("names", "kinds")}
    chex.assert_trees_all_close(fields(scanned), fields(unrolled), rtol=1e-5)


def test_reverse_scan_and_checkpoint_keep_execution_order():
    params = _res_params(jax.random.key(17))
    stacked = {**params, "blocks": jax.tree.map(lambda *a: jnp.stack(a), *params["blocks"])}
    x = jax.random.normal(jax.random.key(18), (8, 6))

    def reverse(p, x):
        h = x @ p["in"]["w"] + p["in"]["b"][None]
        block = jax.checkpoint(lambda h, blk: (_res_block(h, blk)[0], None))
        h, _ = lax.scan(block, h, p["blocks"], reverse=True)
        return h @ p["out"]["w"] + p["out"]["b"][None]

    flipped = {**params, "blocks": params["blocks"][::-1]}
    stats = jax.jit(lambda p: probe.forward(reverse, p, x))(stacked)
    expected = jax.jit(lambda p: probe.forward(lambda p, x: _res_apply(p, x)[0], p, x))(flipped)
    assert stats.names[1:9:4] == ("blocks/w1[2]", "blocks/w1[1]")
    np.testing.assert_allclose(stats.second_moment, expected.second_moment, rtol=1e-5)


# --- a convolution (flax.linen Conv): units are the channels ------------------------


def test_linen_conv_units_are_channels():
    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(6, (3, 3), bias_init=nn.initializers.constant(-0.2))(x))
            return nn.Dense(2)(x.reshape(x.shape[0], -1))

    model = CNN()
    x = jax.random.normal(jax.random.key(19), (4, 5, 5, 2))
    params = {"params": model.init(jax.random.key(20), x)["params"]}
    stats = jax.jit(lambda p: probe.forward(model.apply, p, x))(params)
    assert stats.kinds == ("conv", "dense")
    assert stats.names[0] == "params/Conv_0/kernel"
    _, state = model.apply(params, x, capture_intermediates=True, mutable=["intermediates"])
    (z,) = state["intermediates"]["Conv_0"]["__call__"]
    _assert_entry(stats, 0, z, jax.nn.relu(z), np.asarray(z) > 0, units_axis=-1)
    np.testing.assert_allclose(
        stats.sigma_w2[0],
        3 * 3 * 2 * np.mean(np.square(params["params"]["Conv_0"]["kernel"])),
        1e-5,
    )


# --- LSUV on flax models -------------------------------------------------------------


@pytest.mark.parametrize("scanned", [False, True], ids=["unrolled", "nn.scan"])
def test_lsuv_on_flax_gives_unit_variance_per_layer(scanned):
    x = jax.random.normal(jax.random.key(21), (128, 5))
    model = LinenScanMLP(width=32) if scanned else LinenMLP(width=32, kernel_std=1.5)
    params = {"params": model.init(jax.random.key(22), x)["params"]}
    out = jax.jit(lambda p: probe.lsuv(model.apply, p, x, tol=0.01))(params)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    var = jax.jit(lambda p: probe.forward(model.apply, p, x))(out).variance
    assert float(jnp.max(jnp.abs(var - 1.0))) < 0.01
    # Only rescaled, each layer of a stack by its own factor.
    if scanned:
        w0 = params["params"]["ScanBlock_0"]["Dense_0"]["kernel"]
        w1 = out["params"]["ScanBlock_0"]["Dense_0"]["kernel"]
        ratio = (w1 / w0).reshape(3, -1)
        assert float(jnp.max(jnp.std(ratio, axis=1) / jnp.mean(ratio, axis=1))) < 1e-5
        assert float(jnp.std(ratio[:, 0]) / jnp.mean(ratio[:, 0])) > 1e-3
        chex.assert_trees_all_equal(
            out["params"]["ScanBlock_0"]["Dense_0"]["bias"],
            params["params"]["ScanBlock_0"]["Dense_0"]["bias"],
        )


def test_lsuv_selected_layers_only():
    x = jax.random.normal(jax.random.key(23), (64, 5))
    model = LinenMLP(width=16, kernel_std=1.5)
    params = {"params": model.init(jax.random.key(24), x)["params"]}
    out = jax.jit(
        lambda p: probe.lsuv(model.apply, p, x, layers=["params/Dense_1/kernel"], tol=0.01)
    )(params)
    var = jax.jit(lambda p: probe.forward(model.apply, p, x))(out).variance
    assert abs(float(var[1]) - 1) < 0.01
    for i in (0, 2, 3, 4):
        chex.assert_trees_all_equal(out["params"][f"Dense_{i}"], params["params"][f"Dense_{i}"])


# --- theory comparison ---------------------------------------------------------------


def test_theory_comparison_chains_the_length_map():
    """The prediction: sigma_w2 mean(x²) + sigma_b2 at the first layer, then the length map."""
    model = LinenMLP(width=24, depth=3, activation="tanh", kernel_std=0.3, bias=0.1)
    x = jax.random.normal(jax.random.key(25), (16, 5))
    params = {"params": model.init(jax.random.key(26), x)["params"]}
    cmp = jax.jit(lambda p: probe.theory_comparison(model.apply, p, x))(params)
    assert cmp.chained == (False, True, True, True)
    p = params["params"]
    sw2 = [
        p[f"Dense_{i}"]["kernel"].shape[0] * jnp.mean(p[f"Dense_{i}"]["kernel"] ** 2)
        for i in range(4)
    ]
    sb2 = [jnp.mean(p[f"Dense_{i}"]["bias"] ** 2) for i in range(4)]
    q = [sw2[0] * jnp.mean(x**2) + sb2[0]]
    for i in range(1, 4):
        q.append(theory.length_map("tanh", sw2[i], sb2[i], q[-1]))
    np.testing.assert_allclose(cmp.predicted, np.asarray(q), rtol=1e-5)
    # An explicit activation gives the same (the model's phi is tanh).
    again = jax.jit(lambda p: probe.theory_comparison(model.apply, p, x, activation="tanh"))(params)
    np.testing.assert_allclose(again.predicted, cmp.predicted, rtol=1e-6)


def test_theory_comparison_matches_measurement_on_a_wide_flax_mlp():
    """At width 512 and 8 seeds, measured q is within 5 standard errors of mean field."""
    model = LinenMLP(
        width=512, depth=6, activation="tanh", kernel_std=math.sqrt(1.5 / 512), bias=0.0
    )
    x = jax.random.normal(jax.random.key(27), (32, 5))
    keys = jax.random.split(jax.random.key(28), 8)
    params = jax.vmap(lambda k: {"params": model.init(k, x)["params"]})(keys)
    cmp = jax.jit(jax.vmap(lambda p: probe.theory_comparison(model.apply, p, x)))(params)
    log_ratio = np.log(
        np.asarray(cmp.measured[:, 1:], np.float64) / np.asarray(cmp.predicted[:, 1:])
    )
    mean, se = log_ratio.mean(0), log_ratio.std(0, ddof=1) / math.sqrt(len(keys))
    assert np.all(np.abs(mean) < 5 * se + 1e-3), (mean, se)


# --- memory: statistics reduced inside the scan --------------------------------------


def test_probe_backward_memory_within_1_2x_of_plain_on_a_deep_scan():
    """64 scanned layers, width 256, batch 256: XLA's temp bytes, compiled only."""
    model = LinenScanMLP(width=256, depth=65, activation="tanh")
    x = jnp.zeros((256, 256))
    y = jnp.zeros((256,), jnp.int32)
    params = jax.eval_shape(lambda: {"params": model.init(jax.random.key(0), x)["params"]})

    def loss(out, labels):
        return jnp.mean(js.softmax_cross_entropy(out, labels))

    def plain(p):  # the same outputs as the probe's: gradient norms per leaf
        g = jax.grad(lambda p: loss(model.apply(p, x), y))(p)
        return jax.tree.map(jnp.linalg.norm, g)

    def probed(p):
        return probe.layer_stats(model.apply, p, (x, y), loss=loss)

    def temp(f):
        return jax.jit(f).lower(params).compile().memory_analysis().temp_size_in_bytes

    plain_bytes, probe_bytes = temp(plain), temp(probed)
    stack = 64 * 256 * 256 * 4  # one [layers, batch, width] float32 tensor
    assert probe_bytes <= 1.2 * plain_bytes, (probe_bytes, plain_bytes)
    assert plain_bytes >= stack  # the plain backward keeps the activations: the check bites


# --- bad input -----------------------------------------------------------------------


def test_errors_name_the_bad_value():
    params = {"w": jnp.ones((3, 3))}
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"found no layer.*'w'"):
        probe.forward(lambda p, x: x * jnp.sum(p["w"]), params, x)
    with pytest.raises(ValueError, match="found no layer"):
        probe.forward(lambda p, x: p["w"] @ p["w"], params, x)  # no data operand
    apply = lambda p, x: jnp.tanh(x @ p["w"])
    with pytest.raises(ValueError, match=r"unknown layer path\(s\) \['v'\].*\['w'\]"):
        probe.lsuv(apply, params, x, layers=["v"])
    with pytest.raises(ValueError, match=r"batch_axis=2 is out of range for shape \(2, 3\)"):
        probe.jacobian_singular_values(apply, params, x, batch_axis=2)
    with pytest.raises(ValueError, match=r"unknown entry 'v'.*'w'"):
        probe.jacobian_singular_values(apply, params, x, at="v")
    with pytest.raises(ValueError, match="entry index 3 out of range for 1 entries"):
        probe.jacobian_singular_values(apply, params, x, at=3)
    with pytest.raises(TypeError, match=r"one scalar.*\(2, 3\)"):
        probe.layer_stats(lambda p, b: apply(p, b), params, x)
    with pytest.raises(TypeError, match="expected a function apply"):
        probe.forward(params, params, x)
    with pytest.raises(ValueError, match="saturation_threshold must be a positive finite"):
        probe.forward(apply, params, x, saturation_threshold=-1.0)
    with pytest.raises(ValueError, match=r"tol must be a finite number in \(0, 1\), got 1.5"):
        probe.lsuv(apply, params, x, tol=1.5)
    tied = lambda p, x: jnp.tanh(jnp.tanh(x @ p["w"]) @ p["w"])
    with pytest.raises(ValueError, match="shares its weight"):
        probe.lsuv(tied, params, x)


# --- flax.nnx stacked by nnx.vmap / nnx.scan; jaxstab's own MLP with remat ----------


class NnxBlock(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(8, 8, rngs=rngs)

    def __call__(self, x):
        return nnx.tanh(self.lin(x))


class NnxStack(nnx.Module):
    def __init__(self, rngs):
        @nnx.split_rngs(splits=3)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make(rngs):
            return NnxBlock(rngs)

        self.blocks = make(rngs)
        self.out = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def step(x, block):
            return block(x)

        return self.out(step(x, self.blocks))


def test_nnx_scan_stack_equals_hand_forward():
    graphdef, state = nnx.split(NnxStack(nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(29), (6, 8))
    stats = jax.jit(lambda s: probe.forward(lambda s, x: nnx.merge(graphdef, s)(x), s, x))(state)
    assert stats.names == (*(f"blocks/lin/kernel[{i}]" for i in range(3)), "out/kernel")
    s = jax.tree.map(np.asarray, nnx.to_pure_dict(state))
    h = np.asarray(x, np.float64)
    for i in range(3):
        z = h @ s["blocks"]["lin"]["kernel"][i] + s["blocks"]["lin"]["bias"][i]
        h = np.tanh(z)
        _assert_entry(stats, i, z, h, 1 - h**2)


@pytest.mark.parametrize("remat", ["layer", "sqrt"])
def test_jaxstab_mlp_remat_gives_the_same_statistics(remat):
    params = js.init_mlp(jax.random.key(30), [4] + [8] * 10 + [3], bias_init=js.normal(0.1))
    x = jax.random.normal(jax.random.key(31), (16, 4))

    def stats(r):
        apply = lambda p, x: js.apply_mlp(p, x, "tanh", remat=r)
        return jax.jit(lambda p: probe.forward(apply, p, x))(params)

    plain, checkpointed = stats(False), stats(remat)
    fields = lambda s: {k: v for k, v in vars(s).items() if k not in ("names", "kinds")}
    chex.assert_trees_all_close(fields(checkpointed), fields(plain), rtol=1e-6)
    if remat == "layer":
        assert checkpointed.names == plain.names
    apply = lambda p, x: js.apply_mlp(p, x, "tanh", remat=remat)
    assert "remat" in str(jax.make_jaxpr(lambda p: probe.forward(apply, p, x))(params))


def test_doctests():
    result = doctest.testmod(probe, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
