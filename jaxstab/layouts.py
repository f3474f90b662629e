"""Parameter layouts: which axes of each leaf are fan-in, fan-out, receptive field or stack.

The one place in jaxstab that knows how libraries lay out their parameters.
:func:`jaxstab.reinit`, :func:`jaxstab.clip_by_layer_norm` and
:func:`jaxstab.adaptive_clip` ask it for the :class:`Layout` of every leaf.

Paths are the leaf's keys joined by ``/``: ``params/Dense_0/kernel`` (flax
linen variables), ``l1/kernel`` (an ``nnx.State``; the ``.value`` of an nnx
Variable is not part of the path), ``layers/0/weight`` (an equinox module or
its ``eqx.partition``), ``hidden/0/w`` (jaxstab's MLP).

Built-in layouts (:data:`LAYOUT_NAMES`):

- ``"flax"``: kernels ``(*receptive, in, out)``: a Dense ``(in, out)``, a conv
  ``HWIO``; biases ``(out,)``. Also haiku's ``w``/``b``.
- ``"flax_scan"``: the same with one leading layer axis on every leaf (an
  ``nn.scan`` or ``nnx.vmap`` stack): ``(L, in, out)``, ``(L, out)``.
- ``"equinox"``: weights ``(out, in, *receptive)``: a Linear ``(out, in)``, a
  conv ``OIHW`` (also PyTorch's); biases ``(out,)`` or, for a conv,
  ``(out, 1, ..., 1)``.
- ``"equinox_scan"``: the same with one leading layer axis (a
  ``filter_vmap``-built stack).
- ``"jaxstab"``: :func:`jaxstab.init_mlp`'s dict, in either grouping:
  ``hidden/i/w`` is ``[k, n, m]`` (``k`` stacked layers), ``hidden/i/b`` is
  ``[k, m]``, ``output/w`` is ``[n, m]``, ``output/b`` is ``[m]``.

Inference (``layout=None``) reads the leaf's name and its siblings':

- ``kernel`` and ``w`` are ``(*receptive, in, out)``; ``weight`` is
  ``(out, in, *receptive)``; ``bias`` and ``b`` are biases; a leaf of rank
  <= 1, or named ``scale``/``gamma``/``beta``/``offset``/``mean``/``var``
  (normalization layers), is a vector (one per layer).
- The number of leading layer axes is read from the sibling bias: a flax bias
  ``(L, out)`` beside a kernel ``(L, in, out)`` says one stacked axis. A
  kernel of rank > 2 with no bias is a convolution only when its path says
  ``conv``; otherwise a stack and a convolution both fit and inference asks
  for the layout.
- Anything else is an error that names the path and the valid choices.

State a layout with ``layout=`` as one name for every leaf, or as path rules
``{pattern: name or Layout}`` (see :func:`match_rules`); leaves no rule names
are inferred.

Example:
  >>> import jax.numpy as jnp
  >>> params = {"layers": [{"weight": jnp.zeros((8, 4)), "bias": jnp.zeros(8)}]}
  >>> resolve(params)["layers/0/weight"]
  Layout(kind='kernel', in_axes=(1,), out_axes=(0,), stack_axes=())
  >>> resolve({"w": jnp.zeros((3, 4, 8)), "b": jnp.zeros((3, 8))})["w"].stack_axes
  (0,)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "KINDS",
    "LAYOUT_NAMES",
    "Layout",
    "LayoutSpec",
    "array_leaves",
    "canonical_order",
    "match_rules",
    "path_matches",
    "path_str",
    "resolve",
]

KINDS = ("kernel", "bias", "vector")
LAYOUT_NAMES = ("flax", "flax_scan", "equinox", "equinox_scan", "jaxstab")

_IN_OUT_KERNELS = ("kernel", "w")  # (*receptive, in, out): flax, haiku, jaxstab
_OUT_IN_KERNELS = ("weight",)  # (out, in, *receptive): equinox, PyTorch
_BIASES = ("bias", "b")
_VECTORS = ("scale", "gamma", "beta", "offset", "mean", "var")  # normalization layers


def _as_axes(name: str, value: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    try:
        axes = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}") from None
    if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
    return tuple(int(a) for a in axes)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The role of each axis of one parameter leaf.

    Axes named in no field form the receptive field of a kernel (a conv's
    spatial axes: they multiply both fans) or, for a bias or vector, the rest
    of one layer's entries.

    Attributes:
      kind: ``"kernel"`` (a weight with fans), ``"bias"`` or ``"vector"``
        (any other per-layer array, e.g. a LayerNorm scale).
      in_axes: the fan-in axes of a kernel; empty otherwise.
      out_axes: a kernel's fan-out axes (one unit per entry); a bias's unit axis.
      stack_axes: axes that index stacked layers (a scan over layers): each
        index is a layer of its own, in no fan.

    Example:
      >>> Layout("kernel", in_axes=-1, out_axes=-2).resolve((8, 4))  # equinox Linear
      Layout(kind='kernel', in_axes=(1,), out_axes=(0,), stack_axes=())
    """

    kind: str
    in_axes: tuple[int, ...] = ()
    out_axes: tuple[int, ...] = ()
    stack_axes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown layout kind {self.kind!r}; valid: {', '.join(KINDS)}")
        for field in ("in_axes", "out_axes", "stack_axes"):
            object.__setattr__(self, field, _as_axes(field, getattr(self, field)))
        if self.kind == "kernel" and not (self.in_axes and self.out_axes):
            raise ValueError(
                f"a kernel layout needs in_axes and out_axes, got in_axes={self.in_axes}, "
                f"out_axes={self.out_axes}"
            )
        if self.kind != "kernel" and self.in_axes:
            raise ValueError(f"a {self.kind} layout has no in_axes, got in_axes={self.in_axes}")

    def resolve(self, shape: Sequence[int], path: str = "") -> Layout:
        """This layout checked against ``shape``, with non-negative axes.

        Raises:
          ValueError: for an axis out of range for the rank, or an axis named twice.
        """
        ndim = len(shape)
        where = f" {path!r}" if path else ""
        resolved: dict[str, tuple[int, ...]] = {}
        for field in ("in_axes", "out_axes", "stack_axes"):
            axes = getattr(self, field)
            for a in axes:
                if not -ndim <= a < ndim:
                    raise ValueError(
                        f"{field}={axes} is out of range for the leaf{where} of shape "
                        f"{tuple(shape)} (rank {ndim}); valid axes: {-ndim}..{ndim - 1}"
                    )
            resolved[field] = tuple(a % ndim for a in axes)
        named = [a for axes in resolved.values() for a in axes]
        if len(set(named)) != len(named):
            raise ValueError(
                f"the layout of{where or ' a leaf'} names an axis twice: "
                f"in_axes={resolved['in_axes']}, out_axes={resolved['out_axes']}, "
                f"stack_axes={resolved['stack_axes']}"
            )
        return Layout(self.kind, resolved["in_axes"], resolved["out_axes"], resolved["stack_axes"])

    def layer_axes(self, ndim: int) -> tuple[int, ...]:
        """The axes of one layer: every axis but the stack axes (resolved layouts)."""
        return tuple(a for a in range(ndim) if a not in self.stack_axes)

    def receptive_axes(self, ndim: int) -> tuple[int, ...]:
        """The axes in no field (a kernel's receptive field; resolved layouts)."""
        named = set(self.in_axes) | set(self.out_axes) | set(self.stack_axes)
        return tuple(a for a in range(ndim) if a not in named)

    def unit_axes(self, ndim: int) -> tuple[int, ...]:
        """The axes one unit's norm runs over (resolved layouts).

        A kernel's unit is one output unit of one layer: fan-in and receptive
        axes (``HWI`` of an ``HWIO`` conv, as optax's ``unitwise_norm``). A
        bias or vector is one unit per layer.
        """
        if self.kind == "kernel":
            return tuple(sorted(self.in_axes + self.receptive_axes(ndim)))
        return self.layer_axes(ndim)

    def fans(self, shape: Sequence[int]) -> tuple[int, int]:
        """``(fan_in, fan_out)`` of one layer of a kernel (resolved layouts)."""
        if self.kind != "kernel":
            raise ValueError(f"a {self.kind} has no fans")
        receptive = math.prod(shape[a] for a in self.receptive_axes(len(shape)))
        fan_in = math.prod(shape[a] for a in self.in_axes) * receptive
        return fan_in, math.prod(shape[a] for a in self.out_axes) * receptive


