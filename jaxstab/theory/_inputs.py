"""Validation of the theory functions' arguments, eagerly, where they enter.

Concrete numbers (Python or numpy scalars, concrete 0-d arrays) are checked when
a function is called, by :mod:`jaxstab._checks`; traced ones (under
``jit``/``vmap``) are only checked to be scalars, and the entry points in
:mod:`jaxstab.theory._kernels` turn an invalid traced value into NaN.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxstab import _checks
from jaxstab._activations import get_activation
from jaxstab._typing import ActivationLike, ArrayLike
from jaxstab.theory._kernels import moments_ok
from jaxstab.theory._quadrature import Activation


def check_scalar(
    name: str,
    value: ArrayLike,
    *,
    lo: float,
    lo_open: bool = False,
    hi: float = math.inf,
) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite scalar in ``[lo, hi]`` (``lo``
    excluded if ``lo_open``); traced values are only checked to be real scalars."""
    shape = value.shape if _checks.is_traced(value) else np.shape(value)  # type: ignore[union-attr]
    if shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {shape}; use jax.vmap for grids")
    _checks.number(name, value, lo=lo, hi=hi, lo_open=lo_open, allow_traced=True)


def check_variances(sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> None:
    check_scalar("sigma_w2", sigma_w2, lo=0.0)
    check_scalar("sigma_b2", sigma_b2, lo=0.0)


def check_static_int(name: str, value: int) -> int:
    """A static (Python-level) positive integer such as ``depth`` or ``num_iters``."""
    return _checks.positive_int(name, value)


def check_moments(activation: ActivationLike, phi: Activation, *qs: ArrayLike) -> None:
    """Raises ``ValueError`` unless ``E[phi(sqrt(q) z)^2]`` is finite at each ``q``.

    Eager only (skipped when any ``q`` is traced). A handful of operations, run
    op by op rather than compiled per activation.
    """
    if any(_checks.is_traced(q) for q in qs):
        return
    # For a profile, its largest finite q (where a growing phi^2 matters most).
    finite = [np.asarray(q, dtype=float) for q in qs]
    finite = [q[np.isfinite(q)] for q in finite]
    values = np.asarray([q.max() if q.size else np.inf for q in finite])
    ok_array = moments_ok(phi, jnp.asarray(values))
    if _checks.is_traced(ok_array):  # concrete inputs, but inside a jit trace
        return
    ok = np.asarray(ok_array)
    if not ok.all():
        q = float(values[~ok][0])
        raise ValueError(
            f"E[phi(sqrt(q) z)^2] for activation {activation!r} is not finite at q={q!r} (or "
            "its Gaussian tail beyond |z| = 12 is not negligible): the activation must have a "
            "finite second moment under the Gaussian"
        )


def resolve_activation(activation: ActivationLike) -> Activation:
    """The activation function, its second moment checked at ``q = 1`` (eagerly)."""
    phi = get_activation(activation)
    check_moments(activation, phi, 1.0)
    return phi
