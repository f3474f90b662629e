"""The benchmark suite: a tiny end-to-end run, and its helpers against hand counts.

No test here asserts a speed: machines are noisy. The end-to-end run checks
that every section still runs and reports; the unit tests check the numbers
that are not timings (FLOP counts, memory analysis, summaries) and that the
compared programs compute the same thing.
"""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstab as js

ROOT = pathlib.Path(__file__).resolve().parent.parent
# benchmarks/ is not an installed package: it runs from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks import (  # noqa: E402
    compile_time,
    memory,
    models,
    report,
    timing,
    torch_baseline,
    utilization,
)


@pytest.mark.slow
def test_tiny_run_writes_every_section_and_row(tmp_path):
    out = tmp_path / "B.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "JAX_NUMPY_RANK_PROMOTION": "raise"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert not list(tmp_path.glob(".bench-*")), "the temporary file was left behind"
    for heading in ("## Machine", "## Goals", "## How to run"):
        assert heading in text
    for key in cli.SECTIONS:
        assert f"\n## {key}: " in text, key
    # The measured tables: the hand-written findings below them have tables too.
    lines = text.split("## Findings and recommendations")[0].splitlines()
    rows = lambda start, cells=None: [
        line
        for line in lines
        if line.startswith(start) and (cells is None or line.count(" | ") == cells - 1)
    ]
    # compile: one row per depth of the tiny ladder, every layout measured or skipped.
    assert len(rows("| 2 | ")) == 1 and len(rows("| 8 | ")) == 1
    # The run shards over one CPU device per usable core, as `jaxstab sweep` does.
    cores = len(os.sched_getaffinity(0))
    assert rows("| devices | ")[0].count("cpu:") == cores
    # throughput: one row per implementation, (a)-(i), in the 7-column table.
    for label in "abcdefghi":
        assert len(rows(f"| ({label}) ", cells=7)) == 1, label
    # utilization: the tiny width; five implementations (three on one device).
    assert len(rows("| 32 | ")) == (5 if cores > 1 else 3)
    # memory: three variants.
    assert len(rows("| jaxstab apply_mlp, remat=")) == 3
    # sweep: the main job on one CPU device and on one per core.
    assert len(rows("| one CPU device ")) == (2 if cores > 1 else 1)
    # gpu: the placeholder on a CPU machine.
    assert rows("| GPU | not measured: no GPU on this machine") or rows("| device | ")
    # Every goal has a verdict.
    assert len(rows("| compile | ")) == 1
    assert len(rows("| throughput | ")) == (4 if cores > 1 else 3)
    assert len(rows("| utilization | ")) == (2 if cores > 1 else 1)
    assert "FAIL" in text or "PASS" in text


def test_only_rejects_unknown_sections_and_lists_valid_ones(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "compile,bogus"])
    err = capsys.readouterr().err
    assert "bogus" in err and "throughput" in err
    assert cli.parse_args(["--only", "memory, gpu"]).only == ["memory", "gpu"]
    with pytest.raises(SystemExit):
        cli.parse_args(["--repeats", "0"])


# --------------------------------------------------------------------------- #
# FLOP counts.
# --------------------------------------------------------------------------- #


def test_matmul_flops_against_a_hand_count():
    # [64, 128, 128, 10], batch 128: 3 layers, forward 2*B*n*m and backward twice that.
    by_hand = 3 * 2 * 128 * (64 * 128 + 128 * 128 + 128 * 10)
    assert models.matmul_flops([64, 128, 128, 10], 128) == by_hand == 19_857_408
    assert models.mlp_sizes(3, 16) == [64, 16, 16, 16, 10]


def test_matmul_flops_against_xla_cost_analysis():
    sizes, batch = [64, 256, 256, 10], 128
    params = models.init_layers(jax.random.key(0), sizes)
    x, y = jnp.ones((batch, 64)), jnp.zeros((batch,), jnp.int32)
    loss = lambda p: models.cross_entropy(models.apply_layers(p, x), y)
    cost = jax.jit(jax.grad(loss)).lower(params).compile().cost_analysis()
    if isinstance(cost, list):  # Older jax: one dict per computation.
        cost = cost[0]
    # XLA never computes the input's gradient (2 * batch * 64 * 256 FLOPs) and adds
    # the elementwise work; the matmuls dominate either way.
    expected = models.matmul_flops(sizes, batch) - 2 * batch * 64 * 256
    assert expected <= cost["flops"] <= 1.1 * expected


