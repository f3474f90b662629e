"""One engine job, twice, in a fresh process: the worker of the ``dispatch`` section.

Usage (the section runs it with ``PYTHONPATH`` set to the tree under test, the
current one or an older commit's, and this file by path so that nothing else
of this checkout is imported)::

    python benchmarks/dispatch_job.py --devices 2 --depth 8 --width 128 --seeds 32 \\
        --steps 200 --batch 128 --lr 0.05 --clip 1 --eval-every 50 --losses OUT.npy

It sets ``devices`` JAX CPU devices, trains one config with
``jaxstab.experiment.run_many`` (first call: compiles and runs), then the same
config again (steady state: the compiled programs are reused), and prints one
JSON line: both calls' wall seconds and, where the engine reports them, its
``timings``. The first call's final training losses go to ``--losses``.
Only names that both the old engine (one SPMD program sharded over the
devices) and the new one (fixed-size blocks dispatched per device) share are
used: ``Config``, ``run_many``, ``set_cpu_devices``, ``load_digits``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from typing import Any

T0 = time.perf_counter()

import numpy as np  # noqa: E402

import jaxstab  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Runs the job twice; prints the timings as one JSON line."""
    p = argparse.ArgumentParser(prog="dispatch_job.py")
    for name, kind in (
        ("devices", int),
        ("depth", int),
        ("width", int),
        ("seeds", int),
        ("steps", int),
        ("batch", int),
        ("eval-every", int),
        ("lr", float),
        ("clip", float),
    ):
        p.add_argument(f"--{name}", type=kind, required=True)
    p.add_argument("--losses", required=True)
    a = p.parse_args(argv)
    jaxstab.set_cpu_devices(a.devices)
    from jaxstab.data import load_digits
    from jaxstab.experiment import Config, run_many

    config = Config(
        depth=a.depth,
        width=a.width,
        activation="relu",
        init="he_normal",
        optimizer="sgd",
        lr=a.lr,
        clip=a.clip,
        batch_size=a.batch,
        steps=a.steps,
        eval_every=a.eval_every,
        seeds=a.seeds,
        dataset="digits",
    )
    data = load_digits()
    has_timings = "timings" in inspect.signature(run_many).parameters
    out: dict[str, Any] = {"import": time.perf_counter() - T0, "jaxstab": jaxstab.__file__}
    for call in ("first", "second"):
        timings: dict[str, float] = {}
        kwargs: dict[str, Any] = {"timings": timings} if has_timings else {}
        start = time.perf_counter()
        results, _ = run_many([config], data, **kwargs)
        out[call] = time.perf_counter() - start
        if has_timings:
            out[f"{call}_timings"] = timings
        if call == "first":
            np.save(a.losses, np.asarray(results[0].eval_train_loss))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
