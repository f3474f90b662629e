"""Tests of the training group's experiments: glorot2010_saturation, he2015_depth and
clipping_rescue (their notebooks run the quick configs end to end).

Here: the pure helpers against hand computations, the scanned snapshot loop against a
plain Python loop of the same steps, the per-layer signal scaling at init against mean
field (in standard errors over seeds). clipping_rescue's own tests are in
tests/test_exp_clipping_rescue.py.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxstab as js
from jaxstab import diagnostics
from jaxstab.data import load_digits
from jaxstab.experiment import layer_scales

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import _common
import clipping_rescue
import glorot2010_saturation as glorot
import he2015_depth

# Each module's docstring names its paper.
PAPERS = {glorot: "Glorot & Bengio 2010", he2015_depth: "1502.01852", clipping_rescue: "1211.5063"}


@pytest.mark.parametrize("module", list(PAPERS), ids=lambda m: m.NAME)
def test_configs_are_frozen_and_quick_is_smaller(module):
    full, quick = module.get_config(), module.get_config(quick=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.seed = 1  # type: ignore[misc]
    assert quick.steps < full.steps
    assert PAPERS[module] in module.__doc__


# --- glorot2010_saturation ----------------------------------------------------------


def test_sigmoid_family_is_sigmoid_and_tanh():
    z = jnp.linspace(-12.0, 12.0, 2001)
    tanh = glorot.sigmoid_family(jnp.asarray(glorot.ACTIVATION_FORMS["tanh"]))
    sigmoid = glorot.sigmoid_family(jnp.asarray(glorot.ACTIVATION_FORMS["sigmoid"]))
    eps = float(jnp.finfo(jnp.float32).eps)
    np.testing.assert_allclose(tanh(z), jnp.tanh(z), rtol=0, atol=4 * eps)
    np.testing.assert_allclose(sigmoid(z), jax.nn.sigmoid(z), rtol=0, atol=0)
    np.testing.assert_allclose(
        diagnostics.derivative(tanh)(z), 1 - jnp.tanh(z) ** 2, rtol=0, atol=8 * eps
    )


def test_spread_and_weight_gradient_rms_by_hand():
    np.testing.assert_allclose(glorot.spread(np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]])), [4, 1])
    # sizes [2, 3, 3, 5]: hidden layers 2x3 and 3x3.
    np.testing.assert_allclose(glorot.weight_grad_rms([6.0, 9.0], [2, 3, 3, 5]), [6 / 6**0.5, 3])
    assert glorot.square_layers([64, 128, 128, 128, 10]).tolist() == [False, True, True]
    assert glorot.linear_regime_spread(1 / 3, 5) == pytest.approx(9.0)
    assert glorot.linear_regime_spread(1.0, 5) == 1.0


def test_layer_snapshot_against_numpy():
    key_w, key_x = jax.random.split(jax.random.key(0))
    # Large weights: some tanh units saturate, so the saturated fractions are not all 0.
    params = js.init_mlp(key_w, [6, 16, 16, 3], weight_init=js.normal(2.0))
    x = jax.random.normal(key_x, (32, 6))
    y = jnp.arange(32) % 3
    phi = glorot.sigmoid_family(jnp.asarray(glorot.ACTIVATION_FORMS["tanh"]))
    snap = jax.jit(glorot.layer_snapshot, static_argnums=(3, 4))(params, x, y, phi, 20)
    _, z = js.apply_mlp(params, x, "tanh", capture=True)
    h = np.tanh(np.asarray(z, np.float64)).reshape(2, -1)
    np.testing.assert_allclose(snap["mean"], h.mean(1), atol=1e-5)
    np.testing.assert_allclose(snap["std"], h.std(1), atol=1e-5)
    np.testing.assert_allclose(
        snap["percentiles"], np.percentile(h, glorot.PERCENTILES, axis=1).T, atol=1e-5
    )
    np.testing.assert_allclose(snap["histogram"].sum(1), 1.0, rtol=1e-6)
    saturated = (1 - h**2) < diagnostics.SATURATION_THRESHOLD
    np.testing.assert_allclose(snap["saturated"], saturated.mean(1), atol=1.5 / h.shape[1])
    assert 0 < float(snap["saturated"].max()) < 1
    assert snap["signal_rms"].shape == snap["grad_norm"].shape == (2,)


@pytest.mark.parametrize("sizes", [(64, 16, 16, 16, 10), (8, 16, 16, 3), (5, 7, 2)])
def test_uniform_params_layout_and_variance(sizes):
    bounds = layer_scales("xavier_uniform", 1.0, sizes)
    p = jax.jit(glorot.uniform_params, static_argnums=1)(jax.random.key(3), sizes, bounds)
    ref = js.init_mlp(jax.random.key(3), list(sizes), weight_init=js.xavier_uniform())
    assert jax.tree.structure(p) == jax.tree.structure(ref)
    assert jax.tree.map(lambda a: a.shape, p) == jax.tree.map(lambda a: a.shape, ref)
    weights = [w for g in p["hidden"] for w in np.asarray(g["w"])] + [np.asarray(p["output"]["w"])]
    for w, bound in zip(weights, bounds):
        assert np.abs(w).max() <= bound
        # Var U(+-b) = b²/3; the sample variance's standard error is b² sqrt(4 / (45 n)).
        assert abs(w.var() - bound**2 / 3) <= 5 * bound**2 * math.sqrt(4 / (45 * w.size))
    assert all(not np.asarray(g["b"]).any() for g in p["hidden"])


def test_snapshots_match_a_plain_loop():
    """The engine program against a Python loop of the same steps and keys."""
    config = glorot.ExperimentConfig(
        depth=2,
        width=8,
        activations=("tanh",),
        inits=("xavier_uniform",),
        lrs=(0.5,),
        batch_size=4,
        steps=4,
        record_every=2,
        seeds=1,
        diag_examples=16,
        early_step=2,
    )
    out = glorot.run_experiment(config)
    assert out["steps"].tolist() == [0, 2, 4]
    data = load_digits()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    # The engine's keys of run seed 0: init from the first half, minibatches the second.
    init_key, data_key = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 0))
    bounds = layer_scales("xavier_uniform", 1.0, out["sizes"])
    params = glorot.uniform_params(init_key, tuple(out["sizes"]), bounds)

    def loss_fn(p, batch):
        return jnp.mean(js.softmax_cross_entropy(js.apply_mlp(p, batch[0], "tanh"), batch[1]))

    optimizer = optax.sgd(0.5)
    step = jax.jit(js.make_train_step(loss_fn, optimizer))
    opt_state = optimizer.init(params)
    losses = [loss_fn(params, (x[:16], y[:16]))]
    grad_norm_init = diagnostics.backward_stats(params, x[:16], y[:16], "tanh").grad_norm
    for t in range(config.steps):
        idx = jax.random.randint(jax.random.fold_in(data_key, t), (4,), 0, x.shape[0])
        params, opt_state, _ = step(params, opt_state, (x[idx], y[idx]))
        if (t + 1) % config.record_every == 0:
            losses.append(loss_fn(params, (x[:16], y[:16])))
    np.testing.assert_allclose(out["snapshots"]["loss"][0], losses, rtol=1e-5)
    assert not np.allclose(losses[0], losses[-1], rtol=1e-3)  # it did train
    np.testing.assert_allclose(out["ends"]["grad_norm"][0, 0], grad_norm_init, rtol=1e-5)
    logits = js.apply_mlp(params, jnp.asarray(data.x_test), "tanh")
    accuracy = js.accuracy(logits, jnp.asarray(data.y_test))
    assert out["test_accuracy"][0] == pytest.approx(float(accuracy), abs=1.5 / data.x_test.shape[0])


def test_scalars_round_trip():
    arrays = {"a": jnp.arange(3.0), "b": jnp.arange(8.0).reshape(2, 4), "c": jnp.float32(7)}
    flat = _common.to_scalars(arrays)
    assert len(flat) == 3 + 8 + 1 and all(v.shape == () for v in flat.values())
    # As the engine returns them: a leading [runs, evals] on every scalar.
    evals = {k: np.full((2, 3), float(v)) for k, v in flat.items()}
    back = _common.from_scalars(evals, {k: v.shape for k, v in arrays.items()})
    for k, v in arrays.items():
        assert back[k].shape == (2, 3, *v.shape)
        np.testing.assert_array_equal(back[k][1, 2], v)


# --- he2015_depth: tests/test_exp_he2015_depth.py ----------------------------------------
