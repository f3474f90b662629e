"""Born-dead narrow deep ReLU networks: Monte Carlo against the closed form.

Published claim (Lu, Shin, Su & Karniadakis 2019, "Dying ReLU and Initialization:
Theory and Numerical Examples", arXiv 1903.06733): a deep ReLU network of fixed
width with a symmetric weight initialization is *born dead* (its output is a
constant function) with a probability that tends to 1 as the depth grows. With
zero biases and symmetric continuous weights, a network of ``L`` hidden layers of
width ``N`` is dead at a given input ``x`` with probability exactly
``1 - (1 - 2^-N)^L``: layer ``l`` is entirely zero at ``x`` with probability ``2^-N``
given that layer ``l - 1`` is not (each unit's pre-activation is symmetric and the
``N`` rows are independent), and a zero layer stays zero. Leaky ReLU, positive
biases or asymmetric initializations are the remedies.

What is measured. For each width ``N``, ``seeds`` networks ``[N, N x max_depth, 1]``
with He-normal weights (symmetric) are drawn by ``jax.vmap`` over keys of
:func:`jaxstab.init_mlp`, and :func:`jaxstab.apply_mlp` (``capture=True``) is run on
one fixed batch of Gaussian inputs. The first ``L`` hidden layers of such a network
are distributed as an ``L``-hidden-layer network (its output layer plays no part in
either event), so one net per seed gives every depth ``L = 1..max_depth`` at once
(the depths share seeds, so their estimates are correlated). Two events:

* *dead at an input* (the event of the closed form): some hidden layer ``l <= L``
  is entirely zero at that input. With zero biases that is the same as the last
  hidden layer being zero there. Estimated from the first input of the batch only,
  so that the ``seeds`` draws are independent Bernoulli trials (binomial standard
  error ``sqrt(p (1 - p) / seeds)``); the mean over all inputs of the batch is
  reported too.
* *dead over the batch* (born dead, what Lu et al. call a dead network): every
  example gives the same last hidden activation, hence the same logits. With zero
  biases that means every example is dead; it is rarer than the per-input event.

The remedies run through the same program: leaky ReLU (zero biases), whose units are
never exactly zero in exact arithmetic, though in float32 the activations of very
narrow deep nets shrink until they flush to 0; and ReLU with a constant positive bias,
after which a zero layer no longer stays zero (the next layer sees only the bias), but
the network's output at that input is then the same as at every other collapsed input.

Run: ``python experiments/dying_relu.py [--quick] [--workdir DIR]``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxstab as js

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common

NAME = "dying_relu"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """What `dying_relu` runs."""

    widths: tuple[int, ...] = (2, 3, 4, 5, 6, 8)  # hidden widths N (and input dimension)
    max_depth: int = 64  # every depth L = 1..max_depth is measured from one net per seed
    seeds: int = 10000  # Monte Carlo networks per (width, variant)
    batch: int = 128  # fixed Gaussian inputs per network (the "over a batch" event)
    table_depths: tuple[int, ...] = (1, 2, 5, 10, 20, 50)  # depths checked against the formula
    leaky_slope: float = 0.01  # negative slope of the leaky-ReLU remedy
    positive_bias: float = 0.5  # constant bias of the positive-bias remedy (weights He)
    z_tolerance: float = 4.0  # agreement: |MC - closed form| <= this many binomial SEs
    chunk: int = 1000  # seeds per vmapped chunk (bounds the memory of the captured layers)
    seed: int = 0  # root PRNG seed


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full configuration, or a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(
            widths=(2, 4), max_depth=20, seeds=2000, batch=32, table_depths=(1, 5, 10, 20)
        )
    return ExperimentConfig()


# --------------------------------------------------------------------------------------
# Pure helpers.


def closed_form_dead(width: int, depth: int | np.ndarray) -> np.ndarray:
    """``1 - (1 - 2^-N)^L``: P(dead at a given input), zero biases, symmetric weights.

    Args:
      width: the hidden width ``N``.
      depth: the number of hidden layers ``L`` (an int or an array of them).

    Returns:
      The probability, with the shape of ``depth``.

    References:
      Lu, Shin, Su & Karniadakis 2019, arXiv 1903.06733.
    """
    return 1.0 - (1.0 - 2.0 ** (-width)) ** np.asarray(depth, np.float64)


def binomial_se(p: np.ndarray | float, n: int) -> np.ndarray:
    """The standard error ``sqrt(p (1 - p) / n)`` of a frequency over ``n`` trials."""
    p = np.asarray(p, np.float64)
    return np.sqrt(p * (1.0 - p) / n)


def dead_events(h_LxBxN: jax.Array) -> dict[str, jax.Array]:
    """Per-depth death events of one network from its hidden activations on a batch.

    Args:
      h_LxBxN: the activations ``phi(z)`` of every hidden layer on a batch.

    Returns:
      ``dead_BxL[b, l]``: some layer ``<= l`` is all zero at input ``b`` (the depth
      ``l + 1`` network is dead there); ``constant_L[l]``: layer ``l``'s activations
      are identical for every input of the batch (the depth ``l + 1`` network's
      output is constant over the batch).
    """
    layer_zero_LxB = jnp.all(h_LxBxN == 0, axis=-1)
    dead_LxB = jnp.cumsum(layer_zero_LxB.astype(jnp.int32), axis=0) > 0
    constant_L = jnp.all(h_LxBxN == h_LxBxN[:, :1, :], axis=(1, 2))
    return {"dead_BxL": dead_LxB.T, "constant_L": constant_L}


# --------------------------------------------------------------------------------------
# Monte Carlo.


def leaky(slope: jax.Array) -> Any:
    """``z -> max(z, slope z)`` with a (traced) slope: ReLU at ``slope = 0``.

    One compiled program then serves ReLU and leaky ReLU (``-0.0 == 0`` for the
    negative side of ReLU, so a dead unit still compares equal to 0).
    """
    return lambda z: jnp.where(z > 0, z, slope * z)


@functools.cache
def _program(width: int, depth: int, chunk: int) -> Any:
    """The jitted Monte Carlo of one width: (keys [C, chunk], x, slope, bias) -> events.

    Every variant (ReLU, leaky ReLU, positive bias) runs through this one program:
    the slope and the bias are traced scalars.
    """
    sizes = [width] + [width] * depth + [1]

    def init(key: jax.Array) -> Any:
        return js.init_mlp(key, sizes, weight_init=js.he_normal(), bias_init=js.zeros)

    def events(params: Any, x_BxN: jax.Array, slope: jax.Array, bias: jax.Array) -> Any:
        hidden = [{"w": g["w"], "b": g["b"] + bias} for g in params["hidden"]]
        params = {"hidden": hidden, "output": params["output"]}
        phi = leaky(slope)
        _, z_LxBxN = js.apply_mlp(params, x_BxN, phi, capture=True)
        out = dead_events(phi(z_LxBxN))
        dead_BxL = out["dead_BxL"]
        return {
            "dead_first_L": dead_BxL[0],  # the per-input event at one fixed input
            "dead_mean_L": jnp.mean(dead_BxL.astype(jnp.float32), axis=0),
            "constant_L": out["constant_L"],
        }

    def run(keys_CxK: jax.Array, x_BxN: jax.Array, slope: jax.Array, bias: jax.Array) -> Any:
        def one_chunk(keys_K: jax.Array) -> Any:
            # lax.map for the init (XLA on CPU compiles a vmapped threefry draw of
            # [seeds, layers, n, n] slowly), vmap for the forward passes.
            params = jax.lax.map(init, keys_K)
            return jax.vmap(lambda p: events(p, x_BxN, slope, bias))(params)

        out = jax.lax.map(one_chunk, keys_CxK)
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)

    return jax.jit(run)


def monte_carlo(
    key: jax.Array,
    width: int,
    depth: int,
    seeds: int,
    batch: int,
    *,
    slope: float = 0.0,
    bias: float = 0.0,
    chunk: int = 1000,
) -> dict[str, np.ndarray]:
    """Death events of ``seeds`` random ``[N, N x depth, 1]`` networks, every depth at once.

    Weights are He-normal (symmetric), biases the constant ``bias``, the activation
    ReLU (``slope = 0``) or leaky ReLU.

    Args:
      key: PRNG key; split into the inputs' key and one key per network.
      width: the hidden width ``N`` (also the input dimension).
      depth: the number of hidden layers of each network.
      seeds: the number of networks, a multiple of ``chunk`` if above it.
      batch: the number of fixed Gaussian inputs shared by every network.
      slope: the negative slope of the activation (0: ReLU).
      bias: every bias at init.
      chunk: networks per vmapped chunk (bounds the memory of the captured layers).

    Returns:
      ``dead_first [seeds, depth]`` (bool: dead at the first input, depths 1..depth),
      ``dead_mean [seeds, depth]`` (fraction of the batch dead), ``constant
      [seeds, depth]`` (bool: constant over the batch).
    """
    chunk = min(chunk, seeds)
    if seeds % chunk:
        raise ValueError(f"seeds={seeds} must be a multiple of chunk={chunk}")
    k_x, k_nets = jax.random.split(key)
    x_BxN = jax.random.normal(k_x, (batch, width))
    keys = jax.random.split(k_nets, seeds).reshape(seeds // chunk, chunk)
    program = _program(width, depth, chunk)
    out = jax.device_get(program(keys, x_BxN, jnp.float32(slope), jnp.float32(bias)))
    return {
        "dead_first": np.asarray(out["dead_first_L"]),
        "dead_mean": np.asarray(out["dead_mean_L"]),
        "constant": np.asarray(out["constant_L"]),
    }


VARIANTS = ("relu", "leaky", "positive_bias")


def run_all(cfg: ExperimentConfig) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    """Per-seed events for every variant and width: ``[variant][width][event]``."""
    root = jax.random.key(cfg.seed)
    settings = {
        "relu": (0.0, 0.0),
        "leaky": (cfg.leaky_slope, 0.0),
        "positive_bias": (0.0, cfg.positive_bias),
    }
    results: dict[str, dict[int, dict[str, np.ndarray]]] = {v: {} for v in VARIANTS}
    for width in cfg.widths:
        for v, variant in enumerate(VARIANTS):
            slope, bias = settings[variant]
            key = jax.random.fold_in(jax.random.fold_in(root, v), width)
            results[variant][width] = monte_carlo(
                key,
                width,
                cfg.max_depth,
                cfg.seeds,
                cfg.batch,
                slope=slope,
                bias=bias,
                chunk=cfg.chunk,
            )
    return results


def summarize(
    cfg: ExperimentConfig, results: dict[str, dict[int, dict[str, np.ndarray]]]
) -> dict[str, Any]:
    """Rates per width and depth, the closed form, and the z-scores of the table depths."""
    depths = np.arange(1, cfg.max_depth + 1)
    table = [d for d in cfg.table_depths if d <= cfg.max_depth]
    measured: dict[str, Any] = {"depths": depths.tolist(), "per_width": {}}
    z_all = []
    for width in cfg.widths:
        r = results["relu"][width]
        p_first = r["dead_first"].mean(axis=0)
        p_mean = r["dead_mean"].mean(axis=0)
        p_const = r["constant"].mean(axis=0)
        theory = closed_form_dead(width, depths)
        se = binomial_se(theory, cfg.seeds)
        z = (p_first - theory) / np.where(se > 0, se, np.inf)
        z_table = {str(d): float(z[d - 1]) for d in table}
        z_all += list(z_table.values())
        measured["per_width"][str(width)] = {
            "closed_form": theory.tolist(),
            "dead_at_input": p_first.tolist(),
            "dead_at_input_all_inputs": p_mean.tolist(),
            "dead_over_batch": p_const.tolist(),
            "z_at_table_depths": z_table,
            "leaky_dead_at_input": results["leaky"][width]["dead_mean"].mean(axis=0).tolist(),
            "leaky_dead_over_batch": results["leaky"][width]["constant"].mean(axis=0).tolist(),
            "positive_bias_dead_at_input": results["positive_bias"][width]["dead_mean"]
            .mean(axis=0)
            .tolist(),
            "positive_bias_dead_over_batch": results["positive_bias"][width]["constant"]
            .mean(axis=0)
            .tolist(),
        }
    measured["max_abs_z"] = float(np.max(np.abs(z_all)))
    return measured


def make_claims(cfg: ExperimentConfig, measured: dict[str, Any]) -> list[dict[str, Any]]:
    """The published claims next to the measured numbers."""
    narrow = str(min(cfg.widths))
    deepest = cfg.max_depth
    mid = max(d for d in (*cfg.table_depths, 1) if d <= min(20, deepest))
    pw = measured["per_width"].values()

    def worst(field: str, depth: int) -> float:
        return max(w[field][depth - 1] for w in pw)

    leaky_mid = max(worst("leaky_dead_at_input", mid), worst("leaky_dead_over_batch", mid))
    leaky_deep = max(worst("leaky_dead_at_input", deepest), worst("leaky_dead_over_batch", deepest))
    relu_batch_narrow = measured["per_width"][narrow]["dead_over_batch"][-1]
    return [
        {
            "claim": "P(dead at a given input) = 1 - (1 - 2^-N)^L (zero bias, symmetric "
            f"weights); max |z| over N in {list(cfg.widths)}, L in {list(cfg.table_depths)}",
            "published": "exact formula",
            "measured": measured["max_abs_z"],
            "tolerance": f"{cfg.z_tolerance} binomial SE",
            "agrees": measured["max_abs_z"] <= cfg.z_tolerance,
        },
        {
            "claim": f"born dead (constant output over the batch) with probability -> 1 as "
            f"depth grows: N={narrow}, L={deepest}",
            "published": "-> 1",
            "measured": relu_batch_narrow,
            "tolerance": "> 0.9",
            "agrees": relu_batch_narrow > 0.9,
        },
        {
            "claim": f"leaky ReLU (slope {cfg.leaky_slope}) is never dead: max over N of the "
            f"dead rates (at an input, over the batch) at L={mid}",
            "published": 0.0,
            "measured": leaky_mid,
            "tolerance": "== 0",
            "agrees": leaky_mid == 0.0,
        },
        {
            "claim": f"leaky ReLU (slope {cfg.leaky_slope}) is never dead: the same at "
            f"L={deepest} (float32: activations that shrink below 1e-38 flush to 0)",
            "published": 0.0,
            "measured": leaky_deep,
            "tolerance": "== 0",
            "agrees": leaky_deep == 0.0,
        },
        {
            "claim": f"positive bias {cfg.positive_bias} is a remedy: constant output over "
            f"the batch, max over N at L={deepest}",
            "published": "~0",
            "measured": worst("positive_bias_dead_over_batch", deepest),
            "tolerance": "< 0.01",
            "agrees": worst("positive_bias_dead_over_batch", deepest) < 0.01,
        },
        {
            "claim": f"positive bias {cfg.positive_bias} is a remedy: some layer all zero at "
            f"an input, max over N at L={deepest}",
            "published": "~0",
            "measured": worst("positive_bias_dead_at_input", deepest),
            "tolerance": "< 0.01",
            "agrees": worst("positive_bias_dead_at_input", deepest) < 0.01,
        },
    ]


# --------------------------------------------------------------------------------------
# Figures.


def plot(cfg: ExperimentConfig, measured: dict[str, Any], workdir: Path) -> list[str]:
    """``dying_relu_vs_depth.png``: MC against the closed form, and the remedies."""
    plt = _common.pyplot()
    depths = np.asarray(measured["depths"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for i, width in enumerate(cfg.widths):
        w = measured["per_width"][str(width)]
        color = f"C{i}"
        p = np.asarray(w["dead_at_input"])
        se = binomial_se(np.asarray(w["closed_form"]), cfg.seeds)
        axes[0].plot(depths, w["closed_form"], "-", color=color, lw=1, label=f"N={width}")
        axes[0].errorbar(
            depths, p, yerr=2 * se, fmt="o", ms=2.5, color=color, elinewidth=0.8, capsize=0
        )
        axes[1].plot(depths, w["dead_over_batch"], "-", color=color, label=f"N={width}")
        axes[1].plot(depths, w["dead_at_input"], ":", color=color, lw=1)
        axes[2].plot(depths, w["positive_bias_dead_at_input"], "-", color=color, label=f"N={width}")
        axes[2].plot(depths, w["leaky_dead_at_input"], "--", color=color, lw=1)
    axes[0].set_title("dead at a given input: MC (dots, ±2 SE) vs 1-(1-2^-N)^L", fontsize=9)
    axes[1].set_title(
        f"born dead over a batch of {cfg.batch} (solid) vs at an input (dotted)", fontsize=9
    )
    axes[2].set_title(
        f"remedies, dead at an input: bias {cfg.positive_bias} (solid),\n"
        f"leaky ReLU slope {cfg.leaky_slope} (dashed; float32 underflow)",
        fontsize=9,
    )
    for ax in axes:
        ax.set_xlabel("hidden layers L")
        ax.set_ylabel("probability")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Dying ReLU at init, He-normal weights, {cfg.seeds} networks per curve")
    fig.tight_layout()
    name = f"{NAME}_vs_depth.png"
    _common.save_and_close(fig, workdir / name, tight=False)
    return [name]


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figure into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    cfg = get_config(args.quick)
    start = time.perf_counter()
    measured = summarize(cfg, run_all(cfg))
    measured["wall_seconds"] = time.perf_counter() - start
    return _common.write_results(
        args.workdir,
        experiment=NAME,
        quick=args.quick,
        config=cfg,
        measured=measured,
        claims=make_claims(cfg, measured),
        figures=plot(cfg, measured, args.workdir),
    )


if __name__ == "__main__":
    out = main()
    for c in out["claims"]:
        print(f"[{'ok' if c['agrees'] else 'NO'}] {c['claim']}: measured {c['measured']:.4g}")
