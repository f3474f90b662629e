"""Mean-field theory of signal propagation in deep MLPs.

A wide MLP with layer ``l`` pre-activations ``z^l = W^l phi(z^{l-1}) + b^l``,
weights ``W^l_ij ~ N(0, sigma_w2 / fan_in)`` and biases ``b^l_i ~ N(0, sigma_b2)``
(the standard mean-field parameterization) propagates, layer by layer,

* the second moment ``q^l = E[(z^l_i)^2]`` of a pre-activation through the
  *length map* ``q^{l+1} = sigma_w2 E[phi(sqrt(q^l) z)^2] + sigma_b2``, ``z ~ N(0, 1)``,
  to its fixed point ``q*``;
* the correlation ``c^l`` of the pre-activations of two inputs through the
  *correlation map* at ``q*``, to its fixed point ``c*``;
* back-propagated squared gradients, by a factor ``chi1`` per layer.

``chi1 < 1`` is the ordered phase (``c* = 1``: all inputs become alike), ``chi1 > 1``
the chaotic one, and ``chi1 = 1`` the critical line ("edge of chaos") where the
correlation depth scale ``xi_c`` diverges and very deep networks are trainable.

Every function takes the activation first, a name from :data:`jaxstab.ACTIVATIONS` or
an elementwise callable, as a Python-level (static) argument; the numeric arguments
are scalars that may be traced, so each function can be jitted with the activation
closed over and ``jax.vmap``-ed over grids of ``(sigma_w2, sigma_b2)``::

    jax.vmap(lambda s: chi1("tanh", s, 0.05))(jnp.linspace(0.5, 3.0, 16))

Numerics. Gaussian expectations are evaluated by quadrature rules built once, in
float64 numpy, at import, and used in float64 when ``jax_enable_x64`` is on, in
float32 otherwise. Activations such as ReLU, leaky ReLU, ELU and SELU have a kink at
0, where plain Gauss-Hermite converges only like ``1/n``; as the activation is always
applied to ``sqrt(q) z``, the kink sits at ``z = 0`` for every ``q``, so each
integral is split there: one dimension uses Gauss-Legendre on each half-line, the
two-dimensional (correlation) integrals use polar coordinates with the angle split
where either argument changes sign. The integrand is smooth on every piece, and the
rules are accurate to about 1e-12 in float64 (float32 rounding, about 1e-7, in
float32) for every registered activation and ``q`` up to a few hundred.

Fixed points are found by iterating the maps with safeguarded Newton steps inside
``lax.while_loop``: the functions are jittable, vmappable and forward-mode
differentiable, but not reverse-mode differentiable through ``q*`` or ``c*``. Each
compiles once per activation (about a second on a CPU).

Input validation happens eagerly, at the boundary, when the numeric arguments are
concrete: a negative or non-finite variance, ``q0 <= 0``, ``depth < 1``, ``c``
outside ``[-1, 1]``, or an activation whose second moment under the Gaussian is
infinite raise ``ValueError``. Traced arguments (under ``jit``/``vmap``) are not
checked; there such inputs give ``nan`` or ``inf``.

References:
  Poole et al. 2016, "Exponential expressivity in deep neural networks through
  transient chaos", arXiv 1606.05340.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv 1611.01232.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxstab._activations import get_activation
from jaxstab._typing import ActivationLike, Array, ArrayLike

__all__ = [
    "c_star",
    "chi1",
    "correlation_map",
    "critical",
    "critical_sigma_w2",
    "depth_scales",
    "gradient_profile",
    "length_map",
    "q_profile",
    "q_star",
]

Activation = Callable[[Array], Array]

# --------------------------------------------------------------------------------------
# Quadrature rules: float64 numpy constants, built once.


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

# Where the fixed point of the length map is 0 (sigma_b2 = 0 and phi(0) = 0 in the
# ordered phase) it is reported as _Q_MIN, which gives the q* -> 0 limits of chi1,
# the correlation map and the depth scales (those of sigma_b2 -> 0+). Where the
# length diverges (q* = inf), q-dependent quantities are evaluated at _Q_MAX, their
# large-q limit. Both keep sqrt(q) z, its square and products well inside float32.
_Q_MIN = 1e-20
_Q_MAX = 1e30
_NUM_ITERS = 100
# Below this angle between two inputs, 1 - c' is integrated from chi_c (see
# _correlation_step) with a 6-node Gauss-Legendre rule on [0, theta].
_SMALL_ANGLE = 0.1
_SMALL_ANGLE_NODES = (np.polynomial.legendre.leggauss(6)[0] + 1.0) / 2.0
_SMALL_ANGLE_WEIGHTS = np.polynomial.legendre.leggauss(6)[1] / 2.0
# A depth scale is reported as inf where its rate chi is within this many ulps of 1:
# -1 / log(chi) beyond about 1 / (16 eps) is not resolved by the arithmetic.
_CHI_ULPS = 16


def _float_dtype() -> np.dtype:
    """float64 under jax_enable_x64, float32 otherwise (read at trace time)."""
    return np.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def _gaussian_expectation(f: Callable[[Array], Array]) -> Array:
    """``E[f(z)]`` for ``z ~ N(0, 1)``, split at ``z = 0``.

    Args:
      f: an elementwise function of the standard normal variable, smooth on each
        half-line (a kink or jump at 0 is fine).

    Returns:
      A scalar in the computation dtype.
    """
    dtype = _float_dtype()
    z = jnp.asarray(_GAUSS_NODES, dtype)
    w = jnp.asarray(_GAUSS_WEIGHTS, dtype)
    return jnp.sum(w * f(z))


def _correlation_angles(one_minus_c: Array, one_plus_c: Array) -> tuple[Array, Array]:
    """``theta = arccos(c)`` and ``pi - theta``, each accurate near 0.

    ``arccos(1 - d) = 2 arcsin(sqrt(d / 2))`` keeps full relative accuracy for small
    ``d``, where ``arccos`` of a rounded ``c`` would not; clipping keeps ``c = +-1``
    (and values rounded just outside) free of ``nan``.
    """
    theta = 2.0 * jnp.arcsin(jnp.sqrt(jnp.clip(one_minus_c, 0.0, 2.0) / 2.0))
    theta_bar = 2.0 * jnp.arcsin(jnp.sqrt(jnp.clip(one_plus_c, 0.0, 2.0) / 2.0))
    return theta, theta_bar


def _angle_table(u: np.ndarray, one_minus_u: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """The four angular pieces of :func:`_bivariate_expectation_at_angle` as tables.

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


