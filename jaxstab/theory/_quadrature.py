"""Gaussian quadrature rules for the mean-field integrals, split at the kink.

Gaussian expectations are evaluated by rules built once, in float64 numpy, at
import, and used in float64 when ``jax_enable_x64`` is on, in float32 otherwise.
Activations such as ReLU, leaky ReLU, ELU and SELU have a kink at 0, where plain
Gauss-Hermite converges only like ``1/n``; as the activation is always applied to
``sqrt(q) z``, the kink sits at ``z = 0`` for every ``q``, so each integral is split
there: one dimension uses Gauss-Legendre on each half-line, the two-dimensional
(correlation) integrals use polar coordinates with the angle split where either
argument changes sign. The integrand is smooth on every piece, and the rules are
accurate to about 1e-12 in float64 (float32 rounding, about 1e-7, in float32) for
every registered activation and ``q`` up to a few hundred.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstab._typing import Array, ArrayLike

Activation = Callable[[Array], Array]
"""An elementwise activation function (static: a hashable callable)."""


def _half_line_rule(n: int, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``int_0^length g(x) dx``.

    Gauss-Legendre in ``t`` in [0, 1] after ``x = length * t**2``. The map clusters
    nodes at ``x = 0`` (the Jacobian ``2 length t`` vanishes there): the integrands
    here vary fastest next to the split point 0 (``tanh(sqrt(q) x)`` has its complex
    poles at ``x = i pi / (2 sqrt(q))``), and in ``t`` those features are much
    wider, so the rule stays accurate for large ``q``.
    """
    y, w = np.polynomial.legendre.leggauss(n)
    t = (y + 1.0) / 2.0
    return length * t**2, w * length * t


# One dimension: E[f(z)] = int_0^inf (f(z) + f(-z)) phi(z) dz, truncated at
# |z| = 12 (the Gaussian tail beyond carries 1e-32 of the mass).
_Z_HALF, _ZW_HALF = _half_line_rule(96, 12.0)
_ZW_HALF = _ZW_HALF * np.exp(-0.5 * _Z_HALF**2) / math.sqrt(2.0 * math.pi)
_GAUSS_NODES = np.concatenate([-_Z_HALF[::-1], _Z_HALF])
_GAUSS_WEIGHTS = np.concatenate([_ZW_HALF[::-1], _ZW_HALF])

# Two dimensions, polar coordinates: radial weight r exp(-r^2 / 2) / (2 pi) ...
_R_NODES, _R_WEIGHTS = _half_line_rule(64, 12.0)
_R_WEIGHTS = _R_WEIGHTS * _R_NODES * np.exp(-0.5 * _R_NODES**2) / (2.0 * math.pi)


