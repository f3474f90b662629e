"""Trainability of deep tanh MLPs over (sigma_w², depth) against the k·xi_c depth scale.

Published claim (Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, "Deep Information
Propagation", arXiv 1611.01232): a random network with weights ``N(0, sigma_w2 / n)``
and biases ``N(0, sigma_b2)`` can be trained only if information about its inputs
survives the forward pass, which it does over the correlation depth scale ``xi_c``:
``|c^l - c*| ~ exp(-l / xi_c)`` with ``1 / xi_c = -log chi_c``. Networks train when
their depth is below about ``6 xi_c``; ``xi_c`` diverges at the edge of chaos
(``chi1 = 1``), where arbitrarily deep networks train.

What is measured.

* The correlation depth scale, by Monte Carlo: pairs of inputs propagated through
  random tanh networks (one jitted program, float64, ``vmap`` over networks, ``lax.scan``
  over layers, every ``sigma_w2`` scaling the same standard-normal draws). Close pairs
  (``1 - c^0 = 1e-6``) give the rate at which ``1 - c^l`` shrinks or grows,
  ``log chi1``; in the ordered phase (it shrinks) ``xi_c`` is its inverse. Far pairs
  (``c^0 = 0``) give, in the chaotic phase, the approach of ``c^l`` to its plateau
  ``c*`` (estimated from the deep layers). Each ``xi_c`` is the slope of a straight-line
  fit of ``log |c^l - c*|`` over a window fixed by rule, on the mean over networks;
  its 95% interval resamples the networks. ``xi_c`` diverges where the measured
  ``log chi1`` changes sign.
* Trainability: tanh MLPs ``[64, width x depth, 10]`` on the 8x8 digits
  (:func:`jaxstab.data.load_digits`), trained with plain SGD for a fixed budget. Per
  cell ``(sigma_w2, depth)`` the learning rate is the best of a small grid on pilot
  seeds (highest median final training accuracy; ties: lower median loss, then the
  smaller rate); the cell is then trained on fresh seeds at that rate. One program of
  :func:`jaxstab.engine.train` per depth serves every ``(sigma_w2, lr, seed)`` (traced
  values of the runs). A cell is *trainable* when the median final training accuracy
  reaches ``trainable_accuracy``. The constant ``k`` of "trainable iff
  ``depth < k xi_c``" is fitted by maximizing the number of agreeing cells, with a
  bootstrap interval over the seeds of each cell, and compared with 6.

Run: ``python experiments/phase_diagram.py [--quick] [--workdir DIR]``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxstab as js
from jaxstab import engine, theory
from jaxstab.data import load_digits

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
    import _findings
    import _stats
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common, _findings, _stats

NAME = "phase_diagram"
TITLE = "Phase diagram: trainability over (sigma_w², depth) against k xi_c, and xi_c measured"
PAPER = "Schoenholz et al. 2017 (arXiv 1611.01232)"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """What `phase_diagram` runs."""

    # -- trainability grid
    sigma_w2: tuple[float, ...] = (0.5, 1.0, 1.5, 2.5, 3.0, 4.0)  # sigma_w² of the cells
    depths: tuple[int, ...] = (6, 12, 24, 40, 64)  # hidden layers (one program each)
    sigma_b2: float = 0.05  # bias variance, fixed
    width: int = 32  # hidden width
    seeds: int = 16  # fresh seeds per cell, trained at the cell's chosen learning rate
    pilot_seeds: int = 4  # seeds per (cell, learning rate) of the learning-rate pilot
    lrs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)  # the per-cell rate grid
    steps: int = 600  # SGD steps (the fixed budget; the rate is chosen at its end)
    eval_every: int = 300  # training accuracy also after every this many steps (budgets)
    batch_size: int = 32  # examples per step, drawn uniformly with replacement
    trainable_accuracy: float = 0.5  # median final training accuracy of a trainable cell
    k_grid: tuple[float, float, int] = (1.0, 15.0, 281)  # k candidates: linspace(lo, hi, n)
    bootstrap: int = 2000  # resamples of the bootstrap over seeds (k) and networks (xi_c)
    # -- Monte Carlo of the correlation decay
    mc_sigma_w2: tuple[float, ...] = (0.5, 1.0, 1.3, 1.5, 1.6, 1.7, 1.8, 2.0, 2.5, 3.0, 4.0)
    mc_width: int = 256  # width of the random networks
    mc_depth: int = 250  # layers propagated
    mc_networks: int = 32  # random networks (the bootstrap resamples them)
    close_gap: float = 1e-6  # 1 - c^0 of the close pairs
    map_bandwidth: float = 0.25  # chaotic side: fit the map on c^l within this of c*
    theory_points: int = 120  # sigma_w² points of the theory curves
    seed: int = 0  # the engine's base PRNG seed (and the Monte Carlo's)


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full configuration, or a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(
            sigma_w2=(0.5, 1.75, 4.0),
            depths=(4, 12),
            width=16,
            seeds=4,
            pilot_seeds=2,
            lrs=(0.01, 0.05),
            steps=40,
            eval_every=20,
            batch_size=16,
            trainable_accuracy=0.3,
            k_grid=(1.0, 15.0, 57),
            bootstrap=200,
            mc_sigma_w2=(0.5, 1.0, 1.5, 1.7, 1.8, 2.5, 4.0),
            mc_width=64,
            mc_depth=80,
            mc_networks=8,
            theory_points=40,
        )
    return ExperimentConfig()


# --------------------------------------------------------------------------------------
# Pure helpers.


def mean_field_params(
    key: jax.Array,
    sizes: tuple[int, ...],
    sigma_w2: jax.Array,
    sigma_b2: jax.Array,
) -> Any:
    """Parameters in :func:`jaxstab.init_mlp`'s layout, weights ``N(0, sigma_w2 / fan_in)``.

    Hidden biases ``N(0, sigma_b2)``, readout bias zero: the distribution of
    ``variance_scaling(sigma_w2, "fan_in", "normal")`` weights and
    ``normal(sqrt(sigma_b2))`` biases. Every entry comes from ONE flat ``normal(1)``
    draw, scaled: ``sigma_w2`` and ``sigma_b2`` may be traced (vmapped over a grid),
    and a single 1-D threefry draw compiles in a fraction of the time of
    ``init_mlp``'s per-layer draws on CPU.

    Args:
      key: PRNG key.
      sizes: ``[d_in, width, ..., width, d_out]`` (equal hidden widths).
      sigma_w2: weight variance times fan-in.
      sigma_b2: bias variance.

    Returns:
      ``{"hidden": [...], "output": {...}}`` as :func:`jaxstab.init_mlp` lays it out.
    """
    d_in, width, d_out = sizes[0], sizes[1], sizes[-1]
    depth = len(sizes) - 2
    if any(s != width for s in sizes[1:-1]):
        raise ValueError(f"hidden widths must be equal, got sizes {list(sizes)}")
    shapes = [(d_in, width), (depth - 1, width, width), (depth, width), (width, d_out)]
    counts = [int(np.prod(s)) for s in shapes]
    z = js.normal(1.0)(key, (sum(counts),))
    w_in, w_hidden, b, w_out = (
        z[a : a + c].reshape(s) for a, c, s in zip(np.cumsum([0, *counts[:-1]]), counts, shapes)
    )
    sw, sb = jnp.sqrt(sigma_w2), jnp.sqrt(sigma_b2)
    hidden = [{"w": (sw / np.sqrt(d_in)) * w_in[None], "b": sb * b[:1]}]
    if depth > 1:
        hidden.append({"w": (sw / np.sqrt(width)) * w_hidden, "b": sb * b[1:]})
    if d_in == width:  # one group, as init_mlp stacks equal layers
        hidden = [{k: jnp.concatenate([g[k] for g in hidden]) for k in ("w", "b")}]
    output = {"w": (sw / np.sqrt(width)) * w_out, "b": jnp.zeros((d_out,))}
    return {"hidden": hidden, "output": output}


def predicted_trainable(depths: np.ndarray, xi_c: np.ndarray, factor: float = 6.0) -> np.ndarray:
    """``depth < factor * xi_c``, broadcast to ``[len(depths), len(xi_c)]``."""
    return np.asarray(depths)[:, None] < factor * np.asarray(xi_c)[None, :]


def agreement(trainable: np.ndarray, predicted: np.ndarray) -> float:
    """The fraction of grid cells where measured and predicted trainability agree."""
    return float(np.mean(np.asarray(trainable) == np.asarray(predicted)))


def choose_lr(accuracy: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """The best-of rule of the learning-rate pilot, per cell.

    Args:
      accuracy: final training accuracy ``[..., lrs, seeds]`` (lrs in increasing order).
      loss: final training loss, same shape (NaN for a diverged run).

    Returns:
      ``[...]`` the index of the learning rate with the highest median accuracy; ties
      go to the lower median loss (NaN counts as +inf), then to the smaller rate.
    """
    acc = np.median(np.asarray(accuracy, np.float64), axis=-1)
    loss = np.median(np.nan_to_num(np.asarray(loss, np.float64), nan=np.inf), axis=-1)
    n_lr = acc.shape[-1]
    # lexicographic: -accuracy first, then loss, then the rate's index
    flat_acc, flat_loss = acc.reshape(-1, n_lr), loss.reshape(-1, n_lr)
    out = [np.lexsort((np.arange(n_lr), fl, -fa))[0] for fa, fl in zip(flat_acc, flat_loss)]
    return np.asarray(out, np.int64).reshape(acc.shape[:-1])


def agreement_curve(
    trainable: np.ndarray, depths: np.ndarray, xi_c: np.ndarray, k: np.ndarray
) -> np.ndarray:
    """Agreement of ``trainable [..., depths, sigma_w2]`` with ``depth < k xi_c``, per ``k``.

    Returns:
      ``[..., len(k)]``: the fraction of cells that agree, for every ``k``.
    """
    pred = np.asarray(depths)[None, :, None] < np.asarray(k)[:, None, None] * np.asarray(xi_c)
    t = np.asarray(trainable)[..., None, :, :]
    return np.mean(t == pred, axis=(-2, -1))


def best_k(curve: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The median of the ``k`` that maximize each agreement curve ``[..., len(k)]``."""
    curve = np.asarray(curve)
    best = curve >= curve.max(axis=-1, keepdims=True) - 1e-12
    ks = np.where(best, np.asarray(k), np.nan)
    return np.nanmedian(ks, axis=-1)


