"""Tests for jaxstab.theory (mean-field signal propagation).

The quadrature is checked against independent references: scipy.integrate.quad of
the same Gaussian integrals, with activations re-implemented in numpy/scipy. The
suite runs in float32 (JAX's default), where rounding (about 1e-7 relative) dominates
the quadrature error; the float64 test shows the rules themselves agree with scipy to
about 1e-13. Statistical tolerances are stated in standard errors.
"""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, special

import jaxstab
from jaxstab import theory
from jaxstab._activations import ACTIVATIONS, get_activation
from jaxstab.theory import _critical, _maps, _quadrature

# --------------------------------------------------------------------------------------
# Independent references.

_SELU_SCALE, _SELU_ALPHA = 1.0507009873554805, 1.6732632423543772
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _selu(x):
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _dselu(x):
    return _SELU_SCALE * np.where(x > 0, 1.0, _SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


# name -> (phi, phi'), in numpy/scipy.
NUMPY_ACTIVATIONS = {
    "sigmoid": (special.expit, lambda x: special.expit(x) * special.expit(-x)),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: np.where(x > 0, 1.0, 0.0)),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, 0.01 * x),
        lambda x: np.where(x > 0, 1.0, 0.01),
    ),
    "elu": (
        lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
        lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))),
    ),
    "selu": (_selu, _dselu),
    "gelu": (
        lambda x: x * special.ndtr(x),
        lambda x: special.ndtr(x) + x * np.exp(-0.5 * x * x) / _SQRT_2PI,
    ),
    "silu": (
        lambda x: x * special.expit(x),
        lambda x: special.expit(x) * (1.0 + x * special.expit(-x)),
    ),
    "linear": (lambda x: x, lambda x: np.ones_like(x)),
}

# Truncation of the reference integrals: the Gaussian mass beyond 14 is 1e-44.
_Z = 14.0
_QUAD = {"epsabs": 1e-13, "epsrel": 1e-12, "limit": 200}


def ref_expectation(f):
    """E[f(z)], z ~ N(0, 1), by adaptive quadrature split at the kink z = 0."""

    def integrand(z):
        return float(f(z)) * math.exp(-0.5 * z * z) / _SQRT_2PI

    return sum(integrate.quad(integrand, a, b, **_QUAD)[0] for a, b in ((-_Z, 0.0), (0.0, _Z)))


_GL_X, _GL_W = np.polynomial.legendre.leggauss(160)


def ref_bivariate(f, c):
    """E[f(x, y)] for standard normals with correlation c, in Cartesian coordinates.

    y = c x + s w (s = sqrt(1 - c^2)): the inner integral over w (vectorized
    Gauss-Legendre, 160 nodes on each side of the kink of y at w = -c x / s), the outer
    one over x by adaptive scipy quadrature split at the kink x = 0.
    """
    s = math.sqrt(1.0 - c * c)

    def inner(x):
        kink = -c * x / s
        pieces = [(-_Z, kink), (kink, _Z)] if -_Z < kink < _Z else [(-_Z, _Z)]
        total = 0.0
        for a, b in pieces:
            w = 0.5 * (b - a) * _GL_X + 0.5 * (a + b)
            weights = 0.5 * (b - a) * _GL_W * np.exp(-0.5 * w * w) / _SQRT_2PI
            total += float(np.sum(weights * f(np.full_like(w, x), c * x + s * w)))
        return total * math.exp(-0.5 * x * x) / _SQRT_2PI

    opts = {"epsabs": 1e-12, "epsrel": 1e-11, "limit": 200}
    return sum(integrate.quad(inner, a, b, **opts)[0] for a, b in ((-_Z, 0.0), (0.0, _Z)))


def ref_length_map(name, sigma_w2, sigma_b2, q):
    phi, _ = NUMPY_ACTIVATIONS[name]
    return sigma_w2 * ref_expectation(lambda z: phi(math.sqrt(q) * z) ** 2) + sigma_b2


def ref_q_star(name, sigma_w2, sigma_b2):
    """The root of L(q) = q in [1e-3, 1e3] (unique there for the test points)."""

    def gap(q):
        return ref_length_map(name, sigma_w2, sigma_b2, q) - q

    return optimize.brentq(gap, 1e-3, 1e3, xtol=1e-14, rtol=1e-13)


def ref_correlation_map(name, sigma_w2, sigma_b2, c, q):
    phi, _ = NUMPY_ACTIVATIONS[name]
    sq = math.sqrt(q)
    cov = ref_bivariate(lambda x, y: phi(sq * x) * phi(sq * y), c)
    return (sigma_w2 * cov + sigma_b2) / q


