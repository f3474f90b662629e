"""The benchmark suite: a tiny end-to-end run, and its helpers against hand counts.

No test here asserts a speed: machines are noisy. The end-to-end run checks
that every section still runs and reports; the unit tests check the numbers
that are not timings (FLOP counts, memory analysis, summaries) and that the
compared programs compute the same thing.
"""

import json
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
    compile_events,
    compile_time,
    memory,
    models,
    processes,
    report,
    settings,
    time_to_result,
    timing,
    torch_baseline,
    utilization,
)


def _tiny_report(tmp_path, only):
    """``python -m benchmarks --tiny --only ONLY``: the Markdown report and the raw JSON."""
    out, raw = tmp_path / "B.md", tmp_path / "B.json"
    args = ["--tiny", "--only", only, "--out", str(out), "--json", str(raw)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        env={**os.environ, "JAX_NUMPY_RANK_PROMOTION": "raise"},
        capture_output=True,
        text=True,
        timeout=2400,  # minutes of XLA compiles on a loaded 2-core machine
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not list(tmp_path.glob(".bench-*")), "a temporary file was left behind"
    return out.read_text(), json.loads(raw.read_text())


def _goal_rows(text):
    """The Goals table's rows as {ratio name: (value cell, verdict cell)}."""
    goals = text.split("## Goals")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in goals.splitlines() if line.startswith("| ")][1:]
    return {cells[1]: (cells[2], cells[-1].rstrip(" |")) for cells in rows}


def _check_goals(text, raw):
    """Every goal of the JSON is a row of the Goals table with its value and verdict."""
    rows = _goal_rows(text)
    n_goals = 0
    for section in raw.values():
        for goal in section["goals"]:
            n_goals += 1
            value, verdict = rows[goal["name"]]
            expected = "—" if goal["value"] is None else f"{goal['value']:.3f}"
            assert value == expected, goal["name"]
            g = report.Goal(**goal)
            assert verdict == g.verdict, goal["name"]
    assert len(rows) == n_goals


@pytest.mark.slow
def test_tiny_in_process_sections(tmp_path):
    only = "compile,throughput,utilization,memory,gpu"
    text, raw = _tiny_report(tmp_path, only)
    assert sorted(raw) == sorted(only.split(","))
    for key in raw:
        assert f"\n## {key}: " in text, key
    _check_goals(text, raw)
    # The run shards over one CPU device per usable core, as `jaxstab sweep` does.
    devices = next(line for line in text.splitlines() if line.startswith("| devices | "))
    assert devices.count("cpu:") == len(os.sched_getaffinity(0))
    # compile: the goal's pair; throughput: the engine against PyTorch, by hand, by library.
    names = [g["name"] for s in raw.values() for g in s["goals"]]
    assert any("compile(depth 8)" in n for n in names)
    assert sum(n.startswith("throughput of the") for n in names) == (
        4 if len(os.sched_getaffinity(0)) > 1 else 3
    )


@pytest.mark.bench
def test_tiny_whole_process_sections(tmp_path):
    text, raw = _tiny_report(tmp_path, "time_to_result,dispatch")
    _check_goals(text, raw)
    goals = {g["name"][:3]: g for g in raw["time_to_result"]["goals"]}
    assert sorted(goals) == ["(a)", "(b)", "(c)", "(d)", "(e)"]
    data = raw["time_to_result"]["data"]
    wall = lambda kind: [p["wall"] for p in data[kind]]
    comp = lambda kind: [p["compile_wall"] for p in data[kind]]
    # Each ratio is the median of the per-round ratios of the measured processes.
    if goals["(a)"]["value"] is not None:
        expected = np.median(np.divide(wall("32/torch"), wall("32/jaxstab")))
        np.testing.assert_allclose(goals["(a)"]["value"], expected, rtol=1e-12)
        expected = np.median(np.divide(wall("default/torch"), wall("default/jaxstab")))
        np.testing.assert_allclose(goals["(b)"]["value"], expected, rtol=1e-12)
    expected = np.median(np.divide(comp("compile/engine"), comp("compile/hand")))
    np.testing.assert_allclose(goals["(c)"]["value"], expected, rtol=1e-12)
    expected = np.median(np.divide(comp("second/jaxstab"), wall("second/jaxstab")))
    np.testing.assert_allclose(goals["(d)"]["value"], expected, rtol=1e-12)
    quick = [np.median(wall(k)) for k in data if k.startswith("quick/")]
    np.testing.assert_allclose(goals["(e)"]["value"], max(quick), rtol=1e-12)
    for kind, procs in data.items():
        for p in procs:
            # A process cannot compile for longer than it ran.
            assert p["compile_wall"] is None or 0 <= p["compile_wall"] < p["wall"], kind
    assert all(p["compile_wall"] > 0 for p in data["32/jaxstab"] + data["compile/hand"])
    # dispatch: old and new engine on 1 device and on one per core, one sample a round.
    counts = sorted({1, len(os.sched_getaffinity(0))})
    dispatch = raw["dispatch"]["data"]
    assert sorted(dispatch) == sorted(f"{e}/{n}" for e in ("new", "old") for n in counts)
    for samples in dispatch.values():
        assert all(0 < s["second"] and s["first"] + s["second"] < s["wall"] for s in samples)
    for s in dispatch["new/1"]:
        assert s["timings"]["executables"] == 1  # one block program, one device