def k_bootstrap(
    accuracy: np.ndarray,
    depths: np.ndarray,
    xi_c: np.ndarray,
    k: np.ndarray,
    threshold: float,
    resamples: int,
    seed: int = 0,
) -> np.ndarray:
    """Best ``k`` of each bootstrap resample of the seeds, independently in every cell.

    Args:
      accuracy: final training accuracy ``[depths, sigma_w2, seeds]``.
      depths, xi_c: the cells' depths and ``xi_c``.
      k: the candidate constants.
      threshold: median accuracy of a trainable cell.
      resamples: the number of resamples.
      seed: the resampling generator's seed.

    Returns:
      ``[resamples]`` the best ``k`` of each resample.
    """
    acc = np.asarray(accuracy, np.float64)
    n = acc.shape[-1]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, *acc.shape))  # [B, D, S, n]
    resampled = np.take_along_axis(acc[None], idx, axis=-1)
    trainable = np.median(resampled, axis=-1) >= threshold
    return best_k(agreement_curve(trainable, depths, xi_c, k), k)


def resample_networks(curves: np.ndarray, resamples: int, seed: int = 0) -> np.ndarray:
    """Means over bootstrap resamples of the networks (axis 0) of ``curves``.

    Each resample draws the networks with replacement (multinomial counts), so the
    mean over a resample is one matrix product.

    Returns:
      ``[resamples, *curves.shape[1:]]``.
    """
    c = np.asarray(curves, np.float64)
    m = c.shape[0]
    counts = np.random.default_rng(seed).multinomial(m, np.full(m, 1.0 / m), size=resamples)
    return np.tensordot(counts / m, c, axes=(1, 0))