# Points with a finite, attracting q* for every activation (smaller sigma_w2 for
# linear, whose length map diverges for sigma_w2 >= 1).
POINTS = {name: [(1.7, 0.3), (0.9, 0.05)] for name in ACTIVATIONS}
POINTS["linear"] = [(0.7, 0.3), (0.4, 0.05)]


def test_references_cover_every_activation():
    assert set(NUMPY_ACTIVATIONS) == set(ACTIVATIONS)


# --------------------------------------------------------------------------------------
# Quadrature helpers against scipy.


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_gaussian_expectation_matches_scipy(name):
    # The three integrands behind the length map, chi1 and (for phi(0) != 0) the mean.
    jax_fns = _jax_pair(name)
    np_fns = NUMPY_ACTIVATIONS[name]
    for q in (0.05, 1.0, 8.0):
        for k, power in ((0, 2), (1, 2), (0, 1)):
            f, ref = _scaled(jax_fns[k], q, power), _scaled(np_fns[k], q, power)
            want = ref_expectation(ref)
            got = float(_quadrature.gaussian_expectation(f))
            assert abs(got - want) <= 1e-5 * max(1.0, abs(want)), (name, q, k, got, want)


def _jax_pair(name):
    phi = get_activation(name)
    return phi, _quadrature.derivative(phi)


def _scaled(fn, q, power):
    """z -> fn(sqrt(q) z) ** power."""
    sq = math.sqrt(q)
    return lambda z: fn(sq * z) ** power


def _product(fn, q):
    """(x, y) -> fn(sqrt(q) x) fn(sqrt(q) y)."""
    sq = math.sqrt(q)
    return lambda x, y: fn(sq * x) * fn(sq * y)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_bivariate_expectation_matches_scipy(name):
    # The integrands of the correlation map (phi phi) and of chi_c (phi' phi').
    jax_fns = _jax_pair(name)
    np_fns = NUMPY_ACTIVATIONS[name]
    for c, k in ((-0.6, 0), (0.9, 1)):
        want = ref_bivariate(_product(np_fns[k], 2.0), c)
        got = float(_quadrature.bivariate_expectation(_product(jax_fns[k], 2.0), c))
        assert abs(got - want) <= 1e-5 * max(1.0, abs(want)), (name, c, got, want)


def test_quadrature_float64_accuracy():
    # In float64 the rules agree with scipy to ~1e-13 (asserted: 1e-9), here for SELU,
    # whose derivative jumps at the kink: the split there is what makes this possible.
    with jax.enable_x64(True):
        jax_fns, np_fns = _jax_pair("selu"), NUMPY_ACTIVATIONS["selu"]
        got = _quadrature.gaussian_expectation(_scaled(jax_fns[1], 2.25, 2))
        assert got.dtype == jnp.float64
        assert abs(float(got) - ref_expectation(_scaled(np_fns[1], 2.25, 2))) <= 1e-9
        got = _quadrature.bivariate_expectation(_product(jax_fns[0], 1.0), 0.3)
        assert abs(float(got) - ref_bivariate(_product(np_fns[0], 1.0), 0.3)) <= 1e-9


# --------------------------------------------------------------------------------------
# Public maps against scipy, for every activation.


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_maps_match_scipy(name):
    _, ndphi = NUMPY_ACTIVATIONS[name]
    for sigma_w2, sigma_b2 in POINTS[name]:
        for q in (0.3, 2.5):
            want = ref_length_map(name, sigma_w2, sigma_b2, q)
            got = float(theory.length_map(name, sigma_w2, sigma_b2, q))
            assert got == pytest.approx(want, rel=1e-5), (sigma_w2, q)

        q_ref = ref_q_star(name, sigma_w2, sigma_b2)
        chi1_ref = sigma_w2 * ref_expectation(_scaled(ndphi, q_ref, 2))
        got = float(theory.chi1(name, sigma_w2, sigma_b2))
        assert got == pytest.approx(chi1_ref, rel=1e-5), sigma_w2

        # c = 0.999 is below the angle (0.1) where 1 - c' is integrated from chi_c.
        for c in (-0.6, 0.3, 0.999):
            want = ref_correlation_map(name, sigma_w2, sigma_b2, c, q_ref)
            got = float(theory.correlation_map(name, sigma_w2, sigma_b2, c))
            assert got == pytest.approx(want, abs=1e-5), (sigma_w2, c)


