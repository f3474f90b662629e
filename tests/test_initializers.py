"""Initializers: empirical moments against their formulas, bounds, dtypes, errors.

Tolerances are in standard errors (SE) of the estimator. With N samples of a
distribution with variance v and fourth central moment m4, the sample variance
has SE sqrt((m4 - v²)/N); the sample mean has SE sqrt(v/N); the sample kurtosis
of a Gaussian has SE sqrt(24/N). At 5 SE a test flakes with probability < 1e-6.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstab as js

N_IN, N_OUT = 600, 400  # 240,000 samples per draw
NUM_SE = 5.0


def _var_se(w):
    """Sample variance and its standard error, from the sample's own moments."""
    w = np.asarray(w, np.float64).ravel()
    c = w - w.mean()
    var = np.mean(c**2)
    return var, math.sqrt((np.mean(c**4) - var**2) / w.size)


def _kurtosis(w):
    w = np.asarray(w, np.float64).ravel()
    c = w - w.mean()
    return np.mean(c**4) / np.mean(c**2) ** 2


# (initializer, expected variance as a function of (n_in, n_out), distribution family)
RECORDS = [
    ("xavier_uniform", js.xavier_uniform(), lambda i, o: 2 / (i + o), "uniform"),
    ("xavier_normal", js.xavier_normal(), lambda i, o: 2 / (i + o), "normal"),
    (
        "xavier_normal_gain",
        js.xavier_normal(gain=5 / 3),
        lambda i, o: 25 / 9 * 2 / (i + o),
        "normal",
    ),
    ("glorot_uniform_gain", js.glorot_uniform(gain=2.0), lambda i, o: 4 * 2 / (i + o), "uniform"),
    ("he_normal", js.he_normal(), lambda i, o: 2 / i, "normal"),
    ("he_normal_leaky", js.he_normal(negative_slope=0.2), lambda i, o: 2 / (1.04 * i), "normal"),
    ("he_normal_fan_out", js.he_normal(mode="fan_out"), lambda i, o: 2 / o, "normal"),
    ("he_uniform", js.he_uniform(), lambda i, o: 2 / i, "uniform"),
    (
        "kaiming_uniform_leaky",
        js.kaiming_uniform(negative_slope=0.5),
        lambda i, o: 1.6 / i,
        "uniform",
    ),
    ("lecun_normal", js.lecun_normal(), lambda i, o: 1 / i, "normal"),
    ("lecun_uniform", js.lecun_uniform(), lambda i, o: 1 / i, "uniform"),
    ("torch_linear", js.torch_linear(), lambda i, o: 1 / (3 * i), "uniform"),
    (
        "truncated",
        js.variance_scaling(2.0, "fan_avg", "truncated_normal"),
        lambda i, o: 4 / (i + o),
        "truncated",
    ),
    (
        "vs_fan_out_uniform",
        js.variance_scaling(0.5, "fan_out", "uniform"),
        lambda i, o: 0.5 / o,
        "uniform",
    ),
]


@pytest.mark.parametrize("name,init,variance,family", RECORDS, ids=[r[0] for r in RECORDS])
def test_variance_matches_formula(name, init, variance, family):
    w = init(jax.random.key(0), (N_IN, N_OUT))
    chex.assert_shape(w, (N_IN, N_OUT))
    assert w.dtype == jnp.float32
    var, se = _var_se(w)
    expected = variance(N_IN, N_OUT)
    assert abs(var - expected) < NUM_SE * se, (name, var, expected, se)
    mean_se = math.sqrt(expected / w.size)
    assert abs(float(jnp.mean(w))) < NUM_SE * mean_se


@pytest.mark.parametrize("name,init,variance,family", RECORDS, ids=[r[0] for r in RECORDS])
def test_distribution_family(name, init, variance, family):
    """Gaussian presets are Gaussian (kurtosis 3), uniform ones are uniform (1.8)."""
    w = init(jax.random.key(1), (N_IN, N_OUT))
    k = _kurtosis(w)
    se = math.sqrt(24 / w.size)  # the Gaussian value; smaller for the lighter tails
    if family == "normal":
        assert abs(k - 3.0) < NUM_SE * se
    elif family == "uniform":
        assert abs(k - 1.8) < NUM_SE * se
        limit = math.sqrt(3 * variance(N_IN, N_OUT))
        assert float(jnp.max(jnp.abs(w))) <= limit
        # 240k uniform draws all inside (1 - 1e-3) of the limit: probability e^-240.
        assert float(jnp.max(jnp.abs(w))) > limit * (1 - 1e-3)
    else:  # truncated at 2 standard deviations of the underlying Gaussian
        assert k < 3.0 - 10 * se
        sigma = math.sqrt(variance(N_IN, N_OUT)) / 0.87962566103423978
        assert float(jnp.max(jnp.abs(w))) <= 2 * sigma * (1 + 1e-6)