def fit_log_slope(curves: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``log curves`` over the layers where ``window`` holds.

    Args:
      curves: positive values ``[..., layers]``.
      window: bool ``[layers]`` (or broadcastable), at least two True.

    Returns:
      ``[...]`` the slope per layer (``-1 / xi`` for a decay).
    """
    w = np.broadcast_to(np.asarray(window, bool), np.shape(curves))
    layers = np.broadcast_to(np.arange(np.shape(curves)[-1], dtype=np.float64), w.shape)
    y = np.where(w, np.log(np.where(w, curves, 1.0)), 0.0)
    n = w.sum(-1)
    lm = np.where(w, layers, 0.0).sum(-1) / n
    ym = y.sum(-1) / n
    dl = np.where(w, layers - lm[..., None], 0.0)
    return (dl * (y - ym[..., None])).sum(-1) / (dl**2).sum(-1)


def close_window(gap: np.ndarray, lo: float, hi: float, start: int = 3) -> np.ndarray:
    """Layers ``>= start`` where the close pairs' ``1 - c`` lies in ``(lo, hi)``, contiguous.

    The window ends at the first layer outside ``(lo, hi)``: below ``lo`` float64
    rounding of ``1 - c`` sets in, above ``hi`` the correlation map is no longer linear.
    """
    g = np.asarray(gap)
    inside = (g > lo) & (g < hi) & (np.arange(g.size) >= start)
    return _first_run(inside)


def map_fixed_point(
    below: np.ndarray, above: np.ndarray, center: float, bandwidth: float = 0.25
) -> tuple[float, float, int]:
    """The fixed point of the measured correlation map and its slope there, ``chi_c``.

    The layer-to-layer map ``c^l -> c^{l+1}`` is read off two mean trajectories, one
    approaching the fixed point from below and one from above; a quadratic fitted to
    the points with ``|c^l - center| <= bandwidth`` gives the fixed point ``c*`` (its
    crossing of the diagonal nearest ``center``) and ``chi_c = f'(c*)``, the rate at
    which ``|c^l - c*|`` decays near it (``xi_c = -1 / log chi_c``). Bracketing ``c*``
    keeps the slope an interpolation; the quadratic absorbs the map's curvature, which
    makes a straight-line fit of ``log |c^l - c*|`` from far away biased.

    Args:
      below, above: mean correlations per layer ``[layers]``.
      center: a first estimate of ``c*`` (the plateau of the deep layers).
      bandwidth: the half-width of the fitted range of ``c^l``.

    Returns:
      ``(c_star, chi_c, points)``; NaN values with fewer than 5 points or no crossing.
    """
    x = np.concatenate([below[:-1], above[:-1]])
    y = np.concatenate([below[1:], above[1:]])
    sel = np.abs(x - center) <= bandwidth
    n = int(sel.sum())
    if n < 5:
        return float("nan"), float("nan"), n
    a, b, c = np.polyfit(x[sel], y[sel], 2)
    roots = np.roots([a, b - 1.0, c])
    roots = roots[np.isreal(roots)].real
    if roots.size == 0:
        return float("nan"), float("nan"), n
    r = float(roots[np.argmin(np.abs(roots - center))])
    return r, float(2 * a * r + b), n


def _first_run(mask: np.ndarray) -> np.ndarray:
    """The first contiguous run of True in ``mask`` (all False if none)."""
    mask = np.asarray(mask, bool)
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    first = int(np.argmax(mask))
    stop = first + int(np.argmin(mask[first:])) if not mask[first:].all() else mask.size
    out[first:stop] = True
    return out


def zero_crossing(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x`` where ``y [..., len(x)]`` first changes sign from negative to positive.

    Linear interpolation between the bracketing points; NaN where there is none.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    up = (y[..., :-1] < 0) & (y[..., 1:] >= 0)
    has = up.any(-1)
    i = np.argmax(up, axis=-1)
    y0 = np.take_along_axis(y, i[..., None], -1)[..., 0]
    y1 = np.take_along_axis(y, (i + 1)[..., None], -1)[..., 0]
    x0, x1 = x[i], x[i + 1]
    return np.where(has, x0 + (x1 - x0) * (-y0) / np.where(has, y1 - y0, 1.0), np.nan)


def percentile_interval(samples: np.ndarray) -> list[float] | None:
    """The 2.5 and 97.5 percentiles of the finite bootstrap ``samples``, or None."""
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if s.size < 2:
        return None
    return [float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))]


# --------------------------------------------------------------------------------------
# Monte Carlo of the correlation decay: one jitted program, float64.


#: The start correlation of the far pairs that approach c* from above (the others start at 0).
ABOVE = 0.99


@functools.partial(_common.jit_once, static_argnames=("width", "depth", "networks"))
def _correlation_traces(
    key: jax.Array,
    sigma_w2: jax.Array,
    sigma_b2: jax.Array,
    q0: jax.Array,
    close_gap: jax.Array,
    *,
    width: int,
    depth: int,
    networks: int,
) -> tuple[jax.Array, jax.Array]:
    def one_network(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_in, k_layers = jax.random.split(key)
        z = jax.random.normal(k_in, (2, width), sigma_w2.dtype)
        # x and y orthonormal (Gram-Schmidt): the start correlations are exact.
        x = z[0] / jnp.linalg.norm(z[0])
        y = z[1] - (z[1] @ x) * x
        y = y / jnp.linalg.norm(y)
        c0 = 1.0 - close_gap
        close = c0 * x + jnp.sqrt(1.0 - c0**2) * y
        above = ABOVE * x + np.sqrt(1.0 - ABOVE**2) * y
        # [S, 4, N]: x, its close partner, its far partners y (c = 0) and `above`;
        # lengths q0 * N
        h = jnp.sqrt(q0 * width)[:, None, None] * jnp.stack([x, close, y, above])[None]

        def stats(h: jax.Array) -> tuple[jax.Array, jax.Array]:
            u = h / jnp.linalg.norm(h, axis=-1, keepdims=True)
            # 1 - c = |u1 - u2|^2 / 2: accurate as c -> 1, where 1 - u1.u2 cancels.
            gap = 0.5 * jnp.sum((u[:, 0] - u[:, 1]) ** 2, -1)
            return gap, jnp.stack([jnp.sum(u[:, 0] * u[:, k], -1) for k in (2, 3)], -1)

        def layer(h: jax.Array, k: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            kw, kb = jax.random.split(k)
            # float32 draws (cheaper), propagated in float64; every sigma_w2 scales them.
            w = jax.random.normal(kw, (width, width), jnp.float32).astype(h.dtype)
            b = jax.random.normal(kb, (width,), jnp.float32).astype(h.dtype)
            scale = jnp.sqrt(sigma_w2 / width)[:, None, None]
            h = scale * (jnp.tanh(h) @ w) + jnp.sqrt(sigma_b2) * b[None, None, :]
            return h, stats(h)

        _, (gaps, cs) = jax.lax.scan(layer, h, jax.random.split(k_layers, depth))
        g0, c0s = stats(h)
        return jnp.concatenate([g0[None], gaps]), jnp.concatenate([c0s[None], cs])

    return jax.vmap(one_network)(jax.random.split(key, networks))


def correlation_traces(cfg: ExperimentConfig) -> dict[str, np.ndarray]:
    """Per network, layer and ``sigma_w2``: close pairs' ``1 - c`` and far pairs' ``c``.

    Inputs start at the theory's ``q*`` (the length's fixed point, reached within a
    few layers anyway), so the correlations decay from layer 0 without a length
    transient. Returns ``{"gap": [M, L+1, S], "c": [M, L+1, S, 2]}`` (far pairs from
    ``c^0 = 0`` and from ``c^0 = ABOVE``).
    """
    with jax.enable_x64(True):
        sw = jnp.asarray(cfg.mc_sigma_w2, jnp.float64)
        q0 = jax.vmap(lambda s: theory.q_star("tanh", s, cfg.sigma_b2))(sw)
        gaps, cs = _correlation_traces(
            jax.random.key(cfg.seed),
            sw,
            jnp.float64(cfg.sigma_b2),
            q0,
            jnp.float64(cfg.close_gap),
            width=cfg.mc_width,
            depth=cfg.mc_depth,
            networks=cfg.mc_networks,
        )
        return {"gap": np.asarray(gaps), "c": np.asarray(cs)}


def measure_xi_c(cfg: ExperimentConfig, traces: dict[str, np.ndarray]) -> dict[str, Any]:
    """``log chi1``, the phase, ``xi_c`` with its interval and the critical crossing.

    Close pairs: ``log chi1`` is the slope of ``log`` of the network-mean ``1 - c^l``
    over :func:`close_window` ``(1e-24, 1e-2)``. Where it is negative (ordered phase,
    ``c* = 1``) ``xi_c = -1 / log chi1``. Where it is positive (chaotic), far pairs:
    :func:`map_fixed_point` on the network-mean ``c^l`` from below and from above,
    centred on the plateau of the deepest 40% of the layers, gives ``c*`` and
    ``chi_c``, and ``xi_c = -1 / log chi_c``. Intervals: percentiles of the same
    estimates on ``cfg.bootstrap`` resamples of the networks (windows fixed). The
    critical point is where ``log chi1`` turns positive (:func:`zero_crossing`).
    """
    gap = traces["gap"].transpose(0, 2, 1)  # [M, S, L+1]
    c = traces["c"].transpose(0, 2, 3, 1)  # [M, S, 2, L+1]
    n_layers = gap.shape[-1]
    tail = np.arange(n_layers) >= int(0.6 * n_layers)
    boot_gap = resample_networks(gap, cfg.bootstrap, cfg.seed)  # [B, S, L+1]
    boot_c = resample_networks(c, cfg.bootstrap, cfg.seed)  # the same resamples
    mean_gap, mean_c = gap.mean(0), c.mean(0)
    keys = ("log_chi1", "log_chi1_ci", "ordered", "xi_c", "xi_c_ci", "c_star", "window")
    out: dict[str, list[Any]] = {k: [] for k in keys}
    boot_log_chi1 = []
    for s in range(len(cfg.mc_sigma_w2)):
        win = close_window(mean_gap[s], 1e-24, 1e-2)
        if win.sum() < 3:
            raise ValueError(
                f"sigma_w2={cfg.mc_sigma_w2[s]}: the close pairs' window has {win.sum()} "
                "layers; increase mc_depth or close_gap"
            )
        slope = float(fit_log_slope(mean_gap[s], win))
        boot = fit_log_slope(boot_gap[:, s], win)
        boot_log_chi1.append(boot)
        ordered = slope < 0
        out["log_chi1"].append(slope)
        out["log_chi1_ci"].append(percentile_interval(boot))
        out["ordered"].append(bool(ordered))
        if ordered:
            xi, xi_boot, c_star = -1.0 / slope, -1.0 / boot, 1.0
            idx = np.flatnonzero(win)
            window = f"1 - c, layers {idx[0]}-{idx[-1]}"
        else:
            below, above = mean_c[s]
            center = float(below[tail].mean())
            c_star, chi_c, n = map_fixed_point(below, above, center, cfg.map_bandwidth)
            xi = -1.0 / np.log(chi_c) if 0 < chi_c < 1 else float("nan")
            boot_chi = np.array(
                [
                    map_fixed_point(b[0], b[1], float(b[0][tail].mean()), cfg.map_bandwidth)[1]
                    for b in boot_c[:, s]
                ]
            )
            ok = (boot_chi > 0) & (boot_chi < 1)
            xi_boot = np.where(ok, -1.0 / np.log(np.where(ok, boot_chi, 0.5)), np.nan)
            window = f"map, c within {cfg.map_bandwidth:g} of {center:.3f} ({n} points)"
        out["xi_c"].append(float(xi))
        out["xi_c_ci"].append(percentile_interval(np.where(xi_boot > 0, xi_boot, np.nan)))
        out["c_star"].append(float(c_star))
        out["window"].append(window)
    sw = np.asarray(cfg.mc_sigma_w2)
    crossing = zero_crossing(sw, np.asarray(out["log_chi1"]))
    boot_cross = zero_crossing(sw, np.stack(boot_log_chi1, axis=-1))
    return {
        **out,
        "sigma_w2": list(cfg.mc_sigma_w2),
        "critical_crossing": float(crossing),
        "critical_crossing_ci": percentile_interval(boot_cross),
        "mean_gap": mean_gap.tolist(),
        "mean_c": mean_c[:, 0].tolist(),
        "mean_c_above": mean_c[:, 1].tolist(),
    }


def theory_curves(sigma_w2: Any, sigma_b2: float) -> dict[str, np.ndarray]:
    """``xi_c``, ``chi1`` and ``c*`` of tanh at every ``sigma_w2``, in float64."""
    with jax.enable_x64(True):
        sw = jnp.asarray(sigma_w2, jnp.float64)
        _, xi_c = jax.vmap(lambda s: theory.depth_scales("tanh", s, sigma_b2))(sw)
        chi1 = jax.vmap(lambda s: theory.chi1("tanh", s, sigma_b2))(sw)
        c_star = jax.vmap(lambda s: theory.c_star("tanh", s, sigma_b2))(sw)
        return {
            "xi_c": np.asarray(xi_c),
            "chi1": np.asarray(chi1),
            "c_star": np.asarray(c_star),
        }


# --------------------------------------------------------------------------------------
# Training: one engine program per depth, its runs every (sigma_w², lr, seed).


class _Task(NamedTuple):
    """The engine's callables of one depth (the same objects each call: one compile)."""

    init: Callable[..., Any]
    loss: Callable[..., Any]
    optimizer: Callable[..., Any]
    evaluate: Callable[..., Any]