@pytest.mark.parametrize("name", ["tanh", "relu", "selu", "gelu"])
def test_q_star_matches_scipy(name):
    sigma_w2, sigma_b2 = POINTS[name][0]
    want = ref_q_star(name, sigma_w2, sigma_b2)
    assert float(theory.q_star(name, sigma_w2, sigma_b2)) == pytest.approx(want, rel=1e-5)
    # From another start, the same (unique) fixed point.
    got = float(theory.q_star(name, sigma_w2, sigma_b2, q0=30.0))
    assert got == pytest.approx(want, rel=1e-5)


# --------------------------------------------------------------------------------------
# Closed forms.


def test_relu_length_map_and_chi1_closed_forms():
    for sigma_w2, sigma_b2 in [(0.5, 0.0), (1.5, 0.2), (2.0, 0.0), (3.0, 1.0)]:
        for q in (0.01, 0.7, 5.0, 300.0):
            got = float(theory.length_map("relu", sigma_w2, sigma_b2, q))
            assert got == pytest.approx(sigma_w2 * q / 2 + sigma_b2, rel=1e-6)
        assert float(theory.chi1("relu", sigma_w2, sigma_b2)) == pytest.approx(
            sigma_w2 / 2, rel=1e-6
        )
    # chi = sigma_w2 / 2 at every q: along a profile whose q^l spans 4 decades.
    chis = theory.gradient_profile("relu", 0.5, 0.0, 100.0, 12)
    np.testing.assert_allclose(chis, 0.25, rtol=1e-6)


def test_relu_critical_point_and_fixed_points():
    assert float(theory.critical_sigma_w2("relu")) == pytest.approx(2.0, rel=1e-6)
    # At (2, 0) every q is a fixed point: q_star returns its start.
    for q0 in (0.3, 1.0, 7.0):
        assert float(theory.q_star("relu", 2.0, 0.0, q0)) == np.float32(q0)
    # Above it the length diverges.
    assert float(theory.q_star("relu", 2.5, 0.1)) == math.inf


def test_relu_q_profile_is_the_affine_recursion():
    sigma_w2, sigma_b2, q0, depth = 1.5, 0.2, 3.0, 12
    a = sigma_w2 / 2
    layers = np.arange(depth)  # q^{l+1} = a^l q0 + sigma_b2 (1 - a^l) / (1 - a)
    want = a**layers * q0 + sigma_b2 * (1 - a**layers) / (1 - a)
    np.testing.assert_allclose(
        theory.q_profile("relu", sigma_w2, sigma_b2, q0, depth), want, rtol=1e-5
    )


def test_relu_correlation_map_is_the_arc_cosine_kernel():
    # Cho & Saul 2009: at (2, 0), c' = [sqrt(1 - c^2) + (pi - arccos c) c] / pi.
    for c in (-1.0, -0.7, 0.0, 0.3, 0.9, 0.999, 1.0):
        want = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        got = float(theory.correlation_map("relu", 2.0, 0.0, c))
        assert got == pytest.approx(want, abs=2e-6), c
    assert float(theory.correlation_map("relu", 2.0, 0.0, 1.0)) == 1.0


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "linear"])
def test_homogeneous_activations_have_no_critical_point_with_bias(name):
    # chi1 = 1 fixes sigma_w2 (2 for ReLU, 1 for linear) whatever q is, and there the
    # length map is q' = q + sigma_b2: no finite fixed point for sigma_b2 > 0. The
    # only critical point is at sigma_b2 = 0.
    sigma_w2 = {"relu": 2.0, "leaky_relu": 2 / (1 + 0.01**2), "linear": 1.0}[name]
    assert float(theory.critical_sigma_w2(name, 0.0)) == pytest.approx(sigma_w2, rel=1e-6)
    # q* = sigma_b2 / (1 - chi1) diverges there (inf, or, where sigma_w2 rounds just
    # below the critical value in float32, about 3e7).
    assert float(theory.q_star(name, sigma_w2, 0.3)) > 1e6
    message = rf"{name}' has no critical point at sigma_b2=0\.3.*q\* = inf"
    with pytest.raises(ValueError, match=message):
        theory.critical_sigma_w2(name, 0.3)
    with pytest.raises(ValueError, match=r"no critical point at sigma_b2=0\.3"):
        theory.critical(name, 0.3)
    # Traced, the same answer is NaN (never the plausible 2).
    traced = jax.vmap(lambda s: theory.critical_sigma_w2(name, s))(
        jnp.array([0.0, 0.3, 2.0, 1e-6, 1e-30])
    )
    assert float(traced[0]) == pytest.approx(sigma_w2, rel=1e-5)
    assert np.isnan(traced[1:]).all()
    # However small the bias: q' = q + sigma_b2 still grows without bound, though by
    # less than float32 rounding of q = 1 per layer (the length map alone would read it
    # as a fixed point). Also in float64, and named with the valid choice.
    for sigma_b2 in (1e-6, 1e-12, 1e-30):
        with pytest.raises(ValueError, match=r"q\* = inf.*use sigma_b2=0"):
            theory.critical_sigma_w2(name, sigma_b2)
    with jax.enable_x64(True):
        assert float(theory.critical_sigma_w2(name, 0.0)) == pytest.approx(sigma_w2, rel=1e-12)
        for sigma_b2 in (0.3, 1e-6, 1e-300):
            with pytest.raises(ValueError, match=r"q\* = inf.*use sigma_b2=0"):
                theory.critical_sigma_w2(name, sigma_b2)


