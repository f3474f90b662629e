"""Input validators shared by the whole package: one rule per kind of argument.

Every public function checks its arguments here, where they enter, so that a bad
value fails with one message that names the parameter, the value and what is
valid, whichever function it was given to. The same kinds of values are accepted
everywhere:

* a number is a Python ``int``/``float``, a numpy scalar (``np.float32(0.1)``), or
  a concrete 0-d numpy or jax array of a real dtype (``jnp.array(0.1)``); never a
  ``bool``, a string, a complex number or an array with dimensions;
* an integer is a Python ``int``, a numpy integer, or a concrete 0-d integer array;
  never a ``bool`` or a float, even a whole one (``2.0``).

Traced values (inside ``jit``/``vmap``/``grad``) have no value to check. A
validator rejects them unless called with ``allow_traced=True``; then it checks
what is known at trace time (a scalar shape, a real dtype) and returns the tracer
unchanged, and the caller documents what an invalid traced value does.

Every validator raises ``ValueError`` (the package's one exception type for bad
arguments) and returns the value converted to a canonical Python type.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "axes",
    "finite_number",
    "float_dtype",
    "integer",
    "is_traced",
    "nonnegative_number",
    "number",
    "one_of",
    "positive_int",
    "positive_number",
    "probability",
    "shape",
]

T = TypeVar("T")

_FLOAT_DTYPES = "float32, float64, bfloat16, float16"


def is_traced(value: Any) -> bool:
    """Whether ``value`` is a jax tracer (an abstract value inside a transformation)."""
    return isinstance(value, jax.core.Tracer)


def _is_real_dtype(dtype: Any) -> bool:
    return dtype != np.bool_ and (
        jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
    )


def _describe_bound(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    if lo == -math.inf and hi == math.inf:
        return ""
    if hi == math.inf:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if lo == -math.inf:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def number(
    name: str,
    value: Any,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_inf: bool = False,
    allow_traced: bool = False,
    what: str | None = None,
) -> Any:
    """A real scalar in a range, as a Python float.

    Args:
      name: the parameter's name, for the message.
      value: the value to check (see the module doc for what counts as a number).
      lo: the lower bound.
      hi: the upper bound.
      lo_open: exclude ``lo`` itself.
      hi_open: exclude ``hi`` itself.
      allow_inf: accept ``+inf`` (when ``hi`` is ``inf``); NaN is never accepted.
      allow_traced: return a traced scalar unchanged instead of rejecting it.
      what: the description of a valid value in the message; by default
        ``"a finite number"`` and the bounds.

    Returns:
      ``float(value)``, or the tracer itself when traced and allowed.

    Raises:
      ValueError: naming ``name``, ``value`` and the valid range.
    """
    if what is None:
        finite = "number" if allow_inf else "finite number"
        what = f"a {finite}{_describe_bound(lo, hi, lo_open, hi_open)}"
        if allow_inf:
            what += " or inf"

    def fail() -> ValueError:
        return ValueError(f"{name} must be {what}, got {value!r}")

    if is_traced(value):
        if not allow_traced:
            raise ValueError(
                f"{name} must be {what}, known when the function is called (it is checked "
                f"and used eagerly), got a traced value {value}"
            )
        if jnp.ndim(value) != 0 or not _is_real_dtype(jnp.result_type(value)):
            raise fail()
        return value
    if isinstance(value, (bool, np.bool_)):
        raise fail()
    if isinstance(value, (int, float)):
        scalar = value
    elif (
        isinstance(value, (np.generic, np.ndarray, jax.Array))
        and np.ndim(value) == 0
        and _is_real_dtype(value.dtype)
    ):  # numpy scalars (bfloat16 ones too) and concrete 0-d arrays
        scalar = value.item()
    else:
        raise fail()
    try:
        x = float(scalar)
    except OverflowError:  # a Python int beyond the float range
        raise fail() from None
    if math.isnan(x) or (math.isinf(x) and not (allow_inf and x == math.inf == hi)):
        raise fail()
    too_low = x <= lo if lo_open else x < lo
    too_high = x >= hi if hi_open else x > hi
    if too_low or too_high:
        raise fail()
    return x


def finite_number(name: str, value: Any, *, allow_traced: bool = False) -> Any:
    """Any finite real scalar: :func:`number` without bounds."""
    return number(name, value, allow_traced=allow_traced)


def positive_number(
    name: str, value: Any, *, allow_inf: bool = False, allow_traced: bool = False
) -> Any:
    """A finite real scalar ``> 0`` (or ``+inf`` with ``allow_inf``)."""
    what = "a positive number or inf" if allow_inf else "a positive finite number"
    return number(
        name,
        value,
        lo=0.0,
        lo_open=True,
        allow_inf=allow_inf,
        allow_traced=allow_traced,
        what=what,
    )


def nonnegative_number(name: str, value: Any, *, allow_traced: bool = False) -> Any:
    """A finite real scalar ``>= 0``."""
    return number(name, value, lo=0.0, allow_traced=allow_traced)


def probability(
    name: str,
    value: Any,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_traced: bool = False,
) -> Any:
    """A real scalar in ``[0, 1]`` (either end excluded on request)."""
    return number(
        name, value, lo=0.0, hi=1.0, lo_open=lo_open, hi_open=hi_open, allow_traced=allow_traced
    )


def integer(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An integer in ``[minimum, maximum]``, as a Python int.

    Args:
      name: the parameter's name, for the message.
      value: a Python int, numpy integer or concrete 0-d integer array; not a bool,
        not a float (even a whole one) and not a traced value.
      minimum: the smallest valid value (none if None).
      maximum: the largest valid value (none if None).

    Returns:
      ``int(value)``.

    Raises:
      ValueError: naming ``name``, ``value`` and the valid range.
    """
    if minimum is not None and maximum is not None:
        what = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
        what = f"an integer >= {minimum}"
    elif maximum is not None:
        what = f"an integer <= {maximum}"
    else:
        what = "an integer"
    return _integer(name, value, minimum, maximum, what)