def test_compile_ladder_stops_after_a_point_over_the_limit():
    seconds = {compile_time.WARMUP_DEPTH: 0.1, 8: 1.0, 32: 61.0, 128: 500.0}
    calls = []
    measure = lambda depth: calls.append(depth) or seconds[depth]
    out = compile_time.ladder(measure, [8, 32, 128], repeats=3)
    assert out[8].n == 3 and out[8].median == 1.0
    assert out[32].n == 1  # Over the per-point budget after one sample.
    assert out[128] == "skipped: > 60 s at depth 32"
    assert calls == [compile_time.WARMUP_DEPTH, 8, 8, 8, 32]


def test_steps_per_call():
    assert utilization.steps_per_call(3_000_000_000, 12.0) == 4
    assert utilization.steps_per_call(50_000_000_000, 12.0) == 1


# --------------------------------------------------------------------------- #
# Summaries of repeated measurements.
# --------------------------------------------------------------------------- #


def test_summarize_median_quartiles_and_range():
    samples = [3.0, 1.0, 2.0, 10.0, 4.0]
    s = timing.summarize(samples)
    assert (s.median, s.lo, s.hi, s.n) == (3.0, 1.0, 10.0, 5)
    np.testing.assert_allclose([s.q1, s.q3], np.percentile(samples, [25, 75]))
    assert timing.summarize([2.0, 4.0]).median == 3.0
    assert timing.summarize([7.0]).fmt(unit="s") == "7.00 s (n=1)"
    with pytest.raises(ValueError, match="at least one"):
        timing.summarize([])


def test_inverse_turns_durations_into_rates():
    s = timing.summarize([1.0, 2.0, 4.0]).inverse(8.0)
    assert (s.median, s.lo, s.hi) == (4.0, 2.0, 8.0)
    assert s.fmt() == "4.00 (2.00-8.00, n=3)"
    assert timing.summarize([2.0]).scaled(1e3).median == 2000.0


def test_ratio_pairs_rounds():
    # Round 2 is slow for both: the paired ratio does not see it.
    r = timing.ratio([2.0, 20.0, 2.0], [1.0, 10.0, 1.0])
    assert (r.median, r.lo, r.hi) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="unpaired"):
        timing.ratio([1.0], [1.0, 2.0])