@pytest.mark.parametrize("name", ["tanh", "elu", "selu"])
def test_smooth_activations_keep_their_critical_point_at_tiny_bias(name):
    # The exact test for positively homogeneous activations leaves the others alone:
    # their critical sigma_w2 is continuous in sigma_b2 -> 0+, with chi1 = 1 there.
    at_zero = float(theory.critical_sigma_w2(name, 0.0))
    tiny = float(theory.critical_sigma_w2(name, 1e-12))
    assert tiny == pytest.approx(at_zero, rel=2e-3)
    sigma_w2 = theory.critical_sigma_w2(name, 0.05)
    assert float(theory.chi1(name, sigma_w2, 0.05)) == pytest.approx(1.0, abs=1e-4)


def test_leaky_relu_critical_point():
    # Variance preserving: sigma_w2 (1 + a^2) / 2 = 1. (A non-default slope, so that
    # the answer is not within rounding of ReLU's 2.)
    act = get_activation("leaky_relu", negative_slope=0.2)
    assert float(theory.critical_sigma_w2(act)) == pytest.approx(2 / 1.04, rel=1e-6)


def test_tanh_critical_point():
    assert float(theory.critical_sigma_w2("tanh")) == pytest.approx(1.0, abs=1e-6)
    # With a bias the critical line moves up, and chi1 = 1 there.
    for sigma_b2 in (0.05, 0.5):
        sigma_w2 = theory.critical_sigma_w2("tanh", sigma_b2)
        assert float(sigma_w2) > 1.0
        assert float(theory.chi1("tanh", sigma_w2, sigma_b2)) == pytest.approx(1.0, abs=1e-5)


def test_gelu_critical_point_is_where_chi1_jumps_over_one():
    # GELU at sigma_b2 = 0: the fixed points on its critical line are not attracting;
    # as sigma_w2 grows, q* (from q0 = 1) jumps from ~0 to inf and chi1 over 1. The
    # crossing is returned.
    sigma_w2 = float(theory.critical_sigma_w2("gelu"))
    assert 2.0 < sigma_w2 < 2.5
    assert float(theory.chi1("gelu", sigma_w2 * (1 - 1e-3), 0.0)) < 1.0
    assert float(theory.chi1("gelu", sigma_w2 * (1 + 1e-3), 0.0)) > 1.0


# --------------------------------------------------------------------------------------
# Fixed points and depth scales.


def test_tanh_q_star_at_criticality_is_small():
    # q^l decays like 1 / (2 l) there; q* = 0 is approached by Newton steps.
    q = float(theory.q_star("tanh", 1.0, 0.0))
    # The Newton steps about halve q until the step 2 q^2 is below the tolerance
    # 16 eps q (+ 1e-20): the result lies between 2 eps and 8 eps (float32 eps).
    eps = float(np.finfo(np.float32).eps)
    assert 2 * eps <= q <= 8 * eps * (1 + 1e-3)
    # Ordered phase without bias: q* = 0, reported as a tiny positive number.
    assert 0.0 < float(theory.q_star("tanh", 0.5, 0.0)) <= 1e-19


def test_c_star_by_phase():
    # Ordered: c* = 1, also without bias (the sigma_b2 -> 0+ limit).
    assert float(theory.c_star("tanh", 0.5, 0.05)) == 1.0
    assert float(theory.c_star("tanh", 0.5, 0.0)) == 1.0
    # Chaotic: c* < 1, a fixed point of the scipy correlation map ...
    c = float(theory.c_star("tanh", 4.0, 0.05))
    assert c < 0.5
    q = ref_q_star("tanh", 4.0, 0.05)
    assert ref_correlation_map("tanh", 4.0, 0.05, c, q) == pytest.approx(c, abs=1e-5)
    # ... and an attracting one, reached from below and from next to c = 1 (which
    # repels in this phase) alike.
    assert float(theory.c_star("tanh", 4.0, 0.05, c0=-0.9)) == pytest.approx(c, abs=1e-5)
    assert float(theory.c_star("tanh", 4.0, 0.05, c0=0.999)) == pytest.approx(c, abs=1e-5)


