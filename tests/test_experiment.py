"""The engine: one program per architecture, determinism, divergence isolation, devices."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxstab import experiment as E
from jaxstab.data import gaussian_mixture

DATA = gaussian_mixture(seed=0, n_train=256, n_test=128, d_in=8, num_classes=4)
BASE = dict(depth=2, width=16, steps=20, eval_every=10, seeds=3, batch_size=32, dataset="mixture")


def test_one_program_per_architecture_and_deterministic():
    configs = [
        E.Config(**BASE, init=i, lr=lr, clip=c)
        for i in ("xavier_normal", "he_normal")
        for lr in (0.05, 0.2)
        for c in (None, 1.0)
    ] + [E.Config(**{**BASE, "depth": 3})]
    results, compiled = E.run_many(configs, DATA)
    assert compiled == 2  # 8 configs of depth 2 share one program; depth 3 has its own
    again, compiled_again = E.run_many(configs, DATA)
    assert compiled_again == 0
    for a, b in zip(results, again):
        np.testing.assert_array_equal(a.train_loss, b.train_loss)
        np.testing.assert_array_equal(a.test_accuracy, b.test_accuracy)
    # Inside a group, each config equals the same config run alone (vmap = loop).
    alone = E.run(configs[5], DATA)
    np.testing.assert_allclose(alone.train_loss, results[5].train_loss, rtol=1e-5, atol=1e-6)


def test_result_contents():
    r = E.run(E.Config(**BASE, clip=0.01), DATA)
    assert r.train_loss.shape == (3, 20) and r.test_accuracy.shape == (3, 3)
    np.testing.assert_array_equal(r.eval_steps, [0, 10, 20])
    assert r.clipped.all()  # a threshold of 0.01 clips every step
    assert np.all(r.grad_norm > 0.01)  # grad_norm is the pre-clip norm
    assert r.layer_stats["init/second_moment"].shape == (3, 2)
    assert r.layer_stats["final/grad_norm"].shape == (3, 2)
    assert not r.diverged.any() and (r.diverged_step == -1).all()
    # Seeds differ from each other; losses went down.
    assert not np.allclose(r.train_loss[0], r.train_loss[1])
    assert np.all(r.eval_train_loss[:, -1] < r.eval_train_loss[:, 0])


def test_divergence_of_some_runs_leaves_the_others_untouched():
    safe = E.Config(**BASE, lr=0.05)
    wild = E.Config(**BASE, lr=1e4)
    (r_safe, r_wild), compiled = E.run_many([safe, wild], DATA)
    assert compiled == 1  # one program, both configs vmapped together
    assert r_wild.diverged.all() and not r_safe.diverged.any()
    for s in range(3):
        k = r_wild.diverged_step[s]
        assert 0 <= k < 20
        assert np.all(np.isfinite(r_wild.train_loss[s, :k]))
        assert np.all(np.isnan(r_wild.train_loss[s, k:]))
    assert np.all(np.isfinite(r_safe.layer_stats["final/second_moment"]))
    np.testing.assert_allclose(
        r_safe.train_loss, E.run(safe, DATA).train_loss, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"depth": 0}, "depth must be a positive integer, got 0"),
        ({"width": -3}, "width must be a positive integer, got -3"),
        ({"activation": "relux"}, "unknown activation 'relux'; valid: sigmoid"),
        ({"init": "xavier"}, "unknown init 'xavier'; valid: xavier_uniform"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; valid: sgd, momentum, adam"),
        ({"lr": -0.1}, "lr must be a positive finite number, got -0.1"),
        ({"clip": 0.0}, "clip must be None or a positive finite number, got 0.0"),
        ({"steps": 10, "eval_every": 3}, "eval_every=3 must divide steps=10"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.Config(**kwargs)


def test_four_devices_equal_one_device(tmp_path):
    """The runs axis sharded over 4 CPU devices, or 2 of them, gives the single-device results."""
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import jaxstab
        n = jaxstab.set_cpu_devices(int(sys.argv[2]))
        import jax
        from jaxstab import experiment as E
        from jaxstab.data import gaussian_mixture
        data = gaussian_mixture(seed=0, n_train=256, n_test=128, d_in=8, num_classes=4)
        base = dict(depth=2, width=16, steps=20, eval_every=10, seeds=3, batch_size=32,
                    dataset="mixture")
        configs = [E.Config(**base, lr=lr) for lr in (0.05, 0.1)]  # 6 runs, padded to 8
        out = {"n": len(jax.devices()), "set": n}
        for name, devices in (("all", None), ("some", jax.devices()[1:3] or jax.devices())):
            results, _ = E.run_many(configs, data, devices=devices)
            for i, r in enumerate(results):
                out[f"{name}{i}"] = r.train_loss
                out[f"{name}acc{i}"] = r.test_accuracy
        np.savez(sys.argv[1], **out)
        """
    )
    outs = {}
    for n in (1, 4):
        path = tmp_path / f"d{n}.npz"
        subprocess.run([sys.executable, "-c", script, str(path), str(n)], check=True, timeout=300)
        outs[n] = dict(np.load(path))
    assert int(outs[1]["n"]) == int(outs[1]["set"]) == 1
    assert int(outs[4]["n"]) == int(outs[4]["set"]) == 4
    for k in ("0", "1", "acc0", "acc1"):
        np.testing.assert_allclose(outs[4]["all" + k], outs[1]["all" + k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outs[4]["some" + k], outs[1]["all" + k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("devices", [[], ["cpu:0"], "cpu"])
def test_bad_devices(devices):
    with pytest.raises(ValueError, match=r"devices must be a non-empty sequence of jax\.Device"):
        E.run_many([E.Config(**BASE)], DATA, devices=devices)


def test_config_round_trips_through_json():
    c = E.Config(**BASE, clip=2.0)
    assert E.Config(**json.loads(json.dumps(c.to_dict()))) == c
