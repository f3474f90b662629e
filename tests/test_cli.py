"""The command line end to end: outputs, resume (kill -9, added seeds, another device
count, corrupt parts), the lock, report, figures that cannot fail, and bad input.

One training program serves nearly every test (depth 2, width 8, tanh, SGD, one CPU
device): in-process runs share its executable, subprocesses jax's persistent cache.
"""

import contextlib
import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from jaxstab import cli
from jaxstab.data import get_dataset
from jaxstab.sweep import report, runner, store

TINY = [
    "--depths", "2", "--widths", "8", "--activations", "tanh",
    "--inits", "xavier_normal,he_normal", "--lrs", "0.1", "--clips", "none,1.0",
    "--steps", "8", "--eval-every", "4", "--batch-size", "16", "--dataset", "mixture",
    "--quiet", "--cpu-devices", "1",
]  # fmt: skip
SEEDS = 4  # 4 grid points x 4 seeds = 16 runs: two blocks of 8
TABLES = ("results.csv", "curves.csv", "layer_stats.csv")


def _cmd(out, *extra, seeds=SEEDS):
    return [sys.executable, "-m", "jaxstab", "sweep", *TINY, "--seeds", str(seeds),
            "--out", str(out), *extra]  # fmt: skip


def _main(*args):
    """cli.main in this process, on this process's one CPU device."""
    args = [str(a) for a in args]
    if args[0] == "sweep" and "--cpu-devices" not in args:
        args += ["--cpu-devices", "1"]
    return cli.main(args)


def _tables(out):
    return {name: (Path(out) / name).read_text() for name in TABLES}


def _rows(out, name="results.csv"):
    with open(Path(out) / name, newline="") as f:
        return list(csv.DictReader(f))


def _snapshot(folder):
    folder = Path(folder)
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep, run as the installed command would run it."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    proc = subprocess.run(_cmd(out, "--profile"), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


# --- what a sweep writes -------------------------------------------------------------


def test_sweep_writes_every_output(reference):
    out, stdout = reference
    rows = _rows(out)
    assert list(rows[0]) == report.result_columns()
    assert len(rows) == 4 * SEEDS
    assert [r["seed_index"] for r in rows[:SEEDS]] == [str(s) for s in range(SEEDS)]
    assert {(r["init"], r["clip"]) for r in rows} == {
        (i, c) for i in ("xavier_normal", "he_normal") for c in ("", "1.0")
    }
    assert {r["clip_rate"] for r in rows if r["clip"] == ""} == {"0.0"}  # nothing to clip
    assert len({r["name"] for r in rows}) == 4
    # curves.csv: one row per run and step 0..8, keyed like results.csv
    curves = _rows(out, "curves.csv")
    assert len(curves) == len(rows) * 9
    for r in rows:
        mine = [c for c in curves if (c["name"], c["seed_index"]) == (r["name"], r["seed_index"])]
        assert [int(c["step"]) for c in mine] == list(range(9))
        assert mine[8]["eval_train_loss"] == r["final_train_loss"]
        assert mine[0]["grad_norm"] == r["grad_norm_init"]
        assert all(c[k] == r[k] for c in mine for k in report.run_columns())
    # layer_stats.csv: one row per run, {init, final} and hidden layer
    stats = _rows(out, "layer_stats.csv")
    assert len(stats) == len(rows) * 2 * 2
    assert {(s["when"], s["layer"]) for s in stats} == {
        (w, str(layer)) for w in ("init", "final") for layer in (1, 2)
    }
    # config.json: the sweep, the data set by content, and provenance
    record = json.loads((out / "config.json").read_text())
    assert record["format"] == store.FORMAT
    assert record["sweep"]["depths"] == [2] and record["sweep"]["seeds"] == SEEDS
    assert record["sweep"]["clips"] == [None, 1.0]
    assert record["dataset"]["name"] == "mixture" and record["dataset"]["source"] == "mixture"
    assert record["dataset"]["sha256"] == runner.dataset_digest(get_dataset("mixture"))
    (created,) = record["history"]
    assert created["action"] == "created"
    assert created["command"] == shlex.join(["jaxstab", *_cmd(out, "--profile")[3:]])
    assert created["devices"]["count"] == 1 and created["versions"]["jax"]
    # figures decode as images; the summary and the timing lines are printed
    import matplotlib.image

    for name in ("loss_vs_depth.png", "divergence.png", "layer_stats_init.png"):
        assert matplotlib.image.imread(out / "figures" / name).ndim == 3
    assert "4 grid points x 4 seeds = 16 runs (0 resumed, 16 trained)" in stdout
    assert "time: compile" in stdout and "per program group:" in stdout
    assert sum(line.endswith(("0/4", "1/4", "2/4", "3/4", "4/4")) for line in
               stdout.splitlines()) == 4  # fmt: skip
    assert not [p for p in out.rglob(f"{store.TMP_PREFIX}*")]