def test_xavier_uniform_exact_bounds():
    limit = 1.5 * math.sqrt(6 / (N_IN + N_OUT))
    w = js.xavier_uniform(gain=1.5)(jax.random.key(2), (N_IN, N_OUT))
    assert float(jnp.max(w)) <= limit and float(jnp.min(w)) >= -limit
    assert float(jnp.max(w)) > limit * (1 - 1e-3) and float(jnp.min(w)) < -limit * (1 - 1e-3)


def test_torch_linear_is_pytorch_default_bounds():
    w = js.torch_linear()(jax.random.key(3), (N_IN, N_OUT))
    assert float(jnp.max(jnp.abs(w))) <= 1 / math.sqrt(N_IN)
    assert float(jnp.max(jnp.abs(w))) > (1 - 1e-3) / math.sqrt(N_IN)


@pytest.mark.parametrize(
    "shape,in_axis,out_axis",
    [((3, 3, 16, 32), -2, -1), ((5, 7), -1, -2), ((2, 4, 6, 8), 1, 3), ((8, 16, 4), 0, 1)],
)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal"])
def test_fans_and_samples_match_jax(shape, in_axis, out_axis, mode, distribution):
    """Same fans as jax for any layout, hence the same samples for the same key."""
    ours = js.variance_scaling(1.7, mode, distribution, in_axis, out_axis)
    theirs = jax.nn.initializers.variance_scaling(1.7, mode, distribution, in_axis, out_axis)
    key = jax.random.key(4)
    np.testing.assert_allclose(ours(key, shape), theirs(key, shape), rtol=1e-6, atol=1e-7)


def test_equinox_layout():
    """(out, in) storage with in_axis=-1, out_axis=-2 scales by the true fan_in."""
    w = js.he_normal(in_axis=-1, out_axis=-2)(jax.random.key(5), (N_OUT, N_IN))
    var, se = _var_se(w)
    assert abs(var - 2 / N_IN) < NUM_SE * se


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("preset", ["he_normal", "xavier_uniform", "orthogonal"])
def test_low_precision_is_unbiased(dtype, preset):
    init = js.get_initializer(preset)
    w = init(jax.random.key(6), (1000, 1000), dtype)
    assert w.dtype == dtype
    w32 = np.asarray(w.astype(jnp.float32), np.float64)
    std = w32.std()
    # The mean over 1e6 samples has SE std/1000; jax's own bfloat16 truncated
    # normal is off by about 0.018 std, i.e. 18 SE.
    assert abs(w32.mean()) < NUM_SE * std / 1000
    # The same key in float32 gives the same numbers up to bf16 rounding.
    w_ref = np.asarray(init(jax.random.key(6), (1000, 1000), jnp.float32))
    np.testing.assert_allclose(w32, w_ref, rtol=float(jnp.finfo(dtype).eps), atol=1e-7)


def test_orthogonal_is_orthogonal():
    w = js.orthogonal(gain=2.0)(jax.random.key(7), (64, 32))
    np.testing.assert_allclose(w.T @ w, 4.0 * np.eye(32), atol=1e-4)
    w = js.orthogonal()(jax.random.key(7), (32, 64))
    np.testing.assert_allclose(w @ w.T, np.eye(32), atol=1e-5)


def test_default_dtype_argument_and_call_dtype():
    init = js.he_normal(dtype=jnp.bfloat16)
    assert init(jax.random.key(0), (4, 4)).dtype == jnp.bfloat16
    assert init(jax.random.key(0), (4, 4), jnp.float32).dtype == jnp.float32


def test_vmap_over_keys_equals_loop():
    init = js.xavier_normal()
    keys = jax.random.split(jax.random.key(8), 5)
    batched = jax.vmap(lambda k: init(k, (8, 6)))(keys)
    for i, k in enumerate(keys):
        np.testing.assert_array_equal(batched[i], init(k, (8, 6)))


def test_jittable_with_static_shape():
    init = js.he_uniform()
    f = jax.jit(lambda k: init(k, (16, 16)))
    np.testing.assert_array_equal(f(jax.random.key(9)), init(jax.random.key(9), (16, 16)))


def test_aliases_are_the_same_functions():
    assert js.glorot_uniform is js.xavier_uniform
    assert js.glorot_normal is js.xavier_normal
    assert js.kaiming_normal is js.he_normal
    assert js.kaiming_uniform is js.he_uniform


def test_bias_initializers_take_any_shape():
    assert float(jnp.sum(jnp.abs(js.zeros(jax.random.key(0), (7,))))) == 0.0
    np.testing.assert_array_equal(js.constant(0.5)(None, (3,)), np.full(3, 0.5, np.float32))
    b = js.normal(0.3)(jax.random.key(1), (200_000,))
    var, se = _var_se(b)
    assert abs(var - 0.09) < NUM_SE * se


