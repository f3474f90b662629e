"""Traced building blocks of the mean-field maps, and their jitted entry points.

Scalars in, scalars out, in the computation dtype (float64 under
``jax_enable_x64``, float32 otherwise). The entry points take the activation as a
static argument and compile once per activation (and dtype); several public
functions share one: under jit, unused outputs are pruned; eagerly, the extra work
is a few quadratures.

Invalid traced inputs give NaN. The public functions check concrete arguments
eagerly (see :mod:`jaxstab.theory._inputs`); traced ones cannot be checked by
Python, so every entry point computes a validity mask from the values it gets (a
negative or non-finite variance, ``q0 <= 0``, a correlation outside ``[-1, 1]``)
and returns NaN where it is false, never a plausible number: the computation itself
runs on a harmless stand-in value, so an invalid lane cannot slow a vmapped solve.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxstab._typing import Array, ArrayLike
from jaxstab.theory._quadrature import (
    Activation,
    bivariate_expectation_at_angle,
    correlation_angles,
    derivative,
    float_dtype,
    gauss_rule,
    gaussian_expectation,
)
from jaxstab.theory._solvers import ULPS, solve_fixed_point

# Where the fixed point of the length map is 0 (sigma_b2 = 0 and phi(0) = 0 in the
# ordered phase) it is reported as Q_MIN, which gives the q* -> 0 limits of chi1,
# the correlation map and the depth scales (those of sigma_b2 -> 0+). Where the
# length diverges (q* = inf), q-dependent quantities are evaluated at Q_MAX, their
# large-q limit. Both keep sqrt(q) z, its square and products well inside float32.
Q_MIN = 1e-20
Q_MAX = 1e30
NUM_ITERS = 100
# Below this angle between two inputs, 1 - c' is integrated from chi_c (see
# correlation_step) with a 6-node Gauss-Legendre rule on [0, theta].
_SMALL_ANGLE = 0.1
_SMALL_ANGLE_NODES = (np.polynomial.legendre.leggauss(6)[0] + 1.0) / 2.0
_SMALL_ANGLE_WEIGHTS = np.polynomial.legendre.leggauss(6)[1] / 2.0


def length(phi: Activation, sigma_w2: Array, sigma_b2: Array, q: Array) -> Array:
    """The length map ``sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``."""
    sq = jnp.sqrt(q)
    return sigma_w2 * gaussian_expectation(lambda z: jnp.square(phi(sq * z))) + sigma_b2


def length_and_slope(
    phi: Activation, sigma_w2: Array, sigma_b2: Array, q: Array
) -> tuple[Array, Array]:
    """The length map and its derivative ``chi_q = dq'/dq``, in one pass.

    ``dq'/dq = sigma_w2 E[2 phi(u) phi'(u) z / (2 sqrt(q))]`` (``u = sqrt(q) z``): the
    derivative of the quadrature itself, which needs only ``phi'`` and so is exact
    for kinked activations too (equal to ``chi1 + sigma_w2 E[phi'' phi]`` by Stein's
    identity, whose ``phi''`` would have a delta at the kink).
    """
    z, w = gauss_rule()
    sq = jnp.sqrt(q)
    p, dp = jax.jvp(phi, (sq * z,), (z / (2.0 * sq),))
    return sigma_w2 * jnp.sum(w * p * p) + sigma_b2, sigma_w2 * jnp.sum(w * 2.0 * p * dp)


def chi(phi: Activation, sigma_w2: Array, q: Array) -> Array:
    """``sigma_w2 E[phi'(sqrt(q) z)^2]``: the squared-gradient factor at ``q``."""
    dphi = derivative(phi)
    sq = jnp.sqrt(q)
    return sigma_w2 * gaussian_expectation(lambda z: jnp.square(dphi(sq * z)))


def finite_q(q: Array) -> Array:
    """``q``, with ``q = inf`` (no finite fixed point) replaced by its large-q limit."""
    return jnp.minimum(q, Q_MAX)


def correlation_step(
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
    dtype = float_dtype()
    theta, theta_bar = correlation_angles(one_minus_c, 2.0 - one_minus_c)
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
    sq_diff, dphi_dphi = jax.vmap(lambda a, b: bivariate_expectation_at_angle(integrands, a, b))(
        alphas, alpha_bars
    )
    chis = sigma_w2 * dphi_dphi
    direct = sigma_w2 * sq_diff[-1] / (2.0 * q) - one_minus_c
    weights = theta_small * jnp.asarray(_SMALL_ANGLE_WEIGHTS, dtype)
    small = jnp.sum(weights * (chis[:-1] - 1.0) * jnp.sin(alpha))
    return jnp.where(theta < _SMALL_ANGLE, small, direct), chis[-1] - 1.0


def depth_scale(chi: Array) -> Array:
    """``-1 / log|chi|``; ``inf`` where ``|chi|`` is 1 to rounding (or above)."""
    eps = jnp.finfo(float_dtype()).eps
    xi = -1.0 / jnp.log(jnp.abs(chi))
    return jnp.where(jnp.abs(chi) >= 1.0 - ULPS * eps, jnp.inf, xi)


def q_star_traced(
    phi: Activation, sigma_w2: Array, sigma_b2: Array, q0: Array, num_iters: int = NUM_ITERS
) -> Array:
    """The fixed point of the length map reached from ``q0`` (see :func:`q_star`)."""
    rtol = ULPS * jnp.finfo(q0.dtype).eps

    def evaluate(q: Array) -> tuple[Array, Array]:  # g(q) = L(q) - q, g'(q) = L'(q) - 1
        value, slope = length_and_slope(phi, sigma_w2, sigma_b2, q)
        return value - q, slope - 1.0

    # The absolute tolerance Q_MIN ends the approach to q* = 0.
    q, g, _ = solve_fixed_point(evaluate, jnp.maximum(q0, Q_MIN), Q_MIN, jnp.inf, Q_MIN, num_iters)
    # Not converged and still growing (no finite attracting fixed point, e.g. ReLU
    # with sigma_w2 > 2): the length diverges.
    converged = jnp.abs(g) <= rtol * q + Q_MIN
    diverged = ~jnp.isfinite(q) | (~converged & (g > 0))
    return jnp.where(diverged, jnp.inf, jnp.where(jnp.isnan(g), jnp.nan, q))


def c_star_traced(
    phi: Activation, sigma_w2: Array, q: Array, c0: Array, num_iters: int = NUM_ITERS
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
        return correlation_step(phi, sigma_w2, q, 1.0 - (1.0 - d))

    d, _, dg = solve_fixed_point(evaluate, jnp.clip(1.0 - c0, 0.0, 2.0), 0.0, 2.0, Q_MIN, num_iters)
    chi1 = chi(phi, sigma_w2, q)
    at_one = (chi1 <= 1.0 + ULPS * eps) & (d <= jnp.sqrt(ULPS * eps))
    return jnp.where(at_one, 1.0, 1.0 - d), jnp.where(at_one, chi1, dg + 1.0)


def moments_ok(phi: Activation, qs: Array) -> Array:
    """Whether ``E[phi(sqrt(q) z)^2]`` is finite and resolved, for each ``q`` in ``qs``.

    The rule covers ``|z| <= 12``; if the weighted integrand at the outermost nodes is
    not negligible (or the sum is not finite), the second moment is infinite (as for
    ``exp(x^2)``) or extends beyond the rule, and every result would be wrong.
    ``q`` that are not finite and positive are skipped (reported fine).
    """
    z, w = gauss_rule()
    qs = jnp.asarray(qs, z.dtype)
    skip = ~(jnp.isfinite(qs) & (qs > 0))
    sq = jnp.sqrt(jnp.where(skip, 1.0, qs))
    terms = w[None, :] * jnp.square(phi(sq[:, None] * z[None, :]))
    total = jnp.sum(terms, axis=1)
    edge = jnp.maximum(jnp.abs(terms[:, 0]), jnp.abs(terms[:, -1]))
    return skip | (jnp.isfinite(total) & jnp.isfinite(edge) & (edge <= 1e-8 * jnp.abs(total)))


# --------------------------------------------------------------------------------------
# Entry points, with the activation static. Each compiles once per activation (and
# dtype), and several public functions share one: under jit, unused outputs are
# pruned; eagerly, the extra work is a few quadratures.


def floats(*xs: ArrayLike) -> tuple[Array, ...]:
    """The arguments as arrays of the computation dtype."""
    dtype = float_dtype()
    return tuple(jnp.asarray(x, dtype) for x in xs)


def _variance_ok(x: Array) -> Array:
    return jnp.isfinite(x) & (x >= 0)


def _q_ok(q: Array) -> Array:
    return jnp.isfinite(q) & (q > 0)


def _correlation_ok(c: Array) -> Array:
    return jnp.abs(c) <= 1.0  # False for NaN


def _stand_in(ok: Array, x: Array, value: float) -> Array:
    """``x`` where it is valid, else a harmless ``value`` to compute with instead."""
    return jnp.where(ok, x, value)


def _nan_unless(ok: Array, *outs: Array) -> tuple[Array, ...]:
    return tuple(jnp.where(ok, out, jnp.nan) for out in outs)


def length_map(phi: Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q: ArrayLike) -> Array:
    """The length map at ``q`` (not jitted: one quadrature runs op by op eagerly)."""
    sigma_w2, sigma_b2, q = floats(sigma_w2, sigma_b2, q)
    ok = _variance_ok(sigma_w2) & _variance_ok(sigma_b2) & jnp.isfinite(q) & (q >= 0)
    value = length(
        phi,
        _stand_in(ok, sigma_w2, 1.0),
        _stand_in(ok, sigma_b2, 0.0),
        _stand_in(ok, q, 1.0),
    )
    return _nan_unless(ok, value)[0]


@functools.partial(jax.jit, static_argnums=(0, 5))
def at_fixed_point(
    phi: Activation,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    q0: ArrayLike,
    c: ArrayLike,
    num_iters: int,
) -> tuple[Array, Array, Array]:
    """``(q*, chi1, c')``: q* from ``q0``, chi1 and the correlation map of ``c`` there."""
    sigma_w2, sigma_b2, q0, c = floats(sigma_w2, sigma_b2, q0, c)
    ok = _variance_ok(sigma_w2) & _variance_ok(sigma_b2) & _q_ok(q0) & _correlation_ok(c)
    sigma_w2 = _stand_in(ok, sigma_w2, 1.0)
    sigma_b2 = _stand_in(ok, sigma_b2, 0.0)
    q0 = _stand_in(ok, q0, 1.0)
    c = _stand_in(ok, c, 0.0)
    q = q_star_traced(phi, sigma_w2, sigma_b2, q0, num_iters)
    q_eval = finite_q(q)
    residual, _ = correlation_step(phi, sigma_w2, q_eval, 1.0 - c)
    return _nan_unless(ok, q, chi(phi, sigma_w2, q_eval), c - residual)  # type: ignore[return-value]


@functools.partial(jax.jit, static_argnums=(0, 4))
def correlation_fixed_point(
    phi: Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike, c0: ArrayLike, num_iters: int
) -> tuple[Array, Array, Array, Array]:
    """``(q*, c*, xi_q, xi_c)``, with q* from 1 and c* from ``c0``."""
    sigma_w2, sigma_b2, c0 = floats(sigma_w2, sigma_b2, c0)
    ok = _variance_ok(sigma_w2) & _variance_ok(sigma_b2) & _correlation_ok(c0)
    sigma_w2 = _stand_in(ok, sigma_w2, 1.0)
    sigma_b2 = _stand_in(ok, sigma_b2, 0.0)
    c0 = _stand_in(ok, c0, 0.5)
    q = q_star_traced(phi, sigma_w2, sigma_b2, jnp.ones_like(sigma_w2))
    q_eval = finite_q(q)
    _, chi_q = length_and_slope(phi, sigma_w2, sigma_b2, q_eval)
    c, chi_c = c_star_traced(phi, sigma_w2, q_eval, c0, num_iters)
    return _nan_unless(ok, q, c, depth_scale(chi_q), depth_scale(chi_c))  # type: ignore[return-value]


@functools.partial(jax.jit, static_argnums=(0, 4))
def profile(
    phi: Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q0: ArrayLike, depth: int
) -> tuple[Array, Array]:
    """``(q^l, chi(q^l))`` for ``l = 1..depth``."""
    sigma_w2, sigma_b2, q0 = floats(sigma_w2, sigma_b2, q0)
    ok = _variance_ok(sigma_w2) & _variance_ok(sigma_b2) & _q_ok(q0)
    sigma_w2 = _stand_in(ok, sigma_w2, 1.0)
    sigma_b2 = _stand_in(ok, sigma_b2, 0.0)
    q0 = _stand_in(ok, q0, 1.0)

    def step(q: Array, _: None) -> tuple[Array, Array]:
        return length(phi, sigma_w2, sigma_b2, q), q

    qs = lax.scan(step, q0, None, length=depth)[1]
    chis = jax.vmap(lambda q: chi(phi, sigma_w2, finite_q(q)))(qs)
    return _nan_unless(ok, qs, chis)  # type: ignore[return-value]


def sigma_b2_ok(sigma_b2: Array) -> Array:
    """Whether a traced bias variance is valid (finite and ``>= 0``)."""
    return _variance_ok(sigma_b2)
