"""Born-dead narrow deep ReLU networks: Monte Carlo against the closed form.

Claims. Lu, Shin, Su & Karniadakis 2019 ("Dying ReLU and Initialization: Theory and
Numerical Examples", arXiv 1903.06733; checked against its abstract): a deep ReLU
network with a symmetric initialization dies in probability as the depth goes to
infinity (is *born dead*: its output is a constant function); their remedy is a
randomized asymmetric initialization. The closed form, derived here: with zero biases
and symmetric continuous weights, a network of ``L`` hidden layers of width ``N`` is
dead at a given input ``x`` with probability exactly ``1 - (1 - 2^-N)^L``: layer ``l``
is entirely zero at ``x`` with probability ``2^-N`` given that layer ``l - 1`` is not
(each unit's pre-activation is symmetric, nonzero almost surely, and the ``N`` rows are
independent), and a zero layer stays zero. REFERENCE.md attributes this formula to Lu et
al. and adds leaky ReLU and positive biases as remedies; the paper's text was not
available to check either, so the closed form is credited to the derivation and the
positive-bias remedy is reported as unverified. Leaky ReLU's mitigation is claimed by the
project's founding text (``seeds/000_002e6f7aef932404.txt``, sec. 5.4).

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
  error ``sqrt(p (1 - p) / seeds)``, Wilson intervals). The dead fraction averaged
  over the batch has the same expectation; its standard error comes from the spread
  of the per-network fractions (the inputs of one network die together).
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
from scipy import stats

import jaxstab as js

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
    import _findings
    import _stats
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common, _findings, _stats

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

    return _common.jit_once(run)


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


def familywise_z(cells: int, confidence: float = 0.95) -> float:
    """The two-sided Bonferroni bound on ``|z|`` for ``cells`` tests at ``confidence``.

    Every ``|z|`` of ``cells`` standardized deviations is below it with probability at
    least ``confidence`` when the closed form holds (whatever their correlation).
    """
    return float(stats.norm.ppf(1.0 - (1.0 - confidence) / (2.0 * cells)))


def summarize(
    cfg: ExperimentConfig, results: dict[str, dict[int, dict[str, np.ndarray]]]
) -> dict[str, Any]:
    """Rates per width and depth, the closed form, and the table cells with intervals.

    Per cell ``(N, L)`` of ``table_depths``: the rate at one input with its Wilson
    interval and binomial z-score (``seeds`` independent Bernoulli trials), and the
    rate averaged over the batch with its Student-t interval and z-score over the
    per-network fractions (the inputs of one network are not independent, so the
    standard error comes from the spread of those fractions across networks).
    """
    depths = np.arange(1, cfg.max_depth + 1)
    table = [d for d in cfg.table_depths if d <= cfg.max_depth]
    measured: dict[str, Any] = {"depths": depths.tolist(), "per_width": {}, "cells": []}
    for width in cfg.widths:
        r = results["relu"][width]
        theory = closed_form_dead(width, depths)
        for d in table:
            p = float(theory[d - 1])
            k = int(r["dead_first"][:, d - 1].sum())
            rate, lo, hi = _stats.proportion_ci(k, cfg.seeds)
            fractions = r["dead_mean"][:, d - 1].astype(np.float64)
            mean_all, lo_all, hi_all = _stats.mean_ci(fractions)
            se_all = float(np.std(fractions, ddof=1) / np.sqrt(fractions.size))
            measured["cells"].append(
                {
                    "width": width,
                    "depth": d,
                    "closed_form": p,
                    "at_input": rate,
                    "at_input_ci": [lo, hi],
                    "at_input_z": float((rate - p) / binomial_se(p, cfg.seeds)),
                    "all_inputs": mean_all,
                    "all_inputs_ci": [lo_all, hi_all],
                    "all_inputs_se": se_all,
                    "all_inputs_z": (mean_all - p) / se_all if se_all > 0 else 0.0,
                    "over_batch": float(r["constant"][:, d - 1].mean()),
                }
            )

        def rate(variant: str, event: str, w: int = width) -> list[float]:
            return results[variant][w][event].mean(axis=0).tolist()

        def count(variant: str, event: str, w: int = width) -> list[int]:
            # Networks dead at the first input / constant over the batch, per depth.
            return results[variant][w][event].sum(axis=0).astype(int).tolist()

        measured["per_width"][str(width)] = {
            "closed_form": theory.tolist(),
            "dead_at_input": rate("relu", "dead_first"),
            "dead_at_input_all_inputs": rate("relu", "dead_mean"),
            "dead_over_batch": rate("relu", "constant"),
            "dead_over_batch_count": count("relu", "constant"),
            "leaky_dead_at_input": rate("leaky", "dead_mean"),
            "leaky_dead_first_count": count("leaky", "dead_first"),
            "leaky_dead_over_batch": rate("leaky", "constant"),
            "leaky_dead_over_batch_count": count("leaky", "constant"),
            "positive_bias_dead_at_input": rate("positive_bias", "dead_mean"),
            "positive_bias_dead_first_count": count("positive_bias", "dead_first"),
            "positive_bias_dead_over_batch": rate("positive_bias", "constant"),
            "positive_bias_dead_over_batch_count": count("positive_bias", "constant"),
        }
    cells = measured["cells"]
    measured["familywise_z"] = familywise_z(len(cells))
    measured["max_abs_z_at_input"] = max(abs(c["at_input_z"]) for c in cells)
    measured["max_abs_z_all_inputs"] = max(abs(c["all_inputs_z"]) for c in cells)
    return measured


SOURCE_LU = "Lu, Shin, Su & Karniadakis 2019, arXiv 1903.06733, abstract"
SOURCE_DERIVED = (
    "derived in this module's docstring (REFERENCE.md lists it under Lu et al. 2019; "
    "the paper's text was not available to check)"
)


def make_claims(cfg: ExperimentConfig, measured: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims next to the measured numbers, with intervals and verdicts."""
    narrow = min(cfg.widths)
    deepest = cfg.max_depth
    mid = max(d for d in (*cfg.table_depths, 1) if d <= min(20, deepest))
    pw = measured["per_width"]
    cells = measured["cells"]
    n_cells, zmax = len(cells), measured["familywise_z"]
    grid = f"N in {list(cfg.widths)} x L in {sorted({c['depth'] for c in cells})}"
    worst_in = max(cells, key=lambda c: abs(c["at_input_z"]))
    worst_all = max(cells, key=lambda c: abs(c["all_inputs_z"]))
    fw_rule = (
        f"every |z| <= {zmax:.2f}, the Bonferroni bound of a 95% family-wise test over "
        f"{n_cells} cells"
    )
    claims = [
        _common.claim(
            f"P(dead at a given input) = 1 - (1 - 2^-N)^L (zero bias, symmetric weights), "
            f"at one fixed input; max |z| over {grid}",
            source=SOURCE_DERIVED,
            published="exact formula",
            measured=measured["max_abs_z_at_input"],
            interval=None,
            n=cfg.seeds,
            rule=fw_rule,
            agrees=measured["max_abs_z_at_input"] <= zmax,
            note=f"measured is the largest of {n_cells} binomial z-scores (one fixed input, "
            f"{cfg.seeds} independent networks per cell), so it has no interval of its own; "
            f"the worst cell, N={worst_in['width']}, L={worst_in['depth']}: "
            f"{worst_in['at_input']:.4f} [{worst_in['at_input_ci'][0]:.4f}, "
            f"{worst_in['at_input_ci'][1]:.4f}] (Wilson 95%) against "
            f"{worst_in['closed_form']:.4f}; every cell is in measured.cells",
        ),
        _common.claim(
            f"the same, averaged over the {cfg.batch} inputs of each network; max |z| over {grid}",
            source=SOURCE_DERIVED,
            published="exact formula",
            measured=measured["max_abs_z_all_inputs"],
            interval=None,
            n=cfg.seeds,
            rule=fw_rule,
            agrees=measured["max_abs_z_all_inputs"] <= zmax,
            note=f"z over the per-network dead fractions (standard error from their spread "
            f"across {cfg.seeds} networks: the inputs of one network are not independent); "
            f"the worst cell, N={worst_all['width']}, L={worst_all['depth']}: "
            f"{worst_all['all_inputs']:.4f} [{worst_all['all_inputs_ci'][0]:.4f}, "
            f"{worst_all['all_inputs_ci'][1]:.4f}] (Student t 95%) against "
            f"{worst_all['closed_form']:.4f}",
        ),
    ]
    k = pw[str(narrow)]["dead_over_batch_count"][-1]
    p, lo, hi = _stats.proportion_ci(k, cfg.seeds)
    claims.append(
        _common.claim(
            f"a deep ReLU net with symmetric init is born dead (constant output over the "
            f"batch) with probability -> 1 as depth grows: N={narrow}, L={deepest}",
            source=SOURCE_LU + " ('will eventually die in probability as the depth goes to "
            "infinite')",
            published="-> 1",
            measured=p,
            interval=[lo, hi],
            n=cfg.seeds,
            rule="Wilson 95% interval above 0.9",
            agrees=lo > 0.9,
        )
    )
    for depth in sorted({mid, deepest}):
        k = max(
            max(w["leaky_dead_first_count"][depth - 1], w["leaky_dead_over_batch_count"][depth - 1])
            for w in pw.values()
        )
        p, lo, hi = _stats.proportion_ci(k, cfg.seeds)
        claims.append(
            _common.claim(
                f"leaky ReLU (slope {cfg.leaky_slope}) mitigates neuron death: networks dead "
                f"at an input or constant over the batch, the worst width, L={depth}",
                source="seeds/000_002e6f7aef932404.txt sec. 5.4 (the project's founding text)",
                published="0 in exact arithmetic (no unit is exactly 0)",
                measured=p,
                interval=[lo, hi],
                n=cfg.seeds,
                rule="no dead network (0 of n)",
                agrees=k == 0,
                note=None
                if depth == mid
                else "float32: in very narrow nets a layer with every unit negative scales "
                "the signal by the slope, so activations shrink below 1e-38 and flush to 0",
            )
        )
    for field, what in (
        ("positive_bias_dead_first_count", "some layer all zero at an input"),
        ("positive_bias_dead_over_batch_count", "constant output over the batch"),
    ):
        worst = max(cfg.widths, key=lambda w: pw[str(w)][field][-1])
        p, lo, hi = _stats.proportion_ci(pw[str(worst)][field][-1], cfg.seeds)
        claims.append(
            _common.claim(
                f"positive bias {cfg.positive_bias} is a remedy: {what}, the worst width "
                f"(N={worst}) at L={deepest}",
                source="REFERENCE.md (under Lu et al. 2019; not in the paper's abstract)",
                published="~0",
                measured=p,
                interval=[lo, hi],
                n=cfg.seeds,
                rule="Wilson 95% interval below 0.01",
                agrees=None,
                note="unverified source: the abstract of Lu et al. names only a randomized "
                "asymmetric initialization as the remedy. Measured plainly, the positive "
                f"bias does {'not ' if lo >= 0.01 else ''}bring this rate below 0.01",
            )
        )
    return claims


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
# The findings page's section.

