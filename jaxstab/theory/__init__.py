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

Numerics. Gaussian expectations are evaluated by quadrature split at the kink of
ReLU-like activations (:mod:`jaxstab.theory._quadrature`: about 1e-12 in float64,
float32 rounding in float32). Fixed points are found by iterating the maps with
safeguarded Newton steps inside ``lax.while_loop``
(:mod:`jaxstab.theory._solvers`): the functions are jittable, vmappable and
forward-mode differentiable, but not reverse-mode differentiable through ``q*`` or
``c*``. Each compiles once per activation (about a second on a CPU).

Input validation happens eagerly, at the boundary, when the numeric arguments are
concrete: a negative or non-finite variance, ``q0 <= 0``, ``depth < 1``, ``c``
outside ``[-1, 1]``, or an activation whose second moment under the Gaussian is
infinite raise ``ValueError``, as does :func:`critical_sigma_w2` where no critical
point exists (ReLU with ``sigma_b2 > 0``). Traced arguments (under ``jit``/``vmap``)
cannot be checked by Python; there every such invalid input gives NaN, never a
plausible number.

Layout: ``_quadrature`` (the rules), ``_solvers`` (fixed-point and sign-change
finders), ``_kernels`` (the traced maps and their jitted entry points), ``_inputs``
(argument checks), ``_maps`` (the public maps) and ``_critical`` (the critical line
and the :func:`critical` initializer).

References:
  Poole et al. 2016, "Exponential expressivity in deep neural networks through
  transient chaos", arXiv 1606.05340.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv 1611.01232.
"""

from jaxstab.theory._critical import critical as critical
from jaxstab.theory._critical import critical_sigma_w2 as critical_sigma_w2
from jaxstab.theory._maps import c_star as c_star
from jaxstab.theory._maps import chi1 as chi1
from jaxstab.theory._maps import correlation_map as correlation_map
from jaxstab.theory._maps import depth_scales as depth_scales
from jaxstab.theory._maps import gradient_profile as gradient_profile
from jaxstab.theory._maps import length_map as length_map
from jaxstab.theory._maps import q_profile as q_profile
from jaxstab.theory._maps import q_star as q_star

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
