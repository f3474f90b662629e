"""The public engine on users' models: flax.linen, equinox and a residual LayerNorm MLP.

Each engine result is compared with a hand-written ``vmap`` over the same runs
of the same math (keys, batches, optimizer); results are bit-identical across
grids, block positions and device counts; bad input fails before compiling.
"""

import subprocess
import sys
import textwrap

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxstab as js
from jaxstab import engine
from jaxstab.engine import _blocks

D_IN, CLASSES, N = 8, 4, 256
X = jax.random.normal(jax.random.key(0), (N, D_IN))
Y = jnp.argmax(X[:, :CLASSES] + 0.3 * X[:, CLASSES:], axis=1)
STEPS, BATCH = 30, 32


def hand_written(init, loss, optimizer, runs, *, seed=0, steps=STEPS, batch=BATCH):
    """The engine's documented math for each run, vmapped over all runs at once."""

    def one(hp):
        key = jax.random.fold_in(jax.random.key(seed), hp["seed"])
        init_key, data_key = jax.random.split(key)
        params = init(init_key, hp)
        opt = optimizer(hp)

        def step(carry, t):
            params, state = carry
            idx = jax.random.randint(jax.random.fold_in(data_key, t), (batch,), 0, N)
            value, grads = jax.value_and_grad(loss)(params, (X[idx], Y[idx]), hp)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        _, losses = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
        return losses

    return np.asarray(jax.jit(jax.vmap(one))(jax.tree.map(jnp.asarray, runs)))


def cross_entropy(logits, labels):
    return js.softmax_cross_entropy(logits, labels).mean()


# --- three users' models -------------------------------------------------------


class FlaxMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(CLASSES)(x)


FLAX = FlaxMLP()


def flax_task():
    init = lambda key, hp: FLAX.init(key, jnp.zeros((1, D_IN)))
    loss = lambda p, b, hp: cross_entropy(FLAX.apply(p, b[0]), b[1])
    return init, loss, lambda hp: optax.sgd(hp["lr"])


_EQX_STATIC = eqx.partition(eqx.nn.MLP(D_IN, CLASSES, 16, 3, key=jax.random.key(0)), eqx.is_array)[
    1
]


def eqx_task():
    def init(key, hp):
        model = eqx.nn.MLP(D_IN, CLASSES, 16, 3, key=key)
        return eqx.partition(model, eqx.is_array)[0]

    def loss(p, b, hp):
        model = eqx.combine(p, _EQX_STATIC)
        return cross_entropy(jax.vmap(model)(b[0]), b[1])

    return init, loss, lambda hp: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(hp["lr"]))


def residual_task():
    """A pre-LayerNorm residual MLP with a custom loss (label-smoothed cross-entropy)."""
    width, blocks = 16, 3

    def init(key, hp):
        k_in, k_out, *k_blocks = jax.random.split(key, blocks + 2)
        he = js.he_normal()
        return {
            "w_in": he(k_in, (D_IN, width)),
            "blocks": [
                {"w": hp["gain"] * he(k, (width, width)), "ln": jnp.ones(width)} for k in k_blocks
            ],
            "w_out": js.xavier_normal()(k_out, (width, CLASSES)),
        }

    def apply(p, x):
        h = x @ p["w_in"]
        for blk in p["blocks"]:
            mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
            h = h + jax.nn.relu(blk["ln"][None, :] * (h - mu) / jnp.sqrt(var + 1e-5) @ blk["w"])
        return h @ p["w_out"]

    def loss(p, b, hp):
        labels = optax.smooth_labels(jax.nn.one_hot(b[1], CLASSES), 0.1)
        return optax.softmax_cross_entropy(apply(p, b[0]), labels).mean(), {
            "logit_norm": jnp.linalg.norm(apply(p, b[0]))
        }

    optimizer = lambda hp: optax.adamw(hp["lr"], weight_decay=hp["wd"])
    return init, loss, optimizer


