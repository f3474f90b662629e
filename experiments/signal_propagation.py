"""Signal propagation at init: measured per-layer statistics against mean-field theory.

Published claims:

* Poole et al. 2016 (arXiv 1606.05340) and Schoenholz et al. 2017 (arXiv 1611.01232):
  in a wide MLP with weights ``N(0, sigma_w2 / n)`` and biases ``N(0, sigma_b2)`` the
  pre-activation second moment ``q^l`` follows the length map
  ``q^{l+1} = sigma_w2 E[phi(sqrt(q^l) z)^2] + sigma_b2`` and back-propagated squared
  gradients shrink or grow by ``chi1 = sigma_w2 E[phi'(sqrt(q*) z)^2]`` per layer:
  vanishing in the ordered phase (``chi1 < 1``), exploding in the chaotic phase
  (``chi1 > 1``), preserved on the critical line. ReLU: ``chi1 = sigma_w2 / 2``, so
  Xavier (``sigma_w2 = 1``) halves them per layer and He (``sigma_w2 = 2``) keeps them.
* Pennington, Schoenholz & Ganguli 2017 (arXiv 1711.04735): at criticality the
  squared singular values of the input-output Jacobian of ``L`` layers have mean
  ``chi1^L = 1`` and a variance growing linearly in depth, ``L (mu2 / mu1^2 - 1 - s1)`` with
  ``mu_k = E[phi'(h)^(2k)]`` and ``s1 = -1`` for Gaussian, ``0`` for orthogonal
  weights. Orthogonal tanh near ``q* = 0`` (``mu2 / mu1^2 -> 1``) approaches dynamical
  isometry (every singular value near 1); Gaussian weights do not, and ReLU
  (``mu2 / mu1^2 = 2``) never does.

What is measured. tanh at ``sigma_b2 = 0.05`` in the ordered, critical
(:func:`jaxstab.theory.critical_sigma_w2`) and chaotic phases, and ReLU with Xavier
and He (zero biases): per-layer ``q^l`` (:func:`jaxstab.diagnostics.forward_stats`)
and back-propagated ``E[(dl/dz^l)^2]`` (:func:`jaxstab.diagnostics.backward_stats`),
vmapped over seeds, against :func:`jaxstab.theory.q_profile` and
:func:`jaxstab.theory.gradient_profile` started from the exact ``q^1`` of the input
batch. Then the singular values of ``d z^L / d x``
(:func:`jaxstab.diagnostics.jacobian_singular_values`) for Gaussian and orthogonal
weights at criticality, tanh near ``q* = 0`` (tiny ``sigma_b2``, inputs at ``q*``)
and ReLU with He scaling.

Run: ``python experiments/signal_propagation.py [--quick] [--workdir DIR]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxstab as js
from jaxstab import diagnostics, theory

try:  # experiments/ is on sys.path: run as a script, or imported by the tests and notebooks
    import _common
except ModuleNotFoundError:  # imported as experiments.<name> (python -m, from the repo root)
    from experiments import _common

NAME = "signal_propagation"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """What `signal_propagation` runs."""

    width: int = 512  # every hidden layer and the input dimension
    depth: int = 50  # hidden layers L
    seeds: int = 8  # networks per setting (vmapped)
    batch: int = 128  # Gaussian inputs N(0, I) for the forward/backward statistics
    num_classes: int = 10  # output width; labels are random
    sigma_b2: float = 0.05  # tanh bias variance of the three phases
    ordered_sigma_w2: float = 1.0  # tanh, ordered phase (chi1 < 1)
    chaotic_sigma_w2: float = 3.0  # tanh, chaotic phase (chi1 > 1); critical is computed
    relu_inits: tuple[tuple[str, float], ...] = (("xavier", 1.0), ("he", 2.0))  # (name, sigma_w2)
    jacobian_seeds: int = 4  # networks per Jacobian spectrum
    jacobian_examples: int = 2  # inputs per network whose Jacobian is decomposed
    isometry_sigma_b2: float = 1e-6  # tanh bias variance for the spectra: q* about 0.01
    rel_tolerance: float = 0.05  # agreement of q^L and of the backward factor with theory
    spectrum_tolerance: float = 0.25  # relative agreement of the spectra's variance
    seed: int = 0  # root PRNG seed


def get_config(quick: bool = False) -> ExperimentConfig:
    """The full configuration, or a shrunk one that runs in seconds."""
    if quick:
        return ExperimentConfig(
            width=64,
            depth=10,
            seeds=4,
            batch=32,
            jacobian_seeds=4,
            jacobian_examples=2,
            rel_tolerance=0.1,
            spectrum_tolerance=0.5,
        )
    return ExperimentConfig()


# --------------------------------------------------------------------------------------
# Pure helpers.


def derivative_moments(activation: str, q: float, order: int = 101) -> tuple[float, float]:
    """``(mu1, mu2)`` with ``mu_k = E[phi'(sqrt(q) z)^(2k)]``, ``z ~ N(0, 1)``.

    ReLU in closed form (``phi'^2`` is an indicator: ``1/2, 1/2``); smooth activations
    by Gauss-Hermite quadrature (probabilists' weights, ``order`` nodes).

    References:
      Pennington, Schoenholz & Ganguli 2017, arXiv 1711.04735, eq. (14).
    """
    if activation == "relu":
        return 0.5, 0.5
    z, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / math.sqrt(2.0 * math.pi)
    dphi = np.asarray(jax.vmap(diagnostics.derivative(activation))(jnp.asarray(np.sqrt(q) * z)))
    d2 = np.asarray(dphi, np.float64) ** 2
    return float(np.sum(w * d2)), float(np.sum(w * d2**2))


def predicted_spectrum(
    sigma_w2: float, mu1: float, mu2: float, depth: int, orthogonal: bool
) -> tuple[float, float]:
    """Mean and normalized variance of the squared singular values of ``d z^L / d x``.

    ``d z^L / d x = W^L D^{L-1} W^{L-1} ... D^1 W^1``: ``L`` weight matrices and
    ``L - 1`` diagonal ``D = phi'(z)``. By free probability (Pennington et al. 2017)
    the normalized moments of freely independent factors combine as
    ``var(ab) = var(a) + var(b)`` (means 1): each ``W W^T / sigma_w2`` contributes
    ``-s1`` (1 Gaussian, 0 orthogonal), each ``D^2 / mu1`` contributes
    ``mu2 / mu1^2 - 1``. (The paper's ``L (mu2/mu1^2 - 1 - s1)`` counts a ``D`` in
    each of ``L`` layers.)

    Returns:
      ``(mean, variance / mean^2)`` of the eigenvalues of ``J J^T``.
    """
    mean = sigma_w2**depth * mu1 ** (depth - 1)
    s1 = 0.0 if orthogonal else -1.0
    return mean, depth * (-s1) + (depth - 1) * (mu2 / mu1**2 - 1.0)


def backward_factors(signal_SxL: np.ndarray) -> np.ndarray:
    """Per-layer backward factors ``E[s^l] / E[s^{l+1}]``, means over seeds: ``[L - 1]``.

    ``s^l`` is the mean squared back-propagated signal ``E[(dl/dz^l)^2]`` of hidden
    layer ``l`` (one row per seed); mean-field theory predicts the ratio of
    expectations ``E[s^l] / E[s^{l+1}] = chi(q^l)`` (:func:`jaxstab.theory.gradient_profile`).
    """
    mean_s = np.mean(np.asarray(signal_SxL, np.float64), axis=0)
    return mean_s[:-1] / mean_s[1:]


def tail_factor(signal_SxL: np.ndarray, start: int) -> float:
    """The mean per-layer backward factor from layer index ``start`` to the last layer.

    ``(E[s^start] / E[s^last])^(1 / (last - start))``, expectations as means over
    seeds: the geometric mean of :func:`backward_factors` over those layers, to
    compare with ``chi1`` where ``q^l`` has reached ``q*``.
    """
    mean_s = np.mean(np.asarray(signal_SxL, np.float64), axis=0)
    steps = len(mean_s) - 1 - start
    if steps < 1:
        raise ValueError(f"start={start} leaves no layer pair in {len(mean_s)} layers")
    return float((mean_s[start] / mean_s[-1]) ** (1.0 / steps))


def mean_field_params(
    key: jax.Array, width: int, depth: int, d_out: int, sigma_w2: jax.Array, sigma_b2: jax.Array
) -> Any:
    """Parameters of ``[width] * (depth + 1) + [d_out]``, weights ``N(0, sigma_w2 / fan_in)``.

    Biases of the hidden layers are ``N(0, sigma_b2)``, the readout's zero. The
    layout is that of :func:`jaxstab.init_mlp` (one group of ``depth`` stacked square
    layers, then the readout), and the distribution that of
    ``variance_scaling(sigma_w2, "fan_in", "normal")`` weights and
    ``normal(sqrt(sigma_b2))`` biases. Every entry comes from ONE flat ``normal(1)``
    draw, scaled by ``sqrt(sigma_w2 / fan_in)`` or ``sqrt(sigma_b2)``: the variances
    are traced, so one compiled program serves every ``(sigma_w2, sigma_b2)``, and a
    single 1-D threefry draw compiles in a fraction of the time of ``init_mlp``'s
    per-layer draws (several seconds on CPU, more than the rest of a quick run).
    """
    n_w, n_b, n_out = depth * width * width, depth * width, width * d_out
    z = js.normal(1.0)(key, (n_w + n_b + n_out,))
    w = z[:n_w].reshape(depth, width, width) * jnp.sqrt(sigma_w2 / width)
    b = z[n_w : n_w + n_b].reshape(depth, width) * jnp.sqrt(sigma_b2)
    w_out = z[n_w + n_b :].reshape(width, d_out) * jnp.sqrt(sigma_w2 / width)
    return {"hidden": [{"w": w, "b": b}], "output": {"w": w_out, "b": jnp.zeros((d_out,))}}


def orthogonalize(w_NxN: jax.Array) -> jax.Array:
    """The Haar-orthogonal ``Q`` of a square Gaussian matrix ``w``.

    ``Q`` of ``w = QR`` with the signs of ``diag(R)`` moved into ``Q``: the
    construction of ``jax.random.orthogonal`` (hence of :func:`jaxstab.orthogonal`),
    which makes ``Q`` Haar-distributed when ``w`` has i.i.d. Gaussian entries.
    """
    q, r = jnp.linalg.qr(w_NxN)
    return q * jnp.sign(jnp.diagonal(r))[None, :]


# --------------------------------------------------------------------------------------
# Measurements (one compiled program per activation / weight kind).


@functools.cache
def _init_program(width: int, depth: int, d_out: int) -> Any:
    """keys [S], sigma_w2, sigma_b2 -> per-seed Gaussian parameters (traced variances)."""

    def init(keys: jax.Array, sigma_w2: jax.Array, sigma_b2: jax.Array) -> Any:
        # lax.map, not vmap: the same draws, and XLA on CPU compiles the threefry
        # sampler of a 4-D [seeds, depth, width, width] draw several times slower.
        return jax.lax.map(
            lambda k: mean_field_params(k, width, depth, d_out, sigma_w2, sigma_b2), keys
        )

    return jax.jit(init)


@jax.jit
def _orthogonal_params(params: Any, sigma_w2: jax.Array) -> Any:
    """Per-seed parameters with every square hidden weight replaced by ``sqrt(sigma_w2) Q``.

    ``Q`` = :func:`orthogonalize` of the Gaussian weight: ``W W^T = sigma_w2 I``.
    """
    ortho = jax.vmap(jax.vmap(orthogonalize))  # over seeds, then layers
    hidden = [
        {
            "w": jnp.sqrt(sigma_w2) * ortho(g["w"])
            if g["w"].shape[-1] == g["w"].shape[-2]
            else g["w"],
            "b": g["b"],
        }
        for g in params["hidden"]
    ]
    return {"hidden": hidden, "output": params["output"]}


@functools.cache
def _stats_program(activation: str) -> Any:
    """Per-seed (q^l, E[(dl/dz^l)^2]) of a batch: vmapped forward_stats + backward_stats."""

    def one(params: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        fwd = diagnostics.forward_stats(params, x, activation)
        bwd = diagnostics.backward_stats(params, x, y, activation)
        return fwd.second_moment, bwd.signal_second_moment

    return jax.jit(jax.vmap(one, (0, None, None)))


@functools.cache
def _jacobian_program(activation: str) -> Any:
    """Per-seed singular values of d z^L / d x for a few inputs: [S, E, width]."""
    return jax.jit(
        jax.vmap(lambda p, x: diagnostics.jacobian_singular_values(p, x, activation), (0, None))
    )


def settings(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """The five forward/backward settings: tanh x 3 phases, ReLU x 2 inits."""
    critical = float(theory.critical_sigma_w2("tanh", cfg.sigma_b2))
    out = [
        {"name": f"tanh {phase}", "activation": "tanh", "sigma_w2": sw2, "sigma_b2": cfg.sigma_b2}
        for phase, sw2 in (
            ("ordered", cfg.ordered_sigma_w2),
            ("critical", critical),
            ("chaotic", cfg.chaotic_sigma_w2),
        )
    ]
    out += [
        {"name": f"relu {init}", "activation": "relu", "sigma_w2": sw2, "sigma_b2": 0.0}
        for init, sw2 in cfg.relu_inits
    ]
    return out


def measure_profiles(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Measured and predicted per-layer q^l and backward signal for every setting."""
    k_x, k_y, k_nets = jax.random.split(jax.random.key(cfg.seed), 3)
    x = jax.random.normal(k_x, (cfg.batch, cfg.width))
    y = jax.random.randint(k_y, (cfg.batch,), 0, cfg.num_classes)
    mean_sq_input = float(jnp.mean(jnp.sum(x**2, axis=1)) / cfg.width)
    out = []
    for i, s in enumerate(settings(cfg)):
        act, sw2, sb2 = s["activation"], s["sigma_w2"], s["sigma_b2"]
        keys = jax.random.split(jax.random.fold_in(k_nets, i), cfg.seeds)
        params = _init_program(cfg.width, cfg.depth, cfg.num_classes)(
            keys, jnp.float32(sw2), jnp.float32(sb2)
        )
        q_SxL, signal_SxL = jax.device_get(_stats_program(act)(params, x, y))
        q1 = sw2 * mean_sq_input + sb2  # E[q^1] over the first layer's weights, exactly
        q_pred = np.asarray(theory.q_profile(act, sw2, sb2, q1, cfg.depth), np.float64)
        chi_pred = np.asarray(theory.gradient_profile(act, sw2, sb2, q1, cfg.depth), np.float64)
        if act == "relu":  # chi = sigma_w2 / 2 at every q: no fixed point needed
            chi1, q_star = float(chi_pred[-1]), None
        else:
            chi1, q_star = float(theory.chi1(act, sw2, sb2)), float(theory.q_star(act, sw2, sb2))
        out.append(
            {
                **s,
                "q": np.asarray(q_SxL, np.float64),
                "signal": np.asarray(signal_SxL, np.float64),
                "q_pred": q_pred,
                "chi_pred": chi_pred,
                "chi1": chi1,
                "q_star": q_star,
            }
        )
    return out


def summarize_profile(p: dict[str, Any], depth: int) -> dict[str, Any]:
    """The numbers of one setting: q^L and the backward factor against theory."""
    q_L = p["q"][:, -1]
    q_L_se = float(np.std(q_L, ddof=1) / math.sqrt(len(q_L)))
    q_mean = np.mean(p["q"], axis=0)
    q_se = np.std(p["q"], axis=0, ddof=1) / math.sqrt(len(q_L))
    factors = backward_factors(p["signal"])
    factor_tail = tail_factor(p["signal"], depth // 2)  # layers at the fixed point q*
    mean_s = np.mean(p["signal"], axis=0)
    return {
        "sigma_w2": p["sigma_w2"],
        "sigma_b2": p["sigma_b2"],
        "chi1": p["chi1"],
        "q_star": p["q_star"],
        "q1_measured": float(np.mean(p["q"][:, 0])),
        "q1_theory": float(p["q_pred"][0]),
        "qL_measured": float(np.mean(q_L)),
        "qL_se": q_L_se,
        "qL_theory": float(p["q_pred"][-1]),
        "qL_rel_err": float(np.mean(q_L) / p["q_pred"][-1] - 1.0),
        "qL_z": float((np.mean(q_L) - p["q_pred"][-1]) / q_L_se),
        "q_max_abs_rel_err_per_layer": float(np.max(np.abs(q_mean / p["q_pred"] - 1.0))),
        "q_median_abs_z_per_layer": float(np.median(np.abs((q_mean - p["q_pred"]) / q_se))),
        "backward_factor_tail_measured": factor_tail,
        "backward_factor_rel_err_vs_chi1": factor_tail / p["chi1"] - 1.0,
        "backward_factor_median_abs_rel_err_per_layer": float(
            np.median(np.abs(factors / p["chi_pred"][:-1] - 1.0))
        ),
        "signal_ratio_first_over_last_measured": float(mean_s[0] / mean_s[-1]),
        "signal_ratio_first_over_last_theory": float(np.prod(p["chi_pred"][:-1])),
    }


def measure_spectra(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Jacobian singular values, Gaussian vs orthogonal, tanh near q* = 0 and ReLU (He)."""
    tanh_sw2 = float(theory.critical_sigma_w2("tanh", cfg.isometry_sigma_b2))
    tanh_q_star = float(theory.q_star("tanh", tanh_sw2, cfg.isometry_sigma_b2))
    k_x, k_nets = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), 1))
    x_unit = jax.random.normal(k_x, (cfg.jacobian_examples, cfg.width))
    keys = jax.random.split(k_nets, cfg.jacobian_seeds)
    out = []
    for act, sw2, sb2, q_star in (
        ("tanh", tanh_sw2, cfg.isometry_sigma_b2, tanh_q_star),
        ("relu", 2.0, 0.0, 1.0),
    ):
        # Inputs with q^1 = q*: sigma_w2 |x|^2 / n + sigma_b2 = q*.
        x = x_unit * math.sqrt(max(q_star - sb2, 0.0) / sw2)
        mu1, mu2 = derivative_moments(act, q_star)
        gaussian = _init_program(cfg.width, cfg.depth, cfg.num_classes)(
            keys, jnp.float32(sw2), jnp.float32(sb2)
        )
        for kind in ("gaussian", "orthogonal"):
            params = gaussian if kind == "gaussian" else _orthogonal_params(gaussian, sw2)
            sv = np.asarray(jax.device_get(_jacobian_program(act)(params, x)), np.float64)
            lam = sv.ravel() ** 2
            mean, nvar = predicted_spectrum(sw2, mu1, mu2, cfg.depth, kind == "orthogonal")
            out.append(
                {
                    "name": f"{act} {kind}",
                    "activation": act,
                    "kind": kind,
                    "sigma_w2": sw2,
                    "sigma_b2": sb2,
                    "q_star": q_star,
                    "mu1": mu1,
                    "mu2": mu2,
                    "singular_values": sv,
                    "lambda_mean": float(np.mean(lam)),
                    "lambda_mean_theory": mean,
                    "lambda_nvar": float(np.var(lam) / np.mean(lam) ** 2),
                    "lambda_nvar_theory": nvar,
                    "fraction_sv_in_half_to_double": float(
                        np.mean((sv > 0.5 * math.sqrt(mean)) & (sv < 2.0 * math.sqrt(mean)))
                    ),
                }
            )
    return out


# --------------------------------------------------------------------------------------
# Claims and figures.


def make_claims(
    cfg: ExperimentConfig, profiles: dict[str, Any], spectra: dict[str, Any]
) -> list[dict[str, Any]]:
    """The published claims next to the measured numbers."""
    tol = cfg.rel_tolerance
    claims = []
    for name, m in profiles.items():
        claims.append(
            {
                "claim": f"{name}: q^L (seed mean) follows the length map "
                f"(sigma_w2={m['sigma_w2']:.3f}, q^1={m['q1_theory']:.3f})",
                "published": m["qL_theory"],
                "measured": m["qL_measured"],
                "tolerance": f"relative {tol} or 3 SE over seeds (relative error "
                f"{m['qL_rel_err']:+.4f}, z={m['qL_z']:+.2f})",
                "agrees": abs(m["qL_rel_err"]) <= tol or abs(m["qL_z"]) <= 3.0,
            }
        )
        claims.append(
            {
                "claim": f"{name}: the back-propagated signal scales by chi1 per layer "
                "(measured factor over layers L/2..L)",
                "published": m["chi1"],
                "measured": m["backward_factor_tail_measured"],
                "tolerance": f"relative {tol} (relative error "
                f"{m['backward_factor_rel_err_vs_chi1']:+.4f})",
                "agrees": abs(m["backward_factor_rel_err_vs_chi1"]) <= tol,
            }
        )
    ordered, critical, chaotic = (
        profiles[f"tanh {phase}"]["backward_factor_tail_measured"]
        for phase in ("ordered", "critical", "chaotic")
    )
    claims.append(
        {
            "claim": "tanh: gradients vanish in the ordered phase, are kept at criticality, "
            "explode in the chaotic phase (measured factor per layer: ordered, critical, chaotic)",
            "published": "< 1, = 1, > 1",
            "measured": [ordered, critical, chaotic],
            "tolerance": f"critical within {tol} of 1, the others beyond it",
            "agrees": ordered < 1 - tol and abs(critical - 1) <= tol and chaotic > 1 + tol,
        }
    )
    stol = cfg.spectrum_tolerance
    for name, s in spectra.items():
        rel = s["lambda_nvar"] / s["lambda_nvar_theory"] - 1.0 if s["lambda_nvar_theory"] else 0.0
        claims.append(
            {
                "claim": f"{name}: variance/mean^2 of the Jacobian's squared singular values "
                "(free probability)",
                "published": s["lambda_nvar_theory"],
                "measured": s["lambda_nvar"],
                "tolerance": f"relative {stol} (absolute 0.05 where the prediction is ~0)",
                "agrees": abs(rel) <= stol
                or abs(s["lambda_nvar"] - s["lambda_nvar_theory"]) < 0.05,
            }
        )
    iso = spectra["tanh orthogonal"]["lambda_nvar"]
    others = min(spectra[n]["lambda_nvar"] for n in spectra if n != "tanh orthogonal")
    claims.append(
        {
            "claim": "only orthogonal tanh near q*=0 approaches dynamical isometry "
            "(variance/mean^2: orthogonal tanh vs the smallest of the others)",
            "published": "orthogonal tanh << 1 <= others",
            "measured": [iso, others],
            "tolerance": "orthogonal tanh < 0.2, others > 1",
            "agrees": iso < 0.2 and others > 1.0,
        }
    )
    return claims


def plot(
    cfg: ExperimentConfig,
    profiles: list[dict[str, Any]],
    spectra: list[dict[str, Any]],
    workdir: Path,
) -> list[str]:
    """``signal_propagation_profiles.png`` and ``signal_propagation_jacobian.png``."""
    plt = _common.pyplot()
    layers = np.arange(1, cfg.depth + 1)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, act in enumerate(("tanh", "relu")):
        for i, p in enumerate(x for x in profiles if x["activation"] == act):
            color = f"C{i}"
            label = f"{p['name']} (σw²={p['sigma_w2']:.2f}, χ1={p['chi1']:.3f})"
            signal = p["signal"] / p["signal"][:, -1:]
            chi = p["chi_pred"]
            signal_pred = np.append(np.cumprod(chi[-2::-1])[::-1], 1.0)
            for row, (meas, pred) in enumerate(((p["q"], p["q_pred"]), (signal, signal_pred))):
                lo, mid, hi = np.percentile(meas, [10, 50, 90], axis=0)
                axes[row][col].plot(layers, mid, "o", ms=2.5, color=color, label=label)
                axes[row][col].fill_between(layers, lo, hi, color=color, alpha=0.2)
                axes[row][col].plot(layers, pred, "-", color=color, lw=1)
        axes[0][col].set_ylabel("q^l = mean z² (forward)")
        axes[1][col].set_ylabel("E[(dℓ/dz^l)²] / E[(dℓ/dz^L)²] (backward)")
        axes[0][col].set_title(f"{act}: measured (dots, 10-90% over seeds) vs theory (lines)")
        for row in range(2):
            axes[row][col].set_yscale("log")
            axes[row][col].set_xlabel("layer l")
            axes[row][col].grid(alpha=0.3)
            axes[row][col].legend(fontsize=7)
    fig.suptitle(f"Signal propagation at init, width {cfg.width}, depth {cfg.depth}")
    fig.tight_layout()
    names = [f"{NAME}_profiles.png", f"{NAME}_jacobian.png"]
    _common.save_and_close(fig, workdir / names[0], tight=False)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for col, act in enumerate(("tanh", "relu")):
        ax = axes[col]
        for s in (x for x in spectra if x["activation"] == act):
            # Singular values over the predicted RMS, as an empirical CDF on a log axis
            # (float32 resolves about 1e-7 of the largest; smaller ones sit at that floor).
            sv = s["singular_values"].ravel() / math.sqrt(s["lambda_mean_theory"])
            log_sv = np.sort(np.log10(np.maximum(sv, 1e-7 * sv.max())))
            ax.step(
                log_sv,
                np.arange(1, len(log_sv) + 1) / len(log_sv),
                where="post",
                lw=1.5,
                label=f"{s['kind']}: var/mean² of s² {s['lambda_nvar']:.2f} "
                f"(theory {s['lambda_nvar_theory']:.2f}); "
                f"{100 * s['fraction_sv_in_half_to_double']:.0f}% in [1/2, 2]",
            )
        ax.axvspan(np.log10(0.5), np.log10(2.0), color="k", alpha=0.08)
        ax.set_xlabel("log10 singular value s of d z^L / d x (over sqrt of the predicted mean s²)")
        ax.set_ylabel("fraction of singular values below")
        s0 = next(x for x in spectra if x["activation"] == act)
        ax.set_title(
            f"{act}, σw²={s0['sigma_w2']:.4f}, σb²={s0['sigma_b2']:g}, q*={s0['q_star']:.3g}"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Jacobian spectra at criticality, width {cfg.width}, depth {cfg.depth}")
    fig.tight_layout()
    _common.save_and_close(fig, workdir / names[1], tight=False)
    return names


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment; writes results.json and the figures into the workdir."""
    args = _common.parse_args(NAME, __doc__, argv)
    cfg = get_config(args.quick)
    start = time.perf_counter()
    profiles = measure_profiles(cfg)
    spectra = measure_spectra(cfg)
    drop = ("singular_values",)
    measured = {
        "profiles": {p["name"]: summarize_profile(p, cfg.depth) for p in profiles},
        "spectra": {s["name"]: {k: v for k, v in s.items() if k not in drop} for s in spectra},
        "wall_seconds": time.perf_counter() - start,
    }
    return _common.write_results(
        args.workdir,
        experiment=NAME,
        quick=args.quick,
        config=cfg,
        measured=measured,
        claims=make_claims(cfg, measured["profiles"], measured["spectra"]),
        figures=plot(cfg, profiles, spectra, args.workdir),
    )


if __name__ == "__main__":
    out = main()
    for c in out["claims"]:
        print(f"[{'ok' if c['agrees'] else 'NO'}] {c['claim']}: measured {c['measured']}")