LayoutSpec = str | Layout | Mapping[str, "str | Layout"] | None
"""``None`` (infer), a name from :data:`LAYOUT_NAMES`, one :class:`Layout`, or
path rules ``{pattern: name or Layout}`` (unnamed leaves inferred)."""


def canonical_order(layout: Layout, ndim: int) -> tuple[int, ...]:
    """Permutation to ``(*stack, *receptive, *in, *out)`` for a kernel, ``(*stack, *rest)`` else.

    The kernel order is the one jax's initializers assume (``in_axis=-2,
    out_axis=-1``, the other axes a receptive field) once each layer's in and
    out axes are merged.
    """
    if layout.kind == "kernel":
        return layout.stack_axes + layout.receptive_axes(ndim) + layout.in_axes + layout.out_axes
    return layout.stack_axes + layout.layer_axes(ndim)


# ---------------------------------------------------------------------------
# Paths and rules


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _names(keypath: Sequence[Any]) -> tuple[str, ...]:
    keys = list(keypath)
    # An nnx Variable flattens to its array under the attribute "value".
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    return tuple(_key_name(k) for k in keys)


def path_str(keypath: Sequence[Any]) -> str:
    """A jax key path as ``a/b/0/c`` (a trailing nnx ``.value`` left out)."""
    return "/".join(_names(keypath))


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray)) or (
        hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)
    )