def residual_loss_only():
    init, loss, optimizer = residual_task()
    return init, (lambda p, b, hp: loss(p, b, hp)[0]), optimizer


@pytest.mark.parametrize(
    "task,runs",
    [
        (flax_task, engine.grid(4, lr=[0.1, 0.3])),
        (eqx_task, engine.grid(4, lr=[0.1, 0.3])),
        (residual_task, engine.grid(2, lr=[1e-3, 1e-2], wd=[0.0, 0.1], gain=[1.0])),
    ],
    ids=["flax_linen", "equinox", "residual_layernorm"],
)
def test_engine_equals_a_hand_written_vmap(task, runs):
    init, loss, optimizer = task()
    result = engine.train(init, loss, optimizer, (X, Y), runs, steps=STEPS, batch_size=BATCH)
    assert result.metrics["loss"].shape == (8, STEPS)
    plain_loss = (lambda p, b, hp: loss(p, b, hp)[0]) if task is residual_task else loss
    expected = hand_written(init, plain_loss, optimizer, runs)
    np.testing.assert_allclose(result.metrics["loss"], expected, rtol=2e-5, atol=1e-6)
    assert not result.diverged.any() and (result.diverged_step == -1).all()
    # Training did something: every run's loss went down.
    assert np.all(result.metrics["loss"][:, -5:].mean(1) < result.metrics["loss"][:, :5].mean(1))
    if task is residual_task:  # the aux dict is recorded per step
        assert result.metrics["logit_norm"].shape == (8, STEPS)
        assert np.all(np.isfinite(result.metrics["logit_norm"]))


def mlp_task():
    sizes = [D_IN, 32, 32, 32, CLASSES]
    init = lambda key, hp: js.init_mlp(key, sizes)
    loss = lambda p, b, hp: cross_entropy(js.apply_mlp(p, b[0], "relu"), b[1])
    return init, loss, lambda hp: optax.sgd(hp["lr"])


def test_a_run_is_bit_identical_in_any_grid_and_block_position():
    init, loss, optimizer = mlp_task()
    big = engine.grid(6, lr=[0.05, 0.2, 0.5])  # 18 runs: 3 blocks, the last padded
    small = {"seed": np.array([5, 2], np.int32), "lr": np.array([0.5, 0.05], np.float32)}
    a = engine.train(init, loss, optimizer, (X, Y), big, steps=STEPS, batch_size=BATCH)
    b = engine.train(init, loss, optimizer, (X, Y), small, steps=STEPS, batch_size=BATCH)
    for j in range(2):
        i = int(
            np.flatnonzero((big["seed"] == small["seed"][j]) & (big["lr"] == small["lr"][j]))[0]
        )
        np.testing.assert_array_equal(b.metrics["loss"][j], a.metrics["loss"][i])
        np.testing.assert_array_equal(b.metrics["grad_norm"][j], a.metrics["grad_norm"][i])
    # The second call reused the compiled block program: no new executable.
    assert b.timings["executables"] == 0