def _bivariate_expectation_at_angle(
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
    dtype = _float_dtype()
    t = {k: jnp.asarray(v, dtype) for k, v in _ANGLES.items()}
    r = jnp.asarray(_R_NODES, dtype)
    wr = jnp.asarray(_R_WEIGHTS, dtype)
    x_dir = t["sx"] * jnp.sin(theta * t["xt"] + theta_bar * t["xb"])
    y_dir = t["sy"] * jnp.sin(theta * t["yt"] + theta_bar * t["yb"])
    w_dir = theta * t["wt"] + theta_bar * t["wb"]
    values = f(x_dir[:, None] * r[None, :], y_dir[:, None] * r[None, :])
    # Radial sums first, then the angular one: two short float32 reductions.
    return jax.tree.map(lambda v: jnp.sum(w_dir * jnp.sum(wr[None, :] * v, axis=1)), values)


def _bivariate_expectation(f: Callable[[Array, Array], Array], c: ArrayLike) -> Array:
    """``E[f(x, y)]`` for standard normals ``x, y`` with correlation ``c``.

    Args:
      f: an elementwise function of two arguments, smooth wherever neither argument
        changes sign (kinks at ``x = 0`` or ``y = 0`` are fine).
      c: the correlation, clipped into ``[-1, 1]``.

    Returns:
      A scalar in the computation dtype.
    """
    c = jnp.asarray(c, _float_dtype())
    return _bivariate_expectation_at_angle(f, *_correlation_angles(1.0 - c, 1.0 + c))


def _derivative(phi: Activation) -> Activation:
    """The elementwise derivative of an elementwise ``phi``, by forward-mode autodiff."""

    def dphi(x: Array) -> Array:
        return jax.jvp(phi, (x,), (jnp.ones_like(x),))[1]

    return dphi


# --------------------------------------------------------------------------------------
# Traced building blocks (scalars in, scalar out, computation dtype).


def _length(phi: Activation, sigma_w2: Array, sigma_b2: Array, q: Array) -> Array:
    """The length map ``sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``."""
    sq = jnp.sqrt(q)
    return sigma_w2 * _gaussian_expectation(lambda z: jnp.square(phi(sq * z))) + sigma_b2


def _length_and_slope(
    phi: Activation, sigma_w2: Array, sigma_b2: Array, q: Array
) -> tuple[Array, Array]:
    """The length map and its derivative ``chi_q = dq'/dq``, in one pass.

    ``dq'/dq = sigma_w2 E[2 phi(u) phi'(u) z / (2 sqrt(q))]`` (``u = sqrt(q) z``): the
    derivative of the quadrature itself, which needs only ``phi'`` and so is exact
    for kinked activations too (equal to ``chi1 + sigma_w2 E[phi'' phi]`` by Stein's
    identity, whose ``phi''`` would have a delta at the kink).
    """
    dtype = _float_dtype()
    z = jnp.asarray(_GAUSS_NODES, dtype)
    w = jnp.asarray(_GAUSS_WEIGHTS, dtype)
    sq = jnp.sqrt(q)
    p, dp = jax.jvp(phi, (sq * z,), (z / (2.0 * sq),))
    return sigma_w2 * jnp.sum(w * p * p) + sigma_b2, sigma_w2 * jnp.sum(w * 2.0 * p * dp)


def _chi(phi: Activation, sigma_w2: Array, q: Array) -> Array:
    """``sigma_w2 E[phi'(sqrt(q) z)^2]``: the squared-gradient factor at ``q``."""
    dphi = _derivative(phi)
    sq = jnp.sqrt(q)
    return sigma_w2 * _gaussian_expectation(lambda z: jnp.square(dphi(sq * z)))


def _finite_q(q: Array) -> Array:
    """``q``, with ``q = inf`` (no finite fixed point) replaced by its large-q limit."""
    return jnp.minimum(q, _Q_MAX)


def _correlation_step(
    phi: Activation, sigma_w2: Array, q: Array, one_minus_c: Array
) -> tuple[Array, Array]:
    """``(c - c', chi_c - 1)`` for the correlation map at the fixed point ``q``.

    At a fixed point ``sigma_b2 = q - sigma_w2 E[phi(u)^2]``, so
    ``1 - c' = sigma_w2 E[(phi(u1) - phi(u2))^2] / (2 q)``: one integral of a
    non-negative integrand, exactly 0 at ``c = 1``, which also gives the
    ``sigma_b2 -> 0+`` limit where ``q* = 0``. The slope is Price's theorem,
    ``chi_c = dc'/dc = sigma_w2 E[phi'(u1) phi'(u2)]``.

    For small angles ``theta = arccos(c)`` the difference ``phi(u1) - phi(u2)`` loses
    relative accuracy to cancellation (about ``eps / theta``), which would stall the
    fixed-point iteration near ``c = 1``. There Price's theorem is integrated instead:
    ``c - c' = int_0^theta (chi_c(cos a) - 1) sin(a) da``, whose integrand is smooth in
    ``a`` (even for ReLU, where ``chi_c = 1 - a / pi`` at criticality) and free of
    cancellation; 6 Gauss-Legendre nodes on ``[0, theta]``, ``theta < 0.1``.
    """
    dtype = _float_dtype()
    theta, theta_bar = _correlation_angles(one_minus_c, 2.0 - one_minus_c)
    sq = jnp.sqrt(q)

    def integrands(x: Array, y: Array) -> tuple[Array, Array]:
        ones = jnp.ones_like(x)
        phi_x, dphi_x = jax.jvp(phi, (sq * x,), (ones,))
        phi_y, dphi_y = jax.jvp(phi, (sq * y,), (ones,))
        return jnp.square(phi_x - phi_y), dphi_x * dphi_y

    # Both integrands at the small-angle nodes and, last, at theta itself: one
    # vmapped quadrature (the cheaper to compile).
    theta_small = jnp.minimum(theta, _SMALL_ANGLE)  # keeps the unused branch finite
    alpha = theta_small * jnp.asarray(_SMALL_ANGLE_NODES, dtype)
    alphas = jnp.concatenate([alpha, theta[None]])
    alpha_bars = jnp.concatenate([jnp.pi - alpha, theta_bar[None]])
    sq_diff, dphi_dphi = jax.vmap(lambda a, b: _bivariate_expectation_at_angle(integrands, a, b))(
        alphas, alpha_bars
    )
    chis = sigma_w2 * dphi_dphi
    direct = sigma_w2 * sq_diff[-1] / (2.0 * q) - one_minus_c
    weights = theta_small * jnp.asarray(_SMALL_ANGLE_WEIGHTS, dtype)
    small = jnp.sum(weights * (chis[:-1] - 1.0) * jnp.sin(alpha))
    return jnp.where(theta < _SMALL_ANGLE, small, direct), chis[-1] - 1.0


def _depth_scale(chi: Array) -> Array:
    """``-1 / log|chi|``; ``inf`` where ``|chi|`` is 1 to rounding (or above)."""
    eps = jnp.finfo(_float_dtype()).eps
    xi = -1.0 / jnp.log(jnp.abs(chi))
    return jnp.where(jnp.abs(chi) >= 1.0 - _CHI_ULPS * eps, jnp.inf, xi)


def _solve_fixed_point(
    evaluate: Callable[[Array], tuple[Array, Array]],
    x0: Array,
    lo: float,
    hi: float,
    atol: float,
    num_iters: int,
) -> tuple[Array, Array, Array]:
    """Iterates a map ``x -> x + g(x)`` to its fixed point, with Newton acceleration.

    ``evaluate(x)`` returns ``(g, g')``, ``g(x) = map(x) - x``. The plain step
    ``x + g`` converges geometrically at rate ``map'`` and only algebraically where
    that is 1 (at criticality ``q`` decays like ``1 / (2 l)`` for tanh). A Newton step
    ``x - g / g'`` converges quadratically to a simple root and halves the distance to
    a double one; it is tried only where ``g' < 0`` (the map contracts, so the root
    it heads for is an attracting fixed point, the one the plain iteration reaches)
    and kept only if it reduces ``|g|`` and lands where ``g' < 0`` still; after a
    rejected one the next step is plain. Each iteration evaluates ``g`` once. Stops
    when ``|g| <= 16 eps x + atol``, then applies a last Newton correction.

    Returns:
      ``(x, g(x), g'(x))`` at the last accepted iterate.
    """
    rtol = _CHI_ULPS * jnp.finfo(x0.dtype).eps
    State = tuple[Array, Array, Array, Array, Array, Array]

    def cond(state: State) -> Array:
        i, x, g, _, _, _ = state
        not_done = (jnp.abs(g) > rtol * x + atol) & jnp.isfinite(x + g)
        return (i == 0) | ((i < num_iters) & not_done)

    def body(state: State) -> State:
        # Evaluate the trial point; keep it unless it is a Newton step that does not
        # reduce |g|; propose the next trial. (The only call of `evaluate`: it is
        # inlined once into the compiled loop.)
        i, x, g, dg, x_try, tried_newton = state
        g_try, dg_try = evaluate(x_try)
        # A Newton step must reduce |g| and land where the map still contracts: it
        # may not jump onto (or towards) a repelling fixed point, such as c = 1 in
        # the chaotic phase.
        reject = tried_newton & ~((jnp.abs(g_try) < jnp.abs(g)) & (dg_try < 0))
        x = jnp.where(reject, x, x_try)
        g = jnp.where(reject, g, g_try)
        dg = jnp.where(reject, dg, dg_try)
        newton = x - g / dg
        try_newton = ~reject & (dg < 0) & jnp.isfinite(newton)
        x_try = jnp.clip(jnp.where(try_newton, newton, x + g), lo, hi)
        return i + 1, x, g, dg, x_try, try_newton

    zero = jnp.zeros_like(x0)
    init = (jnp.asarray(0), x0, zero, zero, jnp.clip(x0, lo, hi), jnp.asarray(False))
    _, x, g, dg, _, _ = lax.while_loop(cond, body, init)
    # The stopping test bounds |g|, but the error in x is |g| / (1 - map'), large where
    # the map contracts slowly. A last Newton correction from the final (g, g') costs
    # no evaluation; it is skipped where it is not small (as where every x is a fixed
    # point and g, g' are both rounding noise: ReLU at (2, 0), whose q0 is returned).
    step = g / dg
    polish = (dg < 0) & (jnp.abs(step) <= 1e-2 * jnp.abs(x))
    return jnp.where(polish, jnp.clip(x - step, lo, hi), x), g, dg


def _q_star_traced(
    phi: Activation, sigma_w2: Array, sigma_b2: Array, q0: Array, num_iters: int = _NUM_ITERS
) -> Array:
    """The fixed point of the length map reached from ``q0`` (see :func:`q_star`)."""
    rtol = _CHI_ULPS * jnp.finfo(q0.dtype).eps

    def evaluate(q: Array) -> tuple[Array, Array]:  # g(q) = L(q) - q, g'(q) = L'(q) - 1
        length, slope = _length_and_slope(phi, sigma_w2, sigma_b2, q)
        return length - q, slope - 1.0

    # The absolute tolerance _Q_MIN ends the approach to q* = 0.
    q, g, _ = _solve_fixed_point(
        evaluate, jnp.maximum(q0, _Q_MIN), _Q_MIN, jnp.inf, _Q_MIN, num_iters
    )
    # Not converged and still growing (no finite attracting fixed point, e.g. ReLU
    # with sigma_w2 > 2): the length diverges.
    converged = jnp.abs(g) <= rtol * q + _Q_MIN
    diverged = ~jnp.isfinite(q) | (~converged & (g > 0))
    return jnp.where(diverged, jnp.inf, jnp.where(jnp.isnan(g), jnp.nan, q))


def _c_star_traced(
    phi: Activation, sigma_w2: Array, q: Array, c0: Array, num_iters: int = _NUM_ITERS
) -> tuple[Array, Array]:
    """``(c*, chi_c(c*))`` at the length fixed point ``q``, iterating on ``d = 1 - c``.

    ``d`` keeps the precision of ``c - c'`` near ``c = 1``. At criticality ``c - c'``
    vanishes like ``d^2`` (``d^{3/2}`` for ReLU-like activations) and drowns in
    rounding before ``d`` does (in float32 near ``d = 1e-5``), so the iteration can
    stall short of ``c* = 1``. Where ``c = 1`` is not repelling (``chi1 <= 1`` to 16
    ulps) and the iterate is that close to it (``d <= sqrt(16 eps)``), ``c* = 1`` and
    ``chi_c = chi1`` are returned.
    """
    eps = jnp.finfo(q.dtype).eps

    def evaluate(d: Array) -> tuple[Array, Array]:
        # On the grid of representable c = 1 - d, so that the slope at the returned
        # c* is the one computed in the loop.
        return _correlation_step(phi, sigma_w2, q, 1.0 - (1.0 - d))

    d, _, dg = _solve_fixed_point(
        evaluate, jnp.clip(1.0 - c0, 0.0, 2.0), 0.0, 2.0, _Q_MIN, num_iters
    )
    chi1 = _chi(phi, sigma_w2, q)
    at_one = (chi1 <= 1.0 + _CHI_ULPS * eps) & (d <= jnp.sqrt(_CHI_ULPS * eps))
    return jnp.where(at_one, 1.0, 1.0 - d), jnp.where(at_one, chi1, dg + 1.0)


def _critical_line_point(phi: Activation, q: Array) -> tuple[Array, Array]:
    """``(sigma_w2, sigma_b2)`` of the critical point whose length fixed point is ``q``.

    ``chi1 = 1`` and ``q = L(q)`` give ``sigma_w2 = 1 / E[phi'(u)^2]`` and
    ``sigma_b2 = q - sigma_w2 E[phi(u)^2]`` (``u = sqrt(q) z``); with
    ``psi(z) = phi(sqrt(q) z)``, ``sigma_b2 = sigma_w2 (E[psi'^2] - E[psi^2])``.

    Near ``q = 0`` both moments are ``~q`` while their difference is ``O(q^3)`` (for
    tanh, ``4 q^3 / 3``): computed directly it would drown in rounding. Subtracting
    the linear part ``c0 + c1 z`` of ``psi`` (its first two Hermite components,
    ``c0 = E[psi]``, ``c1 = E[z psi]``) first is exact, since by Stein's identity
    ``E[psi'] = E[z psi]`` the linear part adds ``c1^2`` to both moments and ``c0^2``
    to the second only; what is left is formed from small terms.
    """
    dtype = _float_dtype()
    dphi = _derivative(phi)
    z = jnp.asarray(_GAUSS_NODES, dtype)
    w = jnp.asarray(_GAUSS_WEIGHTS, dtype)
    sq = jnp.sqrt(q)
    psi = phi(sq * z)
    dpsi = sq * dphi(sq * z)
    c0 = jnp.sum(w * psi)
    c1 = jnp.sum(w * z * psi)
    excess = jnp.sum(w * jnp.square(dpsi - c1)) - jnp.sum(w * jnp.square(psi - c0 - c1 * z)) - c0**2
    sigma_w2 = q / jnp.sum(w * jnp.square(dpsi))
    return sigma_w2, sigma_w2 * excess


def _find_sign_change(
    f: Callable[[Array], Array],
    floor: Array,
    start: Array,
    factor: float,
    limit: float,
    guess: Array | None = None,
    guess_tol: float = 0.0,
    max_iters: int = 400,
) -> tuple[Array, Array]:
    """``(x, found)``: where ``f`` (``< 0`` at ``floor``) turns ``>= 0``, to a few ulps.

    If a ``guess`` is given it is tried first, and returned if ``|f(guess)| <= guess_tol``.
    Otherwise brackets by stepping ``hi = start * factor^k`` up to ``limit`` (``lo`` the
    previous one, or ``floor``), then bisects: geometrically while the bracket spans
    more than a factor 4 (it may start decades wide), arithmetically after. One
    evaluation of ``f`` per iteration, in one loop, so ``f`` is compiled once.
    """
    eps = jnp.finfo(start.dtype).eps
    guess_stage, expand_stage, bisect_stage, done = 0, 1, 2, 3
    State = tuple[Array, Array, Array, Array, Array, Array]

    def cond(state: State) -> Array:
        i, stage, _, _, _, _ = state
        return (i < max_iters) & (stage != done)

    def body(state: State) -> State:
        i, stage, lo, hi, result, found = state
        mid = jnp.where((hi > 4 * lo) & (lo > 0), jnp.sqrt(lo * hi), 0.5 * (lo + hi))
        x = jnp.where(stage == guess_stage, start if guess is None else guess, mid)
        x = jnp.where(stage == expand_stage, hi, x)
        fx = f(x)
        above = fx >= 0
        accept = (stage == guess_stage) & (jnp.abs(fx) <= guess_tol)
        # Expanding: a sign change brackets the crossing in [lo, x]; none moves the
        # bracket up, until `limit` ends the search unsuccessfully.
        grow = (stage == expand_stage) & ~above
        bracketed = (stage == expand_stage) & above
        give_up = grow & (factor * hi > limit)
        bisecting = stage == bisect_stage
        lo = jnp.where(grow | (bisecting & ~above), x, lo)
        hi = jnp.where(grow, factor * hi, jnp.where(bracketed | (bisecting & above), x, hi))
        narrow = hi - lo <= 4 * eps * hi
        stage = jnp.where(
            stage == guess_stage,
            jnp.where(accept, done, expand_stage),
            jnp.where(
                stage == expand_stage,
                jnp.where(give_up, done, jnp.where(bracketed, bisect_stage, expand_stage)),
                jnp.where(narrow, done, bisect_stage),
            ),
        )
        result = jnp.where(accept, x, 0.5 * (lo + hi))
        return i + 1, stage, lo, hi, result, found | accept | bracketed

    first = jnp.asarray(expand_stage if guess is None else guess_stage)
    init = (jnp.asarray(0), first, floor, start, start, jnp.asarray(False))
    _, _, _, _, result, found = lax.while_loop(cond, body, init)
    return result, found


def _chi1_from_one(phi: Activation, sigma_w2: Array, sigma_b2: Array) -> Array:
    """chi1 at the fixed point reached from ``q0 = 1`` (the convention of :func:`chi1`)."""
    q = _q_star_traced(phi, sigma_w2, sigma_b2, jnp.ones_like(sigma_w2))
    return _chi(phi, sigma_w2, _finite_q(q))


def _critical_sigma_w2_traced(phi: Activation, sigma_b2: Array) -> Array:
    """See :func:`critical_sigma_w2`."""
    one = jnp.ones_like(sigma_b2)
    q_min = jnp.asarray(_Q_MIN, sigma_b2.dtype)

    # (a) On the critical line, parameterized by its fixed point q: solve
    # sigma_b2(q) = target, exact at q* = 0 and insensitive to rounding near it.
    def line_gap(q: Array) -> Array:
        return _critical_line_point(phi, jnp.maximum(q, q_min))[1] - sigma_b2

    q_line, found = _find_sign_change(line_gap, q_min, one, 16.0, _Q_MAX)
    q_line = jnp.where(
        line_gap(q_min) >= 0,  # the critical point has q* = 0 (tanh at sigma_b2 = 0)
        q_min,
        # Not bracketed below _Q_MAX (ReLU with sigma_b2 > 0, whose critical line has
        # q* = inf): the large-q limit.
        jnp.where(found, jnp.maximum(q_line, q_min), _Q_MAX),
    )
    sigma_w2_line = _critical_line_point(phi, q_line)[0]

    # That point counts only if it is the fixed point chi1 sees, the one reached from
    # q0 = 1: a fixed point on the line can be unstable (GELU and SiLU at small
    # sigma_b2, where q* jumps from ~0 to inf as sigma_w2 grows and chi1 jumps over 1).
    # If |chi1 - 1| > 1e-3 there, (b): where chi1 (from q0 = 1) crosses 1, by
    # bisection in sigma_w2.
    sigma_w2, found = _find_sign_change(
        lambda s: _chi1_from_one(phi, s, sigma_b2) - 1.0,
        jnp.zeros_like(one),
        one,
        2.0,
        1e12,
        guess=sigma_w2_line,
        guess_tol=1e-3,
    )
    return jnp.where(found, sigma_w2, jnp.nan)


def _moments_ok(phi: Activation, qs: Array) -> Array:
    """Whether ``E[phi(sqrt(q) z)^2]`` is finite and resolved, for each ``q`` in ``qs``.

    The rule covers ``|z| <= 12``; if the weighted integrand at the outermost nodes is
    not negligible (or the sum is not finite), the second moment is infinite (as for
    ``exp(x^2)``) or extends beyond the rule, and every result would be wrong.
    ``q`` that are not finite and positive are skipped (reported fine).
    """
    dtype = _float_dtype()
    z = jnp.asarray(_GAUSS_NODES, dtype)
    w = jnp.asarray(_GAUSS_WEIGHTS, dtype)
    qs = jnp.asarray(qs, dtype)
    skip = ~(jnp.isfinite(qs) & (qs > 0))
    sq = jnp.sqrt(jnp.where(skip, 1.0, qs))
    terms = w[None, :] * jnp.square(phi(sq[:, None] * z[None, :]))
    total = jnp.sum(terms, axis=1)
    edge = jnp.maximum(jnp.abs(terms[:, 0]), jnp.abs(terms[:, -1]))
    return skip | (jnp.isfinite(total) & jnp.isfinite(edge) & (edge <= 1e-8 * jnp.abs(total)))


# --------------------------------------------------------------------------------------
# Jitted entry points, with the activation static. Each compiles once per activation
# (and dtype), and several public functions share one: under jit, unused outputs are
# pruned; eagerly, the extra work is a few quadratures.


def _floats(*xs: ArrayLike) -> tuple[Array, ...]:
    dtype = _float_dtype()
    return tuple(jnp.asarray(x, dtype) for x in xs)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _at_fixed_point_impl(
    phi: Activation,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    q0: ArrayLike,
    c: ArrayLike,
    num_iters: int,
) -> tuple[Array, Array, Array]:
    """``(q*, chi1, c')``: q* from ``q0``, chi1 and the correlation map of ``c`` there."""
    sigma_w2, sigma_b2, q0, c = _floats(sigma_w2, sigma_b2, q0, c)
    q = _q_star_traced(phi, sigma_w2, sigma_b2, q0, num_iters)
    q_eval = _finite_q(q)
    c = jnp.clip(c, -1.0, 1.0)
    residual, _ = _correlation_step(phi, sigma_w2, q_eval, 1.0 - c)
    return q, _chi(phi, sigma_w2, q_eval), c - residual


@functools.partial(jax.jit, static_argnums=(0, 4))
def _correlation_fixed_point_impl(
    phi: Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike, c0: ArrayLike, num_iters: int
) -> tuple[Array, Array, Array, Array]:
    """``(q*, c*, xi_q, xi_c)``, with q* from 1 and c* from ``c0``."""
    sigma_w2, sigma_b2, c0 = _floats(sigma_w2, sigma_b2, c0)
    q = _q_star_traced(phi, sigma_w2, sigma_b2, jnp.ones_like(sigma_w2))
    q_eval = _finite_q(q)
    _, chi_q = _length_and_slope(phi, sigma_w2, sigma_b2, q_eval)
    c, chi_c = _c_star_traced(phi, sigma_w2, q_eval, c0, num_iters)
    return q, c, _depth_scale(chi_q), _depth_scale(chi_c)


@functools.partial(jax.jit, static_argnums=0)
def _critical_sigma_w2_impl(phi: Activation, sigma_b2: ArrayLike) -> Array:
    (sigma_b2,) = _floats(sigma_b2)
    return _critical_sigma_w2_traced(phi, sigma_b2)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _profile_impl(
    phi: Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q0: ArrayLike, depth: int
) -> tuple[Array, Array]:
    """``(q^l, chi(q^l))`` for ``l = 1..depth``."""
    sigma_w2, sigma_b2, q0 = _floats(sigma_w2, sigma_b2, q0)

    def step(q: Array, _: None) -> tuple[Array, Array]:
        return _length(phi, sigma_w2, sigma_b2, q), q

    qs = lax.scan(step, q0, None, length=depth)[1]
    return qs, jax.vmap(lambda q: _chi(phi, sigma_w2, _finite_q(q)))(qs)


# --------------------------------------------------------------------------------------
# Validation at the boundary (eager only: traced values pass through unchecked).


def _is_traced(x: object) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_scalar(
    name: str, value: ArrayLike, *, lo: float, lo_open: bool = False, hi: float = math.inf
) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite scalar in ``[lo, hi]`` (``lo``
    excluded if ``lo_open``); traced values are only checked to be scalars."""
    if _is_traced(value):
        if jnp.ndim(value) != 0:
            raise ValueError(
                f"{name} must be a scalar, got shape {jnp.shape(value)}; use jax.vmap for grids"
            )
        return
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}; use jax.vmap for grids")
    try:
        x = float(arr)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    too_low = x <= lo if lo_open else x < lo
    if not math.isfinite(x) or too_low or x > hi:
        if hi < math.inf:
            bound = f"in [{lo:g}, {hi:g}]"
        else:
            bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {x!r}")


def _check_variances(sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> None:
    _check_scalar("sigma_w2", sigma_w2, lo=0.0)
    _check_scalar("sigma_b2", sigma_b2, lo=0.0)


def _check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
        raise ValueError(f"depth must be a Python int >= 1 (it is static), got {depth!r}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth!r}")
    return int(depth)


def _check_moments(activation: ActivationLike, phi: Activation, *qs: ArrayLike) -> None:
    """Raises ``ValueError`` unless ``E[phi(sqrt(q) z)^2]`` is finite at each ``q``.

    Eager only (skipped when any ``q`` is traced). A handful of operations, run
    op by op rather than compiled per activation.
    """
    if any(_is_traced(q) for q in qs):
        return
    # For a profile, its largest finite q (where a growing phi^2 matters most).
    finite = [np.asarray(q, dtype=float) for q in qs]
    finite = [q[np.isfinite(q)] for q in finite]
    values = np.asarray([q.max() if q.size else np.inf for q in finite])
    ok_array = _moments_ok(phi, jnp.asarray(values))
    if _is_traced(ok_array):  # concrete inputs, but inside a jit trace
        return
    ok = np.asarray(ok_array)
    if not ok.all():
        q = float(values[~ok][0])
        raise ValueError(
            f"E[phi(sqrt(q) z)^2] for activation {activation!r} is not finite at q={q!r} (or "
            "its Gaussian tail beyond |z| = 12 is not negligible): the activation must have a "
            "finite second moment under the Gaussian"
        )


def _activation(activation: ActivationLike) -> Activation:
    """The activation function, its second moment checked at ``q = 1`` (eagerly)."""
    phi = get_activation(activation)
    _check_moments(activation, phi, 1.0)
    return phi


# --------------------------------------------------------------------------------------
# Public API.


def length_map(
    activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q: ArrayLike
) -> Array:
    """The length map ``q' = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``, ``z ~ N(0, 1)``.

    The second moment of a layer's pre-activations given that of the layer below.

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_w2: weight variance times fan-in, ``>= 0``.
      sigma_b2: bias variance, ``>= 0``.
      q: the pre-activation second moment of the layer below, ``>= 0``.

    Returns:
      ``q'``, a scalar (float64 under ``jax_enable_x64``, float32 otherwise).

    Raises:
      ValueError: (concrete inputs) for a negative or non-finite argument, or an
        activation with an infinite second moment at ``q``.

    References:
      Poole et al. 2016, arXiv 1606.05340, eq. (3).
    """
    _check_variances(sigma_w2, sigma_b2)
    _check_scalar("q", q, lo=0.0)
    phi = _activation(activation)
    _check_moments(activation, phi, q)
    # No jit: a single quadrature runs op by op eagerly and is traced as usual.
    return _length(phi, *_floats(sigma_w2, sigma_b2, q))


def q_star(
    activation: ActivationLike,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    q0: ArrayLike = 1.0,
    num_iters: int = _NUM_ITERS,
) -> Array:
    """The fixed point ``q*`` of the length map reached from ``q0``.

    The length map is iterated from ``q0``; where it contracts, a safeguarded Newton
    step on ``q' - q`` replaces the plain step (quadratic instead of geometric
    convergence at a simple fixed point), and the iteration stops when
    ``|q' - q| <= 16 eps q`` (``eps`` of the computation dtype).

    Special cases:

    * Where every ``q`` is a fixed point (ReLU at ``(2, 0)``, linear at ``(1, 0)``),
      ``q0`` itself is returned.
    * Where ``q* = 0`` (``sigma_b2 = 0``, ``phi(0) = 0``, ordered phase, e.g. tanh with
      ``sigma_w2 < 1``) the tiny positive value ``1e-20`` is returned, so that the
      quantities evaluated at ``q*`` take their ``q* -> 0`` limits (those of
      ``sigma_b2 -> 0+``).
    * At criticality with ``q* = 0`` (tanh at ``sigma_w2 = 1``, ``sigma_b2 = 0``) the
      plain map decays only like ``1 / (2 l)`` (``q' - q = -2 q^2``); the Newton steps
      halve ``q`` until ``2 q^2`` is below the tolerance ``16 eps q + 1e-20``: the
      result, the accurate answer being 0, is about 5e-7 in float32, 4e-11 in float64.
    * Where the length diverges (no finite attracting fixed point: ReLU with
      ``sigma_w2 > 2``, or ``sigma_w2 = 2`` and ``sigma_b2 > 0``), ``inf``. Functions
      that evaluate quantities at ``q*`` then use their large-``q`` limit.

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_w2: weight variance times fan-in, ``>= 0``.
      sigma_b2: bias variance, ``>= 0``.
      q0: the starting second moment, ``> 0``.
      num_iters: the maximum number of iterations (static).

    Returns:
      ``q*``, a scalar.

    Raises:
      ValueError: (concrete inputs) for a negative variance, ``q0 <= 0``, or an
        activation with an infinite second moment.

    References:
      Poole et al. 2016, arXiv 1606.05340, Sec. 2.
    """
    _check_variances(sigma_w2, sigma_b2)
    _check_scalar("q0", q0, lo=0.0, lo_open=True)
    phi = _activation(activation)
    _check_moments(activation, phi, q0)
    q = _at_fixed_point_impl(phi, sigma_w2, sigma_b2, q0, 1.0, int(num_iters))[0]
    _check_moments(activation, phi, q)
    return q


def chi1(activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> Array:
    """``chi1 = sigma_w2 E[phi'(sqrt(q*) z)^2]``, the slope of the correlation map at c = 1.

    ``chi1 < 1``: ordered phase; ``chi1 > 1``: chaotic; ``chi1 = 1``: critical. It is
    also the per-layer factor of back-propagated squared gradients at ``q*``. ``phi'``
    comes from autodiff of ``phi``; ``q*`` is :func:`q_star` from ``q0 = 1`` (where
    ``q* = inf``, the large-``q`` limit: ``sigma_w2 / 2`` for ReLU).

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_w2: weight variance times fan-in, ``>= 0``.
      sigma_b2: bias variance, ``>= 0``.

    Returns:
      ``chi1``, a scalar.

    Example:
      >>> round(float(chi1("relu", 1.5, 0.1)), 5)  # sigma_w2 / 2 for ReLU
      0.75

    Raises:
      ValueError: (concrete inputs) for a negative variance or an activation with an
        infinite second moment.

    References:
      Poole et al. 2016, arXiv 1606.05340, eq. (7); Schoenholz et al. 2017,
      arXiv 1611.01232, eq. (5).
    """
    _check_variances(sigma_w2, sigma_b2)
    phi = _activation(activation)
    q, chi, _ = _at_fixed_point_impl(phi, sigma_w2, sigma_b2, 1.0, 1.0, _NUM_ITERS)
    _check_moments(activation, phi, q)
    return chi


def correlation_map(
    activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, c: ArrayLike
) -> Array:
    """The correlation map at ``q*``: ``c' = [sigma_w2 E[phi(u1) phi(u2)] + sigma_b2] / q*``.

    ``u1 = sqrt(q*) z1`` and ``u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2)`` for independent
    standard normals ``z1, z2``: the correlation of two inputs' pre-activations one
    layer up, given ``c`` one layer below. ``q*`` is :func:`q_star` from ``q0 = 1``.

    It is evaluated as ``c' = 1 - sigma_w2 E[(phi(u1) - phi(u2))^2] / (2 q*)``, equal at
    the fixed point (``sigma_b2 = q* - sigma_w2 E[phi(u1)^2]``) up to the fixed-point
    tolerance; this form is accurate as ``c -> 1`` (below ``arccos(c) = 0.1``, by
    integrating ``dc'/dc`` from ``c = 1``), gives ``c' = 1`` exactly at ``c = 1``, and
    where ``q* = 0`` (``sigma_b2 = 0`` in the ordered phase) gives the
    ``sigma_b2 -> 0+`` limit, e.g. ``c' = 1 - sigma_w2 (1 - c)`` for tanh. ``c = +-1``
    are handled exactly.

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_w2: weight variance times fan-in, ``>= 0``.
      sigma_b2: bias variance, ``>= 0``.
      c: the input correlation, in ``[-1, 1]`` (clipped there when traced).

    Returns:
      ``c'``, a scalar.

    Raises:
      ValueError: (concrete inputs) for a negative variance, ``c`` outside
        ``[-1, 1]``, or an activation with an infinite second moment.

    References:
      Poole et al. 2016, arXiv 1606.05340, eq. (5).
    """
    _check_variances(sigma_w2, sigma_b2)
    _check_scalar("c", c, lo=-1.0, hi=1.0)
    phi = _activation(activation)
    q, _, c_next = _at_fixed_point_impl(phi, sigma_w2, sigma_b2, 1.0, c, _NUM_ITERS)
    _check_moments(activation, phi, q)
    return c_next


def c_star(
    activation: ActivationLike,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    c0: ArrayLike = 0.5,
    num_iters: int = _NUM_ITERS,
) -> Array:
    """The fixed point ``c*`` of the correlation map reached from ``c0``.

    ``c* = 1`` in the ordered phase (``chi1 < 1``), ``c* < 1`` in the chaotic one. The
    iteration runs on ``d = 1 - c``, which keeps full precision as ``c -> 1``, with
    the Newton acceleration of :func:`q_star` (slope ``chi_c = sigma_w2
    E[phi'(u1) phi'(u2)]``), and stops at ``|c' - c| <= 16 eps (1 - c)``. At
    criticality (``chi1 = 1``) ``1 - c`` decays only algebraically under the plain
    map; the Newton steps take it down until ``c' - c`` drowns in rounding. Where
    ``c = 1`` is not repelling (``chi1 <= 1`` to 16 ulps) and the iterate is within
    ``sqrt(16 eps)`` of it (4e-4 in float32), ``c* = 1`` is returned.

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_w2: weight variance times fan-in, ``>= 0``.
      sigma_b2: bias variance, ``>= 0``.
      c0: the starting correlation, in ``[-1, 1]``.
      num_iters: the maximum number of iterations (static).

    Returns:
      ``c*``, a scalar.

    Raises:
      ValueError: (concrete inputs) for a negative variance, ``c0`` outside
        ``[-1, 1]``, or an activation with an infinite second moment.

    References:
      Poole et al. 2016, arXiv 1606.05340, Sec. 3; Schoenholz et al. 2017,
      arXiv 1611.01232, Sec. 3.
    """
    _check_variances(sigma_w2, sigma_b2)
    _check_scalar("c0", c0, lo=-1.0, hi=1.0)
    phi = _activation(activation)
    q, c, _, _ = _correlation_fixed_point_impl(phi, sigma_w2, sigma_b2, c0, int(num_iters))
    _check_moments(activation, phi, q)
    return c


def depth_scales(
    activation: ActivationLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike
) -> tuple[Array, Array]:
    """The depth scales ``(xi_q, xi_c)`` of the approach to ``q*`` and ``c*``.

    ``|q^l - q*| ~ exp(-l / xi_q)`` and ``|c^l - c*| ~ exp(-l / xi_c)``, with

    * ``1 / xi_q = -log chi_q``, ``chi_q = dq'/dq`` at ``q*``. By Stein's identity this
      is ``chi1 + sigma_w2 E[phi''(u) phi(u)]`` (Schoenholz et al. 2017, eq. (4));
      differentiating the quadrature of the length map (by autodiff) needs only
      ``phi'``, so kinked activations, whose ``phi''`` has a delta at 0, are exact.
    * ``1 / xi_c = -log chi_c``, ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` at ``c*``
      (:func:`c_star` from ``c0 = 0.5``; ``chi_c = chi1`` in the ordered phase, where
      ``c* = 1``).

    A depth scale is ``inf`` where its ``chi`` is 1 to within 16 ulps, or above:
    ``xi_c = inf`` at criticality, where ``chi1`` computes to 1 within that (else very
    large: ``1 / (1 - chi1)``); ``xi_q = inf`` where the length has no attracting
    finite fixed point (e.g. ReLU at ``sigma_w2 >= 2``). Where ``q* = 0`` at
    criticality (tanh at ``(1, 0)``) ``q^l`` decays algebraically; there ``xi_q`` is
    about ``1 / (4 q*)`` for the small ``q*`` of :func:`q_star` (~4e5 in float32).

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_w2: weight variance times fan-in, ``>= 0``.
      sigma_b2: bias variance, ``>= 0``.

    Returns:
      ``(xi_q, xi_c)``, two scalars.

    Raises:
      ValueError: (concrete inputs) for a negative variance or an activation with an
        infinite second moment.

    References:
      Schoenholz et al. 2017, arXiv 1611.01232, eqs. (4) and (9).
    """
    _check_variances(sigma_w2, sigma_b2)
    phi = _activation(activation)
    q, _, xi_q, xi_c = _correlation_fixed_point_impl(phi, sigma_w2, sigma_b2, 0.5, _NUM_ITERS)
    _check_moments(activation, phi, q)
    return xi_q, xi_c


def critical_sigma_w2(activation: ActivationLike, sigma_b2: ArrayLike = 0.0) -> Array:
    """The weight variance ``sigma_w2`` at which ``chi1 = 1`` (the edge of chaos).

    The critical line is traced by its fixed point ``q``: ``chi1 = 1`` and ``q' = q``
    give ``sigma_w2(q) = 1 / E[phi'(sqrt(q) z)^2]`` and
    ``sigma_b2(q) = q - sigma_w2(q) E[phi(sqrt(q) z)^2]``, and ``sigma_b2(q) = sigma_b2``
    is solved for ``q`` by bracketing and bisection, with ``sigma_b2(q)`` computed free
    of the cancellation that would otherwise limit it near ``q = 0``. Where the
    critical point has ``q* = 0`` (odd activations at ``sigma_b2 = 0``) this gives
    ``1 / phi'(0)^2``; where it has ``q* = inf`` (ReLU with ``sigma_b2 > 0``) the
    large-``q`` limit.

    The point is returned if it is consistent with :func:`chi1` (which uses the fixed
    point reached from ``q0 = 1``): ``|chi1 - 1| <= 1e-3`` there. Otherwise the fixed
    point on the critical line is not an attracting one (GELU and SiLU at small
    ``sigma_b2``: ``q*`` jumps from about 0 to ``inf`` as ``sigma_w2`` grows, and
    ``chi1`` jumps over 1), and the ``sigma_w2`` at which :func:`chi1` crosses 1,
    located by bisection, is returned instead (``nan`` if it never does).

    ReLU: 2 for every ``sigma_b2``; leaky ReLU with slope ``a``: ``2 / (1 + a^2)``;
    tanh: 1 at ``sigma_b2 = 0``, growing with ``sigma_b2``.

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_b2: bias variance, ``>= 0``.

    Returns:
      The critical ``sigma_w2``, a scalar.

    Example:
      >>> round(float(critical_sigma_w2("relu")), 5), round(float(critical_sigma_w2("tanh")), 5)
      (2.0, 1.0)

    Raises:
      ValueError: (concrete inputs) for a negative ``sigma_b2`` or an activation with
        an infinite second moment.

    References:
      Poole et al. 2016, arXiv 1606.05340, Fig. 2; Schoenholz et al. 2017,
      arXiv 1611.01232, Sec. 3.
    """
    _check_scalar("sigma_b2", sigma_b2, lo=0.0)
    phi = _activation(activation)
    return _critical_sigma_w2_impl(phi, sigma_b2)


def q_profile(
    activation: ActivationLike,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    q0: ArrayLike,
    depth: int,
) -> Array:
    """The predicted per-layer pre-activation second moments ``q^1, ..., q^depth``.

    ``q^1 = q0`` is the second moment of the first hidden layer's pre-activation
    ``z^1 = W^1 x + b^1`` (``q0 = sigma_w2 |x|^2 / n_0 + sigma_b2`` for
    ``Var(W^1) = sigma_w2 / n_0``), and ``q^{l+1}`` is the length map of ``q^l``.

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_w2: weight variance times fan-in, ``>= 0``.
      sigma_b2: bias variance, ``>= 0``.
      q0: ``q^1``, ``> 0``.
      depth: the number of layers, a Python int ``>= 1`` (static).

    Returns:
      An array ``[depth]``; entry ``l - 1`` is ``q^l``.

    Raises:
      ValueError: (concrete inputs) for a negative variance, ``q0 <= 0``,
        ``depth < 1``, or an activation with an infinite second moment.

    References:
      Poole et al. 2016, arXiv 1606.05340, eq. (3).
    """
    _check_variances(sigma_w2, sigma_b2)
    _check_scalar("q0", q0, lo=0.0, lo_open=True)
    depth = _check_depth(depth)
    phi = _activation(activation)
    qs, _ = _profile_impl(phi, sigma_w2, sigma_b2, q0, depth)
    _check_moments(activation, phi, q0, qs)
    return qs


def gradient_profile(
    activation: ActivationLike,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    q0: ArrayLike,
    depth: int,
) -> Array:
    """The predicted per-layer backward factors ``chi^l = sigma_w2 E[phi'(sqrt(q^l) z)^2]``.

    Index convention (that of Schoenholz et al. 2017, Sec. 4). With pre-activations
    ``z^l = W^l phi(z^{l-1}) + b^l``, ``q^l = E[(z^l)^2]`` from :func:`q_profile` (same
    ``q0`` and ``depth``) and ``delta^l = dL/dz^l``, back-propagation gives
    ``delta^l = phi'(z^l) * (W^{l+1})^T delta^{l+1}``, hence for wide layers::

        E[(delta^l)^2] = chi^l * (n_{l+1} / n_l) * E[(delta^{l+1})^2],

    where ``chi^l`` has ``phi'`` evaluated at the *lower* layer's pre-activations, the
    ones the gradient arrives at: at ``q^l``, not ``q^{l+1}``. Entry ``l - 1`` of the
    result is ``chi^l``, ``l = 1..depth``. For equal widths, the predicted ratio of
    the mean squared ``dL/dz`` of hidden layer ``l`` to that of the last hidden layer
    ``depth`` is ``chi^l chi^{l+1} ... chi^{depth-1}`` (``prod(chi[l-1:depth-1])``), for
    all layers at once::

        ratio = jnp.append(jnp.cumprod(chi[-2::-1])[::-1], 1.0)

    The last entry ``chi^depth`` is the factor from the gradient at a layer
    ``depth + 1`` with the same ``sigma_w2`` (e.g. the readout) to layer ``depth``.
    Weight gradients ``dL/dW^l = delta^l phi(z^{l-1})^T`` carry an extra factor
    ``E[phi(z^{l-1})^2]``. At the fixed point every ``chi^l`` is :func:`chi1`.

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_w2: weight variance times fan-in, ``>= 0``.
      sigma_b2: bias variance, ``>= 0``.
      q0: ``q^1``, the first hidden layer's pre-activation second moment, ``> 0``.
      depth: the number of layers, a Python int ``>= 1`` (static).

    Returns:
      An array ``[depth]``; entry ``l - 1`` is ``chi^l``.

    Raises:
      ValueError: (concrete inputs) as :func:`q_profile`.

    References:
      Schoenholz et al. 2017, arXiv 1611.01232, Sec. 4.
    """
    _check_variances(sigma_w2, sigma_b2)
    _check_scalar("q0", q0, lo=0.0, lo_open=True)
    depth = _check_depth(depth)
    phi = _activation(activation)
    qs, chis = _profile_impl(phi, sigma_w2, sigma_b2, q0, depth)
    _check_moments(activation, phi, q0, qs)
    return chis


def critical(activation: ActivationLike, sigma_b2: float = 0.0) -> Callable[..., Array]:
    """A Gaussian fan-in initializer at the edge of chaos for ``activation``.

    ``variance_scaling(critical_sigma_w2(activation, sigma_b2), "fan_in", "normal")``,
    with the variance computed eagerly, at construction: He initialization for ReLU,
    ``1 / fan_in`` for tanh without bias. Pair it with biases of variance ``sigma_b2``.

    Args:
      activation: an activation name or elementwise callable.
      sigma_b2: the bias variance, ``>= 0`` (concrete).

    Returns:
      An initializer ``init(key, shape, dtype=None) -> Array``.

    Raises:
      ValueError: for a negative or traced ``sigma_b2``, or an activation without a
        finite critical ``sigma_w2``.

    References:
      Schoenholz et al. 2017, arXiv 1611.01232; He et al. 2015, arXiv 1502.01852.
    """
    # Imported here so that the initializers module may itself build on this one.
    from jaxstab._initializers import variance_scaling

    if _is_traced(sigma_b2):
        raise ValueError("critical() needs a concrete sigma_b2: it is evaluated eagerly")
    scale = float(critical_sigma_w2(activation, sigma_b2))
    if not (math.isfinite(scale) and scale > 0.0):
        raise ValueError(
            f"activation {activation!r} has no finite critical sigma_w2 at "
            f"sigma_b2={sigma_b2!r} (got {scale!r})"
        )
    return variance_scaling(scale, "fan_in", "normal")