def positive_int(name: str, value: Any) -> int:
    """An integer ``>= 1``, as a Python int (see :func:`integer`)."""
    return _integer(name, value, 1, None, "a positive integer")


def _integer(name: str, value: Any, minimum: int | None, maximum: int | None, what: str) -> int:
    def fail(extra: str = "") -> ValueError:
        return ValueError(f"{name} must be {what}{extra}, got {value!r}")

    if is_traced(value):
        raise fail(" known when the function is called (it is static)")
    if isinstance(value, (bool, np.bool_)):
        raise fail()
    if isinstance(value, (np.ndarray, jax.Array)) and (
        value.ndim != 0 or not jnp.issubdtype(value.dtype, jnp.integer)
    ):
        raise fail()
    try:
        as_int = operator.index(value)
    except TypeError:
        raise fail() from None
    if (minimum is not None and as_int < minimum) or (maximum is not None and as_int > maximum):
        raise fail()
    return as_int


def one_of(name: str, value: Any, choices: Collection[T]) -> T:
    """``value`` if it equals one of ``choices``; the message lists them.

    A bool matches only a bool (``True in (1, 2)`` holds in Python, but ``True`` is
    not a valid ``1``).

    Raises:
      ValueError: ``unknown <name> <value>; valid: <choices>``.
    """
    for choice in choices:
        if _same(value, choice):
            return choice
    raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(str(c) for c in choices)}")


def _same(value: Any, choice: Any) -> bool:
    bools = (bool, np.bool_)
    if isinstance(value, bools) or isinstance(choice, bools):
        return (
            isinstance(value, bools) and isinstance(choice, bools) and bool(value) is bool(choice)
        )
    try:
        return bool(value == choice)
    except (TypeError, ValueError):  # an array, whose truth value is ambiguous
        return False


def float_dtype(name: str, dtype: Any, default: Any = jnp.float32) -> np.dtype:
    """A floating dtype (``None`` gives ``default``), canonicalized for the current x64 mode.

    Raises:
      ValueError: for a non-floating or unknown dtype.
    """
    try:
        resolved = jnp.dtype(default if dtype is None else dtype)
    except TypeError:
        raise ValueError(
            f"{name} must be a floating dtype ({_FLOAT_DTYPES}), got {dtype!r}"
        ) from None
    if not jnp.issubdtype(resolved, jnp.floating):
        raise ValueError(f"{name} must be a floating dtype, got {resolved}; valid: {_FLOAT_DTYPES}")
    return np.dtype(jax.dtypes.canonicalize_dtype(resolved))


def shape(name: str, value: Any, *, min_ndim: int = 0, min_dim: int = 0) -> tuple[int, ...]:
    """A shape: a sequence of integers ``>= min_dim``, at least ``min_ndim`` of them.

    Args:
      name: the parameter's name, for the message.
      value: a tuple, list or 1-D integer array.
      min_ndim: the fewest dimensions.
      min_dim: the smallest valid size of a dimension (0 allows empty arrays; 1
        where every axis must hold something, e.g. a weight's fans).

    Returns:
      The shape as a tuple of Python ints.

    Raises:
      ValueError: naming the shape and the first bad entry.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a tuple of integers, got {value!r}")
    dims = tuple(value)
    out = []
    for i, d in enumerate(dims):
        try:
            out.append(integer(f"{name}[{i}]", d, minimum=min_dim))
        except ValueError:
            raise ValueError(
                f"{name} must be a tuple of integers >= {min_dim}, got {value!r} "
                f"(entry {i} is {d!r})"
            ) from None
    if len(out) < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got {value!r} ({len(out)})"
        )
    return tuple(out)


def axes(
    name: str, axis: int | Sequence[int], ndim: int, *, shape: Sequence[int] | None = None
) -> tuple[int, ...]:
    """Axes of an ``ndim``-D array, normalized to ``[0, ndim)``.

    Args:
      name: the parameter's name, for the message.
      axis: an int or a sequence of ints, each in ``[-ndim, ndim)``, no repeats.
      ndim: the array's number of dimensions.
      shape: the array's shape, only for the message.

    Returns:
      The axes as non-negative Python ints, in the given order.

    Raises:
      ValueError: for an axis out of range, a repeated axis or a non-integer.
    """
    of = f"shape {tuple(shape)}" if shape is not None else f"an array with {ndim} dimensions"
    valid = f"valid: integers in [{-ndim}, {ndim - 1}]"
    raw = (axis,) if not isinstance(axis, (Sequence, np.ndarray)) else tuple(axis)
    out = []
    for a in raw:
        try:
            a = integer(name, a)
        except ValueError:
            raise ValueError(f"{name}={axis!r} must be an axis or axes of {of}; {valid}") from None
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}={axis!r} is out of range for {of}; {valid}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={axis!r} repeats an axis of {of}")
    return tuple(out)