@pytest.mark.parametrize(
    "activation,param,expected",
    [
        ("linear", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5 / 3),
        ("relu", None, math.sqrt(2)),
        ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain_matches_pytorch(activation, param, expected):
    assert js.calculate_gain(activation, param) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: js.xavier_normal(gain=0.0), "gain must be a positive finite number, got 0.0"),
        (lambda: js.xavier_uniform(gain=-1.0), "gain.*-1.0"),
        (lambda: js.orthogonal(gain=float("nan")), "gain.*nan"),
        (lambda: js.he_normal(mode="fan_max"), "unknown mode 'fan_max'; valid: fan_in"),
        (lambda: js.variance_scaling(1.0, "fan_in", "cauchy"), "unknown distribution 'cauchy'"),
        (lambda: js.variance_scaling(0.0, "fan_in", "normal"), "scale.*0.0"),
        (lambda: js.he_normal(negative_slope=float("inf")), "negative_slope.*inf"),
        (lambda: js.calculate_gain("swish"), "no gain for activation 'swish'; valid: linear"),
        (lambda: js.calculate_gain("tanh", 0.1), "takes no param"),
        (
            lambda: js.get_initializer("xavier"),
            "unknown initializer 'xavier'; valid: xavier_uniform",
        ),
    ],
)
def test_construction_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "init", [js.he_normal(), js.xavier_uniform(), js.orthogonal(), js.torch_linear()]
)
def test_call_errors(init):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        init(key, (5,))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        init(key, ())
    with pytest.raises(ValueError, match="floating dtype, got int32; valid: float32"):
        init(key, (4, 4), jnp.int32)
    # Negative and zero dimensions: a clear error, not an MLIRError from inside jax.
    with pytest.raises(ValueError, match=r"shape must be a tuple of integers >= 1, got \(-1, 4\)"):
        init(key, (-1, 4))
    with pytest.raises(ValueError, match=r"got \(4, 0\) \(entry 1 is 0\)"):
        init(key, (4, 0))


# Every (in_axis, out_axis) pair on a 3-D shape, and the ones that are valid.
AXES_3D = range(-4, 4)


@pytest.mark.parametrize("in_axis", AXES_3D)
@pytest.mark.parametrize("out_axis", AXES_3D)
def test_variance_scaling_accepts_exactly_the_valid_axes(in_axis, out_axis):
    shape = (2, 3, 5)
    init = lambda: js.variance_scaling(1.0, "fan_in", "normal", in_axis, out_axis)(
        jax.random.key(0), shape
    )
    in_range = all(-3 <= a < 3 for a in (in_axis, out_axis))
    if in_axis == out_axis:  # rejected at construction, whatever the shape
        with pytest.raises(ValueError, match="name the same axis"):
            js.variance_scaling(1.0, "fan_in", "normal", in_axis, out_axis)
    elif in_range and in_axis % 3 != out_axis % 3:
        w = init()
        assert w.shape == shape
        # fan_in = shape[in] times the receptive field (the remaining axis).
        other = 3 - in_axis % 3 - out_axis % 3
        fan_in, _ = js.compute_fans(shape, in_axis, out_axis)
        assert fan_in == shape[in_axis] * shape[other]
    elif not in_range:
        with pytest.raises(ValueError, match=r"is out of range for shape \(2, 3, 5\)"):
            init()
    else:  # the same axis after normalization, e.g. 0 and -3
        with pytest.raises(ValueError, match=r"both name axis .* must be distinct"):
            init()


def test_in_axis_equal_out_axis_is_rejected_at_construction():
    with pytest.raises(ValueError, match="out_axis=-2 and in_axis=-2 name the same axis"):
        js.xavier_normal(in_axis=-2, out_axis=-2)
    with pytest.raises(ValueError, match=r"batch_axis=\(0, 1\) and in_axis=1"):
        js.variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=2, batch_axis=(0, 1))
    with pytest.raises(ValueError, match=r"in_axis must be an int or a sequence of ints, got 1\.0"):
        js.he_normal(in_axis=1.0)


def test_in_axis_5_on_a_matrix_no_longer_wraps_around():
    # The issue: 5 % 2 == 1 made in_axis=5 silently the output axis's neighbour.
    with pytest.raises(ValueError, match=r"in_axis=5 is out of range for shape \(4, 6\)"):
        js.variance_scaling(1.0, "fan_in", "normal", in_axis=5)(jax.random.key(0), (4, 6))
    with pytest.raises(ValueError, match=r"in_axis=5 is out of range"):
        js.compute_fans((4, 6), in_axis=5)


@pytest.mark.parametrize(
    "value",
    [np.float32(2.0), np.float64(2.0), np.int64(2), jnp.array(2.0), jnp.array(2.0, jnp.bfloat16)],
    ids=["np.float32", "np.float64", "np.int64", "jax", "jax-bf16"],
)
def test_numeric_arguments_accept_numpy_and_concrete_jax_scalars(value):
    w = js.xavier_normal(gain=value)(jax.random.key(0), (N_IN, N_OUT))
    var, se = _var_se(w)
    assert abs(var - 4 * 2 / (N_IN + N_OUT)) < NUM_SE * se