def test_depth_scales_off_criticality_relu_closed_form():
    # ReLU in the ordered phase: q^l - q* ~ (sigma_w2 / 2)^l and c* = 1 with chi1 =
    # sigma_w2 / 2, so xi_q = xi_c = -1 / log(sigma_w2 / 2).
    xi_q, xi_c = theory.depth_scales("relu", 1.5, 0.1)
    assert float(xi_q) == pytest.approx(-1 / math.log(0.75), rel=1e-5)
    assert float(xi_c) == pytest.approx(-1 / math.log(0.75), rel=1e-5)


@pytest.mark.parametrize("sigma_w2", [0.5, 4.0])
def test_depth_scales_off_criticality_tanh(sigma_w2):
    sigma_b2 = 0.05
    xi_q, xi_c = (float(x) for x in theory.depth_scales("tanh", sigma_w2, sigma_b2))
    assert 0.0 < xi_q < 100.0
    assert 0.0 < xi_c < 100.0
    # chi_q (autodiff of the length map) = chi1 + sigma_w2 E[phi'' phi] (Schoenholz et
    # al. 2017, eq. 4): the two forms of 1 / xi_q agree.
    sq = math.sqrt(ref_q_star("tanh", sigma_w2, sigma_b2))
    chi1 = sigma_w2 * ref_expectation(lambda z: (1 - np.tanh(sq * z) ** 2) ** 2)
    # tanh'' tanh = -2 tanh^2 (1 - tanh^2)
    phi_ddphi = ref_expectation(lambda z: -2 * np.tanh(sq * z) ** 2 * (1 - np.tanh(sq * z) ** 2))
    assert xi_q == pytest.approx(-1 / math.log(chi1 + sigma_w2 * phi_ddphi), rel=1e-4)
    if sigma_w2 < 1:  # ordered: c* = 1 and xi_c = -1 / log chi1
        assert xi_c == pytest.approx(-1 / math.log(chi1), rel=1e-4)


def test_xi_c_diverges_at_criticality():
    assert float(theory.depth_scales("relu", 2.0, 0.0)[1]) == math.inf
    assert float(theory.depth_scales("tanh", 1.0, 0.0)[1]) == math.inf
    sigma_w2 = theory.critical_sigma_w2("tanh", 0.05)
    xi_c = float(theory.depth_scales("tanh", sigma_w2, 0.05)[1])
    assert xi_c > 1e4  # inf, or very large: c* is approached algebraically there
    assert not math.isnan(xi_c)
    # ... and grows as criticality is approached from either side.
    near = [float(theory.depth_scales("tanh", sigma_w2 * f, 0.05)[1]) for f in (0.9, 0.99)]
    assert near[0] < near[1] < xi_c
    far = [float(theory.depth_scales("tanh", sigma_w2 * f, 0.05)[1]) for f in (1.1, 1.01)]
    assert far[0] < far[1] < xi_c


# --------------------------------------------------------------------------------------
# The backward convention, against a finite network.


