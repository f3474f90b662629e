"""jaxstab's MLP on the engine: programs per architecture, settings, divergence, labels."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxstab as js
from jaxstab import experiment as E
from jaxstab.data import gaussian_mixture

DATA = gaussian_mixture(seed=0, n_train=256, n_test=128, d_in=8, num_classes=4)
BASE = dict(depth=2, width=16, steps=20, eval_every=10, seeds=3, batch_size=32, dataset="mixture")


def test_one_program_per_architecture_and_deterministic():
    # steps=22 gives programs no other test compiles, so the counts are this test's.
    base = {**BASE, "steps": 22, "eval_every": 11}
    configs = [
        E.Config(**base, init=i, lr=lr, clip=c)
        for i in ("xavier_normal", "he_normal")
        for lr in (0.05, 0.2)
        for c in (None, 1.0)
    ] + [E.Config(**{**base, "depth": 3})]
    results, compiled = E.run_many(configs, DATA)
    assert compiled == 2  # 8 configs of depth 2 share one program; depth 3 has its own
    again, compiled_again = E.run_many(configs, DATA)
    assert compiled_again == 0
    for a, b in zip(results, again):
        np.testing.assert_array_equal(a.train_loss, b.train_loss)
        np.testing.assert_array_equal(a.test_accuracy, b.test_accuracy)
    # A config's numbers do not depend on the others in its program: bit-identical alone.
    alone = E.run(configs[5], DATA)
    np.testing.assert_array_equal(alone.train_loss, results[5].train_loss)
    np.testing.assert_array_equal(
        alone.layer_stats["final/grad_norm"], results[5].layer_stats["final/grad_norm"]
    )


def test_result_contents():
    r = E.run(E.Config(**BASE, clip=0.01), DATA)
    assert r.train_loss.shape == (3, 20) and r.test_accuracy.shape == (3, 3)
    np.testing.assert_array_equal(r.eval_steps, [0, 10, 20])
    assert r.clipped.all()  # a threshold of 0.01 clips every step
    assert np.all(r.grad_norm > 0.01)  # grad_norm is the pre-clip norm
    assert r.layer_stats["init/second_moment"].shape == (3, 2)
    assert r.layer_stats["final/grad_norm"].shape == (3, 2)
    assert not r.diverged.any() and (r.diverged_step == -1).all()
    assert not np.allclose(r.train_loss[0], r.train_loss[1])
    assert np.all(r.eval_train_loss[:, -1] < r.eval_train_loss[:, 0])
    # Results on a user's data set are labelled with its name.
    assert r.config.dataset == DATA.name


def test_divergence_of_some_runs_leaves_the_others_untouched():
    safe = E.Config(**BASE, lr=0.05)
    wild = E.Config(**BASE, lr=1e4)
    (r_safe, r_wild), _ = E.run_many([safe, wild], DATA)
    assert r_wild.diverged.all() and not r_safe.diverged.any()
    for s in range(3):
        k = r_wild.diverged_step[s]
        assert 0 <= k < 20
        assert np.all(np.isfinite(r_wild.train_loss[s, :k]))
        assert np.all(np.isnan(r_wild.train_loss[s, k:]))
    assert np.all(np.isfinite(r_safe.layer_stats["final/second_moment"]))
    np.testing.assert_array_equal(r_safe.train_loss, E.run(safe, DATA).train_loss)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_without_layer_stats_the_same_training_bits(activation):
    """Leaving out the per-layer statistics builds a smaller program; what both
    measure (steps, evaluations, divergence) is bit-identical."""
    config = E.Config(**{**BASE, "depth": 4, "activation": activation, "clip": 1.0})
    (full,), _ = E.run_many([config], DATA)
    (lean,), _ = E.run_many([config], DATA, layer_stats=False)
    assert lean.layer_stats == {} and full.layer_stats
    for field in set(E.Result._fields) - {"config", "layer_stats"}:
        np.testing.assert_array_equal(getattr(lean, field), getattr(full, field), err_msg=field)


def test_seeds_added_later_equal_seeds_run_together():
    together = E.run(E.Config(**{**BASE, "seeds": 5}), DATA)
    later = E.run(E.Config(**{**BASE, "seeds": 2, "first_seed": 3}), DATA)
    np.testing.assert_array_equal(later.train_loss, together.train_loss[3:])


@pytest.mark.parametrize("init", sorted(js.INITIALIZERS))
def test_engine_init_draws_equal_the_preset(init):
    """The traced per-layer scales reproduce init_mlp with the named preset."""
    sizes = (8, 16, 16, 16, 4)
    hp = {
        "weight_scale": jnp.asarray(E.layer_scales(init, 1.0, sizes)),
        "bias_var": jnp.float32(0.0),
    }
    distribution = E.INIT_FORMS[init][0]
    key = jax.random.key(3)
    got = E._init_fn(sizes, distribution)(key, hp)
    want = js.split_stacks(js.init_mlp(key, sizes, weight_init=js.get_initializer(init)))
    if distribution == "uniform":  # bound * U(-1, 1) and U(-bound, bound) round differently
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got, want)
    else:
        jax.tree.map(np.testing.assert_array_equal, got, want)


def test_init_gain_scales_the_signal_exactly():
    """Gain 2 doubles every weight of the same draws: q^l is 4^l times larger."""
    one = E.run(E.Config(**{**BASE, "depth": 3, "activation": "relu"}), DATA)
    two = E.run(E.Config(**{**BASE, "depth": 3, "activation": "relu", "init_gain": 2.0}), DATA)
    ratio = two.layer_stats["init/second_moment"] / one.layer_stats["init/second_moment"]
    np.testing.assert_allclose(ratio, np.broadcast_to([4.0, 16.0, 64.0], ratio.shape), rtol=1e-5)


def test_bias_variance_draws_gaussian_biases():
    hp = {"weight_scale": jnp.ones(3), "bias_var": jnp.float32(0.25)}
    params = E._init_fn((8, 4000, 4000, 4), "normal")(jax.random.key(0), hp)
    b = np.asarray(params["output"]["b"].tolist() + params["hidden"][0]["b"].ravel().tolist())
    se = 0.25 * math.sqrt(2 / b.size)  # standard error of a sample variance
    assert abs(b.var() - 0.25) < 5 * se


@pytest.mark.parametrize(
    "optimizer,settings,reference",
    [
        ("sgd", {"lr": 0.1}, lambda: optax.sgd(0.1)),
        ("momentum", {"lr": 0.1, "momentum": 0.5}, lambda: optax.sgd(0.1, momentum=0.5)),
        ("adam", {"lr": 0.01}, lambda: optax.adam(0.01)),
        ("adam", {"lr": 0.01, "weight_decay": 0.1}, lambda: optax.adamw(0.01, weight_decay=0.1)),
        (
            "sgd",
            {"lr": 0.1, "weight_decay": 0.1},
            lambda: optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.1)),
        ),
    ],
)
def test_optimizers_equal_optax(optimizer, settings, reference):
    config = E.Config(optimizer=optimizer, **settings)
    hp = jax.tree.map(jnp.asarray, E.config_runs(config, (3, 4, 2)))
    hp = jax.tree.map(lambda a: a[0], hp)
    ours, ref = E._optimizer_fn(optimizer, "constant", 10)(hp), reference()
    params = {"w": jnp.arange(6.0).reshape(2, 3) / 7}
    s1, s2 = ours.init(params), ref.init(params)
    for t in range(3):
        g = {"w": jnp.sin(jnp.arange(6.0) + t).reshape(2, 3)}
        u1, s1 = ours.update(g, s1, params)
        u2, s2 = ref.update(g, s2, params)
        np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6, atol=1e-8)


def test_warmup_cosine_schedule():
    steps, warmup = 100, 0.1
    config = E.Config(schedule="warmup_cosine", optimizer="sgd", lr=0.5, warmup=warmup)
    hp = jax.tree.map(lambda a: jnp.asarray(a[0]), E.config_runs(config, (3, 4, 2)))
    opt = E._optimizer_fn("sgd", "warmup_cosine", steps)(hp)
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    lrs = []
    for _ in range(steps):
        u, state = opt.update({"w": jnp.ones(())}, state, params)
        lrs.append(-float(u["w"]))
    t = np.arange(steps)
    w = warmup * steps
    expected = np.where(
        t < w, 0.5 * (t + 1) / w, 0.5 * 0.5 * (1 + np.cos(np.pi * (t - w) / (steps - w)))
    )
    np.testing.assert_allclose(lrs, expected, rtol=1e-5, atol=1e-7)


def test_names_cannot_collide():
    a, b = E.Config(lr=0.1), E.Config(lr=0.1000001)
    assert a.name != b.name
    assert E.Config(lr=0.1).name == a.name
    assert E.Config(lr=0.1, seeds=3).name == a.name  # the seeds are not part of the point


def test_settings_roles_cover_every_field():
    roles = {f.name: f.metadata["role"] for f in E.fields()}
    assert set(roles.values()) == {"static", "traced", "fixed", "seeds"}
    for f in E.fields("traced") + E.fields("static"):
        assert f.metadata["plural"] and f.metadata["help"]
    # A traced setting never selects the program; a static one always does.
    c = E.Config()
    for f in E.fields("traced"):
        if f.name in ("init",):
            continue
        other = {"clip": 1.0}.get(f.name, 0.5)
        assert E.Config(**{f.name: other}).program_key == c.program_key, f.name
    assert E.Config(depth=3).program_key != c.program_key


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"depth": 0}, "depth must be a positive integer, got 0"),
        ({"width": -3}, "width must be a positive integer, got -3"),
        ({"activation": "relux"}, "unknown activation 'relux'; valid: sigmoid"),
        ({"init": "xavier"}, "unknown init 'xavier'; valid: xavier_uniform"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; valid: sgd, momentum, adam"),
        ({"schedule": "step"}, "unknown schedule 'step'; valid: constant, warmup_cosine"),
        ({"lr": -0.1}, "lr must be a positive finite number, got -0.1"),
        ({"lr": float("nan")}, "lr must be a positive finite number, got nan"),
        ({"clip": 0.0}, "clip must be a positive finite number, got 0.0"),
        ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\), got 1.0"),
        ({"warmup": 2.0}, r"warmup must be a finite number in \[0, 1\], got 2.0"),
        ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0, got -1.0"),
        ({"seed": 2**63}, r"seed must be an integer in \[0, 2147483647\], got 9223372036854775808"),
        ({"steps": 10, "eval_every": 3}, "eval_every=3 must divide steps=10"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.Config(**kwargs)


def test_numpy_scalars_are_valid_settings():
    c = E.Config(lr=np.float32(0.1), depth=np.int64(3))
    assert c.lr == np.float32(0.1) and c.depth == 3


def test_config_round_trips_through_json():
    c = E.Config(**BASE, clip=2.0, weight_decay=0.01)
    assert E.Config(**json.loads(json.dumps(c.to_dict()))) == c
