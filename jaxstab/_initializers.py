"""Weight initializers: one `variance_scaling` core and the presets built on it.

Every initializer follows jax's ``jax.nn.initializers.Initializer`` protocol,
``init(key, shape, dtype=None) -> Array``, so it is a drop-in ``kernel_init`` for
flax and works with equinox. The default weight layout is ``(fan_in, fan_out)``
(``x @ w``); pass ``in_axis``/``out_axis`` for other layouts (equinox's Linear
stores ``(out, in)``: ``in_axis=-1, out_axis=-2``).

Unlike jax's own presets, the ``*_normal`` presets sample a plain Gaussian, as
the papers and PyTorch do; the truncated form is ``variance_scaling(...,
"truncated_normal")``. Low-precision dtypes are sampled in float32 and cast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstab import _checks
from jaxstab._typing import Array, DTypeLike, PRNGKey

Initializer = jax.nn.initializers.Initializer

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

# Standard deviation of a unit normal truncated to [-2, 2]; dividing by it makes
# the truncated sample's variance equal the requested one (as jax does).
_TRUNCATED_STDDEV = 0.87962566103423978


def _resolve_dtype(dtype: DTypeLike | None, default: DTypeLike | None) -> np.dtype:
    return _checks.float_dtype("dtype", dtype if dtype is not None else default)


def _sampling_dtype(dtype: np.dtype) -> np.dtype:
    # bfloat16/float16 random bits give biased samples (jax's bfloat16 truncated
    # normal has a mean of about -0.018 sigma): sample in float32, then cast.
    return np.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else dtype


def _sharding(out_sharding: Any) -> dict[str, Any]:
    # Passed on only when given, so jax versions without the argument still work.
    return {} if out_sharding is None else {"out_sharding": out_sharding}


def _check_axis_args(**axes: int | Sequence[int]) -> None:
    """Construction-time checks of axis arguments: integers, and no axis given twice.

    Their range depends on the shape, so it is checked at the call (:func:`compute_fans`).
    """
    seen: dict[int, str] = {}
    for name, axis in axes.items():
        values = (axis,) if not isinstance(axis, (Sequence, np.ndarray)) else tuple(axis)
        for a in values:
            try:
                a = _checks.integer(name, a)
            except ValueError:
                raise ValueError(
                    f"{name} must be an int or a sequence of ints, got {axis!r}"
                ) from None
            if a in seen:
                raise ValueError(
                    f"{name}={axis!r} and {seen[a]}={axes[seen[a]]!r} name the same axis {a}; "
                    "the input, output and batch axes must be distinct"
                )
            seen[a] = name


def compute_fans(
    shape: Sequence[int],
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
) -> tuple[float, float]:
    """Returns ``(fan_in, fan_out)`` of a weight shape, as jax computes them.

    Axes that are neither input, output nor batch axes form the receptive field
    (e.g. a convolution's spatial axes) and multiply both fans.

    Args:
      shape: the weight shape, at least 2-D, every dimension ``>= 1``.
      in_axis: the input axis or axes, in ``[-ndim, ndim)``.
      out_axis: the output axis or axes.
      batch_axis: axes excluded from both fans (e.g. a stacked depth axis).

    Returns:
      ``(fan_in, fan_out)`` as floats.

    Raises:
      ValueError: for a 0-D or 1-D shape, a dimension ``< 1``, an axis out of range,
        or an axis that is in two of ``in_axis``, ``out_axis``, ``batch_axis``.

    Example:
      >>> compute_fans((3, 3, 16, 32))  # a 3x3 HWIO convolution kernel
      (144.0, 288.0)
    """
    if isinstance(shape, (Sequence, np.ndarray)) and len(shape) < 2:
        raise ValueError(
            f"weight initializers need a shape with at least 2 dimensions "
            f"(fan_in, fan_out), got shape {tuple(shape)}; use zeros/constant/normal for biases"
        )
    shape = _checks.shape("shape", shape, min_dim=1)
    ndim = len(shape)
    named = {"in_axis": in_axis, "out_axis": out_axis, "batch_axis": batch_axis}
    ins, outs, batch = (_checks.axes(k, a, ndim, shape=shape) for k, a in named.items())
    owner: dict[int, str] = {}
    for name, normalized in zip(named, (ins, outs, batch)):
        for a in normalized:
            if a in owner:
                raise ValueError(
                    f"{name}={named[name]!r} and {owner[a]}={named[owner[a]]!r} both name axis "
                    f"{a} of shape {shape}; the input, output and batch axes must be distinct"
                )
            owner[a] = name
    in_size = math.prod(shape[a] for a in ins)
    out_size = math.prod(shape[a] for a in outs)
    batch_size = math.prod(shape[a] for a in batch)
    receptive = math.prod(shape) // (in_size * out_size * batch_size)
    return float(in_size * receptive), float(out_size * receptive)


def variance_scaling(
    scale: float,
    mode: str,
    distribution: str,
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
) -> Initializer:
    """Samples weights with variance ``scale / n``, ``n`` given by ``mode``.

    ``n`` is ``fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2``. The
    distribution is a Gaussian, a Gaussian truncated at two standard deviations
    and rescaled so its variance is exact, or ``U(-sqrt(3 scale / n), +sqrt(3 scale / n))``.

    Args:
      scale: the variance multiplier (a gain squared), positive.
      mode: one of ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``.
      distribution: one of ``"normal"``, ``"truncated_normal"``, ``"uniform"``.
      in_axis: input axis or axes of the weight shape.
      out_axis: output axis or axes.
      batch_axis: axes that count in neither fan.
      dtype: default dtype when the call gives none (float32 otherwise).

    Returns:
      An initializer ``init(key, shape, dtype=None) -> Array``.

    Raises:
      ValueError: at construction for a non-positive scale, an unknown mode or
        distribution, a non-integer axis, an axis given twice (e.g. ``in_axis ==
        out_axis``) or a non-floating dtype; at the call for a non-floating dtype, a
        0-D/1-D shape, a dimension ``< 1``, or an axis out of range for the shape or
        one that two of ``in_axis``/``out_axis``/``batch_axis`` share after
        normalization (``in_axis=0, out_axis=-2`` on a 2-D shape).

    References:
      Glorot & Bengio 2010, "Understanding the difficulty of training deep
      feedforward neural networks"; He et al. 2015, arXiv 1502.01852.
    """
    scale = _checks.positive_number("scale", scale)
    mode = _checks.one_of("mode", mode, MODES)
    distribution = _checks.one_of("distribution", distribution, DISTRIBUTIONS)
    _check_axis_args(in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis)
    if dtype is not None:
        _checks.float_dtype("dtype", dtype)
    default_dtype = dtype

    def init(
        key: PRNGKey,
        shape: Sequence[int],
        dtype: DTypeLike | None = None,
        out_sharding: Any = None,
    ) -> Array:
        out_dtype = _resolve_dtype(dtype, default_dtype)
        fan_in, fan_out = compute_fans(shape, in_axis, out_axis, batch_axis)
        shape = tuple(int(d) for d in shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(n, 1.0)
        sample_dtype = _sampling_dtype(out_dtype)
        if distribution == "normal":
            w = math.sqrt(variance) * jax.random.normal(
                key, shape, sample_dtype, **_sharding(out_sharding)
            )
        elif distribution == "truncated_normal":
            stddev = math.sqrt(variance) / _TRUNCATED_STDDEV
            w = stddev * jax.random.truncated_normal(
                key, -2.0, 2.0, shape, sample_dtype, **_sharding(out_sharding)
            )
        else:
            limit = math.sqrt(3.0 * variance)
            w = jax.random.uniform(
                key, shape, sample_dtype, -limit, limit, **_sharding(out_sharding)
            )
        return w.astype(out_dtype)

    return init


def xavier_uniform(
    gain: float = 1.0, in_axis: int = -2, out_axis: int = -1, dtype: DTypeLike | None = None
) -> Initializer:
    """Xavier/Glorot uniform: ``U(+-gain sqrt(6 / (n_in + n_out)))``, Var = gain² 2/(n_in+n_out).

    References:
      Glorot & Bengio 2010, AISTATS.
    """
    gain = _checks.positive_number("gain", gain)
    return variance_scaling(gain**2, "fan_avg", "uniform", in_axis, out_axis, dtype=dtype)


def xavier_normal(
    gain: float = 1.0, in_axis: int = -2, out_axis: int = -1, dtype: DTypeLike | None = None
) -> Initializer:
    """Xavier/Glorot normal: ``N(0, gain² 2/(n_in + n_out))`` (a plain Gaussian).

    References:
      Glorot & Bengio 2010, AISTATS.
    """
    gain = _checks.positive_number("gain", gain)
    return variance_scaling(gain**2, "fan_avg", "normal", in_axis, out_axis, dtype=dtype)


def _he_scale(negative_slope: float) -> float:
    a = _checks.finite_number("negative_slope", negative_slope)
    return 2.0 / (1.0 + a * a)


def he_normal(
    negative_slope: float = 0.0,
    mode: str = "fan_in",
    in_axis: int = -2,
    out_axis: int = -1,
    dtype: DTypeLike | None = None,
) -> Initializer:
    """He/Kaiming normal: ``N(0, 2 / ((1 + a²) n))`` with ``n`` the fan of ``mode``.

    Args:
      negative_slope: ``a``, the leaky ReLU slope (0 for ReLU).
      mode: ``"fan_in"`` preserves forward variance, ``"fan_out"`` backward.

    References:
      He et al. 2015, "Delving Deep into Rectifiers", arXiv 1502.01852.
    """
    return variance_scaling(
        _he_scale(negative_slope), mode, "normal", in_axis, out_axis, dtype=dtype
    )


def he_uniform(
    negative_slope: float = 0.0,
    mode: str = "fan_in",
    in_axis: int = -2,
    out_axis: int = -1,
    dtype: DTypeLike | None = None,
) -> Initializer:
    """He/Kaiming uniform: ``U(+-sqrt(6 / ((1 + a²) n)))``, the variance of :func:`he_normal`.

    References:
      He et al. 2015, arXiv 1502.01852.
    """
    return variance_scaling(
        _he_scale(negative_slope), mode, "uniform", in_axis, out_axis, dtype=dtype
    )


def lecun_normal(
    in_axis: int = -2, out_axis: int = -1, dtype: DTypeLike | None = None
) -> Initializer:
    """LeCun normal: ``N(0, 1/n_in)``; with SELU it gives self-normalizing nets.

    References:
      LeCun et al. 1998, "Efficient BackProp"; Klambauer et al. 2017, arXiv 1706.02515.
    """
    return variance_scaling(1.0, "fan_in", "normal", in_axis, out_axis, dtype=dtype)


def lecun_uniform(
    in_axis: int = -2, out_axis: int = -1, dtype: DTypeLike | None = None
) -> Initializer:
    """LeCun uniform: ``U(+-sqrt(3/n_in))``, variance ``1/n_in``."""
    return variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis, dtype=dtype)


def torch_linear(
    in_axis: int = -2, out_axis: int = -1, dtype: DTypeLike | None = None
) -> Initializer:
    """PyTorch's default ``nn.Linear`` weight init: ``U(+-1/sqrt(n_in))``.

    PyTorch writes it as ``kaiming_uniform_(w, a=sqrt(5))``: gain² = 2/(1+5) = 1/3,
    so it is ``variance_scaling(1/3, "fan_in", "uniform")``, variance ``1/(3 n_in)``.
    It is also Glorot & Bengio's "standard" baseline.
    """
    return variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis, out_axis, dtype=dtype)


def orthogonal(
    gain: float = 1.0, column_axis: int = -1, dtype: DTypeLike | None = None
) -> Initializer:
    """A (semi-)orthogonal matrix times ``gain``, from the QR of a Gaussian matrix.

    Wraps ``jax.nn.initializers.orthogonal``, sampling in float32 (QR needs it)
    for low-precision dtypes.

    References:
      Saxe, McClelland & Ganguli 2014, arXiv 1312.6120.
    """
    gain = _checks.positive_number("gain", gain)
    column_axis = _checks.integer("column_axis", column_axis)
    if dtype is not None:
        _checks.float_dtype("dtype", dtype)
    default_dtype = dtype

    def init(
        key: PRNGKey,
        shape: Sequence[int],
        dtype: DTypeLike | None = None,
        out_sharding: Any = None,
    ) -> Array:
        out_dtype = _resolve_dtype(dtype, default_dtype)
        compute_fans(shape)  # validates the rank and the dimensions
        shape = tuple(int(d) for d in shape)
        (axis,) = _checks.axes("column_axis", column_axis, len(shape), shape=shape)
        base = jax.nn.initializers.orthogonal(gain, axis)
        w = base(key, shape, _sampling_dtype(out_dtype), **_sharding(out_sharding))
        return w.astype(out_dtype)

    return init


def constant(value: float, dtype: DTypeLike | None = None) -> Initializer:
    """Fills any shape (biases included) with ``value``."""
    value = _checks.finite_number("value", value)
    if dtype is not None:
        _checks.float_dtype("dtype", dtype)
    default_dtype = dtype

    def init(
        key: PRNGKey,
        shape: Sequence[int],
        dtype: DTypeLike | None = None,
        out_sharding: Any = None,
    ) -> Array:
        del key
        shape = _checks.shape("shape", shape)
        out = jnp.full(shape, value, _resolve_dtype(dtype, default_dtype))
        return out if out_sharding is None else jax.sharding.reshard(out, out_sharding)

    return init


zeros: Initializer = constant(0.0)
"""Zeros of any shape (the default bias init)."""


def normal(stddev: float, dtype: DTypeLike | None = None) -> Initializer:
    """``N(0, stddev²)`` for any shape, e.g. mean-field biases with ``stddev = sigma_b``.

    ``stddev = 0`` gives zeros.
    """
    stddev = _checks.nonnegative_number("stddev", stddev)
    if dtype is not None:
        _checks.float_dtype("dtype", dtype)
    default_dtype = dtype

    def init(
        key: PRNGKey,
        shape: Sequence[int],
        dtype: DTypeLike | None = None,
        out_sharding: Any = None,
    ) -> Array:
        out_dtype = _resolve_dtype(dtype, default_dtype)
        sample = jax.random.normal(
            key,
            _checks.shape("shape", shape),
            _sampling_dtype(out_dtype),
            **_sharding(out_sharding),
        )
        return (stddev * sample).astype(out_dtype)

    return init


glorot_uniform = xavier_uniform
glorot_normal = xavier_normal
kaiming_normal = he_normal
kaiming_uniform = he_uniform


_GAINS = {
    "linear": 1.0,
    "identity": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
    "selu": 3.0 / 4.0,
}
GAIN_NAMES = (*_GAINS, "leaky_relu")


def calculate_gain(activation: str, param: float | None = None) -> float:
    """PyTorch's recommended gain for an activation (``torch.nn.init.calculate_gain``).

    Args:
      activation: ``linear``, ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu`` or ``selu``.
      param: the leaky ReLU slope (default 0.01); not allowed for the others.

    Returns:
      1 for linear and sigmoid, 5/3 for tanh, sqrt(2) for ReLU,
      sqrt(2 / (1 + slope²)) for leaky ReLU, 3/4 for SELU.
    """
    if activation == "leaky_relu":
        slope = 0.01 if param is None else _checks.finite_number("param", param)
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if not isinstance(activation, str) or activation not in _GAINS:
        raise ValueError(f"no gain for activation {activation!r}; valid: {', '.join(GAIN_NAMES)}")
    if param is not None:
        raise ValueError(f"activation {activation!r} takes no param, got {param!r}")
    return _GAINS[activation]


INITIALIZERS: dict[str, Callable[..., Initializer]] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "orthogonal": orthogonal,
    "torch_linear": torch_linear,
}
"""Weight-initializer factories by name (each called with no argument gives the preset)."""


def get_initializer(name: str) -> Initializer:
    """Returns the preset weight initializer called ``name`` (see :data:`INITIALIZERS`)."""
    return INITIALIZERS[_checks.one_of("initializer", name, INITIALIZERS)]()