def test_only_rejects_unknown_sections_and_lists_valid_ones(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "compile,bogus"])
    err = capsys.readouterr().err
    assert "bogus" in err and "throughput" in err
    assert cli.parse_args(["--only", "memory, gpu"]).only == ["memory", "gpu"]
    with pytest.raises(SystemExit):
        cli.parse_args(["--repeats", "0"])


# --------------------------------------------------------------------------- #
# Time to result: the plan of processes and the goals, with a fake process runner.
# --------------------------------------------------------------------------- #


# Wall seconds of each kind of process in round 1, and its compile seconds.
FAKE_WALL = {"32/jaxstab": 10.0, "32/torch": 25.0, "default/jaxstab": 40.0,
            "default/torch": 100.0, "second/jaxstab": 30.0, "compile/engine": 9.0,
            "compile/hand": 8.0}  # fmt: skip
FAKE_COMPILE = {"32/jaxstab": 4.0, "default/jaxstab": 20.0, "second/jaxstab": 2.0,
               "compile/engine": 3.0, "compile/hand": 2.0}  # fmt: skip


class FakeRunner:
    """Answers each command line with made-up times that depend on its kind and round."""

    def __init__(self):
        self.calls = []

    def kind(self, args):
        if "benchmarks.torch_sweep" in args:
            job = "32" if args[args.index("--seeds") + 1] == "4" else "default"
            by_hand = args[args.index("--seeds-mode") + 1] == "bmm"
            return f"{job}/torch" + "-bmm" * by_hand
        if "benchmarks.compile_job" in args:
            return f"compile/{args[2]}"
        if args[1].startswith("experiments."):
            return f"quick/{args[1].split('.')[1]}"
        if args[args.index("--widths") + 1] == "16":  # the tiny 32-seed job
            return "32/jaxstab"
        lr = args[args.index("--lrs") + 1]
        job = "default" if lr == "0.02" else "second"
        return f"{job}/jaxstab"

    def __call__(self, args, *, cache_dir=None, compile_events=False, **kwargs):
        kind = self.kind(args)
        if "--seeds-mode" in args and args[args.index("--steps") + 1] == "5":  # the trial
            self.calls.append(("trial", list(args), cache_dir, compile_events))
            mode = args[args.index("--seeds-mode") + 1]
            train = {"loop": 3.0, "vmap": 2.0}[mode]
            return processes.Process(1.0, 1.0, json.dumps({"seconds": {"train": train}}))
        self.calls.append((kind, list(args), cache_dir, compile_events))
        n = sum(c[0] == kind for c in self.calls)  # this kind's round, from 1
        wall = FAKE_WALL.get(kind, 5.0) * n  # later rounds slower: ratios stay paired
        events = None
        if compile_events:
            events = {"compile_wall": FAKE_COMPILE.get(kind, 1.0) * n}
        return processes.Process(wall, 2 * wall, "", events)