@functools.cache
def _task(sizes: tuple[int, ...]) -> _Task:
    """tanh MLP callables over a run's traced ``sigma_w2``, ``sigma_b2`` and ``lr``."""

    def init(key: jax.Array, hp: Any) -> Any:
        return mean_field_params(key, sizes, hp["sigma_w2"], hp["sigma_b2"])

    def loss(params: Any, batch: tuple[jax.Array, jax.Array], hp: Any) -> jax.Array:
        del hp
        return jnp.mean(js.softmax_cross_entropy(js.apply_mlp(params, batch[0], "tanh"), batch[1]))

    def evaluate(params: Any, data: tuple[jax.Array, jax.Array], hp: Any) -> dict[str, jax.Array]:
        del hp
        logits = js.apply_mlp(params, data[0], "tanh")
        return {
            "accuracy": js.accuracy(logits, data[1]),
            "loss": jnp.mean(js.softmax_cross_entropy(logits, data[1])),
            "finite": jnp.all(jnp.isfinite(logits)),
        }

    return _Task(init, loss, lambda hp: optax.sgd(hp["lr"]), evaluate)


def _train(cfg: ExperimentConfig, data: Any, depth: int, runs: dict[str, Any]) -> dict[str, Any]:
    """Final accuracy, loss, divergence and initial gradient norm of ``runs`` at ``depth``."""
    task = _task((data.d_in, *(cfg.width,) * depth, data.num_classes))
    res = engine.train(
        task.init,
        task.loss,
        task.optimizer,
        (data.x_train, data.y_train),
        runs,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        evaluate=task.evaluate,
        eval_data=(data.x_train, data.y_train),
        eval_every=cfg.eval_every,
    )
    # The engine's divergence (non-finite loss or gradient), or non-finite final logits.
    diverged = res.diverged | ~res.evals["finite"][:, -1]
    # By each budget (evaluation after init): diverged before it, or non-finite logits.
    steps = res.eval_steps[1:]
    early = (res.diverged_step[:, None] >= 0) & (res.diverged_step[:, None] < steps[None, :])
    gone = early | ~res.evals["finite"][:, 1:].astype(bool)
    return {
        "accuracy_budgets": np.where(gone, 0.0, res.evals["accuracy"][:, 1:]),
        "accuracy": np.where(diverged, 0.0, res.evals["accuracy"][:, -1]),
        "loss": np.where(diverged, np.nan, res.evals["loss"][:, -1]),
        "diverged": diverged,
        "grad_norm0": res.metrics["grad_norm"][:, 0],
    }


