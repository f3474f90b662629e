"""Activation functions by name, as hashable, jit-friendly callables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstab import _checks
from jaxstab._typing import ActivationLike, Array

# name -> (function of (x, **params), default params). SELU's constants are
# Klambauer et al. 2017's; jax.nn.selu uses the same ones.
_REGISTRY: Mapping[str, tuple[Callable[..., Array], Mapping[str, Any]]] = {
    "sigmoid": (jax.nn.sigmoid, {}),
    "tanh": (jnp.tanh, {}),
    "relu": (jax.nn.relu, {}),
    "leaky_relu": (jax.nn.leaky_relu, {"negative_slope": 0.01}),
    "elu": (jax.nn.elu, {"alpha": 1.0}),
    "selu": (jax.nn.selu, {}),
    # Exact (erf) GELU by default, as in Hendrycks & Gimpel 2016 and PyTorch.
    "gelu": (jax.nn.gelu, {"approximate": False}),
    "silu": (jax.nn.silu, {}),
    "linear": (lambda x: x, {}),
}
_ALIASES = {"swish": "silu", "identity": "linear"}

ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)
"""The registered activation names (aliases: ``swish`` for ``silu``)."""


@dataclasses.dataclass(frozen=True)
class Activation:
    """A named elementwise activation with its parameters.

    Instances compare and hash by value, so two ``get_activation("leaky_relu",
    negative_slope=0.1)`` calls give equal objects and a function jitted with the
    activation as a static argument traces once.

    Attributes:
      name: the registered name.
      params: the parameters as sorted ``(name, value)`` pairs.
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def __call__(self, x: Array) -> Array:
        fn, _ = _REGISTRY[self.name]
        return fn(x, **dict(self.params))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"{self.name}({args})" if args else self.name


def get_activation(activation: ActivationLike, **params: Any) -> Callable[[Array], Array]:
    """Returns the activation function for a name, or a callable unchanged.

    Args:
      activation: one of :data:`ACTIVATIONS` (or the alias ``swish``), or an
        elementwise callable, which is returned as it is.
      **params: the activation's parameters: ``negative_slope`` for
        ``leaky_relu`` (default 0.01), ``alpha`` for ``elu`` (default 1.0),
        ``approximate`` for ``gelu`` (default False, the exact erf form).

    Returns:
      A callable ``phi(x)`` applied elementwise; named ones are
      :class:`Activation` instances, equal when name and parameters are equal.

    Raises:
      ValueError: for an unknown name, an unknown parameter, a numeric parameter
        that is not a finite number, or a non-bool ``approximate``.
    """
    if callable(activation):
        if params:
            raise ValueError(
                f"parameters {sorted(params)} can only be given with an activation name, "
                f"not with the callable {activation!r}"
            )
        return activation
    if not isinstance(activation, str):
        raise ValueError(
            f"activation must be a name or a callable, got {activation!r}; "
            f"valid names: {', '.join(ACTIVATIONS)}"
        )
    name = _ALIASES.get(activation, activation)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown activation {activation!r}; valid names: {', '.join(ACTIVATIONS)}"
            f" (aliases: {', '.join(_ALIASES)})"
        )
    _, defaults = _REGISTRY[name]
    unknown = set(params) - set(defaults)
    if unknown:
        valid = ", ".join(defaults) or "none"
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)} for activation {name!r}; valid: {valid}"
        )
    merged = {**defaults, **params}
    for key, value in merged.items():
        if isinstance(defaults[key], bool):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} parameter {key} must be True or False, got {value!r}")
            merged[key] = bool(value)
        else:
            merged[key] = _checks.finite_number(f"{name} parameter {key}", value)
    return Activation(name, tuple(sorted(merged.items())))