def test_report_is_read_only_unless_asked_for_figures(reference, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    shutil.rmtree(out / "figures")
    before = _snapshot(out)
    os.chmod(out, 0o555)
    try:
        assert cli.main(["report", str(out)]) == 0
    finally:
        os.chmod(out, 0o755)
    assert _snapshot(out) == before
    printed = capsys.readouterr().out
    assert printed == report.summary_table(report.read_results(out)) + "\n"
    assert cli.main(["report", str(out), "--figures"]) == 0
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "divergence.png", "layer_stats_init.png", "loss_vs_depth.png"
    ]  # fmt: skip


# --- resume ------------------------------------------------------------------------------


def test_resume_adding_seeds_equals_an_uninterrupted_run(reference, tmp_path, capsys):
    out = tmp_path / "grow"
    assert _main("sweep", *TINY, "--seeds", 2, "--out", out, "--no-figures") == 0
    assert _main("sweep", "--out", out, "--resume", "--seeds", SEEDS, "--quiet",
                 "--no-figures") == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "16 runs (8 resumed, 8 trained)" in printed
    assert _tables(out) == _tables(reference[0])  # bit-identical, every table
    parts = sorted(p.name.split(".")[-2] for p in (out / "parts").iterdir())
    assert parts == ["seeds0-1"] * 4 + ["seeds2-3"] * 4
    history = json.loads((out / "config.json").read_text())["history"]
    assert [h["action"] for h in history] == ["created", "resumed"]
    assert history[1]["added"] == {"seeds": [0, 3]}


def test_resume_adding_grid_values_keeps_the_old_rows(reference, tmp_path, capsys):
    out = tmp_path / "wider"
    shutil.copytree(reference[0], out)
    assert _main("sweep", "--out", out, "--resume", "--lrs", "0.05", "--quiet",
                 "--no-figures") == 0  # fmt: skip
    assert "32 runs (16 resumed, 16 trained)" in capsys.readouterr().out
    rows = _rows(out)
    assert [r for r in rows if r["lr"] == "0.1"] == _rows(reference[0])
    assert len([r for r in rows if r["lr"] == "0.05"]) == 16
    history = json.loads((out / "config.json").read_text())["history"]
    assert history[-1]["added"] == {"lrs": [0.05]}


def test_resume_on_another_device_count_gives_the_same_rows(reference, tmp_path):
    out = tmp_path / "devices"
    assert _main("sweep", *TINY, "--seeds", 1, "--out", out, "--no-figures") == 0
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")  # the default cache location, fresh
    cmd = [sys.executable, "-m", "jaxstab", "sweep", "--out", str(out), "--resume",
           "--seeds", str(SEEDS), "--cpu-devices", "2", "--quiet", "--no-figures"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stderr
    # One XLA compile serves both CPU devices.
    assert "16 runs (4 resumed, 12 trained), 1 program compiled" in proc.stdout
    assert _tables(out) == _tables(reference[0])
    assert json.loads((out / "config.json").read_text())["history"][1]["devices"]["count"] == 2
    cache = tmp_path / "xdg" / "jaxstab" / "jax"
    assert cache.is_dir() and any(cache.iterdir())  # compiled programs were cached there


def test_kill_minus_9_then_resume_gives_the_same_rows(reference, tmp_path, capsys):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not (out / "config.json").exists():
        time.sleep(0.01)
    time.sleep(np.random.default_rng().uniform(0.0, 1.0))
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / "results.csv").exists() or len(_rows(out)) == 16
    (out / "parts").mkdir(exist_ok=True)
    (out / "parts" / f"{store.TMP_PREFIX}x.npz.abc").write_bytes(b"half a part")  # a kill mid-write
    assert _main("sweep", "--out", out, "--resume", "--quiet", "--no-figures") == 0
    # The planted one, and any the kill itself cut short mid-write.
    removed = re.search(
        r"removed (\d+) temporary file\(s\) left by a killed sweep", capsys.readouterr().err
    )
    assert removed is not None and int(removed.group(1)) >= 1
    assert _tables(out) == _tables(reference[0])
    assert not list(out.rglob(f"{store.TMP_PREFIX}*"))