DEVICE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={sys.argv[2]}"
    import jax, jax.numpy as jnp, numpy as np, optax
    import jaxstab as js
    from jaxstab import engine
    assert len(jax.devices()) == int(sys.argv[2])
    mode = sys.argv[3]  # all: every device given; auto: the default
    x = jax.random.normal(jax.random.key(0), (256, 8))
    y = jnp.argmax(x[:, :4], axis=1)
    sizes = [8, 32, 32, 32, 4]
    result = engine.train(
        init=lambda key, hp: js.init_mlp(key, sizes),
        loss=lambda p, b, hp: js.softmax_cross_entropy(js.apply_mlp(p, b[0]), b[1]).mean(),
        optimizer=lambda hp: optax.chain(js.clip_by_global_norm(hp["clip"]), optax.sgd(hp["lr"])),
        data=(x, y),
        # 9 seeds x 2 = 18 runs: three blocks of 8, spread over the devices, the last padded.
        runs=engine.grid(9, lr=[0.5, 1.0], clip=[np.inf]),
        steps=60, batch_size=32,
        # Reductions outside the training step too: evaluations and per-leaf statistics.
        evaluate=lambda p, d, hp: {
            "loss": js.softmax_cross_entropy(js.apply_mlp(p, d[0]), d[1]).mean(),
            "acc": jnp.mean(jnp.argmax(js.apply_mlp(p, d[0]), -1) == d[1])},
        eval_data=(x, y), eval_every=20,
        inspect=lambda p, d, hp: {
            "sq": jnp.stack([jnp.mean(jnp.square(a)) for a in jax.tree.leaves(p)])},
        devices=jax.devices() if mode == "all" else None)
    np.savez(sys.argv[1], used=result.timings["devices"], **result.metrics,
             **{"eval_" + k: v for k, v in result.evals.items()},
             **{f"{w}_{k}": v for w, t in result.inspections.items() for k, v in t.items()})
    """
)


def test_results_are_bit_identical_on_1_2_and_4_devices(tmp_path):
    outs = {}
    # Every device given explicitly, and the default (all local devices). Round robin:
    # one device takes two blocks. On a CPU every device runs a copy of one compile.
    cases = ((1, "all"), (2, "all"), (2, "auto"), (4, "auto"))
    for n, mode in cases:
        path = tmp_path / f"d{n}{mode}.npz"
        subprocess.run(
            [sys.executable, "-c", DEVICE_SCRIPT, str(path), str(n), mode],
            check=True,
            timeout=600,
        )
        out = dict(np.load(path))
        used = int(out.pop("used"))
        assert used == min(n, 3), (n, mode)
        outs[n, mode] = out
    outs[1] = outs[1, "all"]
    assert set(outs[1]) == {
        "loss", "grad_norm", "clipped", "eval_loss", "eval_acc", "init_sq", "final_sq"
    }  # fmt: skip
    assert outs[1]["loss"].shape == (18, 60)
    # SGD at these rates amplifies any rounding difference over 60 steps.
    assert np.nanstd(outs[1]["loss"][:, -1]) > 0
    for n, mode in cases[1:]:
        for k, v in outs[1].items():
            np.testing.assert_array_equal(
                outs[n, mode][k], v, err_msg=f"{k} on {n} devices ({mode})"
            )


def test_divergence_freezes_only_the_diverged_runs():
    init, loss, optimizer = mlp_task()
    runs = engine.grid(3, lr=[0.05, 1e5])
    result = engine.train(init, loss, optimizer, (X, Y), runs, steps=STEPS, batch_size=BATCH)
    wild = runs["lr"] > 1
    assert result.diverged[wild].all() and not result.diverged[~wild].any()
    for r in np.flatnonzero(wild):
        k = result.diverged_step[r]
        assert 0 <= k < STEPS
        assert np.isfinite(result.metrics["loss"][r, :k]).all()
        assert np.isnan(result.metrics["loss"][r, k:]).all()
    alone = engine.train(
        init, loss, optimizer, (X, Y), engine.grid(3, lr=[0.05]), steps=STEPS, batch_size=BATCH
    )
    np.testing.assert_array_equal(alone.metrics["loss"], result.metrics["loss"][~wild])


def test_batch_function_evaluate_inspect_and_params():
    init, loss, optimizer = mlp_task()

    def batch(key, step):  # a fresh Gaussian batch each step, labelled by a fixed rule
        x = jax.random.normal(key, (BATCH, D_IN))
        return x, jnp.argmax(x[:, :CLASSES], axis=1)

    evaluate = lambda p, d, hp: {"loss": loss(p, (d["x"], d["y"]), hp)}
    inspect = lambda p, d, hp: {"w0_norm": jnp.linalg.norm(p["hidden"][0]["w"])}
    runs = engine.grid(2, lr=[0.1])
    result = engine.train(
        init,
        loss,
        optimizer,
        batch,
        runs,
        steps=20,
        eval_every=10,
        evaluate=evaluate,
        eval_data={"x": X, "y": Y},
        inspect=inspect,
        return_params=True,
    )
    np.testing.assert_array_equal(result.eval_steps, [0, 10, 20])
    assert result.evals["loss"].shape == (2, 3)
    # The evaluation at step 20 and the inspection at the end see the final params.
    final = jax.tree.map(lambda a: a[1], result.params)
    np.testing.assert_allclose(result.evals["loss"][1, -1], loss(final, (X, Y), None), rtol=1e-5)
    np.testing.assert_allclose(
        result.inspections["final"]["w0_norm"][1],
        jnp.linalg.norm(final["hidden"][0]["w"]),
        rtol=1e-6,
    )
    key = jax.random.fold_in(jax.random.key(0), 1)
    # (The init program compiles at a lower XLA level: equal to float rounding.)
    np.testing.assert_allclose(
        result.inspections["init"]["w0_norm"][1],
        jnp.linalg.norm(init(jax.random.split(key)[0], None)["hidden"][0]["w"]),
        rtol=1e-6,
    )


def test_grid_layout():
    runs = engine.grid([3, 7], lr=[0.1, 0.2], clip=[np.inf])
    np.testing.assert_array_equal(runs["seed"], [3, 7, 3, 7])
    np.testing.assert_array_equal(runs["lr"], np.float32([0.1, 0.1, 0.2, 0.2]))
    assert runs["seed"].dtype == np.int32 and runs["clip"].dtype == np.float32


@pytest.mark.parametrize(
    "change,error,match",
    [
        ({"init": lambda key: {"w": jnp.zeros(3)}}, TypeError, r"init\(key, hparams\)"),
        ({"loss": lambda p, b, hp: jnp.zeros(3)}, ValueError, "floating scalar; got \\(3,\\)"),
        ({"loss": lambda p, b: 0.0}, TypeError, r"loss\(params, batch, hparams\)"),
        ({"loss": lambda p, b, hp: (1.0, 2.0, 3.0)}, TypeError, "scalar or \\(scalar, dict"),
        ({"optimizer": lambda hp: None}, TypeError, r"optimizer\(hparams\)"),
        ({"optimizer": "sgd"}, TypeError, "optimizer must be callable, got 'sgd'"),
        ({"runs": {"seed": np.arange(3), "lr": np.ones(2)}}, ValueError, "same leading runs"),
        ({"runs": {"lr": np.ones(2)}}, TypeError, "integer 'seed' entry"),
        ({"runs": {"seed": np.arange(2), "act": ["relu", "tanh"]}}, TypeError, "dtype <U4"),
        ({"steps": 0}, ValueError, "steps must be a positive integer, got 0"),
        ({"steps": 10, "eval_every": 3}, ValueError, "eval_every=3 must divide steps=10"),
        ({"batch_size": None}, ValueError, "batch_size is required"),
        ({"data": (X, Y[:10])}, ValueError, "one shared, non-empty leading example axis"),
        ({"seed": -1}, ValueError, r"seed must be an integer in \[0, 4294967295\], got -1"),
        ({"devices": []}, ValueError, "devices must be a non-empty sequence of jax.Device"),
    ],
)
def test_bad_input_fails_before_compiling(change, error, match):
    init, loss, optimizer = mlp_task()
    kwargs = dict(
        init=init,
        loss=loss,
        optimizer=optimizer,
        data=(X, Y),
        runs=engine.grid(2, lr=[0.1]),
        steps=10,
        batch_size=BATCH,
    )
    kwargs.update(change)
    before = _blocks._compiled.cache_info().misses
    with pytest.raises(error, match=match):
        engine.train(**kwargs)
    assert _blocks._compiled.cache_info().misses == before