def test_interleaved_runs_round_robin_after_warmup():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    t = timing.interleaved(fns, 2, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert [len(v) for v in (*t.wall.values(), *t.cpu.values())] == [2, 2, 2, 2]


# --------------------------------------------------------------------------- #
# The report.
# --------------------------------------------------------------------------- #


def test_goal_verdicts():
    assert report.Goal("r", 1.2, 1.5, higher_is_better=False).verdict == "PASS"
    assert report.Goal("r", 0.9, 0.95, higher_is_better=True).verdict == "FAIL"
    missing = report.Goal("r", None, 2.5, True, reason="not installed")
    assert missing.verdict == "n/a" and "not installed" in missing.line()


def test_table_escapes_pipes_and_checks_row_length():
    assert report.table(["a", "b"], [["x|y", "1"]]).splitlines()[-1] == "| x\\|y | 1 |"
    with pytest.raises(ValueError, match="expected 2"):
        report.table(["a", "b"], [["only one"]])


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "B.md"
    report.write_atomic(path, "old")
    report.write_atomic(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["B.md"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # Not mkstemp's private 0o600.


# --------------------------------------------------------------------------- #
# The compared programs compute the same thing.
# --------------------------------------------------------------------------- #

SIZES = [64, 16, 16, 16, 10]


def _losses(trainer, params, keys, x, y, steps=5):
    run = jax.vmap(models.full_run(*trainer, steps=steps, batch=8), in_axes=(0, 0, None, None))
    return np.asarray(jax.jit(run)(params, keys, x, y))


def test_hand_written_and_jaxstab_training_agree():
    params, keys = models.init_params(SIZES, 3)
    x, y = models.device_data(models.digits())
    hand = _losses(models.hand_trainer(lr=0.1, clip=1.0), params, keys, x, y)
    library = _losses(models.jaxstab_trainer(lr=0.1, clip=1.0), params, keys, x, y)
    assert hand.shape == (3, 5)
    np.testing.assert_allclose(hand, library, rtol=1e-4, atol=1e-5)


def test_split_and_stacked_layouts_train_the_same_network():
    params, keys = models.init_params(SIZES, 3)
    x, y = models.device_data(models.digits())
    opts = dict(lr=0.1, clip=1.0)
    expected = _losses(models.jaxstab_trainer(**opts, split=False), params, keys, x, y)
    losses = _losses(models.jaxstab_trainer(**opts), params, keys, x, y)
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-6)


def test_hand_measurements_equal_the_engines_diagnostics():
    params, _ = models.init_params(SIZES, 1)
    one = jax.tree.map(lambda a: a[0], params)
    data = models.eval_data(models.digits(), diag=64)
    train_loss, test_loss, test_acc, q, dead, grad_norm, signal = models.hand_measurements(
        models.to_layers(one), data
    )
    fwd, bwd = js.diagnostics.layer_stats(one, data["x_diag"], data["y_diag"], "relu")
    logits = js.apply_mlp(one, data["x_test"])
    expected = js.softmax_cross_entropy(js.apply_mlp(one, data["x_eval"]), data["y_eval"]).mean()
    np.testing.assert_allclose(train_loss, expected, rtol=1e-5)
    np.testing.assert_allclose(test_loss, js.softmax_cross_entropy(logits, data["y_test"]).mean())
    np.testing.assert_allclose(test_acc, js.accuracy(logits, data["y_test"]))
    np.testing.assert_allclose(q, fwd.second_moment, rtol=1e-5)
    np.testing.assert_allclose(dead, fwd.dead_fraction)
    np.testing.assert_allclose(grad_norm, bwd.grad_norm, rtol=1e-4)
    np.testing.assert_allclose(signal, bwd.signal_second_moment, rtol=1e-4)


def test_seed_sharding_uses_the_devices_that_divide_the_seeds():
    devices = [jax.devices()[0]] * 1  # the test process has one CPU device
    assert models.sharded_count(6) == len(jax.devices())
    tree = {"a": jnp.arange(6.0).reshape(6, 1)}
    placed = models.shard_seeds(tree, devices)
    np.testing.assert_array_equal(placed["a"], tree["a"])
    assert placed["a"].devices() == {devices[0]}


def test_to_layers_matches_apply_mlp():
    params = js.init_mlp(jax.random.key(0), SIZES)
    x = jax.random.normal(jax.random.key(1), (4, 64))
    layers = models.to_layers(params)
    assert [w.shape for w, _ in layers] == [(64, 16), (16, 16), (16, 16), (16, 10)]
    np.testing.assert_allclose(
        models.apply_layers(layers, x), js.apply_mlp(params, x), rtol=1e-5, atol=1e-5
    )


def test_torch_model_holds_the_same_weights():
    torch = pytest.importorskip("torch")
    params = js.init_mlp(jax.random.key(0), SIZES)
    layers = [(np.asarray(w), np.asarray(b)) for w, b in models.to_layers(params)]
    x = np.array(jax.random.normal(jax.random.key(1), (4, 64)))
    loop = torch_baseline.TorchLoop(x, np.zeros(4), batch=2, lr=0.1, clip=1.0)
    with torch.no_grad():
        out = loop._model(layers)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, js.apply_mlp(params, jnp.asarray(x)), rtol=1e-4, atol=1e-5)
    losses = loop([layers, layers], 3)
    assert losses.shape == (2, 3) and np.isfinite(losses).all()


# --------------------------------------------------------------------------- #
# Memory analysis.
# --------------------------------------------------------------------------- #


def test_memory_analysis_adds_up_and_nested_remat_keeps_less():
    # Activations [512, 32] (64 KiB a layer) outweigh a layer's weights (4 KiB).
    shape = dict(depth=257, width=32, batch=512)
    plain = memory.analyse(js.apply_mlp, **shape)
    assert (
        plain["peak"] == plain["arguments"] + plain["outputs"] + plain["temps"] - plain["aliased"]
    )
    n_params = 64 * 32 + 32 + 256 * (32 * 32 + 32) + 32 * 10 + 10
    assert plain["arguments"] >= 4 * (n_params + 512 * 64)
    assert plain["outputs"] >= 4 * n_params
    remat = memory.analyse(lambda p, x, a: js.apply_mlp(p, x, a, remat=True), **shape)
    nested = memory.analyse(lambda p, x, a: js.apply_mlp(p, x, a, remat="sqrt"), **shape)
    # remat=True keeps every layer's input, 256 x 64 KiB = 16 MiB; two-level remat
    # 16 block inputs and one block of 16 layers.
    assert plain["temps"] >= remat["temps"] >= 256 * 512 * 32 * 4
    assert nested["temps"] < remat["temps"] / 4