def test_a_corrupt_part_is_recomputed(reference, tmp_path, capsys):
    out = tmp_path / "corrupt"
    shutil.copytree(reference[0], out)
    part = sorted((out / "parts").iterdir())[1]
    part.write_bytes(part.read_bytes()[:100])
    (out / "results.csv").write_text("depth,width\n2\n")  # and a mangled table
    assert _main("sweep", "--out", out, "--resume", "--quiet", "--no-figures") == 0
    captured = capsys.readouterr()
    assert f"note: {part} is corrupt (" in captured.err
    assert "removed, its runs are recomputed" in captured.err
    assert "16 runs (12 resumed, 4 trained)" in captured.out
    assert _tables(out) == _tables(reference[0])


def test_report_on_corrupt_tables_says_which_file(reference, tmp_path, capsys):
    out = tmp_path / "bad"
    shutil.copytree(reference[0], out)
    text = (out / "results.csv").read_text().splitlines()
    (out / "results.csv").write_text("\n".join([*text[:3], text[3][:20]]) + "\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["report", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == f"jaxstab report: error: {out / 'results.csv'} is corrupt (line 4 has " + (
        f"{text[3][:20].count(',') + 1} fields, not {len(report.result_columns())})\n"
    )


# --- grids that used to go wrong -----------------------------------------------------------


def test_close_learning_rates_are_distinct_rows(reference, tmp_path):
    out = tmp_path / "close"
    args = [a if a != "0.1" else "0.1,0.1000001" for a in TINY]
    assert _main("sweep", *args, "--seeds", 1, "--out", out, "--no-figures") == 0
    rows = _rows(out)
    assert len(rows) == 8 and len({r["name"] for r in rows}) == 8
    assert sorted({r["lr"] for r in rows}) == ["0.1", "0.1000001"]
    ref = [r for r in _rows(reference[0]) if r["seed_index"] == "0"]
    assert [r for r in rows if r["lr"] == "0.1"] == ref


def test_a_dataset_path_with_dotdot_stays_out_of_file_names(reference, tmp_path, monkeypatch):
    data = get_dataset("mixture")
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "mix.npz", x_train=data.x_train, y_train=data.y_train,
             x_test=data.x_test, y_test=data.y_test)  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = [a if a != "mixture" else "../data/mix.npz" for a in TINY]
    assert _main("sweep", *args, "--seeds", 1, "--out", "out", "--no-figures") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "work"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["mix.npz"]
    assert sorted(p.name for p in work.iterdir()) == ["out"]
    assert all(p.parent == work / "out" / "parts" for p in (work / "out" / "parts").rglob("*"))
    record = json.loads((work / "out" / "config.json").read_text())["dataset"]
    assert record["name"] == "mix" and record["source"] == str(tmp_path / "data" / "mix.npz")
    assert record["sha256"] == runner.dataset_digest(data)  # the same content as "mixture"
    metrics = list(report.RESULT_METRICS)
    ref = [r for r in _rows(reference[0]) if r["seed_index"] == "0"]
    assert [[r[m] for m in metrics] for r in _rows(work / "out")] == [
        [r[m] for m in metrics] for r in ref
    ]
    # resumed from elsewhere without --dataset: the recorded absolute path is used
    monkeypatch.chdir(tmp_path)
    assert _main("sweep", "--out", "work/out", "--resume", "--seeds", 2, "--quiet",
                 "--no-figures") == 0  # fmt: skip
    assert len(_rows(work / "out")) == 8


def test_a_fully_diverged_activation_still_gives_figures_and_a_summary(tmp_path, capsys):
    out = tmp_path / "diverged"
    args = ["sweep", *TINY, "--activations", "tanh,relu", "--lrs", "1e4", "--clips", "none",
            "--inits", "he_normal", "--seeds", 2, "--out", out]  # fmt: skip
    assert _main(*args) == 0
    captured = capsys.readouterr()
    rows = _rows(out)
    relu = [r for r in rows if r["activation"] == "relu"]
    assert relu and all(r["diverged"] == "True" and r["final_train_loss"] == "nan" for r in relu)
    assert "warning" not in captured.err
    table = [line.split() for line in captured.out.splitlines() if line.split()[:1] == ["relu"]]
    assert table == [["relu", "-", "[-,", "-]", "-", "[-,", "-]", "2/2"]]
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "divergence.png", "layer_stats_init.png", "loss_vs_depth.png"
    ]  # fmt: skip


