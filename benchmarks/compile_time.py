"""Section ``compile``: compile time of the gradient of the loss against depth.

Layouts of the same network: jaxstab's as the engine trains it
(:func:`jaxstab.split_stacks`: a stack of at most 16 layers as straight-line
code, a longer one as one ``lax.scan`` whatever the depth), jaxstab's
``init_mlp`` layout (every stack scanned; differs only at small depth), an
unrolled Python loop of per-layer matmuls, and ``equinox.nn.MLP`` in its
default (unrolled) layout. Each sample traces,
lowers and compiles a fresh closure, ``jax.jit(jax.grad(loss)).lower(...).compile()``,
so no cache of jax's is hit.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

import jaxstab as js
from benchmarks import models
from benchmarks.report import Goal, Section
from benchmarks.settings import Settings
from benchmarks.timing import Stats, ratio, summarize

Array = jax.Array
Build = Callable[[int, int], tuple[Callable[..., Array], Any]]

SKIP_AFTER_S = 60.0  # A baseline's ladder stops after a point that took longer.
POINT_BUDGET_S = 10.0  # A point is repeated only while its samples add up to less.
WARMUP_DEPTH = 2  # Each layout compiles this small network once, untimed, first.
GOAL = 1.5  # compile(deepest) / compile(shallowest) of jaxstab.


def _batch() -> tuple[Array, Array]:
    """A batch of 128 digits-shaped inputs and labels."""
    return jnp.zeros((128, models.D_IN)), jnp.zeros((128,), jnp.int32)


def build_jaxstab(depth: int, width: int, split: bool = True) -> Any:
    """jaxstab's MLP: the loss and abstract parameters (no allocation).

    With ``split`` (default), the parameters of :func:`jaxstab.split_stacks`,
    as the engine trains them; else :func:`jaxstab.init_mlp`'s layout.
    """
    sizes = models.mlp_sizes(depth, width)
    params = jax.eval_shape(lambda: js.init_mlp(jax.random.key(0), sizes))
    if split:
        params = jax.eval_shape(js.split_stacks, params)

    def loss(p: Any, x: Array, y: Array) -> Array:
        return js.softmax_cross_entropy(js.apply_mlp(p, x, "relu"), y).mean()

    return loss, params


def build_unrolled(depth: int, width: int) -> Any:
    """The same network as a Python loop over a list of per-layer ``(w, b)``."""
    sizes = models.mlp_sizes(depth, width)
    params = jax.eval_shape(lambda: models.init_layers(jax.random.key(0), sizes))

    def loss(p: Any, x: Array, y: Array) -> Array:
        return js.softmax_cross_entropy(models.apply_layers(p, x), y).mean()

    return loss, params


def build_equinox(depth: int, width: int) -> Any:
    """``equinox.nn.MLP`` (a tuple of ``Linear``), vmapped over the batch as equinox does."""
    import equinox as eqx

    mlp = eqx.nn.MLP(
        models.D_IN, models.D_OUT, width, depth, activation=jax.nn.relu, key=jax.random.key(0)
    )
    params, static = eqx.partition(mlp, eqx.is_array)

    def loss(p: Any, x: Array, y: Array) -> Array:
        return js.softmax_cross_entropy(jax.vmap(eqx.combine(p, static))(x), y).mean()

    return loss, params


def equinox_available() -> bool:
    """Whether the optional ``equinox`` baseline can be imported."""
    try:
        import equinox  # noqa: F401
    except ImportError:
        return False
    return True


def compile_seconds(build: Build, depth: int, *, width: int) -> float:
    """Seconds to trace, lower and compile ``jit(grad(loss))`` of a fresh network."""
    loss, params = build(depth, width)
    x, y = _batch()
    start = time.perf_counter()
    jax.jit(jax.grad(loss)).lower(params, x, y).compile()
    return time.perf_counter() - start


def ladder(
    measure: Callable[[int], float], depths: Sequence[int], repeats: int
) -> dict[int, Stats | str]:
    """Samples ``measure(depth)`` along ``depths``; stops after a point over :data:`SKIP_AFTER_S`.

    ``measure(WARMUP_DEPTH)`` runs once first, untimed. A point is sampled up
    to ``repeats`` times while its samples add up to less than
    :data:`POINT_BUDGET_S`. Skipped points map to the reason.
    """
    out: dict[int, Stats | str] = {}
    measure(WARMUP_DEPTH)  # Warm-up: first-use costs of jax and XLA.
    for i, depth in enumerate(depths):
        samples = [measure(depth)]
        while len(samples) < repeats and sum(samples) < POINT_BUDGET_S:
            samples.append(measure(depth))
        out[depth] = summarize(samples)
        if max(samples) > SKIP_AFTER_S:
            for later in depths[i + 1 :]:
                out[later] = f"skipped: > {SKIP_AFTER_S:.0f} s at depth {depth}"
            break
    return out


def interleaved_ladder(
    build: Build, depths: Sequence[int], width: int, repeats: int
) -> dict[int, list[float]]:
    """Samples every depth once per round, so ratios between depths are paired."""
    compile_seconds(build, WARMUP_DEPTH, width=width)  # Warm-up.
    samples: dict[int, list[float]] = {d: [] for d in depths}
    for _ in range(repeats):
        for depth in depths:
            samples[depth].append(compile_seconds(build, depth, width=width))
    return samples


def run(settings: Settings) -> Section:
    """Measures the section."""
    depths, width, repeats = settings.compile_depths, settings.compile_width, settings.repeats
    section = Section(
        key="compile",
        title="compile time against depth",
        intro=(
            f"Seconds to trace, lower and compile `jax.jit(jax.grad(loss)).lower(...).compile()` "
            f"of a `[64] + [{width}] * depth + [10]` ReLU MLP, batch 128, float32, for a fresh "
            "closure each sample (no jax cache is hit). Cells: median (min-max, n samples); "
            f"a baseline point is repeated while its samples add up to < {POINT_BUDGET_S:.0f} s, "
            f"and a ladder stops after a point over {SKIP_AFTER_S:.0f} s."
        ),
        columns=[
            "depth",
            f"jaxstab (split_stacks: <= {js.SPLIT_MAX_LEN} layers unrolled, longer scanned)",
            "jaxstab, init_mlp layout (every stack scanned)",
            "unrolled Python loop",
            "equinox.nn.MLP",
        ],
    )
    scan = interleaved_ladder(build_jaxstab, depths, width, repeats)
    short = [d for d in depths if d - 1 <= js.SPLIT_MAX_LEN]
    measure = lambda build: functools.partial(compile_seconds, build, width=width)
    stacked = ladder(measure(functools.partial(build_jaxstab, split=False)), short, repeats)
    unrolled = ladder(measure(build_unrolled), depths, repeats)
    if equinox_available():
        eqx: dict[int, Stats | str] = ladder(measure(build_equinox), depths, repeats)
    else:
        eqx = dict.fromkeys(depths, "not installed")
    cell = lambda v: v if isinstance(v, str) else v.fmt(unit="s")
    for d in depths:
        section.rows.append(
            [
                str(d),
                summarize(scan[d]).fmt(unit="s"),
                cell(stacked.get(d, "= jaxstab (the stack is scanned either way)")),
                cell(unrolled[d]),
                cell(eqx[d]),
            ]
        )
    deep, shallow = depths[-1], depths[0]
    r = ratio(scan[deep], scan[shallow])
    section.goals.append(
        Goal(
            f"jaxstab compile(depth {deep}) / compile(depth {shallow})",
            r.median,
            GOAL,
            higher_is_better=False,
            spread=f"{r.lo:.2f}-{r.hi:.2f} over {r.n} paired rounds",
        )
    )
    return section