def train_grid(cfg: ExperimentConfig) -> dict[str, Any]:
    """Pilot, learning-rate choice and the main runs of every cell.

    Per depth, two calls of one compiled program: the pilot trains every
    ``(sigma_w2, lr)`` on seeds ``0 .. pilot_seeds-1``; :func:`choose_lr` picks each
    cell's rate; the main call trains each cell on the fresh seeds
    ``pilot_seeds .. pilot_seeds+seeds-1`` at its rate. A run of seed ``s`` at any
    ``sigma_w2`` shares the initial draw (scaled) and the minibatches. A diverged run
    counts as accuracy 0.

    Returns:
      ``accuracy``, ``loss``, ``diverged``, ``grad_norm0`` ``[depths, sigma_w2, seeds]``;
      ``accuracy_budgets`` ``[depths, sigma_w2, seeds, budgets]`` (after every
      ``eval_every`` steps);
      ``pilot_accuracy`` ``[depths, sigma_w2, lrs, pilot_seeds]``; ``lr_index``
      ``[depths, sigma_w2]``; ``num_classes``.
    """
    data = load_digits()
    n_sw, n_lr = len(cfg.sigma_w2), len(cfg.lrs)
    pilot = engine.grid(cfg.pilot_seeds, sigma_w2=cfg.sigma_w2, sigma_b2=[cfg.sigma_b2], lr=cfg.lrs)
    seeds = np.arange(cfg.pilot_seeds, cfg.pilot_seeds + cfg.seeds)
    out: dict[str, list[np.ndarray]] = {}
    for depth in cfg.depths:
        p = _train(cfg, data, depth, pilot)
        shape = (n_sw, n_lr, cfg.pilot_seeds)  # grid order: seed fastest, then lr
        choice = choose_lr(p["accuracy"].reshape(shape), p["loss"].reshape(shape))
        runs = {
            "seed": np.tile(seeds, n_sw).astype(np.int32),
            "sigma_w2": np.repeat(np.asarray(cfg.sigma_w2, np.float32), cfg.seeds),
            "sigma_b2": np.full(n_sw * cfg.seeds, cfg.sigma_b2, np.float32),
            "lr": np.repeat(np.asarray(cfg.lrs, np.float32)[choice], cfg.seeds),
        }
        main = _train(cfg, data, depth, runs)
        for k, v in main.items():
            out.setdefault(k, []).append(v.reshape(n_sw, cfg.seeds, *v.shape[1:]))
        out.setdefault("pilot_accuracy", []).append(p["accuracy"].reshape(shape))
        out.setdefault("lr_index", []).append(choice)
    return {**{k: np.stack(v) for k, v in out.items()}, "num_classes": data.num_classes}


# --------------------------------------------------------------------------------------
# Summary, claims, figures, findings.


def summarize(cfg: ExperimentConfig, runs: dict[str, Any], mc: dict[str, Any]) -> dict[str, Any]:
    """Per-cell statistics, the fitted k, and xi_c measured against theory."""
    sw = np.asarray(cfg.sigma_w2)
    depths = np.asarray(cfg.depths)
    lo, hi = min(min(cfg.sigma_w2), min(cfg.mc_sigma_w2)), max(max(cfg.sigma_w2), 4.0)
    fine = np.linspace(lo, hi, cfg.theory_points)
    # One call for the three grids: each shape would compile the theory's programs anew.
    grids = [sw, fine, np.asarray(cfg.mc_sigma_w2, np.float64)]
    curves = theory_curves(np.concatenate(grids), cfg.sigma_b2)
    ends = np.cumsum([len(g) for g in grids])[:-1]
    parts = {k: np.split(v, ends) for k, v in curves.items()}
    th_cells, th_fine, th_mc = ({k: v[i] for k, v in parts.items()} for i in range(3))
    with jax.enable_x64(True):
        critical = float(theory.critical_sigma_w2("tanh", cfg.sigma_b2))
    xi = th_cells["xi_c"]
    acc = runs["accuracy"]  # [D, S, seeds]
    cells = [[_stats.summary(acc[i, j]) for j in range(len(sw))] for i in range(len(depths))]
    median = np.median(acc, axis=-1)
    trainable = median >= cfg.trainable_accuracy
    predicted6 = predicted_trainable(depths, xi)
    k = np.linspace(*cfg.k_grid[:2], int(cfg.k_grid[2]))
    curve = agreement_curve(trainable, depths, xi, k)
    maximizers = k[curve >= curve.max() - 1e-12]
    k_boot = k_bootstrap(acc, depths, xi, k, cfg.trainable_accuracy, cfg.bootstrap, cfg.seed)
    beyond = depths[:, None] >= 6 * xi[None, :]
    budgets: dict[str, list[Any]] = {
        "steps": list(range(cfg.eval_every, cfg.steps + 1, cfg.eval_every))
    }
    for b in range(len(budgets["steps"])):
        acc_b = runs["accuracy_budgets"][..., b]
        tr_b = np.median(acc_b, -1) >= cfg.trainable_accuracy
        curve_b = agreement_curve(tr_b, depths, xi, k)
        max_b = k[curve_b >= curve_b.max() - 1e-12]
        boot_b = k_bootstrap(acc_b, depths, xi, k, cfg.trainable_accuracy, cfg.bootstrap, cfg.seed)
        for key, value in (
            ("median_accuracy", np.median(acc_b, -1).tolist()),
            ("trainable", int(tr_b.sum())),
            ("agreement_6", agreement(tr_b, predicted6)),
            ("k_best", float(np.median(max_b))),
            ("k_best_range", [float(max_b.min()), float(max_b.max())]),
            ("agreement_best", float(curve_b.max())),
            ("k_ci", percentile_interval(boot_b)),
        ):
            budgets.setdefault(key, []).append(value)
    # Squared-gradient amplification across the hidden layers (mean field: chi1 per layer).
    amplification = th_cells["chi1"][None, :] ** depths[:, None]
    xi_meas, xi_th = np.asarray(mc["xi_c"], np.float64), th_mc["xi_c"]
    ratio_ci = [
        None if ci is None else [ci[0] / t, ci[1] / t] for ci, t in zip(mc["xi_c_ci"], xi_th)
    ]
    with jax.enable_x64(True):
        th_log_chi1 = np.log(th_mc["chi1"])
    return {
        "critical_sigma_w2": critical,
        "chance": 1.0 / int(runs["num_classes"]),
        "xi_c_cells": xi.tolist(),
        "chi1_cells": th_cells["chi1"].tolist(),
        "accuracy": acc.tolist(),
        "median_accuracy": median.tolist(),
        "median_accuracy_ci": [[c["ci"] for c in row] for row in cells],
        "fraction_trainable_seeds": np.mean(acc >= cfg.trainable_accuracy, -1).tolist(),
        "trainable": trainable.tolist(),
        "predicted_trainable_6": predicted6.tolist(),
        "agreement_6": agreement(trainable, predicted6),
        "k_grid": k.tolist(),
        "agreement_curve": curve.tolist(),
        "k_best": float(np.median(maximizers)),
        "k_best_range": [float(maximizers.min()), float(maximizers.max())],
        "agreement_best": float(curve.max()),
        "k_ci": percentile_interval(k_boot),
        "budgets": budgets,
        "beyond_6": beyond.tolist(),
        "trainable_beyond_6": int((trainable & beyond).sum()),
        "cells_beyond_6": int(beyond.sum()),
        "lr": np.asarray(cfg.lrs)[runs["lr_index"]].tolist(),
        "pilot_median_accuracy": np.median(runs["pilot_accuracy"], -1).tolist(),
        "amplification": amplification.tolist(),
        "grad_norm0_median": np.median(runs["grad_norm0"], -1).tolist(),
        "diverged": int(runs["diverged"].sum()),
        "runs": int(runs["diverged"].size),
        "fine_sigma_w2": fine.tolist(),
        "fine_xi_c": th_fine["xi_c"].tolist(),
        "mc": {
            **mc,
            "theory_xi_c": xi_th.tolist(),
            "theory_c_star": th_mc["c_star"].tolist(),
            "theory_log_chi1": th_log_chi1.tolist(),
            "theory_crossing": float(zero_crossing(np.asarray(cfg.mc_sigma_w2), th_log_chi1)),
            "ratio": (xi_meas / xi_th).tolist(),
            "ratio_ci": ratio_ci,
        },
    }