# --- the lock ----------------------------------------------------------------------------


def test_a_second_sweep_on_a_locked_directory_exits_2_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "busy"
    holder = store.Lock(out)
    holder.acquire()
    try:
        started = json.loads((out / ".lock").read_text())["started"]
        with pytest.raises(SystemExit) as e:
            _main("sweep", *TINY, "--seeds", 1, "--out", out, "--resume")
    finally:
        holder.release()
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        f"jaxstab sweep: error: {out} is in use by another jaxstab sweep "
        f"(pid {os.getpid()}, started {started}); wait for it to finish or choose another --out\n"
    )
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_two_concurrent_sweeps_on_one_directory(reference, tmp_path):
    out = tmp_path / "both"
    procs = [
        subprocess.Popen(_cmd(out, "--resume", "--no-figures"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    results = [(p.pid, *p.communicate(timeout=1800), p.returncode) for p in procs]
    assert sorted(r[3] for r in results) in ([0, 0], [0, 2])
    for pid, _, err, code in results:
        assert "Traceback" not in err
        if code == 2:
            other = next(r[0] for r in results if r[0] != pid)
            assert f"is in use by another jaxstab sweep (pid {other}, started " in err
    assert _tables(out) == _tables(reference[0])


# --- bad input ---------------------------------------------------------------------------

BAD = [
    # (flag, value, the message or the words it must hold: the option and the value)
    ("--depths", "2,-4", ["--depths: depth", "-4"]),
    ("--depths", "2,,4", "malformed list '2,,4' for --depths"),
    ("--depths", "2,2", "--depths lists the value 2 twice"),
    ("--widths", "abc", "bad width 'abc': expected an integer"),
    ("--activations", "tanh,relux", "unknown activation 'relux'; valid: sigmoid, tanh, relu"),
    ("--inits", "he", "unknown init 'he'; valid: xavier_uniform"),
    ("--optimizers", "lbfgs", "unknown optimizer 'lbfgs'; valid: sgd, momentum, adam"),
    ("--schedules", "linear", "unknown schedule 'linear'; valid: constant, warmup_cosine"),
    ("--lrs", "0.1,-1", ["--lrs: lr", "-1.0"]),
    ("--lrs", "nan", ["--lrs: lr", "nan"]),
    ("--lrs", "0.1,0.10", "--lrs lists the value 0.1 twice ('0.1' and '0.10' are equal)"),
    ("--clips", "none,0", ["--clips: clip", "0.0"]),
    ("--clips", "off", "bad clip 'off': expected a number or none"),
    ("--momenta", "1", ["--momenta: momentum", "1.0"]),
    ("--warmups", "2", ["--warmups: warmup", "2.0"]),
    ("--init-gains", "0", ["--init-gains: init_gain", "0.0"]),
    ("--weight-decays", "-1", ["--weight-decays: weight_decay", "-1.0"]),
    ("--seeds", "0", ["seeds", "0"]),
    ("--seed", str(2**63), ["seed", str(2**63)]),
    ("--seed", "2**63", "bad seed '2**63': expected an integer"),
    ("--first-seed", "2147483647", "--first-seed 2147483647 with --seeds 4 runs past seed index"),
    ("--steps", "2147483648", "--steps 2147483648 is too large: at most 2147483647"),
    ("--eval-every", "3", "eval_every=3 must divide steps=8"),
    ("--batch-size", "-1", ["batch_size", "-1"]),
    ("--dataset", "imagenet", "unknown data set 'imagenet'; valid names: digits, teacher, mixture"),
    ("--dataset", "missing.npz", "missing.npz"),
    ("--cpu-devices", "1000", "CPU device count 1000 is out of range: 1 to"),
    ("--cpu-devices", "many", "bad CPU device count 'many'"),
    # requests that cannot fit: refused before anything runs, naming estimate and limit
    ("--widths", "100000", "of memory for its largest program (depth 2, width 100000, sgd"),
    ("--depths", "100000", "of memory for its largest program (depth 100000, width 64"),
    ("--steps", "1000000000", "of memory for its largest program (depth 2, width 8"),
    ("--seeds", "100000000", "of memory for its largest program (depth 2, width 8, sgd: "),
]  # fmt: skip


@pytest.mark.parametrize("flag,value,message", BAD, ids=[f"{f} {v}" for f, v, _ in BAD])
def test_bad_input_exits_2_naming_the_value_and_writes_nothing(tmp_path, capsys, flag, value,
                                                                message):  # fmt: skip
    out = tmp_path / "never"
    args = ["sweep", *TINY, "--seeds", str(SEEDS), "--out", str(out)]
    if flag == "--depths" and value == "100000":
        args[args.index("--widths") + 1] = "64"
    if flag == "--steps":
        args[args.index("--eval-every") + 1] = "1000" if value == "1000000000" else "4"
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(SystemExit) as e:
        _main(*args)
    err = capsys.readouterr().err
    assert e.value.code == 2
    words = [message] if isinstance(message, str) else message
    assert all(w in err.splitlines()[-1] for w in words), err
    assert "Traceback" not in err
    assert not out.exists() and sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "not npz"])
def test_a_corrupt_dataset_file_exits_2_naming_it(tmp_path, capsys, damage):
    data = get_dataset("mixture")
    path = tmp_path / "data.npz"
    np.savez(path, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
             y_test=data.y_test)  # fmt: skip
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"hello")
    args = [a if a != "mixture" else str(path) for a in TINY]
    with pytest.raises(SystemExit) as e:
        _main("sweep", *args, "--out", tmp_path / "never")
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--dataset {path}" in err and err.count("\n") == 1
    assert not (tmp_path / "never").exists()