def test_time_to_result_goals_are_the_per_round_ratios_of_the_processes():
    runner = FakeRunner()
    conf = settings.tiny(repeats=3)
    plan, samples, trial = time_to_result.measure(
        conf,
        runner,
        sweep_options={"--quiet", "--no-figures", "--cache-dir"},
        torch=True,
        trial=True,
    )
    # The trial chose the fastest way to train the seeds, per job.
    assert plan.torch_modes == {"32": "vmap", "default": "vmap"}
    assert [row[1:] for row in trial] == [["3.00 s", "2.00 s (chosen)"]] * 2
    assert [c[0] for c in runner.calls[:4]] == ["trial"] * 4  # 2 jobs x 2 modes first
    kinds = [c[0] for c in runner.calls[4:]]
    per_round = len(kinds) // 3
    assert kinds[:per_round] * 3 == kinds  # the same order in every round
    assert per_round == len(samples.by_kind) == 10  # 9 kinds + 1 experiment at tiny size
    goals = {g.name[:3]: g for g in time_to_result.goals(plan, samples)}
    # Walls scale by the round number, so every per-round ratio is the same.
    assert goals["(a)"].value == pytest.approx(25.0 / 10.0)
    assert goals["(b)"].value == pytest.approx(100.0 / 40.0)
    assert goals["(c)"].value == pytest.approx(3.0 / 2.0)
    assert goals["(d)"].value == pytest.approx(2.0 / 30.0)
    quick = time_to_result.quick_experiments(tiny=True)
    assert goals["(e)"].value == pytest.approx(5.0 * 2)  # the median of rounds 1, 2, 3
    assert quick[0] in goals["(e)"].name
    verdicts = {k: g.verdict for k, g in goals.items()}
    assert verdicts == {"(a)": "PASS", "(b)": "FAIL", "(c)": "PASS", "(d)": "PASS",
                        "(e)": "PASS"}  # fmt: skip
    section = time_to_result.build_section(plan, samples, trial)
    assert len(section.rows) == len(samples.by_kind)


def test_time_to_result_command_lines():
    runner = FakeRunner()
    plan, _, _ = time_to_result.measure(
        settings.tiny(repeats=1), runner, sweep_options={"--quiet", "--no-figures"}, torch=True
    )
    calls = {kind: (args, cache, events) for kind, args, cache, events in runner.calls}
    assert "trial" not in calls  # tiny sizes: no trial, batched matmuls
    job = time_to_result.jobs(tiny=True)
    for key in ("32", "default"):
        jax_args, torch_args = calls[f"{key}/jaxstab"][0], calls[f"{key}/torch"][0]
        # The same grid for both: jaxstab sweep's options, in the same words.
        assert jax_args[3 : 3 + len(job[key].args())] == job[key].args()
        assert torch_args[2 : 2 + len(job[key].args())] == job[key].args()
        assert jax_args[-2:] == ["--quiet", "--no-figures"] or jax_args[-2:] == [
            "--no-figures",
            "--quiet",
        ]
        assert torch_args[-4:] == ["--seeds-mode", "loop", "--threads", str(plan.threads)]
        assert calls[f"{key}/torch-bmm"][0][-4:-2] == ["--seeds-mode", "bmm"]
    # The second sweep reuses the default sweep's cache; the 32-seed job starts cold.
    assert calls["second/jaxstab"][1] == calls["default/jaxstab"][1]
    assert calls["32/jaxstab"][1] != calls["default/jaxstab"][1]
    # Every JAX process reports its compile events; PyTorch has none.
    assert all(events for kind, (_, _, events) in calls.items() if "torch" not in kind)
    assert not any(events for kind, (_, _, events) in calls.items() if "torch" in kind)
    second = job["second"]
    assert second.depths == job["default"].depths and second.lrs != job["default"].lrs


def test_default_job_is_the_sweeps_defaults():
    from jaxstab.sweep import SweepSpec

    if hasattr(SweepSpec, "make"):  # the spec derived from Config's settings
        spec = SweepSpec.make()
        get = spec.__getitem__
    else:
        spec = SweepSpec()
        get = lambda name: getattr(spec, name)
    job = time_to_result.jobs(tiny=False)["default"]
    for name in ("depths", "widths", "activations", "inits", "lrs", "clips"):
        assert getattr(job, name) == tuple(get(name)), name
    for name in ("seeds", "steps", "batch_size", "eval_every"):
        assert getattr(job, name) == get(name), name
    assert job.configs == 24 and tuple(get("optimizers")) == ("sgd",)


