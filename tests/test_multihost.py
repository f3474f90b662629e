"""A multi-host sweep for real: 2 local processes with jax.distributed over CPU (gloo).

Each process runs ``jaxstab sweep --distributed`` with ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` set, as the README documents; each
computes its share of the blocks, and process 0 gathers and writes.
"""

import json
import os
import socket
import subprocess
import sys

from test_cli import SEEDS, TINY, _main, _tables


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(out, *extra):
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(rank)}  # fmt: skip
        cmd = [sys.executable, "-m", "jaxstab", "sweep", "--distributed", *TINY,
               "--seeds", str(SEEDS), "--out", str(out), "--no-figures", *extra]  # fmt: skip
        procs.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    return [(p, *p.communicate(timeout=1800)) for p in procs]


def test_two_processes_give_the_single_process_rows(tmp_path):
    single = tmp_path / "single"
    assert _main("sweep", *TINY, "--seeds", SEEDS, "--out", single, "--no-figures") == 0
    out = tmp_path / "multi"
    (p0, out0, err0), (p1, out1, err1) = _two_processes(out)
    assert p0.returncode == 0, err0
    assert p1.returncode == 0, err1
    assert "16 runs (0 resumed, 16 trained)" in out0
    assert "runs" not in out1  # only process 0 reports (gloo prints its own lines)
    assert _tables(out) == _tables(single)  # bit-identical to one process
    created = json.loads((out / "config.json").read_text())["history"][0]
    assert created["processes"] == 2 and created["devices"]["count"] == 2


def test_a_refusal_on_process_0_stops_both(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (p0, _, err0), (p1, _, err1) = _two_processes(blocker)
    assert (p0.returncode, p1.returncode) == (2, 2)
    assert f"--out {blocker} exists and is not a directory" in err0
    assert "process 0 refused the sweep: --out" in err1
