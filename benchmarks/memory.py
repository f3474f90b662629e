"""Section ``memory``: peak memory of the gradient of a very deep MLP, with and without remat.

Read from XLA's compiled memory analysis
(``jax.jit(f).lower(...).compile().memory_analysis()``): deterministic, and
nothing is allocated, so a 1 GiB-parameter network is measured on any machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import jaxstab as js
from benchmarks import models
from benchmarks.report import Section
from benchmarks.settings import Settings

MiB = 2.0**20


def analyse(apply: Callable[..., jax.Array], depth: int, width: int, batch: int) -> dict[str, Any]:
    """Compiles ``jit(grad(loss))`` for abstract inputs and reads its memory analysis.

    Returns:
      Bytes of ``arguments``, ``outputs``, ``temps``, ``aliased`` and their
      ``peak = arguments + outputs + temps - aliased``, and the compile ``seconds``.
    """
    sizes = models.mlp_sizes(depth, width)
    params = jax.eval_shape(lambda: js.init_mlp(jax.random.key(0), sizes))
    x = jax.ShapeDtypeStruct((batch, sizes[0]), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)

    def loss(p: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return js.softmax_cross_entropy(apply(p, x, "relu"), y).mean()

    start = time.perf_counter()
    mem = jax.jit(jax.grad(loss)).lower(params, x, y).compile().memory_analysis()
    seconds = time.perf_counter() - start
    out = {
        "arguments": int(mem.argument_size_in_bytes),
        "outputs": int(mem.output_size_in_bytes),
        "temps": int(mem.temp_size_in_bytes),
        "aliased": int(mem.alias_size_in_bytes),
        "seconds": seconds,
    }
    out["peak"] = out["arguments"] + out["outputs"] + out["temps"] - out["aliased"]
    return out


def run(settings: Settings) -> Section:
    """Measures the section."""
    depth, width, batch = settings.memory_depth, settings.memory_width, settings.batch
    variants: dict[str, Callable[..., jax.Array]] = {
        "jaxstab apply_mlp, remat=False": js.apply_mlp,
        "jaxstab apply_mlp, remat=True": lambda p, x, a: js.apply_mlp(p, x, a, remat=True),
        'jaxstab apply_mlp, remat="sqrt"': lambda p, x, a: js.apply_mlp(p, x, a, remat="sqrt"),
    }
    results = {name: analyse(apply, depth, width, batch) for name, apply in variants.items()}
    section = Section(
        key="memory",
        title="peak memory of one gradient step, with and without remat",
        intro=(
            f"`jax.grad` of the mean cross-entropy of a depth-{depth}, width-{width} ReLU MLP "
            f"(`[64] + [{width}] * {depth} + [10]`), batch {batch}, float32, from XLA's "
            "compiled memory analysis (deterministic; nothing is allocated). Peak = arguments "
            "(parameters and batch) + outputs (the gradient) + temporaries (what the backward "
            "pass keeps, and workspace) - aliased. MiB = 2^20 bytes."
        ),
        columns=[
            "variant",
            "arguments MiB",
            "outputs MiB",
            "temporaries MiB",
            "peak MiB",
            "compile s",
        ],
    )
    for name, r in results.items():
        section.rows.append(
            [
                name,
                f"{r['arguments'] / MiB:.1f}",
                f"{r['outputs'] / MiB:.1f}",
                f"{r['temps'] / MiB:.1f}",
                f"{r['peak'] / MiB:.1f}",
                f"{r['seconds']:.2f}",
            ]
        )
    plain, remat, nested = (results[n] for n in variants)
    section.notes.append(
        f"Ratio without / with `remat=True`: peak {plain['peak'] / remat['peak']:.2f}x, "
        f"temporaries {plain['temps'] / max(remat['temps'], 1):.2f}x. Two-level remat "
        "(`remat='sqrt'`, blocks of isqrt(L) layers) against `remat=True`: temporaries "
        f"{remat['temps'] / MiB:.1f} -> "
        f"{nested['temps'] / MiB:.1f} MiB ({remat['temps'] / max(nested['temps'], 1):.2f}x)."
    )
    return section