def test_union_of_compile_spans():
    assert compile_events.union_seconds([]) == 0.0
    assert compile_events.union_seconds([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == 4.0
    assert compile_events.union_seconds([(0.0, 10.0), (1.0, 2.0)]) == 10.0
    spans = {"trace": [(0.0, 1.0)], "compile": [(0.5, 2.0), (1.0, 1.5)]}
    record = compile_events.summarize(spans, {"cache_hits": 2})
    assert record["compile"] == {"events": 2, "seconds": 2.0}
    assert record["lower"] == {"events": 0, "seconds": 0}
    assert (record["compile_wall"], record["cache_hits"], record["cache_misses"]) == (2.0, 2, 0)


# --------------------------------------------------------------------------- #
# The PyTorch script: the same data and the same math in every way of training seeds.
# --------------------------------------------------------------------------- #


def test_torch_script_loads_jaxstabs_digits():
    pytest.importorskip("torch")
    from benchmarks import torch_sweep

    x_train, y_train, x_test, y_test = torch_sweep.load_digits()
    data = js.data.load_digits()
    np.testing.assert_allclose(x_train, data.x_train, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x_test, data.x_test, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y_train, data.y_train)
    np.testing.assert_array_equal(y_test, data.y_test)
    assert torch_sweep.weight_std("he_normal", 64, 10) == pytest.approx((2 / 64) ** 0.5)
    assert torch_sweep.weight_std("xavier_normal", 64, 10) == pytest.approx((2 / 74) ** 0.5)


@pytest.mark.parametrize("mode", ["loop", "vmap", "bmm"])
def test_torch_script_writes_every_run(tmp_path, mode, capsys):
    pytest.importorskip("torch")
    from benchmarks import torch_sweep

    job = time_to_result.Job((2, 3), (8,), ("tanh", "relu"), ("he_normal",), (0.1,), (1.0, None),
                             3, 6, 4, 3)  # fmt: skip
    assert torch_sweep.main([*job.args(), "--out", str(tmp_path), "--seeds-mode", mode]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["configs"] == job.configs == 8 and report["mode"] == mode
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + job.configs * job.seeds
    curves = np.load(tmp_path / "curves.npz")
    assert curves["0/train_loss"].shape == (job.seeds, job.steps)
    assert curves["0/evals"].shape == (job.seeds, job.steps // job.eval_every + 1, 3)
    stats = np.load(tmp_path / "layer_stats.npz")
    assert stats["7/final/grad_norm"].shape == (job.seeds, 3)  # config 7: depth 3
    assert np.isfinite(curves["0/train_loss"]).all()


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_torch_batched_step_equals_the_textbook_loop(act):
    torch = pytest.importorskip("torch")
    from benchmarks import torch_sweep

    gen = torch.Generator().manual_seed(0)
    sizes, seeds, lr, clip = [5, 7, 7, 3], 3, 0.5, 0.3
    ws = [torch.randn(seeds, a, b, generator=gen) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(seeds, 1, b, generator=gen) for b in sizes[1:]]
    xb = torch.randn(seeds, 4, sizes[0], generator=gen)
    yb = torch.randint(0, sizes[-1], (seeds, 4), generator=gen)
    expected_w, expected_loss = [], []
    for s in range(seeds):  # nn.Sequential + clip_grad_norm_ + SGD, one seed at a time
        layers = []
        for w, b in zip(ws, bs):
            linear = torch.nn.Linear(*w.shape[1:])
            with torch.no_grad():
                linear.weight.copy_(w[s].T)
                linear.bias.copy_(b[s, 0])
            layers += [linear, torch_sweep.ACTIVATION_MODULES[act]()]
        model = torch.nn.Sequential(*layers[:-1])
        loss = torch.nn.functional.cross_entropy(model(xb[s]), yb[s])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        torch.optim.SGD(model.parameters(), lr=lr).step()
        expected_w.append([m.weight.detach().T for m in model if hasattr(m, "weight")])
        expected_loss.append(loss.item())
    for grad_fn in (None, torch_sweep.vmap_grad(act)):
        w2, b2 = [w.clone() for w in ws], [b.clone() for b in bs]
        loss = torch_sweep.sgd_step(w2, b2, xb, yb, act, lr, clip, grad_fn)
        np.testing.assert_allclose(loss.numpy(), expected_loss, rtol=1e-5)
        for layer, w in enumerate(w2):
            for s in range(seeds):
                np.testing.assert_allclose(w[s], expected_w[s][layer], rtol=1e-5, atol=1e-6)


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
