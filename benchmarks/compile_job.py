"""One training job in a fresh process: through the engine, or as a hand-written program.

Usage (the time-to-result section starts it, under :mod:`benchmarks.compile_events`)::

    python -m benchmarks.compile_job {engine,hand} --depth 8 --width 128 --seeds 32 \\
        --steps 200 --batch 128 --lr 0.05 --clip 1 --eval-every 50

Both do the same job on the digits, on one JAX CPU device per core (as
``jaxstab sweep``): ``seeds`` He-normal ReLU MLPs, SGD with global-norm
clipping, the engine's evaluations every ``eval-every`` steps and its
per-layer statistics at init and at the end.

* ``engine``: :func:`jaxstab.experiment.run_many` of one config; its compile
  time is the engine's own ``check + lower + compile`` timings.
* ``hand``: :func:`benchmarks.models.init_params`' initialization and
  :func:`benchmarks.models.hand_engine_run`, vmapped over seeds and sharded
  over the devices; its compile time is ``jit(...).lower(...).compile()`` of
  the two programs, timed with a stopwatch.

Prints one JSON line: ``{"compile": seconds, "job": seconds of the whole job, ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import jaxstab as js


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The job's sizes."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.compile_job")
    p.add_argument("what", choices=["engine", "hand"])
    for name, kind in (
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
    return p.parse_args(argv)


def engine_job(a: argparse.Namespace) -> dict[str, float]:
    """The job through ``jaxstab.experiment.run_many``; the engine's phase timings."""
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
    timings: dict[str, float] = {}
    start = time.perf_counter()
    run_many([config], data, timings=timings)
    job = time.perf_counter() - start
    compile_s = sum(timings.get(k, 0.0) for k in ("check", "lower", "compile"))
    return {"compile": compile_s, "job": job, **{f"engine_{k}": v for k, v in timings.items()}}


def hand_job(a: argparse.Namespace) -> dict[str, float]:
    """The job as the hand-written programs, compiled ahead of time, then run."""
    import jax

    from benchmarks import models

    start = time.perf_counter()
    data = models.digits()
    sizes = models.mlp_sizes(a.depth, a.width)
    init = jax.jit(jax.vmap(lambda k: js.init_mlp(k, sizes, weight_init=js.he_normal())))
    run = jax.jit(
        jax.vmap(
            models.hand_engine_run(
                lr=a.lr, clip=a.clip, steps=a.steps, batch=a.batch, eval_every=a.eval_every
            ),
            in_axes=(0, 0, None, None, None),
        )
    )
    keys = jax.random.split(jax.random.key(0), (2, a.seeds))
    x, y = models.device_data(data)
    eval_data = models.eval_data(data)
    t0 = time.perf_counter()
    init_exe = init.lower(keys[0]).compile()
    t1 = time.perf_counter()
    params, data_keys = models.shard_seeds((init_exe(keys[0]), keys[1]))
    t2 = time.perf_counter()
    run_exe = run.lower(params, data_keys, x, y, eval_data).compile()
    t3 = time.perf_counter()
    jax.block_until_ready(run_exe(params, data_keys, x, y, eval_data))
    job = time.perf_counter() - start
    return {"compile": (t1 - t0) + (t3 - t2), "job": job, "compile_init": t1 - t0}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the job; prints its timings as one JSON line."""
    a = parse_args(argv)
    js.set_cpu_devices()  # one device per core, before the first JAX operation
    out = engine_job(a) if a.what == "engine" else hand_job(a)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
