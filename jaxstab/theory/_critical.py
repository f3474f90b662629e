"""The critical line (edge of chaos) and the initializer on it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxstab import _checks
from jaxstab._typing import ActivationLike, Array, ArrayLike, DTypeLike
from jaxstab.theory import _kernels
from jaxstab.theory._inputs import check_scalar, resolve_activation
from jaxstab.theory._kernels import Q_MAX, Q_MIN, chi, finite_q, floats, q_star_traced
from jaxstab.theory._quadrature import Activation, derivative, gauss_rule
from jaxstab.theory._solvers import find_sign_change


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
    dphi = derivative(phi)
    z, w = gauss_rule()
    sq = jnp.sqrt(q)
    psi = phi(sq * z)
    dpsi = sq * dphi(sq * z)
    c0 = jnp.sum(w * psi)
    c1 = jnp.sum(w * z * psi)
    excess = jnp.sum(w * jnp.square(dpsi - c1)) - jnp.sum(w * jnp.square(psi - c0 - c1 * z)) - c0**2
    sigma_w2 = q / jnp.sum(w * jnp.square(dpsi))
    return sigma_w2, sigma_w2 * excess


def _positively_homogeneous(phi: Activation) -> Array:
    """Whether ``phi(2 x) = 2 phi(x)`` at every quadrature node (to 4 ulps).

    A positively homogeneous activation (ReLU, leaky ReLU, the identity: ``phi(a x) =
    a phi(x)`` for ``a > 0``) has ``E[phi'(u)^2] = E[phi(u)^2] / q`` at every ``q``, so
    where ``chi1 = 1`` its length map is ``q' = q + sigma_b2``: a finite fixed point
    exists only at ``sigma_b2 = 0``. Scaling by 2 is exact in binary floating point,
    so such activations pass exactly; smooth ones (tanh, GELU, softplus, ELU) fail
    by far at some node.
    """
    z, _ = gauss_rule()
    eps = jnp.finfo(z.dtype).eps
    a, b = phi(2.0 * z), 2.0 * phi(z)
    return jnp.all(jnp.abs(a - b) <= 4.0 * eps * jnp.maximum(jnp.abs(a), jnp.abs(b)))


def _chi1_from_one(phi: Activation, sigma_w2: Array, sigma_b2: Array) -> Array:
    """chi1 at the fixed point reached from ``q0 = 1`` (the convention of :func:`chi1`)."""
    q = q_star_traced(phi, sigma_w2, sigma_b2, jnp.ones_like(sigma_w2))
    return chi(phi, sigma_w2, finite_q(q))


# Why critical_sigma_w2 has no answer, as traced status codes.
_OK, _INFINITE_Q, _NO_CROSSING, _INVALID = 0, 1, 2, 3


def _critical_sigma_w2_traced(phi: Activation, sigma_b2: Array) -> tuple[Array, Array]:
    """``(sigma_w2, status)``: see :func:`critical_sigma_w2`; NaN unless status is 0."""
    ok = _kernels.sigma_b2_ok(sigma_b2)
    sigma_b2 = jnp.where(ok, sigma_b2, 0.0)
    one = jnp.ones_like(sigma_b2)
    q_min = jnp.asarray(Q_MIN, sigma_b2.dtype)

    # (a) On the critical line, parameterized by its fixed point q: solve
    # sigma_b2(q) = target, exact at q* = 0 and insensitive to rounding near it.
    def line_gap(q: Array) -> Array:
        return _critical_line_point(phi, jnp.maximum(q, q_min))[1] - sigma_b2

    q_line, found = find_sign_change(line_gap, q_min, one, 16.0, Q_MAX)
    q_line = jnp.where(
        line_gap(q_min) >= 0,  # the critical point has q* = 0 (tanh at sigma_b2 = 0)
        q_min,
        # Not bracketed below Q_MAX (ReLU with sigma_b2 > 0, whose critical line has
        # q* = inf): the large-q limit, rejected below.
        jnp.where(found, jnp.maximum(q_line, q_min), Q_MAX),
    )
    sigma_w2_line = _critical_line_point(phi, q_line)[0]

    # That point counts only if it is the fixed point chi1 sees, the one reached from
    # q0 = 1: a fixed point on the line can be unstable (GELU and SiLU at small
    # sigma_b2, where q* jumps from ~0 to inf as sigma_w2 grows and chi1 jumps over 1).
    # If |chi1 - 1| > 1e-3 there, (b): where chi1 (from q0 = 1) crosses 1, by
    # bisection in sigma_w2.
    sigma_w2, found = find_sign_change(
        lambda s: _chi1_from_one(phi, s, sigma_b2) - 1.0,
        jnp.zeros_like(one),
        one,
        2.0,
        1e12,
        guess=sigma_w2_line,
        guess_tol=1e-3,
    )
    # A point on the line whose length diverges from q0 = 1 is critical only in the
    # large-q limit, where chi1 -> 1 (ReLU, leaky ReLU and linear at sigma_b2 > 0:
    # q' = q + sigma_b2 at sigma_w2 = 2, resp. 1). It is no critical point: the
    # pre-activations grow without bound, layer after layer.
    # Iterating the length map detects that only where sigma_b2 is large enough for
    # q to outgrow rounding within the iteration budget (in float32 not below about
    # 1e-5, in float64 never at sigma_b2 = 1e-6), so positively homogeneous
    # activations are decided exactly, by their structure: any sigma_b2 > 0 has q* = inf.
    q_there = q_star_traced(phi, sigma_w2, sigma_b2, one)
    infinite_q = ((sigma_w2 == sigma_w2_line) & jnp.isinf(q_there)) | (
        _positively_homogeneous(phi) & (sigma_b2 > 0)
    )
    status = jnp.where(
        ~ok,
        _INVALID,
        jnp.where(~found, _NO_CROSSING, jnp.where(infinite_q, _INFINITE_Q, _OK)),
    )
    return jnp.where(status == _OK, sigma_w2, jnp.nan), status


@functools.partial(jax.jit, static_argnums=0)
def _critical_sigma_w2_impl(phi: Activation, sigma_b2: ArrayLike) -> tuple[Array, Array]:
    (sigma_b2,) = floats(sigma_b2)
    return _critical_sigma_w2_traced(phi, sigma_b2)


def _explain(activation: ActivationLike, sigma_b2: ArrayLike, status: int) -> str:
    """Why there is no critical ``sigma_w2`` (status from :func:`_critical_sigma_w2_traced`)."""
    at = f"activation {activation!r} has no critical point at sigma_b2={sigma_b2!r}"
    if status == _INFINITE_Q:
        return (
            f"{at}: chi1 = 1 there only where the length map has no finite fixed point "
            "(q* = inf; for ReLU chi1 = sigma_w2 / 2, so sigma_w2 = 2, where "
            "q' = q + sigma_b2 grows without bound). For a positively homogeneous "
            "activation (ReLU, leaky ReLU, linear) the only critical point is at "
            "sigma_b2 = 0; use sigma_b2=0"
        )
    return (
        f"{at}: chi1 (at the fixed point reached from q0 = 1) never crosses 1 for "
        "sigma_w2 up to 1e12"
    )


def critical_sigma_w2(activation: ActivationLike, sigma_b2: ArrayLike = 0.0) -> Array:
    """The weight variance ``sigma_w2`` at which ``chi1 = 1`` (the edge of chaos).

    The critical line is traced by its fixed point ``q``: ``chi1 = 1`` and ``q' = q``
    give ``sigma_w2(q) = 1 / E[phi'(sqrt(q) z)^2]`` and
    ``sigma_b2(q) = q - sigma_w2(q) E[phi(sqrt(q) z)^2]``, and ``sigma_b2(q) = sigma_b2``
    is solved for ``q`` by bracketing and bisection, with ``sigma_b2(q)`` computed free
    of the cancellation that would otherwise limit it near ``q = 0``. Where the
    critical point has ``q* = 0`` (odd activations at ``sigma_b2 = 0``) this gives
    ``1 / phi'(0)^2``.

    The point is returned if it is consistent with :func:`chi1` (which uses the fixed
    point reached from ``q0 = 1``): ``|chi1 - 1| <= 1e-3`` there. Otherwise the fixed
    point on the critical line is not an attracting one (GELU and SiLU at small
    ``sigma_b2``: ``q*`` jumps from about 0 to ``inf`` as ``sigma_w2`` grows, and
    ``chi1`` jumps over 1), and the ``sigma_w2`` at which :func:`chi1` crosses 1,
    located by bisection, is returned instead.

    No critical point exists where ``chi1 = 1`` only in the limit ``q* = inf``: for
    ReLU ``chi1 = sigma_w2 / 2`` at every ``q``, so ``chi1 = 1`` means ``sigma_w2 = 2``,
    where the length map ``q' = q + sigma_b2`` has a fixed point only at
    ``sigma_b2 = 0``. The only critical point of ReLU is ``(2, 0)`` (He
    initialization); likewise ``(2 / (1 + a^2), 0)`` for leaky ReLU with slope ``a``
    and ``(1, 0)`` for the identity. Such positively homogeneous activations are
    recognized exactly (``phi(2 x) = 2 phi(x)``), so every ``sigma_b2 > 0``, however
    far below rounding of ``q``, is refused. Tanh: 1 at ``sigma_b2 = 0``, growing with
    ``sigma_b2``.

    Where there is no critical point (that, or ``chi1`` never crossing 1 below
    ``sigma_w2 = 1e12``), a concrete ``sigma_b2`` raises ``ValueError`` saying which;
    a traced one (or a call inside ``jit``) gives NaN, as does an invalid traced
    ``sigma_b2``.

    Args:
      activation: an activation name or elementwise callable (static).
      sigma_b2: bias variance, ``>= 0``.

    Returns:
      The critical ``sigma_w2``, a scalar.

    Example:
      >>> round(float(critical_sigma_w2("relu")), 5), round(float(critical_sigma_w2("tanh")), 5)
      (2.0, 1.0)

    Raises:
      ValueError: (concrete inputs) for a negative or non-finite ``sigma_b2``, an
        activation with an infinite second moment, or no critical point at
        ``sigma_b2`` (e.g. ReLU with ``sigma_b2 > 0``); the message says why.

    References:
      Poole et al. 2016, arXiv 1606.05340, Fig. 2; Schoenholz et al. 2017,
      arXiv 1611.01232, Sec. 3.
    """
    check_scalar("sigma_b2", sigma_b2, lo=0.0)
    phi = resolve_activation(activation)
    sigma_w2, status = _critical_sigma_w2_impl(phi, sigma_b2)
    if not _checks.is_traced(status) and int(status) != _OK:
        raise ValueError(_explain(activation, sigma_b2, int(status)))
    return sigma_w2


def critical(
    activation: ActivationLike,
    sigma_b2: float = 0.0,
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    dtype: DTypeLike | None = None,
) -> Callable[..., Array]:
    """A Gaussian fan-in initializer at the edge of chaos for ``activation``.

    ``variance_scaling(critical_sigma_w2(activation, sigma_b2), "fan_in", "normal",
    in_axis, out_axis)``, with the variance computed eagerly, at construction: He
    initialization for ReLU, ``1 / fan_in`` for tanh without bias. Pair it with
    biases of variance ``sigma_b2``.

    Args:
      activation: an activation name or elementwise callable.
      sigma_b2: the bias variance, ``>= 0`` (concrete).
      in_axis: the input axis or axes of the weight shape (``-1`` for equinox's
        ``(out, in)`` Linear weights).
      out_axis: the output axis or axes (``-2`` for equinox).
      dtype: default dtype when the call gives none (float32 otherwise).

    Returns:
      An initializer ``init(key, shape, dtype=None) -> Array``.

    Raises:
      ValueError: for a negative or traced ``sigma_b2``, an activation without a
        critical point at ``sigma_b2`` (ReLU with ``sigma_b2 > 0``), or axes that
        :func:`jaxstab.variance_scaling` rejects.

    Example:
      >>> w = critical("relu", in_axis=-1, out_axis=-2)(jax.random.key(0), (1000, 1000))
      >>> round(float(1000 * w.var()), 1)  # n_in Var(w) = sigma_w2 = 2 for ReLU
      2.0

    References:
      Schoenholz et al. 2017, arXiv 1611.01232; He et al. 2015, arXiv 1502.01852.
    """
    # Imported here so that the initializers module may itself build on this one.
    from jaxstab._initializers import variance_scaling

    _checks.nonnegative_number("sigma_b2", sigma_b2)
    scale = float(critical_sigma_w2(activation, sigma_b2))
    return variance_scaling(scale, "fan_in", "normal", in_axis, out_axis, dtype=dtype)
