"""Section ``throughput``: training throughput of many seeds on the digits.

``examples x steps x seeds`` per second of a whole training run (``steps``
SGD steps on random minibatches from given initial weights, clipping on),
steady state: every JAX program is compiled (and the engine run once) before
it is timed, and its compile time is reported apart. The implementations are
timed round robin, one call each per round, so the goals' ratios are paired
per round.

The two Python loops over seeds, (b) and (d), run their seeds one after the
other, so their throughput does not depend on how many seeds they run; they
are timed on the first ``loop_seeds`` seeds to keep the run short.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from benchmarks import models, prototypes, torch_baseline
from benchmarks.gpu import GPU_PLATFORMS
from benchmarks.report import Goal, Section
from benchmarks.settings import Settings
from benchmarks.timing import Stats, interleaved, ratio, summarize

log = logging.getLogger("benchmarks")

ENGINE = "(a) jaxstab engine: experiment.run"
LOOP = "(b) jaxstab, Python loop of one jitted run per seed"
HAND = "(c) hand-written JAX, vmapped"
TORCH = "(d) PyTorch, Python loop over seeds"
LIBRARY = "(e) jaxstab library step, vmapped, without the engine"
PROTO = f"(f) = (e) with stacks <= {prototypes.SPLIT_MAX} layers split (prototype)"
ORDER = (ENGINE, LOOP, HAND, TORCH, LIBRARY, PROTO)
GOAL_TORCH = 2.5
GOAL_HAND = 0.95


def engine_runner(settings: Settings) -> tuple[Callable[[], Any] | None, str]:
    """``jaxstab.experiment.run`` of the section's config, or None and why not."""
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
    return (lambda: engine_run(cfg, data).train_loss), ""


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
    opts = dict(lr=s.lr, clip=s.clip)
    loop_opts = dict(steps=s.steps, batch=s.batch)
    fns: dict[str, Callable[[], Any]] = {}
    compile_s: dict[str, str] = {}
    missing: dict[str, str] = {}
    seeds = dict.fromkeys(ORDER, s.seeds)
    seeds[LOOP] = seeds[TORCH] = min(s.loop_seeds, s.seeds)

    engine, why = engine_runner(s)
    if engine is None:
        missing[ENGINE] = why
    else:
        start = time.perf_counter()
        engine()
        first = time.perf_counter() - start
        log.info("  engine's first call (compiles): %.1f s", first)
        fns[ENGINE] = engine

    # (b): one compiled single-seed run, called once per seed.
    one_seed = models.full_run(*models.jaxstab_trainer(**opts), **loop_opts)
    per_seed = list(zip(models.unstack(params, seeds[LOOP]), list(keys)))
    start = time.perf_counter()
    one = jax.jit(one_seed).lower(*per_seed[0], x, y).compile()
    compile_s[LOOP] = f"{time.perf_counter() - start:.2f} s"
    fns[LOOP] = lambda: [one(p, k, x, y) for p, k in per_seed]

    # (c), (e), (f): vmap over seeds of a whole run.
    vmapped = lambda trainer: jax.vmap(
        models.full_run(*trainer, **loop_opts), in_axes=(0, 0, None, None)
    )
    for name, program in (
        (HAND, vmapped(models.hand_trainer(**opts))),
        (LIBRARY, vmapped(models.jaxstab_trainer(**opts))),
        (PROTO, vmapped(models.jaxstab_trainer(**opts, split=True))),
    ):
        fns[name], seconds = _compile(program, params, keys, x, y)
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
    if ENGINE in fns:
        steady = summarize(times.wall[ENGINE]).median
        compile_s[ENGINE] = f"{max(0.0, first - steady):.2f} s (first call - steady)"

    section = Section(
        key="throughput",
        title="training throughput of many seeds",
        intro=(
            f"{s.seeds} seeds of a depth-{s.depth}, width-{s.width} ReLU MLP on the digits "
            f"(1347 x 64, 10 classes), batch {s.batch}, {s.steps} steps, clip by global norm "
            f"{s.clip:g}, SGD lr {s.lr:g}; every implementation draws each step's minibatch as "
            f"{s.batch} indices with replacement. Throughput = examples x steps x seeds per "
            "second of a whole run, compile excluded; median (min-max) over "
            f"{s.throughput_repeats} rounds, the implementations timed round robin. (b)-(f) "
            "start from the same He-normal weights (the engine draws its own). The loops (b) "
            f"and (d) run seeds one after the other and are timed on {seeds[LOOP]} seeds. "
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
    for other, target, label in (
        (TORCH, GOAL_TORCH, "PyTorch loop"),
        (HAND, GOAL_HAND, "hand-written JAX"),
    ):
        name = f"throughput of the jaxstab engine / {label}"
        if ENGINE in fns and other in fns:
            r = _throughput_ratio(times, work, ENGINE, other, cpu=False)
            r_cpu = _throughput_ratio(times, work, ENGINE, other, cpu=True)
            spread = f"{r.lo:.2f}-{r.hi:.2f}, {r.n} rounds"
            section.goals.append(
                Goal(name, r.median, target, True, spread=spread, cpu_value=r_cpu.median)
            )
        else:
            reason = missing.get(ENGINE) or missing.get(other, "")
            section.goals.append(Goal(name, None, target, True, reason=reason))
    lines = []
    for name in ORDER:
        if name in fns and name != HAND:
            r = _throughput_ratio(times, work, name, HAND, cpu=False)
            r_cpu = _throughput_ratio(times, work, name, HAND, cpu=True)
            lines.append(f"| {name} | {r.fmt()} | {r_cpu.fmt()} |")
    section.notes.append(
        "Throughput relative to (c), the hand-written program, per round:\n\n"
        "| implementation | from wall-clock time | from CPU time |\n|---|---|---|\n"
        + "\n".join(lines)
    )
    return section
