"""Type aliases shared by the public signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
DTypeLike = jax.typing.DTypeLike
PRNGKey = jax.Array
Shape = tuple[int, ...]
Params = Any
"""A pytree of arrays; for the MLP, the dict built by :func:`jaxstab.init_mlp`."""
ActivationLike = str | Callable[[jax.Array], jax.Array]
"""An activation name from :data:`jaxstab.ACTIVATIONS` or an elementwise callable."""
