"""The public mean-field maps: length and correlation maps, fixed points, chi1,
depth scales and per-layer profiles (see :mod:`jaxstab.theory`)."""

from __future__ import annotations

from jaxstab._typing import ActivationLike, Array, ArrayLike
from jaxstab.theory import _kernels
from jaxstab.theory._inputs import (
    check_moments,
    check_scalar,
    check_static_int,
    check_variances,
    resolve_activation,
)
from jaxstab.theory._kernels import NUM_ITERS


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
    check_variances(sigma_w2, sigma_b2)
    check_scalar("q", q, lo=0.0)
    phi = resolve_activation(activation)
    check_moments(activation, phi, q)
    # No jit: a single quadrature runs op by op eagerly and is traced as usual.
    return _kernels.length_map(phi, sigma_w2, sigma_b2, q)


def q_star(
    activation: ActivationLike,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    q0: ArrayLike = 1.0,
    num_iters: int = NUM_ITERS,
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
    check_variances(sigma_w2, sigma_b2)
    check_scalar("q0", q0, lo=0.0, lo_open=True)
    phi = resolve_activation(activation)
    check_moments(activation, phi, q0)
    q = _kernels.at_fixed_point(
        phi, sigma_w2, sigma_b2, q0, 1.0, check_static_int("num_iters", num_iters)
    )[0]
    check_moments(activation, phi, q)
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
    check_variances(sigma_w2, sigma_b2)
    phi = resolve_activation(activation)
    q, chi, _ = _kernels.at_fixed_point(phi, sigma_w2, sigma_b2, 1.0, 1.0, NUM_ITERS)
    check_moments(activation, phi, q)
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
      c: the input correlation, in ``[-1, 1]``.

    Returns:
      ``c'``, a scalar.

    Raises:
      ValueError: (concrete inputs) for a negative variance, ``c`` outside
        ``[-1, 1]``, or an activation with an infinite second moment.

    References:
      Poole et al. 2016, arXiv 1606.05340, eq. (5).
    """
    check_variances(sigma_w2, sigma_b2)
    check_scalar("c", c, lo=-1.0, hi=1.0)
    phi = resolve_activation(activation)
    q, _, c_next = _kernels.at_fixed_point(phi, sigma_w2, sigma_b2, 1.0, c, NUM_ITERS)
    check_moments(activation, phi, q)
    return c_next


def c_star(
    activation: ActivationLike,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    c0: ArrayLike = 0.5,
    num_iters: int = NUM_ITERS,
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
    check_variances(sigma_w2, sigma_b2)
    check_scalar("c0", c0, lo=-1.0, hi=1.0)
    phi = resolve_activation(activation)
    q, c, _, _ = _kernels.correlation_fixed_point(
        phi, sigma_w2, sigma_b2, c0, check_static_int("num_iters", num_iters)
    )
    check_moments(activation, phi, q)
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
    check_variances(sigma_w2, sigma_b2)
    phi = resolve_activation(activation)
    q, _, xi_q, xi_c = _kernels.correlation_fixed_point(phi, sigma_w2, sigma_b2, 0.5, NUM_ITERS)
    check_moments(activation, phi, q)
    return xi_q, xi_c


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
    check_variances(sigma_w2, sigma_b2)
    check_scalar("q0", q0, lo=0.0, lo_open=True)
    depth = check_static_int("depth", depth)
    phi = resolve_activation(activation)
    qs, _ = _kernels.profile(phi, sigma_w2, sigma_b2, q0, depth)
    check_moments(activation, phi, q0, qs)
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
    check_variances(sigma_w2, sigma_b2)
    check_scalar("q0", q0, lo=0.0, lo_open=True)
    depth = check_static_int("depth", depth)
    phi = resolve_activation(activation)
    qs, chis = _kernels.profile(phi, sigma_w2, sigma_b2, q0, depth)
    check_moments(activation, phi, q0, qs)
    return chis
