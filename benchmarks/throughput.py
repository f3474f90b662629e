"""Section ``throughput``: training throughput of many seeds on the digits.

``examples x steps x seeds`` per second of a whole training run (``steps``
SGD steps on random minibatches from given initial weights, clipping on),
steady state: every JAX program is compiled (and the engine run once) before
it is timed, and its compile time is reported apart. The implementations are
timed round robin, one call each per round, so the goals' ratios are paired
per round.

The vmapped programs run once on every device (on a CPU, one device per
core: :func:`jaxstab.set_cpu_devices`, which ``python -m benchmarks`` calls
first) and once on one device: the hand-written ones with their seeds axis
sharded, the engine with its fixed-size blocks of runs spread over the devices
(:mod:`jaxstab.engine`). On one device the engine reuses the executable it
compiled for that device, so row (b) shows no compile time of its own. The two Python
loops over seeds run their seeds one after the other, so their throughput does
not depend on how many seeds they run; they are timed on the first
``loop_seeds`` seeds to keep the run short.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from benchmarks import models, torch_baseline
from benchmarks.gpu import GPU_PLATFORMS
from benchmarks.report import Goal, Section
from benchmarks.settings import Settings
from benchmarks.timing import Stats, interleaved, ratio, summarize

log = logging.getLogger("benchmarks")

ENGINE = "(a) jaxstab engine, experiment.run, blocks of runs spread over all devices"
ENGINE_1 = "(b) jaxstab engine, experiment.run, one device"
HAND_JOB = (
    "(c) hand-written JAX, the engine's job (training + evaluations + statistics), all devices"
)
HAND_JOB_1 = "(d) = (c) on one device"
HAND_1 = "(e) hand-written JAX, training only, vmapped, one device"
TORCH = "(f) PyTorch, Python loop over seeds (training only)"
LOOP = "(g) jaxstab, Python loop of one jitted run per seed"
STACKED = "(h) jaxstab library step, vmapped, one device, init_mlp layout (before split_stacks)"
SPLIT = "(i) = (h) with split_stacks (after; as the engine trains)"
ORDER = (ENGINE, ENGINE_1, HAND_JOB, HAND_JOB_1, HAND_1, TORCH, LOOP, STACKED, SPLIT)
ONE_DEVICE = {ENGINE_1: ENGINE, HAND_JOB_1: HAND_JOB}  # = their sharded row on one device
GOAL_TORCH = 2.5
GOAL_HAND = 0.95


def engine_runner(
    settings: Settings, devices: list[jax.Device] | None = None
) -> tuple[Callable[[], Any] | None, str]:
    """``jaxstab.experiment.run`` of the section's config on ``devices``, or None and why not."""
    try:
        from jaxstab.experiment import Config
        from jaxstab.experiment import run as engine_run

        cfg = Config(
            depth=settings.depth,
            width=settings.width,
            activation="relu",
            init="he_normal",
            optimizer="sgd",
            lr=settings.lr,
            clip=settings.clip,
            batch_size=settings.batch,
            steps=settings.steps,
            eval_every=settings.steps,
            seeds=settings.seeds,
            dataset="digits",
        )
    except (ImportError, TypeError, ValueError) as e:
        return None, f"engine not available ({type(e).__name__}: {e})"
    data = models.digits()
    return (lambda: engine_run(cfg, data, devices=devices).train_loss), ""


