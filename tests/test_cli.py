"""The command line end to end: files, resume after kill -9, report, bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxstab import cli

SMALL = [
    "--depths", "1,2", "--widths", "8", "--activations", "tanh", "--inits",
    "xavier_normal,he_normal", "--lrs", "0.1", "--clips", "none,1.0", "--seeds", "2",
    "--steps", "8", "--eval-every", "4", "--batch-size", "16", "--dataset", "mixture", "--quiet",
]  # fmt: skip
COLUMNS = {
    "depth", "width", "activation", "init", "optimizer", "lr", "clip", "seed",
    "final_train_loss", "test_loss", "test_accuracy", "diverged", "diverged_step",
}  # fmt: skip


def _sweep(out, *extra, **kw):
    cmd = [sys.executable, "-m", "jaxstab", "sweep", *SMALL, "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


def _rows(out):
    with open(Path(out) / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "sweep"
    proc = _sweep(out)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_sweep_writes_every_output(full_run):
    out, stdout = full_run
    rows = _rows(out)
    assert len(rows) == 2 * 2 * 2 * 2  # depths x inits x clips x seeds
    assert COLUMNS <= set(rows[0])
    assert {r["clip"] for r in rows} == {"", "1.0"}
    config = json.loads((out / "config.json").read_text())
    assert config["sweep"]["depths"] == [1, 2] and config["devices"] and config["jax"]
    for name in ("curves.npz", "layer_stats.npz"):
        assert (out / name).stat().st_size > 0
    for fig in ("loss_vs_depth.png", "divergence.png", "layer_stats_init.png"):
        assert (out / "figures" / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 programs compiled" in stdout  # one per depth: inits and clips are vmapped
    assert "train loss" in stdout.splitlines()[0]


def test_report_redraws_from_files(full_run, capsys):
    out, _ = full_run
    fig = out / "figures" / "loss_vs_depth.png"
    fig.unlink()
    assert cli.main(["report", str(out)]) == 0
    assert fig.exists() and "test acc" in capsys.readouterr().out


def test_kill_minus_9_then_resume_gives_the_same_rows(full_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "jaxstab", "sweep", *SMALL, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "parts").glob("*.json")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = len(list((out / "parts").glob("*.json")))
    assert 1 <= done_before < 8  # killed after the first configuration, before the end
    resumed = _sweep(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    assert _rows(out) == _rows(full_run[0])  # none lost, none duplicated, same numbers


def test_resume_with_other_fixed_settings_refuses(full_run, capsys):
    out, _ = full_run
    args = ["sweep", *SMALL, "--out", str(out), "--resume"]
    args[args.index("--steps") + 1] = "12"
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 2
    assert "fixed settings differ (steps: 8" in capsys.readouterr().err


def test_existing_dir_without_resume_refuses(full_run, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", *SMALL, "--out", str(full_run[0])])
    assert e.value.code == 2 and "pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--depths", "2,-4", "bad depth (a positive int) '-4'"),
        ("--depths", "2,,4", "malformed list '2,,4'"),
        ("--widths", "abc", "bad width (a positive int) 'abc'"),
        ("--activations", "tanh,relux", "unknown activation 'relux'; valid: sigmoid, tanh, relu"),
        ("--inits", "he", "unknown init 'he'; valid: xavier_uniform"),
        ("--optimizers", "lbfgs", "unknown optimizer 'lbfgs'; valid: sgd, momentum, adam"),
        ("--lrs", "0.1,-1", "bad learning rate (a positive number) '-1'"),
        ("--clips", "none,0", "bad clip (none or a positive number) '0'"),
        ("--seeds", "0", "bad number of seeds (a positive int) '0'"),
        ("--eval-every", "3", "eval_every=3 must divide steps=8"),
        (
            "--dataset",
            "imagenet",
            "unknown data set 'imagenet'; valid names: digits, teacher, mixture",
        ),
        ("--dataset", "missing.npz", "missing.npz"),
    ],
)
def test_bad_input_exits_2_before_any_work(tmp_path, capsys, flag, value, message):
    out = tmp_path / "never"
    args = ["sweep", *SMALL, "--out", str(out)]
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # no partial directory


def test_unwritable_out_exits_2(tmp_path, capsys):
    if os.geteuid() == 0:  # root may write anywhere: use a path under a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "sub"
        expected = "is not a directory"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "sub"
        expected = "is not writable"
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", *SMALL, "--out", str(out)])
    assert e.value.code == 2 and expected in capsys.readouterr().err


def test_report_of_a_non_sweep_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["report", str(tmp_path)])
    assert e.value.code == 2 and "holds no results.csv" in capsys.readouterr().err