def _worst_ratio(m: dict[str, Any]) -> tuple[int, bool]:
    """The Monte Carlo point farthest from theory, and whether the 10% rule holds.

    Farthest: the largest ``|log(measured / theory)|`` in units of the half-width of
    its interval on the log scale (a point measured loosely does not count as far).
    """
    ratio = np.asarray(m["mc"]["ratio"], np.float64)
    half = np.asarray(
        [np.nan if ci is None else np.log(ci[1] / ci[0]) / 2 for ci in m["mc"]["ratio_ci"]],
        np.float64,
    )
    score = np.abs(np.log(ratio)) / np.where(half > 0, half, np.nan)
    score = np.where(np.isfinite(score), score, np.inf)  # an unresolved point counts as far
    worst = int(np.argmax(score))
    ok = all(ci is not None and ci[0] <= 1.1 and ci[1] >= 0.9 for ci in m["mc"]["ratio_ci"])
    return worst, ok


def make_claims(cfg: ExperimentConfig, m: dict[str, Any]) -> list[dict[str, Any]]:
    """The published claims next to the measured numbers."""
    n_cells = len(cfg.depths) * len(cfg.sigma_w2)
    k_ci = m["k_ci"]
    worst, ratio_ok = _worst_ratio(m)
    mc = m["mc"]
    cross_ci = mc["critical_crossing_ci"]
    p, p_lo, p_hi = _stats.proportion_ci(m["trainable_beyond_6"], max(m["cells_beyond_6"], 1))
    return [
        _common.claim(
            "networks are trainable precisely when depth < 6 xi_c: the best-agreeing constant k",
            source=f"{PAPER}, Sec. 6 (trainability experiments, accuracy over (sigma_w², L) "
            "with 6 xi_c drawn)",
            published=6.0,
            measured=m["k_best"],
            interval=k_ci,
            n=cfg.seeds,
            rule="6 inside the 95% bootstrap interval of k maximizing the fraction of cells "
            "where 'median accuracy >= "
            f"{cfg.trainable_accuracy}' equals 'depth < k xi_c' (seeds resampled per cell)",
            agrees=None if k_ci is None else bool(k_ci[0] <= 6.0 <= k_ci[1]),
            note=(
                f"{n_cells} cells x {cfg.seeds} seeds; agreement {m['agreement_6']:.3f} at k = 6, "
                f"{m['agreement_best']:.3f} for k in [{m['k_best_range'][0]:.2f}, "
                f"{m['k_best_range'][1]:.2f}]"
                + ("" if k_ci is not None else "; no interval (too few resamples)")
            ),
        ),
        _common.claim(
            "no network deeper than 6 xi_c trains: trainable fraction of the cells at or "
            "beyond 6 xi_c",
            source=f"{PAPER}, Sec. 6 (6 xi_c as the maximum trainable depth)",
            published=0.0,
            measured=p,
            interval=[p_lo, p_hi],
            n=m["cells_beyond_6"],
            rule="no cell at or beyond 6 xi_c trainable (Wilson interval over cells)",
            agrees=m["trainable_beyond_6"] == 0,
        ),
        _common.claim(
            "correlations decay as exp(-l / xi_c) with 1/xi_c = -log chi_c: measured / theory "
            f"xi_c at the farthest point (sigma_w² = {cfg.mc_sigma_w2[worst]})",
            source=f"{PAPER}, Sec. 3 (depth scales, xi_c)",
            published=1.0,
            measured=mc["ratio"][worst],
            interval=mc["ratio_ci"][worst],
            n=cfg.mc_networks,
            rule="at every sigma_w² the 95% interval (networks resampled) of measured/theory "
            "xi_c overlaps [0.9, 1.1]",
            agrees=ratio_ok,
            note=f"Monte Carlo width {cfg.mc_width}, {cfg.mc_depth} layers, "
            f"{len(cfg.mc_sigma_w2)} sigma_w² points (table below)",
        ),
        _common.claim(
            "xi_c diverges at the order-to-chaos transition: sigma_w² where the measured "
            "log chi1 changes sign",
            source=f"{PAPER}, Sec. 3 (xi_c diverges at chi1 = 1)",
            published=m["critical_sigma_w2"],
            measured=mc["critical_crossing"],
            interval=cross_ci,
            n=cfg.mc_networks,
            rule="critical_sigma_w2(tanh, sigma_b2) inside the 95% interval (networks "
            "resampled) of the measured sign change (linear between grid points)",
            agrees=None
            if cross_ci is None
            else bool(cross_ci[0] <= m["critical_sigma_w2"] <= cross_ci[1]),
            note=f"the same interpolation of the theory's log chi1 gives "
            f"{mc['theory_crossing']:.4f}"
            + ("" if cross_ci is not None else "; no sign change resolved"),
        ),
    ]


def _edges(v: np.ndarray) -> np.ndarray:
    """Cell edges around the centres ``v`` (midpoints; the ends mirrored)."""
    v = np.asarray(v, np.float64)
    return np.concatenate(
        [[v[0] - (v[1] - v[0]) / 2], (v[1:] + v[:-1]) / 2, [v[-1] + (v[-1] - v[-2]) / 2]]
    )