def test_gradient_profile_convention_against_a_network():
    """E[(dL/dz^l)^2] = chi(q^l) E[(dL/dz^{l+1})^2], measured by autodiff of a tanh net.

    Pre-activations z^1 ~ N(0, q0), z^{l+1} = W^{l+1} phi(z^l) + b^{l+1} for l = 1..depth
    (layer depth + 1 is a readout with the same sigma_w2), loss sum(u * z^{depth+1}),
    u ~ N(0, 1). q0 = 4 is far from q* (about 0.47), so chi^l changes by a factor 2
    from layer 1 to 2 and the other index convention is far outside the tolerance.
    Over seeds, the measured ratios at width 512 and batch 64 scatter by 1.6% (layer
    1; about 1% beyond) around the prediction, with no visible bias; the tolerance,
    7%, is about 4 of those standard deviations.
    """
    sigma_w2, sigma_b2, q0, depth, width, batch = 1.5, 0.05, 4.0, 4, 512, 64
    rng = np.random.default_rng(0)

    def normal(std, shape):
        return jnp.asarray(std * rng.standard_normal(shape), jnp.float32)

    z1 = normal(math.sqrt(q0), (batch, width))
    ws = [normal(math.sqrt(sigma_w2 / width), (width, width)) for _ in range(depth)]
    bs = [normal(math.sqrt(sigma_b2), (1, width)) for _ in range(depth)]
    u = normal(1.0, (batch, width))

    def loss(perturbations):  # d loss / d perturbation^l = dL/dz^l
        z = z1 + perturbations[0]
        for w, b, p in zip(ws, bs, perturbations[1:], strict=True):
            z = jnp.tanh(z) @ w + b + p
        return jnp.sum(u * z)

    grads = jax.grad(loss)([jnp.zeros((batch, width))] * (depth + 1))
    mean_sq = np.array([float(jnp.mean(g**2)) for g in grads])  # layers 1..depth + 1
    measured = mean_sq[:-1] / mean_sq[1:]
    predicted = np.asarray(theory.gradient_profile("tanh", sigma_w2, sigma_b2, q0, depth))
    np.testing.assert_allclose(measured, predicted, rtol=0.07)
    # The other index convention (chi at q^{l+1}) is excluded.
    assert abs(measured[0] / predicted[1] - 1) > 0.3
    # And at q0 = q* every factor is chi1.
    q = theory.q_star("tanh", sigma_w2, sigma_b2)
    np.testing.assert_allclose(
        theory.gradient_profile("tanh", sigma_w2, sigma_b2, q, 3),
        theory.chi1("tanh", sigma_w2, sigma_b2),
        rtol=1e-5,
    )


# --------------------------------------------------------------------------------------
# vmap and jit against a Python loop. Functions that share a compiled computation
# (q_star, chi1, correlation_map; c_star, depth_scales; the two profiles) are vmapped
# with the same batch, so the batched computation compiles once for each group.

_GRID = np.linspace(0.5, 3.0, 16)  # sigma_w2 (tanh's critical point is near 1.76)
# For c* and the depth scales, 16 points away from criticality, where they are
# ill-conditioned (a rounding difference in the map moves c* by 1 / (1 - chi_c) as much).
_OFF_CRITICAL = np.concatenate([np.linspace(0.5, 1.3, 8), np.linspace(2.2, 3.6, 8)])

TRANSFORMED = {  # name -> (function of a scalar, grid of that scalar)
    "length_map": (lambda s: theory.length_map("tanh", s, 0.05, 0.7), _GRID),
    "q_star": (lambda s: theory.q_star("tanh", s, 0.05), _GRID),
    "chi1": (lambda s: theory.chi1("tanh", s, 0.05), _GRID),
    "correlation_map": (lambda s: theory.correlation_map("tanh", s, 0.05, 0.4), _GRID),
    "c_star": (lambda s: theory.c_star("tanh", s, 0.05), _OFF_CRITICAL),
    "depth_scales": (lambda s: jnp.stack(theory.depth_scales("tanh", s, 0.05)), _OFF_CRITICAL),
    "critical_sigma_w2": (lambda s: theory.critical_sigma_w2("tanh", s), _GRID - 0.5),
    "q_profile": (lambda s: theory.q_profile("tanh", s, 0.05, 2.0, 4), _GRID),
    "gradient_profile": (lambda s: theory.gradient_profile("tanh", s, 0.05, 2.0, 4), _GRID),
}