TITLE = "Dying ReLU: born-dead narrow networks vs the closed form"


def findings(result: dict[str, Any]) -> str:
    """The findings section's prose and cell table, every number from ``result``."""
    f = _findings.fmt
    cfg, m = result["config"], result["measured"]
    pw, cells = m["per_width"], m["cells"]
    widths, deepest = cfg["widths"], cfg["max_depth"]
    narrow, wide = str(min(widths)), str(max(widths))
    rows = [
        "| N | L | closed form | MC at one input [Wilson 95%] | z | MC, mean over the "
        f"{cfg['batch']} inputs [t 95%] | z | born dead over the batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        rows.append(
            f"| {c['width']} | {c['depth']} | {c['closed_form']:.4f} | {c['at_input']:.4f} "
            f"[{c['at_input_ci'][0]:.4f}, {c['at_input_ci'][1]:.4f}] | {c['at_input_z']:+.2f} "
            f"| {c['all_inputs']:.4f} [{c['all_inputs_ci'][0]:.4f}, "
            f"{c['all_inputs_ci'][1]:.4f}] | {c['all_inputs_z']:+.2f} | {c['over_batch']:.4f} |"
        )
    table = "\n".join(rows)
    leaky_deep = {w: pw[str(w)]["leaky_dead_over_batch"][-1] for w in widths}
    leaky_hit = [w for w in widths if leaky_deep[w] > 0]
    if leaky_hit:
        leaky_text = (
            ", but in float32 a layer whose units are all negative scales the signal by the "
            "slope, so very narrow deep nets underflow to exactly 0: at "
            f"`L = {deepest}` the fraction constant over the batch is "
            + ", ".join(f"{f(leaky_deep[w])} (N = {w})" for w in widths)
            + "; a vanishing signal, not a dying unit."
        )
    else:
        leaky_text = f", and none of the leaky networks was dead up to `L = {deepest}`."
    ten = min(10, deepest) - 1
    bias_ten = " / ".join(f(pw[str(w)]["positive_bias_dead_at_input"][ten], 3) for w in widths)
    zero_ten = " / ".join(f(pw[str(w)]["dead_at_input_all_inputs"][ten], 3) for w in widths)
    first_five = min(5, deepest) - 1
    return f"""\
{cfg["seeds"]} networks `[N, N x L, 1]` per width and variant (He-normal weights, vmapped
over seeds in chunks of {cfg["chunk"]}), one fixed batch of {cfg["batch"]} Gaussian inputs;
every depth `L = 1..{deepest}` from the first `L` layers of one {deepest}-layer net per seed
(the depths share seeds, so their estimates are correlated). The closed form
`1 - (1 - 2^-N)^L` is derived in `experiments/dying_relu.py` (with zero biases a layer is
entirely zero at an input with probability `2^-N` given that the previous one is not,
independently across layers, and a zero layer stays zero); REFERENCE.md attributes it to
Lu et al. (2019), but the paper's text could not be checked here, so the table credits
the derivation. What the abstract of Lu et al. does state, and what is checked against
it, is that a deep ReLU net with symmetric initialization dies in probability as the depth
grows.

{table}

The closed form holds at one fixed input (the largest of the {len(cells)} binomial
|z| is {f(m["max_abs_z_at_input"])}) and, as an expectation, for the dead fraction averaged
over the {cfg["batch"]} inputs of each network (largest |z| {f(m["max_abs_z_all_inputs"])}, with
the standard error from the spread of that fraction across networks, since the inputs of
one network die together); both are below {f(m["familywise_z"])}, the bound of a 95%
family-wise test over the {len(cells)} cells. Born dead over the batch (every input dead,
hence a constant function) is the stronger event and trails the per-input curve, but it
also goes to 1 with depth: at `N = {narrow}`, {f(pw[narrow]["dead_over_batch"][first_five])}
of the 5-layer nets and {f(pw[narrow]["dead_over_batch"][-1])} of the {deepest}-layer nets
are constant (at `N = {wide}`, {f(pw[wide]["dead_over_batch"][-1])}).

The remedies are less clean than the one-line claim. Leaky ReLU (slope
{cfg["leaky_slope"]}) has no exactly-zero unit in exact arithmetic{leaky_text}
A constant positive bias of {cfg["positive_bias"]} with He weights lowers the per-input
death rate at `L = 10` (N = {" / ".join(map(str, widths))}: {bias_ten}, against {zero_ten}
with zero bias) but does not remove it, likely because the pre-activation scale grows
with depth while the bias stays fixed, and a zero layer, though followed by live units,
maps every input that died there to the same output. The positive-bias remedy is
marked unverified: its source is REFERENCE.md, not the paper's abstract, which names
only a randomized asymmetric initialization (not tested here).
"""


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
        verdict = {True: "ok", False: "NO", None: "??"}[c["agrees"]]
        print(f"[{verdict}] {c['claim']}: measured {c['measured']:.4g}")