def _angle_rule(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes ``u``, ``1 - u`` and weights of a rule for ``int_0^1 g(u) du``.

    Gauss-Legendre after the map ``s = (3y - y^3) / 2``, whose Jacobian vanishes at
    both ends: every angular piece ends where an argument of the activation changes
    sign, and next to those ends ``phi(sqrt(q) r cos(t))`` varies on the scale
    ``1 / (sqrt(q) r)``. ``u`` and ``1 - u`` are computed from the factorized forms
    ``(1 + y)^2 (2 - y) / 4`` and ``(1 - y)^2 (2 + y) / 4`` so that both keep full
    relative accuracy near 0.
    """
    y, w = np.polynomial.legendre.leggauss(n)
    u = (1.0 + y) ** 2 * (2.0 - y) / 4.0
    one_minus_u = (1.0 - y) ** 2 * (2.0 + y) / 4.0
    return u, one_minus_u, w * 0.75 * (1.0 - y**2)


# ... and 48 angular nodes on each of the 4 angular pieces.
_U, _ONE_MINUS_U, _U_WEIGHTS = _angle_rule(48)


def float_dtype() -> np.dtype:
    """float64 under jax_enable_x64, float32 otherwise (read at trace time)."""
    return np.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def gauss_rule() -> tuple[Array, Array]:
    """The nodes ``z`` and weights ``w`` of ``E[f(z)] ~ sum(w f(z))``, in the computation dtype.

    192 nodes, 96 on each half-line, truncated at ``|z| = 12``; ``z`` ascending.
    """
    dtype = float_dtype()
    return jnp.asarray(_GAUSS_NODES, dtype), jnp.asarray(_GAUSS_WEIGHTS, dtype)


def gaussian_expectation(f: Callable[[Array], Array]) -> Array:
    """``E[f(z)]`` for ``z ~ N(0, 1)``, split at ``z = 0``.

    Args:
      f: an elementwise function of the standard normal variable, smooth on each
        half-line (a kink or jump at 0 is fine).

    Returns:
      A scalar in the computation dtype.
    """
    z, w = gauss_rule()
    return jnp.sum(w * f(z))


def correlation_angles(one_minus_c: Array, one_plus_c: Array) -> tuple[Array, Array]:
    """``theta = arccos(c)`` and ``pi - theta``, each accurate near 0.

    ``arccos(1 - d) = 2 arcsin(sqrt(d / 2))`` keeps full relative accuracy for small
    ``d``, where ``arccos`` of a rounded ``c`` would not; clipping keeps ``c = +-1``
    (and values rounded just outside) free of ``nan``.
    """
    theta = 2.0 * jnp.arcsin(jnp.sqrt(jnp.clip(one_minus_c, 0.0, 2.0) / 2.0))
    theta_bar = 2.0 * jnp.arcsin(jnp.sqrt(jnp.clip(one_plus_c, 0.0, 2.0) / 2.0))
    return theta, theta_bar


def _angle_table(u: np.ndarray, one_minus_u: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """The four angular pieces of :func:`bivariate_expectation_at_angle` as tables.

    Node ``j`` of the pieces has direction ``x = sx sin(theta xt + theta_bar xb)``,
    ``y = sy sin(theta yt + theta_bar yb)`` and weight ``theta wt + theta_bar wb``
    (``theta_bar = pi - theta``); one of each pair of coefficients is 0, so every
    sine argument is ``theta`` or ``theta_bar`` times a number in (0, 1), formed
    without cancellation.
    """
    zero = np.zeros_like(u)
    pieces = [  # (xt, xb, sx, yt, yb, sy, wt, wb)
        (u, zero, -1.0, one_minus_u, zero, 1.0, w, zero),  # tau in [0, theta]
        (zero, one_minus_u, -1.0, zero, u, -1.0, zero, w),  # [theta, pi]
        (u, zero, 1.0, one_minus_u, zero, -1.0, w, zero),  # [pi, pi + theta]
        (zero, one_minus_u, 1.0, zero, u, 1.0, zero, w),  # [pi + theta, 2 pi]
    ]
    names = ("xt", "xb", "sx", "yt", "yb", "sy", "wt", "wb")
    return {
        name: np.concatenate([np.broadcast_to(p[k], u.shape) for p in pieces])
        for k, name in enumerate(names)
    }


_ANGLES = _angle_table(_U, _ONE_MINUS_U, _U_WEIGHTS)


def bivariate_expectation_at_angle(
    f: Callable[[Array, Array], Any], theta: Array, theta_bar: Array
) -> Any:
    """``E[f(x, y)]`` for standard normals with correlation ``cos(theta)``.

    With ``(x, y) = (-r sin(tau), -r sin(tau - theta))`` (a rotation of the polar
    coordinates of two independent standard normals), ``x`` changes sign at
    ``tau = 0, pi`` and ``y`` at ``tau = theta, theta + pi``: the four angular pieces
    ``[0, theta]``, ``[theta, pi]``, ``[pi, pi + theta]``, ``[pi + theta, 2 pi]`` each
    have fixed signs of ``x`` and ``y``, so the integrand is smooth on each. The
    sines are written so that every argument lies in ``(0, pi)`` and is formed
    without cancellation (``sin(theta + (pi - theta) u) = sin((pi - theta)(1 - u))``):
    no node lands on the wrong side of a kink, even for ``c`` within rounding of +-1.
    ``f`` may return a tuple of arrays (several integrands at once); so does this.
    """
    dtype = float_dtype()
    t = {k: jnp.asarray(v, dtype) for k, v in _ANGLES.items()}
    r = jnp.asarray(_R_NODES, dtype)
    wr = jnp.asarray(_R_WEIGHTS, dtype)
    x_dir = t["sx"] * jnp.sin(theta * t["xt"] + theta_bar * t["xb"])
    y_dir = t["sy"] * jnp.sin(theta * t["yt"] + theta_bar * t["yb"])
    w_dir = theta * t["wt"] + theta_bar * t["wb"]
    values = f(x_dir[:, None] * r[None, :], y_dir[:, None] * r[None, :])
    # Radial sums first, then the angular one: two short float32 reductions.
    return jax.tree.map(lambda v: jnp.sum(w_dir * jnp.sum(wr[None, :] * v, axis=1)), values)


def bivariate_expectation(f: Callable[[Array, Array], Array], c: ArrayLike) -> Array:
    """``E[f(x, y)]`` for standard normals ``x, y`` with correlation ``c``.

    Args:
      f: an elementwise function of two arguments, smooth wherever neither argument
        changes sign (kinks at ``x = 0`` or ``y = 0`` are fine).
      c: the correlation, clipped into ``[-1, 1]``.

    Returns:
      A scalar in the computation dtype.
    """
    c = jnp.asarray(c, float_dtype())
    return bivariate_expectation_at_angle(f, *correlation_angles(1.0 - c, 1.0 + c))


def derivative(phi: Activation) -> Activation:
    """The elementwise derivative of an elementwise ``phi``, by forward-mode autodiff."""

    def dphi(x: Array) -> Array:
        return jax.jvp(phi, (x,), (jnp.ones_like(x),))[1]

    return dphi
