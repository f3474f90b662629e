"""The disk store of compiled programs: a later process loads them, with the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax

from jaxstab.engine import _store

# Trains a small MLP task through jaxstab.experiment in a fresh process with the jax
# compilation cache (and so the store) in argv[1]; prints what it compiled and traced.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    from jaxstab import data, experiment
    from jaxstab.engine import _blocks
    config = experiment.Config(depth=2, width=16, activation=sys.argv[2], init="he_normal",
                               steps=20, eval_every=10, seeds=3, batch_size=16)
    ds = data.gaussian_mixture(0, n_train=64, n_test=32, d_in=8, num_classes=3)
    results, compiled = experiment.run_many([config], ds)
    print(json.dumps({"compiled": compiled,
                      "lowered": _blocks._lowered.cache_info().misses,
                      "loss": results[0].train_loss.tolist()}))
    """
)


def _run(cache: Path, activation: str = "relu") -> dict:
    env = {**os.environ, "JAXSTAB_EXECUTABLE_STORE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cache), activation],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_later_process_loads_the_programs_without_tracing_and_gets_the_same_numbers(
    tmp_path,
):
    first = _run(tmp_path)
    stored = sorted((tmp_path / "jaxstab-executables").glob("*.pkl"))
    assert first["compiled"] == 1 and first["lowered"] == 2 and len(stored) == 2  # init, train
    second = _run(tmp_path)
    assert second["compiled"] == 0 and second["lowered"] == 0
    assert second["loss"] == first["loss"]
    # Another program (tanh) is not served by the relu entries: it compiles.
    other = _run(tmp_path, "tanh")
    assert other["compiled"] == 1 and other["lowered"] == 2
    assert other["loss"] != first["loss"]
    # A damaged entry is compiled again, with the same numbers.
    for path in stored:
        path.write_bytes(path.read_bytes()[:100])
    again = _run(tmp_path)
    assert again["compiled"] == 1 and again["loss"] == first["loss"]


def test_entry_names_change_with_everything_the_program_depends_on(monkeypatch):
    devices = jax.devices()[:1]
    base = _store.entry_name("key", ("sig",), devices)
    assert _store.entry_name("key", ("sig",), devices) == base
    assert _store.entry_name("other", ("sig",), devices) != base
    assert _store.entry_name("key", ("sig2",), devices) != base
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    assert _store.entry_name("key", ("sig",), devices) != base


def test_the_store_is_off_with_the_persistent_cache_or_by_the_environment(tmp_path, monkeypatch):
    before = jax.config.values.get("jax_compilation_cache_dir")
    monkeypatch.setenv("JAXSTAB_EXECUTABLE_STORE", "1")
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))
        assert _store.store_dir() == tmp_path / "jaxstab-executables"
        monkeypatch.setenv("JAXSTAB_EXECUTABLE_STORE", "0")
        assert _store.store_dir() is None
        monkeypatch.setenv("JAXSTAB_EXECUTABLE_STORE", "1")
        jax.config.update("jax_compilation_cache_dir", None)
        assert _store.store_dir() is None
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