def _sweep_dir(tmp_path, reference):
    out = tmp_path / "existing"
    shutil.copytree(reference[0], out)
    return out


DIRS = [
    # (how to damage the directory, extra arguments, message)
    (lambda out: None, [], "already holds a sweep; pass --resume to continue or extend it"),
    (lambda out: None, ["--resume", "--steps", "12", "--eval-every", "4"],
     "fixed settings differ (--steps 8 before, 12 now)"),
    (lambda out: None, ["--resume", "--first-seed", "6", "--seeds", "1"],
     "seeds 6..6 leave a gap after the sweep's seeds 0..3"),
    (lambda out: None, ["--resume", "--dataset", "teacher"],
     "the data set teacher (sha256 "),
    (lambda out: (out / "config.json").write_text('{"format": "jaxstab-sweep/2", "sw'),
     ["--resume"], "config.json is corrupt (not valid JSON: "),
    (lambda out: (out / "config.json").write_text('{"sweep": {"depths": [2]}}'),
     ["--resume"], "was written by an older jaxstab whose results are not comparable"),
    (lambda out: [p.unlink() for p in out.iterdir() if p.is_file()] and None,
     ["--resume"], "is not a jaxstab sweep directory (it holds files but no config.json)"),
]  # fmt: skip


@pytest.mark.parametrize("damage,extra,message", DIRS, ids=[m[:30] for _, _, m in DIRS])
def test_bad_directory_exits_2_and_changes_nothing(reference, tmp_path, capsys, damage, extra,
                                                   message):  # fmt: skip
    out = _sweep_dir(tmp_path, reference)
    damage(out)
    before = _snapshot(out)
    with pytest.raises(SystemExit) as e:
        _main("sweep", "--out", out, "--quiet", *extra)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert _snapshot(out) == before


def test_resume_refuses_a_directory_that_is_not_a_sweep(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "important.txt").write_text("keep me")
    with pytest.raises(SystemExit) as e:
        _main("sweep", *TINY, "--out", out, "--resume")
    assert e.value.code == 2 and "not a jaxstab sweep directory" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["important.txt"]


@pytest.mark.parametrize("under_a_file", [False, True])
def test_out_that_is_a_file_or_under_one_exits_2(tmp_path, capsys, under_a_file):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub" if under_a_file else blocker
    with pytest.raises(SystemExit) as e:
        _main("sweep", *TINY, "--out", out)
    expected = (
        f"--out {out} cannot be created: {blocker} is not a directory"
        if under_a_file
        else f"--out {out} exists and is not a directory"
    )
    assert e.value.code == 2 and expected in capsys.readouterr().err
    assert blocker.read_text() == "x"


