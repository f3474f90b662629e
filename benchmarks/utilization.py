"""Section ``utilization``: matmul FLOP/s of a training step as a fraction of the machine's.

The step's FLOPs are counted analytically (:func:`benchmarks.models.matmul_flops`),
its time measured; the machine's reference is a large square float32 matmul
timed in the same rounds, so a slow spell of a shared machine scales both.
Each step runs on one device and, sharded over seeds, on all of them (on a CPU,
one device per core, set by ``python -m benchmarks``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import models
from benchmarks.report import Goal, Section
from benchmarks.settings import Settings
from benchmarks.timing import interleaved, ratio, summarize

GOAL = 0.40
GOAL_WIDTH = 256
PEAK = "peak"
JAXSTAB = "jaxstab step, seeds sharded over all devices"
HAND = "hand-written JAX step, seeds sharded over all devices"
JAXSTAB_1 = "jaxstab step, one device"
HAND_1 = "hand-written JAX step, one device"
STACKED_1 = "jaxstab step, one device, init_mlp layout (before split_stacks)"
ORDER = (JAXSTAB, HAND, JAXSTAB_1, HAND_1, STACKED_1)


def peak_runner(n: int) -> tuple[Callable[[], Any], int]:
    """A jitted ``[n, n] @ [n, n]`` float32 matmul and its FLOPs, ``2 n^3``."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    matmul = jax.jit(lambda a, b: a @ b)
    return (lambda: matmul(a, b)), 2 * n**3


def step_runner(
    trainer: tuple[models.Prepare, models.Step],
    params: Any,
    keys: jax.Array,
    *,
    steps: int,
    batch: int,
    devices: list[jax.Device] | None = None,
) -> Callable[[], Any]:
    """``steps`` training steps of all seeds (``vmap`` of a ``lax.scan``) per call.

    The state is donated to the compiled program and carried from call to
    call, as a training loop would. The seeds are sharded over ``devices``
    (default all; see :func:`benchmarks.models.shard_seeds`).
    """
    prepare, step = trainer
    x, y = models.device_data(models.digits())
    params, keys = models.shard_seeds((params, keys), devices)

    def chunk(state: Any, keys: jax.Array, x: jax.Array, y: jax.Array) -> Any:
        one = lambda s, k: models.train(step, s, k, x, y, steps=steps, batch=batch)[0]
        return jax.vmap(one)(state, keys)

    holder = [models.shard_seeds(jax.jit(jax.vmap(prepare))(params), devices)]
    # The state keeps its sharding from call to call.
    shardings = jax.tree.map(lambda a: a.sharding, holder[0])
    program = jax.jit(chunk, donate_argnums=0, out_shardings=shardings)
    compiled = program.lower(holder[0], keys, x, y).compile()

    def call() -> Any:
        holder[0] = compiled(holder[0], keys, x, y)
        return holder[0]

    return call


def steps_per_call(step_flops: int, call_gflop: float) -> int:
    """Training steps per timed call so that a call does about ``call_gflop`` GFLOP (>= 1).

    Example:
      >>> steps_per_call(3_000_000_000, 12.0), steps_per_call(50_000_000_000, 12.0)
      (4, 1)
    """
    return max(1, round(call_gflop * 1e9 / step_flops))


def run(settings: Settings) -> Section:
    """Measures the section."""
    s = settings
    widths = s.util_widths
    goal_width = GOAL_WIDTH if GOAL_WIDTH in widths else widths[len(widths) // 2]
    peak, peak_flops = peak_runner(s.peak_n)
    n_devices = models.sharded_count(s.seeds)
    one = [jax.devices()[0]]
    section = Section(
        key="utilization",
        title="matmul FLOP/s of a training step, as a fraction of the machine's",
        intro=(
            f"A timed call runs training steps (sampling, forward, backward, clip by global norm "
            f"{s.clip:g}, SGD) of {s.seeds} seeds, depth {s.depth}, batch {s.batch}, float32, "
            f"about {s.util_call_gflop:g} GFLOP per call; the state is donated and carried "
            "from call to call. FLOPs per step per seed = **6 · batch · Σ fan_in · fan_out** "
            "over all layers (one forward and two backward matmuls per layer; biases, "
            "activations, clipping and the update not counted). The machine's reference is a "
            f"jitted {s.peak_n}x{s.peak_n} @ {s.peak_n}x{s.peak_n} float32 matmul (2 n³ FLOPs) "
            "timed in the same rounds. Fraction = the per-round ratio of the two FLOP/s, "
            f"median (min-max) over {s.repeats} rounds, from wall-clock time and, as a check "
            "that a busy machine does not decide it, from this process's CPU time. \"All "
            f'devices" = {n_devices} {jax.devices()[0].platform} device(s) (on a CPU, one per '
            "core, set by `jaxstab.set_cpu_devices`)."
        ),
        columns=[
            "width",
            "implementation",
            "steps per call",
            "ms per step, all seeds (wall)",
            "GFLOP/s (wall)",
            "reference GFLOP/s (wall)",
            "fraction of reference (wall)",
            "fraction of reference (CPU time)",
        ],
    )
    pct = lambda r: f"{r.median:.1%} ({r.lo:.1%}-{r.hi:.1%})"
    for width in widths:
        sizes = models.mlp_sizes(s.depth, width)
        step_flops = models.matmul_flops(sizes, s.batch) * s.seeds
        steps = steps_per_call(step_flops, s.util_call_gflop)
        flops = step_flops * steps
        params, keys = models.init_params(sizes, s.seeds)
        opts = dict(lr=s.lr, clip=s.clip)
        library = models.jaxstab_trainer(**opts)
        runner = functools.partial(
            step_runner, params=params, keys=keys, steps=steps, batch=s.batch
        )
        fns: dict[str, Callable[[], Any]] = {PEAK: peak}
        variants = {
            JAXSTAB: (library, None),
            HAND: (models.hand_trainer(**opts), None),
            JAXSTAB_1: (library, one),
            HAND_1: (models.hand_trainer(**opts), one),
            STACKED_1: (models.jaxstab_trainer(**opts, split=False), one),
        }
        if n_devices == 1:  # the sharded rows would repeat the one-device rows
            del variants[JAXSTAB], variants[HAND]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*donated buffers.*")
            for name, (trainer, devices) in variants.items():
                fns[name] = runner(trainer, devices=devices)
        times = interleaved(fns, s.repeats, warmup=2)
        peak_rate = summarize(times.wall[PEAK]).inverse(peak_flops / 1e9)
        for name in variants:
            t = summarize(times.wall[name])
            # Per round: (flops / t) / (peak_flops / t_peak) = (flops / peak_flops) * t_peak / t.
            frac = ratio(times.wall[PEAK], times.wall[name]).scaled(flops / peak_flops)
            frac_cpu = ratio(times.cpu[PEAK], times.cpu[name]).scaled(flops / peak_flops)
            section.rows.append(
                [
                    str(width),
                    name,
                    str(steps),
                    t.scaled(1e3 / steps).fmt(),
                    t.inverse(flops / 1e9).fmt(),
                    peak_rate.fmt(),
                    pct(frac),
                    pct(frac_cpu),
                ]
            )
            if name in (JAXSTAB, JAXSTAB_1) and width == goal_width:
                section.goals.append(
                    Goal(
                        f"{name}: FLOP/s / reference matmul FLOP/s at width {width}",
                        frac.median,
                        GOAL,
                        True,
                        spread=f"{frac.lo:.2f}-{frac.hi:.2f}, {frac.n} rounds",
                        cpu_value=frac_cpu.median,
                    )
                )
    return section