def array_leaves(tree: Any) -> list[tuple[str, Any]]:
    """``(path, leaf)`` for every array leaf of ``tree``, in tree order."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return [(path_str(p), x) for p, x in leaves if _is_array(x)]


def path_matches(pattern: str, path: str) -> bool:
    """Whether a rule ``pattern`` names ``path``.

    A pattern is a glob (``fnmatch``: ``*`` matches any run of characters,
    ``/`` included; ``?`` one character; ``[...]`` a set) matched against the
    whole path or any ``/``-aligned suffix of it, so ``"out/kernel"`` names
    ``params/out/kernel``. A leading ``/`` anchors the pattern at the root.

    Example:
      >>> path_matches("out/kernel", "params/out/kernel"), path_matches("/kernel", "a/kernel")
      (True, False)
    """
    if pattern.startswith("/"):
        return fnmatch.fnmatchcase(path, pattern[1:])
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern) for i in range(len(parts)))


def match_rules(patterns: Sequence[str], paths: Sequence[str], what: str = "rule") -> list[int]:
    """For each path, the index of the last pattern that names it (-1 for none).

    Later rules win, so write general rules first and exceptions after them.

    Raises:
      TypeError: for a pattern that is not a string.
      ValueError: for a pattern that names no path (the message lists the paths).
    """
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"{what} patterns must be strings, got {p!r}")
    chosen = [-1] * len(paths)
    for i, pattern in enumerate(patterns):
        hit = False
        for j, path in enumerate(paths):
            if path_matches(pattern, path):
                chosen[j], hit = i, True
        if not hit:
            shown = ", ".join(paths[:12]) + (", ..." if len(paths) > 12 else "")
            raise ValueError(f"{what} {pattern!r} matches no parameter; the paths are: {shown}")
    return chosen


# ---------------------------------------------------------------------------
# Named layouts and inference


def _kernel_in_out(ndim: int, stack: int) -> Layout:
    return Layout("kernel", (ndim - 2,), (ndim - 1,), tuple(range(stack)))


def _kernel_out_in(ndim: int, stack: int) -> Layout:
    return Layout("kernel", (stack + 1,), (stack,), tuple(range(stack)))


def _per_layer(kind: str, ndim: int, stack: int, unit_axis: int | None = None) -> Layout:
    out = () if kind == "vector" else (stack if unit_axis is None else unit_axis,)
    return Layout(kind, (), out, tuple(range(stack)))


def _named(name: str, path: str, shape: tuple[int, ...]) -> Layout:
    """The layout of a leaf read with the built-in layout ``name``."""
    if name == "jaxstab":
        name = "flax_scan" if path.split("/")[0] == "hidden" else "flax"
    leaf = path.rsplit("/", 1)[-1]
    ndim = len(shape)
    stack = 1 if name.endswith("_scan") else 0
    if ndim < stack:
        raise ValueError(
            f"layout {name!r} puts a layer axis first, but {path!r} is a scalar; "
            f"valid layouts: {', '.join(LAYOUT_NAMES)}"
        )
    if leaf in _BIASES:
        if name.startswith("flax") and ndim != stack + 1:
            raise ValueError(
                f"layout {name!r} expects a bias of rank {stack + 1}, got {path!r} of shape "
                f"{shape}; valid layouts: {', '.join(LAYOUT_NAMES)}"
            )
        return _per_layer("bias", ndim, stack)
    if ndim - stack >= 2:
        return (_kernel_in_out if name.startswith("flax") else _kernel_out_in)(ndim, stack)
    return _per_layer("vector", ndim, stack)


def _ambiguous(path: str, shape: tuple[int, ...], why: str, choices: str) -> ValueError:
    return ValueError(
        f"cannot infer the layout of {path!r} (shape {shape}): {why}; state it, e.g. "
        f"layout={{{path!r}: {choices}}} (valid layouts: {', '.join(LAYOUT_NAMES)}, "
        "or a jaxstab.Layout)"
    )


def _infer_kernel(
    path: str, shape: tuple[int, ...], bias: tuple[int, ...] | None, in_out: bool, is_conv: bool
) -> int:
    """The number of leading layer axes of a kernel, from its sibling bias."""
    ndim = len(shape)
    name, alt = (
        ("'flax'", "'flax_scan' or 'flax'")
        if in_out
        else ("'equinox'", "'equinox_scan' or 'equinox'")
    )
    if bias is None:
        if ndim == 2 or is_conv:
            return 0
        raise _ambiguous(
            path,
            shape,
            "with no bias beside it, a stack of layers and a convolution both fit",
            alt,
        )
    if in_out:  # (*stack, *receptive, in, out) + bias (*stack, out)
        stack = len(bias) - 1
        if ndim >= stack + 2 and bias == (*shape[:stack], shape[-1]):
            return stack
        raise _ambiguous(
            path,
            shape,
            f"its bias of shape {bias} fits no (*layers, *receptive, in, out) kernel",
            name,
        )
    # (*stack, out, in, *receptive) + bias (*stack, out, 1, ..., 1)
    fits = [
        ndim - 2 - r
        for r in range(ndim - 1)
        if len(bias) == ndim - 1
        and bias == shape[: ndim - 2 - r] + (shape[ndim - 2 - r],) + (1,) * r
    ]
    if len(fits) == 1:
        return fits[0]
    why = f"its bias of shape {bias} fits " + (
        f"{len(fits)} ways of stacking layers"
        if fits
        else "no (*layers, out, in, *receptive) weight"
    )
    raise _ambiguous(path, shape, why, alt if fits else name)


def _infer_group(
    parent: str, members: dict[str, tuple[int, ...]]
) -> dict[str, Layout | ValueError]:
    """Layouts of the array leaves under one parent (one layer), from names and shapes.

    A leaf whose layout cannot be inferred gets the error to raise when it is asked for.
    """
    join = lambda leaf: f"{parent}/{leaf}" if parent else leaf
    kernels = [
        n for n, s in members.items() if n in _IN_OUT_KERNELS + _OUT_IN_KERNELS and len(s) >= 2
    ]
    biases = [n for n in members if n in _BIASES]
    pair = len(biases) == 1 and len(kernels) == 1
    out: dict[str, Layout | ValueError] = {}
    for name in kernels:
        shape, in_out = members[name], name in _IN_OUT_KERNELS
        bias = members[biases[0]] if pair else None
        try:
            stack = _infer_kernel(join(name), shape, bias, in_out, "conv" in parent.lower())
        except ValueError as err:
            out[name] = err
            if bias is not None:
                out[biases[0]] = err
            continue
        out[name] = (_kernel_in_out if in_out else _kernel_out_in)(len(shape), stack)
        if bias is not None:
            out[biases[0]] = _per_layer("bias", len(bias), stack)
    for name, shape in members.items():
        if name in out:
            continue
        ndim = len(shape)
        if name in _BIASES:
            out[name] = _per_layer("bias", ndim, max(ndim - 1, 0))
        elif ndim <= 1 or name in _VECTORS:
            out[name] = _per_layer("vector", ndim, max(ndim - 1, 0))
        else:
            known = ", ".join(_IN_OUT_KERNELS + _OUT_IN_KERNELS + _BIASES + _VECTORS)
            out[name] = _ambiguous(
                join(name),
                shape,
                f"its name is none of {known}",
                "'flax' or jaxstab.Layout('kernel', in_axes=..., out_axes=...)",
            )
    return out


def _check_named(name: Any) -> str:
    if not isinstance(name, str) or name not in LAYOUT_NAMES:
        raise ValueError(
            f"unknown layout {name!r}; valid: {', '.join(LAYOUT_NAMES)}, a jaxstab.Layout, "
            "or a mapping {path pattern: layout}"
        )
    return name


def resolve(
    tree: Any, layout: LayoutSpec = None, *, only: Sequence[str] | None = None
) -> dict[str, Layout]:
    """The :class:`Layout` of every array leaf of ``tree``, keyed by path.

    Args:
      tree: a parameter (or gradient) pytree: flax variables, an nnx State, an
        equinox module or its arrays, jaxstab's MLP dict, any nest of dicts,
        lists and NamedTuples.
      layout: ``None`` infers every leaf (see the module doc); a name from
        :data:`LAYOUT_NAMES` or a :class:`Layout` applies to every leaf; a
        mapping ``{pattern: name or Layout}`` applies to the leaves its
        patterns name (:func:`path_matches`, the last matching rule wins) and
        leaves the others to inference.
      only: resolve only these paths (siblings still inform inference).

    Returns:
      ``{path: Layout}`` with non-negative axes checked against each shape.

    Raises:
      ValueError: for an unknown layout name, a rule that matches no leaf, an
        axis out of range, or a leaf whose layout cannot be inferred; each
        message names the path and the valid choices.
    """
    leaves = array_leaves(tree)
    shapes = {p: tuple(int(d) for d in x.shape) for p, x in leaves}
    paths = list(shapes)
    if len(paths) != len(leaves):
        twice = sorted({p for p, _ in leaves if sum(q == p for q, _ in leaves) > 1})
        raise ValueError(f"several leaves share the path(s) {twice}; rename them")
    wanted = paths if only is None else [p for p in paths if p in set(only)]
    explicit: dict[str, str | Layout] = {}
    if layout is None:
        pass
    elif isinstance(layout, (str, Layout)):
        if isinstance(layout, str):
            _check_named(layout)
        explicit = dict.fromkeys(paths, layout)
    elif isinstance(layout, Mapping):
        rules = list(layout.items())
        for _, value in rules:
            if not isinstance(value, Layout):
                _check_named(value)
        chosen = match_rules([k for k, _ in rules], paths, what="layout rule")
        explicit = {p: rules[i][1] for p, i in zip(paths, chosen) if i >= 0}
    else:
        _check_named(layout)

    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    for p in paths:
        parent, _, leaf = p.rpartition("/")
        groups.setdefault(parent, {})[leaf] = shapes[p]
    inferred: dict[str, dict[str, Layout | ValueError]] = {}
    out: dict[str, Layout] = {}
    for p in wanted:
        rule = explicit.get(p)
        if isinstance(rule, Layout):
            lay = rule
        elif isinstance(rule, str):
            lay = _named(rule, p, shapes[p])
        else:
            parent, _, leaf = p.rpartition("/")
            if parent not in inferred:
                inferred[parent] = _infer_group(parent, groups[parent])
            found = inferred[parent][leaf]
            if isinstance(found, ValueError):
                raise found
            lay = found
        out[p] = lay.resolve(shapes[p], p)
    return out