def test_report_of_a_non_sweep_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["report", str(tmp_path)])
    assert e.value.code == 2 and "holds no results.csv" in capsys.readouterr().err


def test_bad_input_count():
    # The bad-input suite of this file, counted so a shrinking table is noticed.
    print(f"bad inputs tried: {len(BAD)} values + {len(DIRS) + 4} directories")
    assert len(BAD) + len(DIRS) + 4 >= 40


# --- interrupts -------------------------------------------------------------------------


def _interrupt_last_line(err):
    return [line for line in err.splitlines() if line.strip()][-1]


def test_sigint_gives_130_one_line_and_a_resumable_directory(reference, tmp_path):
    rng = np.random.default_rng()
    for i in range(3):  # at random moments of a real process's life, compile included
        out = tmp_path / f"int{i}"
        proc = subprocess.Popen(_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        deadline = time.time() + 600
        while time.time() < deadline and not (out / ".lock").exists():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode in (0, 130), err
        assert "Traceback" not in err and "Segmentation" not in err
        if proc.returncode == 130:
            assert _interrupt_last_line(err) == (
                f"jaxstab sweep: interrupted; rerun with --resume to finish {out}"
            )
        if (out / "config.json").exists():
            assert _main("sweep", "--out", out, "--resume", "--quiet", "--no-figures") == 0
            assert _tables(out) == _tables(reference[0])
        else:
            assert not out.exists() or sorted(p.name for p in out.iterdir()) == [".lock"]


def test_an_interrupt_inside_the_write_probe_leaves_no_directory(tmp_path, monkeypatch):
    # The probe's temporary file exists when the interrupt lands: the refused start
    # must still remove parts/ and the directory it created.
    from jaxstab.sweep import store

    def interrupted_probe(folder):
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.mkstemp(dir=folder, prefix=f"{store.TMP_PREFIX}probe.")
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "probe_writable", interrupted_probe)
    out = tmp_path / "new"
    assert _main("sweep", *TINY, "--seeds", "1", "--out", out, "--no-figures") == 130
    assert not out.exists()


@contextlib.contextmanager
def _swallow_late_sigint():
    """A SIGINT that lands after cli.main restored the handler must not stop pytest."""
    previous = signal.signal(signal.SIGINT, lambda *a: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
# An interrupt that lands between open() and its `with` leaks that file to the collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_sigint_at_30_random_moments_in_process(reference, tmp_path, capsys):
    import threading

    args = ["sweep", *TINY, "--seeds", str(SEEDS), "--no-figures"]
    assert _main(*args, "--out", tmp_path / "warm") == 0  # compiles the program in this process
    durations = []  # one whole sweep, compiled; the least of three, as a busy moment stretches one
    for i in range(3):
        t0 = time.perf_counter()
        assert _main(*args, "--out", tmp_path / f"timed{i}") == 0
        durations.append(time.perf_counter() - t0)
    duration = min(durations)
    rng = np.random.default_rng(0)
    outcomes = []
    for i in range(30):
        out = tmp_path / f"r{i}"
        timer = threading.Timer(
            rng.uniform(0.0, duration), lambda: os.kill(os.getpid(), signal.SIGINT)
        )
        with _swallow_late_sigint():
            timer.start()
            code = _main(*args, "--out", out)
            timer.join()
        outcomes.append(code)
        assert code in (0, 130)
        if code == 130:
            assert _interrupt_last_line(capsys.readouterr().err).startswith(
                "jaxstab sweep: interrupted; rerun with --resume to finish"
            )
        if not (out / "config.json").exists():  # stopped before the sweep was recorded
            assert not out.exists() or [p.name for p in out.iterdir()] in ([], [".lock"])
        assert _main(*args, "--out", out, "--resume") == 0  # resumable, whatever the moment
        assert _tables(out) == _tables(reference[0])
    assert outcomes.count(130) >= 20  # nearly every moment falls inside the sweep


# --- start-up ----------------------------------------------------------------------------


def test_the_command_line_imports_no_plotting_or_data_libraries():
    code = (
        "import sys, jaxstab.cli as c; c._parser()\n"
        "print(sorted(m for m in ('matplotlib', 'sklearn', 'tqdm', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr


def test_compile_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.compile_cache_dir() == tmp_path / "jaxstab" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cli.compile_cache_dir() == Path.home() / ".cache" / "jaxstab" / "jax"
