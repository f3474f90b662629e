"""One compile for all CPU devices, and the store of compiled code in jax's cache folder.

Each case is a fresh process (the device count is fixed at start-up), training the
same small grid; every case must give bit-identical numbers.
"""

import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import os, sys
    out, n, cache, program_id, model = sys.argv[1:6]
    n, program_id = int(n), None if program_id == "-" else program_id
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
    import jax, jax.numpy as jnp, numpy as np, optax
    if cache != "off":
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    else:
        jax.config.update("jax_enable_compilation_cache", False)
    import jaxstab as js
    from jaxstab import engine

    compiles = []  # the engine's own AOT compiles (every other jit goes through dispatch)
    original = jax.stages.Lowered.compile
    def counted(self, *a, **k):
        compiles.append(1)
        return original(self, *a, **k)
    jax.stages.Lowered.compile = counted

    x = jax.random.normal(jax.random.key(0), (256, 8))
    y = jnp.argmax(x[:, :4], axis=1)
    traced = []  # the loss's Python body runs only while jax traces it
    if model == "mlp":  # jaxstab's own layout
        init, apply = lambda key, hp: js.init_mlp(key, [8, 32, 32, 4]), js.apply_mlp
    elif model == "flax":
        import flax.linen as nn
        class MLP(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(4)(nn.relu(nn.Dense(32)(nn.relu(nn.Dense(32)(x)))))
        net = MLP()
        init, apply = lambda key, hp: net.init(key, x[:1]), net.apply
    else:  # equinox: the arrays of a module, its static part closed over
        import equinox as eqx
        build = lambda key: eqx.nn.MLP(8, 4, 32, 2, key=key)
        static = eqx.partition(build(jax.random.key(0)), eqx.is_array)[1]
        init = lambda key, hp: eqx.partition(build(key), eqx.is_array)[0]
        apply = lambda p, xs: jax.vmap(eqx.combine(p, static))(xs)

    def loss(p, b, hp):
        traced.append(1)
        return js.softmax_cross_entropy(apply(p, b[0]), b[1]).mean()

    result = engine.train(
        init=init,
        loss=loss,
        optimizer=lambda hp: optax.sgd(hp["lr"]),
        data=(x, y),
        runs=engine.grid(8, lr=[0.5, 1.0]),  # two blocks: one per device
        steps=40, batch_size=32,
        evaluate=lambda p, d, hp: {
            "loss": js.softmax_cross_entropy(apply(p, d[0]), d[1]).mean()},
        eval_data=(x, y), eval_every=20, program_id=program_id)
    np.savez(out, compiles=len(compiles), traced=len(traced), devices=result.timings["devices"],
             loss=result.metrics["loss"], grad_norm=result.metrics["grad_norm"],
             eval_loss=result.evals["loss"])
    """
)


def _run(tmp_path, name, n_devices, cache, program_id=None, model="mlp"):
    """Runs SCRIPT in a fresh process: ``(compiles, traces of the loss, devices), numbers``."""
    path = tmp_path / f"{name}.npz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    args = [str(path), str(n_devices), str(cache), program_id or "-", model]
    subprocess.run([sys.executable, "-c", SCRIPT, *args], check=True, timeout=600, env=env)
    out = dict(np.load(path))
    counts = tuple(int(out.pop(k)) for k in ("compiles", "traced", "devices"))
    return counts, out


def _assert_same(a, b, case):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k}: {case}")


def test_one_compile_serves_every_cpu_device_and_later_processes(tmp_path):
    cache = tmp_path / "cache"
    store = cache / "jaxstab-executables"
    # Reference: one device, no cache: init and train compiled once each.
    counts, reference = _run(tmp_path, "one", 1, "off")
    assert counts[0] == 2 and counts[1] > 0 and counts[2] == 1
    assert np.nanstd(reference["loss"][:, -1]) > 0  # rounding differences would show

    # Two devices, empty cache: still two compiles (the second device gets a copy),
    # and the code of both programs is stored.
    (compiles, _, used), first = _run(tmp_path, "cold", 2, cache)
    assert (compiles, used) == (2, 2)
    assert len(list(store.glob("*.bin"))) == 2
    _assert_same(first, reference, "two devices, one compile")

    # A later process loads the stored code onto both devices: no compile at all.
    (compiles, _, used), warm = _run(tmp_path, "warm", 2, cache)
    assert (compiles, used) == (0, 2)
    _assert_same(warm, reference, "loaded from the store")

    # Without the store, jax's own cache serves the first device; its executable
    # cannot be copied, so the second device compiles (4 compiles), and that fresh
    # compile refills the store.
    for f in store.glob("*.bin"):
        f.unlink()
    (compiles, _, used), refilled = _run(tmp_path, "jax-cache", 2, cache)
    assert (compiles, used) == (4, 2)
    assert len(list(store.glob("*.bin"))) == 2
    _assert_same(refilled, reference, "jax's cache for device 0, compiled for device 1")

    # A damaged stored file is removed and its program compiled (here: loaded from
    # jax's cache, which now holds both devices' entries).
    for f in store.glob("*.bin"):
        f.write_bytes(zlib.compress(b"not an executable"))
    (compiles, _, used), repaired = _run(tmp_path, "damaged", 2, cache)
    assert (compiles, used) == (4, 2)
    assert not list(store.glob("*.bin"))
    _assert_same(repaired, reference, "after a damaged store")


def test_a_program_id_skips_tracing_in_a_later_process(tmp_path):
    cache = tmp_path / "cache"
    store = cache / "jaxstab-executables"
    counts, reference = _run(tmp_path, "plain", 2, cache)
    assert counts[1] > 0
    # The first process with an id traces (the program is stored, now with its id) ...
    counts, first = _run(tmp_path, "first", 2, cache, "my-mlp-v1")
    assert counts[1] > 0 and len(list(store.glob("*.program"))) == 1
    _assert_same(first, reference, "stored with its program id")
    # ... a later one neither traces nor compiles, and gives the same numbers.
    (compiles, traced, used), second = _run(tmp_path, "second", 2, cache, "my-mlp-v1")
    assert (compiles, traced, used) == (0, 0, 2)
    _assert_same(second, reference, "loaded by its program id")
    # Another id is another program: traced again.
    counts, _ = _run(tmp_path, "other", 2, cache, "my-mlp-v2")
    assert counts[1] > 0
    # Another device count is another layout: traced again, the same numbers.
    counts, one = _run(tmp_path, "one-device", 1, cache, "my-mlp-v1")
    assert counts[1] > 0
    _assert_same(one, reference, "one device")


# An equinox module's tree does not survive pickling equal (its static fields compare
# by identity), so its program is not recorded: a later process traces it again, but
# still loads the compiled code instead of compiling.
@pytest.mark.parametrize("model,skips_trace", [("flax", True), ("equinox", False)])
def test_users_models_get_one_compile_and_a_stored_program(tmp_path, model, skips_trace):
    cache = tmp_path / "cache"
    counts, reference = _run(tmp_path, "one", 1, "off", model=model)
    assert counts[1] > 0
    (compiles, _, used), cold = _run(tmp_path, "cold", 2, cache, f"{model}-v1", model)
    assert (compiles, used) == (2, 2)  # one compile per stage for both devices
    _assert_same(cold, reference, f"{model}: two devices, one compile")
    (compiles, traced, used), warm = _run(tmp_path, "warm", 2, cache, f"{model}-v1", model)
    assert (compiles, traced == 0, used) == (0, skips_trace, 2)
    _assert_same(warm, reference, f"{model}: loaded from the store")