@pytest.mark.parametrize("name", list(TRANSFORMED))
def test_vmap_matches_loop(name):
    f, grid = TRANSFORMED[name]
    batched = jax.vmap(f)(jnp.asarray(grid, jnp.float32))
    looped = jnp.stack([f(float(s)) for s in grid])
    assert batched.shape == looped.shape == (len(grid), *jnp.shape(looped[0]))
    # Batched and unbatched XLA code round differently (float32: ~1e-7 in a map). A
    # fixed point c* moves by that over 1 - chi_c (<= 10 on this grid), and depth
    # scales amplify a difference in chi by 1 / |log chi|.
    rtol, atol = {"c_star": (0.0, 5e-6), "depth_scales": (2e-5, 0.0)}.get(name, (2e-6, 1e-7))
    np.testing.assert_allclose(batched, looped, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", list(TRANSFORMED))
def test_traces_under_jit(name):
    # Every function traces under jit with the activation closed over and its scalar
    # argument abstract (no concretization, no eager-only checks): shapes and dtypes
    # as eagerly.
    f, grid = TRANSFORMED[name]
    out = jax.eval_shape(jax.jit(f), jax.ShapeDtypeStruct((), jnp.float32))
    eager = f(float(grid[3]))
    assert out.shape == eager.shape
    assert out.dtype == eager.dtype == jnp.float32


def test_jit_matches_eager():
    f, _ = TRANSFORMED["chi1"]
    jitted = jax.jit(f)
    for s in (0.7, 2.4):
        np.testing.assert_allclose(jitted(s), f(s), rtol=2e-6)


def test_all_public_names_are_transformed():
    assert set(TRANSFORMED) | {"critical"} == set(theory.__all__)


# --------------------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: theory.length_map("tanh", -1.0, 0.0, 1.0), r"sigma_w2 .*-1\.0"),
        (lambda: theory.chi1("tanh", 1.0, -0.5), r"sigma_b2 .*-0\.5"),
        (lambda: theory.critical_sigma_w2("tanh", -0.1), r"sigma_b2 .*-0\.1"),
        (lambda: theory.q_star("tanh", 1.0, 0.0, 0.0), r"q0 .*0\.0"),
        (lambda: theory.q_profile("relu", 1.0, 0.0, -2.0, 3), r"q0 .*-2\.0"),
        (lambda: theory.gradient_profile("relu", 1.0, 0.0, 1.0, 0), r"depth .*0"),
        (lambda: theory.q_profile("relu", 1.0, 0.0, 1.0, 2.5), r"depth .*2\.5"),
        (lambda: theory.correlation_map("tanh", 1.0, 0.1, 1.5), r"c .*1\.5"),
        (lambda: theory.correlation_map("tanh", 1.0, 0.1, -1.01), r"c .*-1\.01"),
        (lambda: theory.c_star("tanh", 1.0, 0.1, c0=2.0), r"c0 .*2\.0"),
        (lambda: theory.length_map("tanh", 1.0, 0.0, -1.0), r"q .*-1\.0"),
        (lambda: theory.chi1("tanh", math.nan, 0.0), r"sigma_w2 .*nan"),
        (lambda: theory.chi1("tanh", jnp.ones(3), 0.0), r"sigma_w2 .*shape \(3,\)"),
        (lambda: theory.chi1("no_such_activation", 1.0, 0.0), r"no_such_activation"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _exp_square(x):
    return jnp.exp(x**2)


@pytest.mark.parametrize(
    "call",
    [
        lambda: theory.length_map(_exp_square, 1.0, 0.0, 1.0),
        lambda: theory.q_star(_exp_square, 1.0, 0.0),
        lambda: theory.chi1(_exp_square, 1.0, 0.0),
        lambda: theory.critical(_exp_square),
    ],
)
def test_activation_without_second_moment_raises(call):
    with pytest.raises(ValueError, match=r"_exp_square.*finite second moment"):
        call()


def test_second_moment_check_is_at_the_q_used():
    # exp(x^2 / 8): E[phi(sqrt(q) z)^2] = E[exp(q z^2 / 4)] is finite only for q < 2.
    def phi(x):
        return jnp.exp(x**2 / 8)

    assert math.isfinite(float(theory.length_map(phi, 1.0, 0.0, 0.5)))
    with pytest.raises(ValueError, match=r"q=3\.0"):
        theory.length_map(phi, 1.0, 0.0, 3.0)


# --------------------------------------------------------------------------------------
# The initializer.


def test_critical_relu_initializer_is_he():
    init = theory.critical("relu")
    w = init(jax.random.PRNGKey(1), (1000, 500))
    assert w.shape == (1000, 500)
    n = w.size
    want = 2.0 / 1000  # sigma_w2 / fan_in, fan_in = 1000 (in_axis = -2)
    # The standard error of the sample variance of n Gaussians is var * sqrt(2 / n).
    assert abs(float(jnp.var(w)) - want) <= 5 * want * math.sqrt(2 / n)
    assert abs(float(jnp.mean(w))) <= 5 * math.sqrt(want / n)


def test_critical_tanh_initializer_is_lecun():
    w = theory.critical("tanh")(jax.random.PRNGKey(2), (1000, 500))
    want = 1.0 / 1000
    assert abs(float(jnp.var(w)) - want) <= 5 * want * math.sqrt(2 / w.size)


@pytest.mark.parametrize(
    "layout,shape,fan_in",
    [
        ({}, (400, 300), 400),  # (in, out): x @ w, flax
        ({"in_axis": -1, "out_axis": -2}, (300, 400), 400),  # equinox Linear (out, in)
        ({"in_axis": (0, 1, 2), "out_axis": 3}, (3, 3, 16, 8), 144),  # HWIO conv, all in
    ],
)
def test_critical_initializer_layouts(layout, shape, fan_in):
    # n_in Var(w) = sigma_w2 = 2 for ReLU in every layout: the fan is the layout's.
    w = np.asarray(theory.critical("relu", **layout)(jax.random.PRNGKey(3), shape), np.float64)
    want = 2.0 / fan_in
    # SE of the sample variance of n Gaussians: var sqrt(2 / n).
    assert abs(w.var() - want) <= 5 * want * math.sqrt(2 / w.size)
    # The equinox case asked of issue 12: n Var was 1.02 without the axes.
    if layout.get("in_axis") == -1:
        assert abs(fan_in * w.var() - 2.0) < 0.1


def test_critical_initializer_rejects_bad_axes_and_traced_bias():
    with pytest.raises(ValueError, match="name the same axis"):
        theory.critical("relu", in_axis=-1, out_axis=-1)
    with pytest.raises(ValueError, match=r"in_axis=5 is out of range for shape \(4, 4\)"):
        theory.critical("relu", in_axis=5)(jax.random.PRNGKey(0), (4, 4))
    with pytest.raises(ValueError, match=r"sigma_b2 must be a finite number >= 0.*traced"):
        jax.jit(lambda s: theory.critical("tanh", s)(jax.random.PRNGKey(0), (2, 2)))(0.1)


# --------------------------------------------------------------------------------------
# Invalid traced inputs give NaN, never a plausible number.

INVALID_TRACED = {  # name -> function of one scalar that is invalid at the given value
    "length_map sigma_w2": (lambda s: theory.length_map("tanh", s, 0.0, 1.0), -1.0),
    "length_map q": (lambda s: theory.length_map("tanh", 1.0, 0.0, s), -1.0),
    "q_star sigma_w2": (lambda s: theory.q_star("tanh", s, 0.0), -1.0),
    "q_star sigma_b2": (lambda s: theory.q_star("tanh", 1.0, s), math.nan),
    "q_star q0": (lambda s: theory.q_star("tanh", 1.0, 0.1, s), 0.0),
    "chi1 sigma_b2": (lambda s: theory.chi1("relu", 1.0, s), -0.5),
    "correlation_map c": (lambda s: theory.correlation_map("tanh", 1.0, 0.1, s), 1.5),
    "c_star c0": (lambda s: theory.c_star("tanh", 1.0, 0.1, s), -2.0),
    "depth_scales sigma_w2": (lambda s: jnp.stack(theory.depth_scales("tanh", s, 0.1)), math.inf),
    "critical_sigma_w2 sigma_b2": (lambda s: theory.critical_sigma_w2("tanh", s), -0.1),
    "q_profile q0": (lambda s: theory.q_profile("tanh", 1.0, 0.0, s, 3), -2.0),
    "gradient_profile sigma_w2": (lambda s: theory.gradient_profile("tanh", s, 0.0, 1.0, 3), -1.0),
}


@pytest.mark.parametrize("name", list(INVALID_TRACED))
def test_invalid_traced_input_is_nan(name):
    f, bad = INVALID_TRACED[name]
    out = np.asarray(jax.jit(f)(bad))
    assert np.isnan(out).all(), (name, out)
    # ... and concrete, the same value is an error naming it.
    with pytest.raises(ValueError, match=str(bad).replace("-", "\\-")):
        f(bad)


def test_q_star_of_negative_variance_under_jit_is_not_the_tiny_q():
    # The issue: jit(q_star)(sigma_w2=-1) used to return 1e-20, a plausible q* = 0.
    out = jax.jit(lambda s: theory.q_star("tanh", s, 0.0))(jnp.array([-1.0, 0.5])[0])
    assert np.isnan(out)
    valid = jax.vmap(lambda s: theory.q_star("tanh", s, 0.05))(jnp.array([-1.0, 0.5]))
    assert np.isnan(valid[0]) and float(valid[1]) == pytest.approx(
        ref_q_star("tanh", 0.5, 0.05), rel=1e-5
    )


# --------------------------------------------------------------------------------------
# The package layout.


def test_package_reexports_todays_public_names():
    from jaxstab.theory import critical, critical_sigma_w2

    assert critical is theory.critical is jaxstab.critical
    assert critical_sigma_w2 is theory.critical_sigma_w2
    assert callable(critical) and not hasattr(critical, "__path__")
    for name in theory.__all__:
        assert getattr(theory, name).__module__.startswith("jaxstab.theory._"), name


@pytest.mark.parametrize("module", [_maps, _critical], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    # The examples in the docstrings (chi1 of ReLU, the critical points of ReLU and
    # tanh, n_in Var(w) = 2 for critical("relu") on an (out, in) layout) are right.
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 1 and result.failed == 0
