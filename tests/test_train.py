"""The training step: learns, scans over steps, vmaps over seeds, traces once."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxstab as js

SIZES = [4, 16, 16, 3]


def _data():
    x = jax.random.normal(jax.random.key(0), (64, 4))
    y = (x[:, 0] > 0).astype(jnp.int32) + (x[:, 1] > 0.5).astype(jnp.int32)
    return x, y


def _loss(params, batch):
    x, y = batch
    return jnp.mean(js.softmax_cross_entropy(js.apply_mlp(params, x, "tanh"), y))


OPT = optax.chain(js.clip_by_global_norm(1.0), optax.sgd(0.5))


def _train(key, steps=60):
    step = js.make_train_step(_loss, OPT)
    params = js.init_mlp(key, SIZES, weight_init=js.xavier_normal())
    batch = _data()

    def body(carry, _):
        params, opt_state = carry
        params, opt_state, metrics = step(params, opt_state, batch)
        return (params, opt_state), metrics

    (params, opt_state), metrics = jax.lax.scan(body, (params, OPT.init(params)), None, steps)
    return params, opt_state, metrics


def test_step_learns_and_reports():
    _, opt_state, metrics = jax.jit(_train)(jax.random.key(1))
    assert float(metrics["loss"][-1]) < 0.5 * float(metrics["loss"][0])
    # grad_norm is the pre-clip norm: it equals the clip state's record of it.
    state = js.find_clip_state(opt_state)
    assert float(state.global_norm) == float(metrics["grad_norm"][-1])
    assert int(state.num_clipped) == int(jnp.sum(metrics["clipped"]))
    assert bool(jnp.all(metrics["clipped"] == (metrics["grad_norm"] >= 1.0)))


def test_vmap_over_seeds_equals_loop():
    keys = jax.random.split(jax.random.key(2), 3)
    vparams, _, vmetrics = jax.jit(jax.vmap(_train))(keys)
    for i, k in enumerate(keys):
        params, _, metrics = jax.jit(_train)(k)
        np.testing.assert_allclose(vmetrics["loss"][i], metrics["loss"], rtol=1e-4, atol=1e-5)
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], vparams), params, rtol=1e-4, atol=1e-5
        )


def test_one_trace_and_aux_metrics():
    def loss_aux(params, batch):
        logits = js.apply_mlp(params, batch[0], "relu")
        return jnp.mean(js.softmax_cross_entropy(logits, batch[1])), {
            "acc": js.accuracy(logits, batch[1])
        }

    step = jax.jit(
        chex.assert_max_traces(js.make_train_step(loss_aux, optax.adam(1e-2), has_aux=True), n=1)
    )
    params = js.init_mlp(jax.random.key(3), SIZES)
    opt_state = optax.adam(1e-2).init(params)
    x, y = _data()
    for _ in range(3):
        before = params
        params, opt_state, metrics = step(params, opt_state, (x, y))
    assert set(metrics) == {"loss", "grad_norm", "acc"}
    # aux is computed at the parameters the step started from
    logits = np.asarray(js.apply_mlp(before, x, "relu"))
    assert float(metrics["acc"]) == np.mean(np.argmax(logits, -1) == np.asarray(y))


def _bits(tree):
    return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


def test_skip_nonfinite_step_changes_nothing_but_the_counts():
    opt = js.skip_nonfinite(optax.chain(js.clip_by_global_norm(1.0), optax.adam(1e-2)))
    step = jax.jit(chex.assert_max_traces(js.make_train_step(_loss, opt), n=1))
    x, y = _data()
    params = js.init_mlp(jax.random.key(4), SIZES)
    params, opt_state, metrics = step(params, opt.init(params), (x, y))
    assert set(metrics) == {"loss", "grad_norm", "clipped", "skipped"}
    assert not bool(metrics["skipped"])
    bad = (x.at[0, 0].set(jnp.nan), y)  # one NaN input: NaN loss and gradient
    new_params, new_state, metrics = step(params, opt_state, bad)
    assert bool(metrics["skipped"]) and np.isnan(float(metrics["grad_norm"]))
    assert _bits(new_params) == _bits(params)
    assert _bits(new_state.inner_state[1]) == _bits(opt_state.inner_state[1])  # Adam
    assert int(new_state.inner_state[1][0].count) == 1
    assert int(js.find_clip_state(new_state).num_nonfinite) == 1
    assert int(new_state.num_skipped) == 1