def plot(
    cfg: ExperimentConfig, m: dict[str, Any], curves: dict[str, Any], workdir: Path
) -> list[str]:
    """``heatmap.png`` (accuracy with 6 xi_c and k xi_c) and ``xi_c.png`` (Monte Carlo)."""
    plt = _common.pyplot()
    sw, depths = np.asarray(cfg.sigma_w2), np.asarray(cfg.depths)
    fig, ax = plt.subplots(figsize=(7, 5))
    # Cells drawn at their index positions (the grid is not evenly spaced).
    ix, iy = np.arange(len(sw)), np.arange(len(depths))
    mesh = ax.pcolormesh(
        _edges(ix), _edges(iy), np.asarray(m["median_accuracy"]), cmap="viridis", vmin=0, vmax=1
    )
    fig.colorbar(mesh, ax=ax, label=f"median final training accuracy ({cfg.seeds} seeds)")
    fine = np.asarray(m["fine_sigma_w2"])
    xi = np.asarray([np.inf if v is None else v for v in m["fine_xi_c"]], np.float64)
    fx = np.interp(fine, sw, ix, left=np.nan, right=np.nan)
    for factor, style, label in ((6.0, "w-", "6 ξ_c"), (m["k_best"], "w--", "best k ξ_c")):
        fy = np.interp(factor * xi, depths, iy, left=-0.5, right=len(depths) - 0.5)
        ax.plot(fx, fy, style, lw=2 if factor == 6.0 else 1, label=f"{label} (k={factor:.2f})")
    trainable = np.asarray(m["trainable"])
    for i in iy:
        for j in ix:
            ax.text(j, i, "T" if trainable[i, j] else "·", ha="center", va="center", color="w")
    ax.set_xticks(ix, [f"{v:g}" for v in sw])
    ax.set_yticks(iy, [str(d) for d in depths])
    ax.set_ylim(-0.5, len(depths) - 0.5)
    ax.set_xlabel("σw²")
    ax.set_ylabel("depth (hidden layers)")
    ax.set_title(
        f"tanh, σb²={cfg.sigma_b2}, width {cfg.width}, {cfg.steps} SGD steps (best-of lr); "
        f"agreement at 6: {m['agreement_6']:.2f}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    _common.save_and_close(fig, workdir / "heatmap.png", tight=False)

    mc = m["mc"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s, sw2 in enumerate(cfg.mc_sigma_w2):
        if mc["ordered"][s]:
            y = np.asarray(curves["mean_gap"][s])
        else:
            y = np.abs(np.asarray(curves["mean_c"][s]) - mc["c_star"][s])
        a1.semilogy(y, lw=1, label=f"σw²={sw2:g}" + ("" if mc["ordered"][s] else " (|c - c*|)"))
    a1.set_xlabel("layer l")
    a1.set_ylabel("1 - c^l (close pairs) or |c^l - c*| (far pairs)")
    a1.set_title(f"correlations through {cfg.mc_networks} random tanh nets (mean)", fontsize=9)
    a1.legend(fontsize=6, ncol=2)
    a2.semilogy(m["fine_sigma_w2"], xi, "k-", label="mean-field ξ_c")
    msw = np.asarray(cfg.mc_sigma_w2)
    meas = np.asarray(mc["xi_c"], np.float64)
    cis = np.asarray([[np.nan, np.nan] if c is None else c for c in mc["xi_c_ci"]])
    a2.errorbar(
        msw,
        meas,
        yerr=np.abs(np.stack([meas - cis[:, 0], cis[:, 1] - meas])),
        fmt="o",
        ms=4,
        capsize=2,
        label="measured (95% interval over networks)",
    )
    a2.axvline(m["critical_sigma_w2"], color="r", ls=":", label="critical σw² (theory)")
    a2.axvline(mc["critical_crossing"], color="b", ls="--", lw=1, label="measured sign change")
    a2.set_xlabel("σw²")
    a2.set_ylabel("ξ_c (layers)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    _common.save_and_close(fig, workdir / "xi_c.png", tight=False)
    return ["heatmap.png", "xi_c.png"]


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{_findings.fmt(ci[0])}, {_findings.fmt(ci[1])}]"


def findings(result: dict[str, Any]) -> str:
    """The findings section's prose and tables, every number formatted from ``result``."""
    f = _findings.fmt
    cfg, m = result["config"], result["measured"]
    mc = m["mc"]
    sw, depths = cfg["sigma_w2"], cfg["depths"]
    xi = m["xi_c_cells"]
    n_pilot = len(sw) * len(depths) * len(cfg["lrs"]) * cfg["pilot_seeds"]
    out = [
        f"Trainability: tanh MLPs `[64, {cfg['width']} x depth, 10]` on the 8x8 digits, "
        f"`sigma_b2 = {f(cfg['sigma_b2'])}`, plain SGD (batch {cfg['batch_size']}) for "
        f"{cfg['steps']} steps. Per cell the learning rate is the best of "
        f"{{{', '.join(f(v) for v in cfg['lrs'])}}} on {cfg['pilot_seeds']} pilot seeds "
        "(highest median final training accuracy; ties to the lower loss, then the smaller "
        f"rate; {n_pilot} pilot runs); the cell is then trained on {cfg['seeds']} fresh "
        f"seeds at that rate ({m['runs']} runs, {m['diverged']} diverged). A cell is "
        "trainable (T) when the "
        f"median final training accuracy reaches {f(cfg['trainable_accuracy'])} (chance "
        f"{f(m['chance'])}); P marks `depth < 6 xi_c`. Median accuracy [95% bootstrap "
        "interval over seeds], chosen learning rate:",
        "",
        "| depth \\ sigma_w2 | " + " | ".join(f(v) for v in sw) + " |",
        "|---|" + "---|" * len(sw),
        "| 6 xi_c | " + " | ".join(f(6 * v) for v in xi) + " |",
    ]
    for i, d in enumerate(depths):
        row = []
        for j in range(len(sw)):
            mark = ("T" if m["trainable"][i][j] else "") + (
                "P" if m["predicted_trainable_6"][i][j] else ""
            )
            row.append(
                f"{f(m['median_accuracy'][i][j], 2)}{_ci(m['median_accuracy_ci'][i][j])} "
                f"{mark} lr {f(m['lr'][i][j])}".replace("  ", " ")
            )
        out.append(f"| {d} | " + " | ".join(row) + " |")
    amp = np.asarray(m["amplification"], np.float64)
    i_amp = np.unravel_index(int(np.argmax(amp)), amp.shape)
    grad = np.asarray(m["grad_norm0_median"], np.float64)
    out += [
        "",
        "The squared-gradient amplification across the hidden layers at init, `chi1^depth` "
        f"(mean field), spans {f(float(amp.min()))} to {f(float(amp.max()))} (the largest at "
        f"`sigma_w2 = {f(sw[i_amp[1]])}`, depth {depths[i_amp[0]]}); the median initial "
        f"gradient norm per cell spans {f(float(grad.min()))} to {f(float(grad.max()))}. The "
        "per-cell rate absorbs part of this: the chosen rates are listed in the table.",
        "",
    ]
    # The constant k.
    n_cells = len(sw) * len(depths)
    k_ci = m["k_ci"]
    inside = k_ci is not None and k_ci[0] <= 6 <= k_ci[1]
    out.append(
        f"**The constant k.** `depth < 6 xi_c` agrees with the measured trainability in "
        f"{round(m['agreement_6'] * n_cells)} of the {n_cells} cells "
        f"({f(m['agreement_6'])}); the agreement is highest, "
        f"{f(m['agreement_best'])}, for k in [{f(m['k_best_range'][0])}, "
        f"{f(m['k_best_range'][1])}] (median {f(m['k_best'])}); resampling the seeds of each "
        f"cell puts the best k in{_ci(k_ci)}, which "
        + ("contains 6." if inside else "does **not** contain 6.")
        + f" With {len(depths)} depths the cells constrain k only between neighbouring depths "
        "at each sigma_w2, so the interval is set as much by the grid as by the seeds."
    )
    budgets = m.get("budgets")
    if budgets and len(budgets["steps"]) > 1:
        parts = [
            f"{t} steps: {n} trainable cells, agreement {f(a6)} at k = 6, best k {f(kb)}{_ci(ci)}"
            for t, n, a6, kb, ci in zip(
                budgets["steps"],
                budgets["trainable"],
                budgets["agreement_6"],
                budgets["k_best"],
                budgets["k_ci"],
            )
        ]
        grows = budgets["k_best"][-1] > budgets["k_best"][0]
        out += [""]
        out.append(
            "The same runs read at each budget (the rate chosen for the last): "
            + "; ".join(parts)
            + (
                ". The trainable region still grows with training time, so the fitted k "
                "depends on the budget, and this budget does not show where it would stop."
                if grows
                else f". The best k is the same at every budget, while the number of trainable "
                f"cells goes from {budgets['trainable'][0]} to {budgets['trainable'][-1]}."
            )
        )
    lrs = cfg["lrs"]
    chosen = np.asarray(m["lr"], np.float64)
    low = [(depths[i], sw[j]) for i, j in zip(*np.nonzero(chosen == min(lrs)))]
    high = [(depths[i], sw[j]) for i, j in zip(*np.nonzero(chosen == max(lrs)))]
    out += [""]
    out.append(
        f"The chosen rate sits at the grid's smallest value, {f(min(lrs))}, in {len(low)} "
        "cell(s)"
        + (" (" + ", ".join(f"depth {d} at {f(v)}" for d, v in low) + ")" if low else "")
        + f", and at its largest, {f(max(lrs))}, in {len(high)} cell(s); a cell at an edge "
        "might do better just beyond the grid."
    )
    # Disagreements at 6.
    bad = [
        (d, s)
        for i, d in enumerate(depths)
        for j, s in enumerate(sw)
        if m["trainable"][i][j] != m["predicted_trainable_6"][i][j]
    ]
    if bad:
        kinds = {True: "trainable beyond 6 xi_c", False: "not trainable within 6 xi_c"}
        one_sided = all(d < 6 * xi[sw.index(s)] for d, s in bad)
        out += [""]
        out.append(
            "Cells where `depth < 6 xi_c` and the measurement disagree (depth, sigma_w2): "
            + ", ".join(f"({d}, {f(s)}: {kinds[d >= 6 * xi[sw.index(s)]]})" for d, s in bad)
            + (
                ". Every disagreement is one-sided: cells predicted trainable that did not "
                f"reach {f(cfg['trainable_accuracy'])} within the budget. In this setting "
                "(width "
                f"{cfg['width']}, plain SGD, {cfg['steps']} steps) 6 xi_c holds as a bound "
                "that no trained cell exceeds, but the trainable depth falls short of it."
                if one_sided
                else "."
            )
        )
    # Ordered side beyond 6 xi_c, from the data.
    crit = m["critical_sigma_w2"]
    ordered_beyond = [
        (i, j)
        for i, d in enumerate(depths)
        for j, s in enumerate(sw)
        if s < crit and d >= 6 * xi[j]
    ]
    if ordered_beyond:
        chance = m["chance"]
        near = [
            (i, j)
            for i, j in ordered_beyond
            if (m["median_accuracy_ci"][i][j] or [0, 0])[1] < 2 * chance
        ]
        above = [ij for ij in ordered_beyond if ij not in near]
        text = (
            f"On the ordered side (`sigma_w2 < {f(crit)}`), {len(ordered_beyond)} of the cells "
            f"lie at or beyond 6 xi_c; in {len(near)} of them the median accuracy's interval "
            f"stays below twice chance ({f(2 * m['chance'])})"
        )
        if above:
            text += "; above it: " + ", ".join(
                f"depth {depths[i]} at `sigma_w2 = {f(sw[j])}` (median "
                f"{f(m['median_accuracy'][i][j], 2)}{_ci(m['median_accuracy_ci'][i][j])}, "
                f"6 xi_c = {f(6 * xi[j])})"
                for i, j in above
            )
        out += ["", text + "."]
    # xi_c measured.
    out += [
        "",
        f"**xi_c measured.** {cfg['mc_networks']} random tanh networks of width "
        f"{cfg['mc_width']} and {cfg['mc_depth']} layers (float64), each with a close pair "
        f"(`1 - c^0 = {f(cfg['close_gap'])}`) and two far pairs (`c^0 = 0` and "
        f"`{f(ABOVE)}`) of inputs at the length's fixed point. The close pairs' `1 - c^l` "
        "shrinks (ordered) or grows (chaotic) at the rate `log chi1`, the slope of its "
        "network mean on a log scale; in the ordered phase, where `c* = 1`, "
        "`xi_c = -1 / log chi1`. In the chaotic phase the far pairs' mean `c^l` approaches "
        "`c* < 1` from both sides; the layer-to-layer map `c^l -> c^(l+1)` they trace, "
        f"fitted by a quadratic on `c^l` within {f(cfg['map_bandwidth'])} of the plateau "
        "(the mean over the deepest 40% of the layers), crosses the diagonal at the "
        "measured `c*` with slope `chi_c`, and `xi_c = -1 / log chi_c` (a straight line "
        "through `log |c^l - c*|` from `c^0 = 0` would mix in the map's shallower slope far "
        "below `c*` and come out short). Intervals resample the networks.",
        "",
        "| sigma_w2 | phase (measured) | fitted | c* measured (theory) | xi_c theory | "
        "xi_c measured [95%] | measured / theory |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, sw2 in enumerate(cfg["mc_sigma_w2"]):
        out.append(
            f"| {f(sw2)} | {'ordered' if mc['ordered'][s] else 'chaotic'} | "
            f"{mc['window'][s]} | {f(mc['c_star'][s])} "
            f"({f(mc['theory_c_star'][s])}) | {f(mc['theory_xi_c'][s])} | "
            f"{f(mc['xi_c'][s])}{_ci(mc['xi_c_ci'][s])} | {f(mc['ratio'][s])}"
            f"{_ci(mc['ratio_ci'][s])} |"
        )
    worst, ratio_ok = _worst_ratio(m)
    cross_ci = mc["critical_crossing_ci"]
    cross_ok = cross_ci is not None and cross_ci[0] <= crit <= cross_ci[1]
    out += [
        "",
        "The measured decay lengths "
        + (
            "agree with the mean-field `xi_c` to within 10% at every point (by the intervals)"
            if ratio_ok
            else "do **not** all agree with the mean-field `xi_c` within 10%"
        )
        + f"; the farthest point is `sigma_w2 = {f(cfg['mc_sigma_w2'][worst])}` "
        f"(ratio {f(mc['ratio'][worst])}). The measured `log chi1` changes sign at "
        f"`sigma_w2 = {f(mc['critical_crossing'], 4)}`{_ci(cross_ci)}, against the theory's "
        f"critical point {f(crit, 4)} (the same interpolation of the theory's `log chi1` on "
        f"this grid gives {f(mc['theory_crossing'], 4)}): "
        + (
            "the divergence of `xi_c` sits where theory puts it."
            if cross_ok
            else "the measured transition is **displaced** from the theory's; a finite-width "
            "shift is the likely cause."
        ),
    ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    cfg = get_config(args.quick)
    start = time.perf_counter()
    mc = measure_xi_c(cfg, correlation_traces(cfg))
    mc_seconds = time.perf_counter() - start
    measured = summarize(cfg, train_grid(cfg), mc)
    curves = {k: measured["mc"].pop(k) for k in ("mean_gap", "mean_c", "mean_c_above")}
    measured["mc_seconds"] = mc_seconds
    measured["wall_seconds"] = time.perf_counter() - start
    return _common.write_results(
        args.workdir,
        experiment=NAME,
        quick=args.quick,
        config=cfg,
        measured=measured,
        claims=make_claims(cfg, measured),
        figures=plot(cfg, measured, curves, args.workdir),
    )


if __name__ == "__main__":
    out = main()
    for c in out["claims"]:
        print(f"[{c['agrees']}] {c['claim']}: measured {c['measured']} {c['interval']}")
