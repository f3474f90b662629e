"""The sweep store: atomic files, the lock, config.json, parts and CSV tables on disk."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxstab.sweep import store


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(RuntimeError), store.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    store.write_text(target, "whole")
    assert target.read_text() == "whole" and sorted(tmp_path.iterdir()) == [target]
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_stale_temps_are_found_and_removed(tmp_path):
    (tmp_path / "parts").mkdir()
    stale = [
        tmp_path / f"{store.TMP_PREFIX}results.csv.x1",
        tmp_path / "parts" / f"{store.TMP_PREFIX}p.npz.x2",
    ]
    keep = [tmp_path / "results.csv", tmp_path / "parts" / "a.seeds0-1.npz"]
    for p in stale + keep:
        p.write_text("x")
    assert sorted(store.remove_stale_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_lock_is_exclusive_and_names_its_holder(tmp_path):
    out = tmp_path / "sweep"
    first = store.Lock(out)
    first.acquire(command="jaxstab sweep --out x")
    info = json.loads((out / ".lock").read_text())
    assert info["pid"] == os.getpid() and info["command"] == "jaxstab sweep --out x"
    holder = f"pid {os.getpid()}, started {info['started']}"
    assert store.lock_holder(out) == holder
    with pytest.raises(store.SweepError) as e:
        store.Lock(out).acquire()  # flock conflicts between open files, even in one process
    assert str(e.value) == (
        f"{out} is in use by another jaxstab sweep ({holder}); "
        "wait for it to finish or choose another --out"
    )
    first.release()
    assert store.lock_holder(out) is None
    with store.Lock(out):  # free again; the file stays
        pass


def test_a_killed_holder_frees_the_lock(tmp_path):
    code = (
        "import sys, os; from pathlib import Path; from jaxstab.sweep import store; "
        "store.Lock(Path(sys.argv[1])).acquire(); os._exit(9)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    assert proc.wait(timeout=120) == 9
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid
    assert store.lock_holder(tmp_path) is None  # the kernel released it with the process


@pytest.mark.parametrize(
    "make,state",
    [
        (lambda p: None, "missing"),
        (lambda p: p.mkdir(), "empty"),
        (lambda p: (p.mkdir(), (p / ".lock").write_text("")), "empty"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "sweep"),
        (lambda p: (p.mkdir(), (p / "important.txt").write_text("keep")), "foreign"),
    ],
)
def test_dir_state(tmp_path, make, state):
    out = tmp_path / "out"
    make(out)
    assert store.dir_state(out) == state


def test_dir_state_refuses_files_where_directories_are_needed(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(store.SweepError, match=f"--out {blocker} exists and is not a directory"):
        store.dir_state(blocker)
    with pytest.raises(store.SweepError, match=f"cannot be created: {blocker} is not a directory"):
        store.dir_state(blocker / "sub" / "deeper")


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"format": "jaxstab-sweep/2", "sweep": ', "config.json is corrupt (not valid JSON: "),
        ("[1, 2]", "config.json is corrupt (a JSON list, not an object)"),
        ('{"sweep": {"depths": [2]}}', "written by an older jaxstab"),
        ('{"format": "other"}', "is not a jaxstab sweep record (format 'other'"),
        (
            '{"format": "jaxstab-sweep/2", "sweep": {}}',
            "config.json is corrupt (no 'dataset' entry)",
        ),
    ],
)
def test_read_config_names_the_file(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(store.SweepError) as e:
        store.read_config(tmp_path)
    assert str(tmp_path / "config.json") in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_config_round_trip(tmp_path):
    record = {"sweep": {"depths": [2, 4], "lrs": [0.1, 0.1000001]}, "dataset": {}, "history": []}
    store.write_config(tmp_path, record)
    assert store.read_config(tmp_path) == {"format": store.FORMAT, **record}


def test_parts_round_trip_and_corruption(tmp_path):
    config = {"name": "d2-w8-abc", "first_seed": 3, "seeds": 2, "lr": 0.1}
    arrays = {"train_loss": np.arange(8, dtype=np.float32).reshape(2, 4)}
    path = store.write_part(tmp_path, config, arrays)
    assert path == tmp_path / "parts" / "d2-w8-abc.seeds3-4.npz"
    (part,) = store.list_parts(tmp_path)
    assert part == store.Part(path, "d2-w8-abc", 3, 4)
    got_config, got_arrays = store.load_part(part)
    assert got_config == config and np.array_equal(got_arrays["train_loss"], arrays["train_loss"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated by a crash of the disk, say
    with pytest.raises(store.SweepError, match=rf"^{path} is corrupt \("):
        store.load_part(part)
    renamed = path.with_name("d2-w8-abc.seeds0-1.npz")
    path.write_bytes(data)
    path.rename(renamed)
    with pytest.raises(store.SweepError, match="its contents do not match its name"):
        store.load_part(store.list_parts(tmp_path)[0])


def test_csv_round_trip_and_one_sentence_errors(tmp_path):
    path = tmp_path / "t.csv"
    store.write_csv(path, ["a", "b"], [["1", "0.5"], ["2", "nan"]])
    rows = store.read_csv(path, {"a": int}, default=float)
    assert rows[0] == {"a": 1, "b": 0.5} and rows[1]["a"] == 2 and np.isnan(rows[1]["b"])
    path.write_text("a,b\n1,0.5\n2\n")
    with pytest.raises(store.SweepError, match=r"t.csv is corrupt \(line 3 has 1 fields, not 2\)"):
        store.read_csv(path, {"a": int})
    path.write_text("a,b\nx,0.5\n")
    with pytest.raises(store.SweepError, match=r"corrupt \(line 2: a = 'x' is not valid\)"):
        store.read_csv(path, {"a": int})
    with pytest.raises(store.SweepError, match=r"corrupt or of another version \(no column 'c'\)"):
        store.read_csv(path, {"c": int})
    path.write_bytes(b"")
    with pytest.raises(store.SweepError, match="empty, no header"):
        store.read_csv(path, {})


def test_probe_writable_is_a_real_write(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(store.SweepError, match=f"cannot write into {blocker / 'parts'}"):
        store.probe_writable(blocker / "parts")
    store.probe_writable(tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []


def test_provenance_records_versions_command_and_commit():
    import jax
    import jaxlib

    import jaxstab

    argv = ["jaxstab", "sweep", "--dataset", "my data.npz"]
    p = store.provenance(argv)
    assert p["command"] == shlex.join(argv) == "jaxstab sweep --dataset 'my data.npz'"
    assert p["versions"]["jax"] == jax.__version__
    assert p["versions"]["jaxlib"] == jaxlib.__version__
    assert p["versions"]["jaxstab"] == jaxstab.__version__
    assert p["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert p["devices"]["count"] == len(jax.devices()) and p["processes"] == 1
    root = Path(jaxstab.__file__).resolve().parents[1]
    if (root / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert p["git"]["commit"] == head
    else:
        assert p["git"] is None


def test_free_disk_and_memory_are_positive(tmp_path):
    assert store.free_disk(tmp_path / "not" / "yet") == store.free_disk(tmp_path) > 0
    mem = store.available_memory()
    assert mem is None or mem > 0