def _compile(fn: Callable[..., Any], *args: Any) -> tuple[Callable[[], Any], float]:
    """AOT-compiles ``jit(fn)`` for ``args``: the bound executable and the seconds it took."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return functools.partial(compiled, *args), time.perf_counter() - start


def _throughput_ratio(times: Any, work: dict[str, int], num: str, den: str, cpu: bool) -> Stats:
    """Per-round throughput of ``num`` over that of ``den``."""
    samples = times.cpu if cpu else times.wall
    return ratio(samples[den], samples[num]).scaled(work[num] / work[den])


def run(settings: Settings) -> Section:
    """Measures the section."""
    s = settings
    sizes = models.mlp_sizes(s.depth, s.width)
    x, y = models.device_data(models.digits())
    params, keys = models.init_params(sizes, s.seeds)
    n_devices = models.sharded_count(s.seeds)
    one_device = [jax.devices()[0]]
    opts = dict(lr=s.lr, clip=s.clip)
    loop_opts = dict(steps=s.steps, batch=s.batch)
    fns: dict[str, Callable[[], Any]] = {}
    compile_s: dict[str, str] = {}
    missing: dict[str, str] = {}
    seeds = dict.fromkeys(ORDER, s.seeds)
    seeds[LOOP] = seeds[TORCH] = min(s.loop_seeds, s.seeds)
    if n_devices == 1:
        for name, same in ONE_DEVICE.items():
            missing[name] = f"= {same[:3]} (one device here)"

    first: dict[str, float] = {}
    for name, devices in ((ENGINE, None), (ENGINE_1, one_device)):
        if name in missing:
            continue
        engine, why = engine_runner(s, devices)
        if engine is None:
            missing[name] = why
            continue
        start = time.perf_counter()
        engine()
        first[name] = time.perf_counter() - start
        log.info("  %s: first call (compiles) %.1f s", name[:3], first[name])
        fns[name] = engine

    # (f): one compiled single-seed run, called once per seed.
    one_seed = models.full_run(*models.jaxstab_trainer(**opts), **loop_opts)
    per_seed = list(zip(models.unstack(params, seeds[LOOP]), list(keys)))
    start = time.perf_counter()
    one = jax.jit(one_seed).lower(*per_seed[0], x, y).compile()
    compile_s[LOOP] = f"{time.perf_counter() - start:.2f} s"
    fns[LOOP] = lambda: [one(p, k, x, y) for p, k in per_seed]

    # (c), (d), (e), (h), (i): vmap over seeds of a whole run.
    vmapped = lambda trainer: jax.vmap(
        models.full_run(*trainer, **loop_opts), in_axes=(0, 0, None, None)
    )
    for name, program, devices in (
        (HAND_1, vmapped(models.hand_trainer(**opts)), one_device),
        (STACKED, vmapped(models.jaxstab_trainer(**opts, split=False)), one_device),
        (SPLIT, vmapped(models.jaxstab_trainer(**opts)), one_device),
    ):
        placed = models.shard_seeds((params, keys), devices)
        fns[name], seconds = _compile(program, *placed, x, y)
        compile_s[name] = f"{seconds:.2f} s"
    job = jax.vmap(models.hand_engine_run(**opts, **loop_opts), in_axes=(0, 0, None, None, None))
    eval_data = models.eval_data(models.digits())
    for name, devices in ((HAND_JOB, None), (HAND_JOB_1, one_device)):
        if name not in missing:
            placed = models.shard_seeds((params, keys), devices)
            whole, seconds = _compile(job, *placed, x, y, eval_data)
            # One program: its losses are ready when the measurements are.
            fns[name] = lambda whole=whole: whole()[0]
            compile_s[name] = f"{seconds:.2f} s"

    if torch_baseline.available():
        dev = torch_baseline.device(prefer_gpu=jax.devices()[0].platform in GPU_PLATFORMS)
        data = models.digits()
        loop = torch_baseline.TorchLoop(
            data.x_train, data.y_train, batch=s.batch, **opts, device=dev
        )
        initial = [
            [(np.asarray(w), np.asarray(b)) for w, b in models.to_layers(p)] for p, _ in per_seed
        ]
        threads = torch_baseline.fastest_threads(loop, initial)
        fns[TORCH] = lambda: loop(initial, s.steps)
        compile_s[TORCH] = f"— (eager, {dev}, {threads} thread{'s' * (threads > 1)})"
    else:
        missing[TORCH] = "not installed"

    # A whole run takes seconds at full size, where one untimed call each would
    # add minutes; the tiny runs are short enough that first-call costs show.
    times = interleaved(fns, s.throughput_repeats, warmup=1 if s.tiny else 0)
    work = {name: s.batch * s.steps * n for name, n in seeds.items()}
    for name, seconds in first.items():
        steady = summarize(times.wall[name]).median
        compile_s[name] = f"{max(0.0, seconds - steady):.2f} s (first call - steady)"

    section = Section(
        key="throughput",
        title="training throughput of many seeds",
        intro=(
            f"{s.seeds} seeds of a depth-{s.depth}, width-{s.width} ReLU MLP on the digits "
            f"(1347 x 64, 10 classes), batch {s.batch}, {s.steps} steps, clip by global norm "
            f"{s.clip:g}, SGD lr {s.lr:g}; every implementation draws each step's minibatch as "
            f"{s.batch} indices with replacement. Throughput = examples x steps x seeds per "
            "second of a whole run, compile excluded; median (min-max) over "
            f"{s.throughput_repeats} rounds, the implementations timed round robin. "
            f'"All devices" = the {n_devices} devices the seeds are sharded over, or the '
            "engine's blocks of 8 runs spread over "
            f"({jax.devices()[0].platform}; on a CPU, one per core, set by "
            "`jaxstab.set_cpu_devices`). Besides training, the engine evaluates the loss on "
            "the training set and loss and accuracy on the test set, and takes per-layer "
            "statistics of 256 examples (one forward and backward pass), at init and at the "
            "end: (c) and (d) do the same by hand, the other rows only train. (c)-(i) start "
            "from the same He-normal weights (the engine draws its own). The loops (f) and "
            f"(g) run seeds one after the other and are timed on {seeds[LOOP]} seeds. "
            "PyTorch runs with the thread count that was faster in a short trial."
        ),
        columns=[
            "implementation",
            "seeds timed",
            "seconds per run (wall)",
            "examples·steps·seeds / s (wall)",
            "CPU seconds per seed",
            "compile",
            "final loss (mean of the last 10 steps)",
        ],
    )
    for name in ORDER:
        if name in missing:
            section.rows.append([name, "—", missing[name], "—", "—", "—", "—"])
            continue
        t = summarize(times.wall[name])
        cpu = summarize(times.cpu[name]).scaled(1 / seeds[name])
        loss = np.reshape(np.asarray(jax.tree.map(np.asarray, times.last[name])), (-1, s.steps))
        section.rows.append(
            [
                name,
                str(seeds[name]),
                t.fmt(unit="s"),
                t.inverse(work[name]).fmt(),
                cpu.fmt(unit="s"),
                compile_s[name],
                f"{float(np.nanmean(loss[:, -10:])):.3f}",
            ]
        )
    goals = [
        (ENGINE, TORCH, GOAL_TORCH, "jaxstab engine / PyTorch loop"),
        (ENGINE, HAND_JOB, GOAL_HAND, "jaxstab engine / the same job by hand, all devices"),
    ]
    if n_devices > 1:
        label = "jaxstab engine / the same job by hand, one device"
        goals.append((ENGINE_1, HAND_JOB_1, GOAL_HAND, label))
    label = "jaxstab library training step / hand-written training, one device"
    goals.append((SPLIT, HAND_1, GOAL_HAND, label))
    for num, den, target, label in goals:
        name = f"throughput of the {label}"
        if num in fns and den in fns:
            r = _throughput_ratio(times, work, num, den, cpu=False)
            r_cpu = _throughput_ratio(times, work, num, den, cpu=True)
            spread = f"{r.lo:.2f}-{r.hi:.2f}, {r.n} rounds"
            section.goals.append(
                Goal(name, r.median, target, True, spread=spread, cpu_value=r_cpu.median)
            )
        else:
            reason = missing.get(num) or missing.get(den, "")
            section.goals.append(Goal(name, None, target, True, reason=reason))
    base = HAND_1
    lines = []
    for name in ORDER:
        if name in fns and name != base:
            r = _throughput_ratio(times, work, name, base, cpu=False)
            r_cpu = _throughput_ratio(times, work, name, base, cpu=True)
            lines.append(f"| {name} | {r.fmt()} | {r_cpu.fmt()} |")
    section.notes.append(
        f"Throughput relative to {base[:3]}, hand-written training on one device, per "
        "round:\n\n| implementation | from wall-clock time | from CPU time |\n|---|---|---|\n"
        + "\n".join(lines)
    )
    return section
