"""MLP parameters as plain pytrees, with equal hidden layers stacked and scanned.

Parameters of ``sizes = [d_in, h1, ..., hL, d_out]`` are a dict::

    {"hidden": [{"w": [k, n_in, n_out], "b": [k, n_out]}, ...],   # groups of layers
     "output": {"w": [hL, d_out], "b": [d_out]}}

Consecutive hidden layers of identical shape form one group whose arrays are
stacked along a leading depth axis ``k``; each group runs as one ``lax.scan``,
so the traced program (and its compile time) does not grow with depth. A
``[64, 256 x 50, 10]`` net has two groups: the input layer ``(64, 256)`` with
``k = 1`` and 49 layers ``(256, 256)``.

Under ``jax.vmap`` over seeds a stack costs slicing ``[seeds, k, n, m]`` and
gathering the gradient back into it; for short stacks :func:`split_stacks`
gives every layer its own buffers instead (straight-line code, no scan).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxstab import _checks
from jaxstab._activations import get_activation
from jaxstab._initializers import Initializer, he_normal, zeros
from jaxstab._typing import ActivationLike, Array, ArrayLike, DTypeLike, Params, PRNGKey

SPLIT_MAX_LEN = 16
"""Default of :func:`split_stacks`: stacks of at most this many layers are split."""

Remat: TypeAlias = bool | Literal["layer", "sqrt"]
REMAT_POLICIES = (False, True, "layer", "sqrt")


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    """``sizes`` as a tuple of Python ints; numpy and 0-d jax integers are accepted."""
    what = "sizes must be [d_in, hidden..., d_out], a sequence of at least 2 positive integers"
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray)):
        raise ValueError(f"{what}, got {sizes!r}")
    values = list(sizes)
    out = []
    for i, size in enumerate(values):
        try:
            out.append(_checks.positive_int(f"sizes[{i}]", size))
        except ValueError:
            shown = [v.item() if isinstance(v, np.generic) else v for v in values]
            raise ValueError(f"{what}, got {shown!r} (sizes[{i}] is {size!r})") from None
    if len(out) < 2:
        raise ValueError(f"{what}, got {out!r}")
    return tuple(out)


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(map(str, value))}"
    return f"a {type(value).__name__}"


def check_params(params: Params) -> list[int]:
    """Checks the layout of MLP parameters (for one network) and returns their sizes.

    Runs at trace time, from shapes only.

    Args:
      params: ``{"hidden": [{"w": [k, n, m], "b": [k, m]}, ...], "output": {"w", "b"}}``.

    Returns:
      ``[d_in, hidden..., d_out]``.

    Raises:
      ValueError: naming the missing key or the mismatched shape.
    """
    layout = (
        '{"hidden": [{"w": [k, n_in, n_out], "b": [k, n_out]}, ...], '
        '"output": {"w": [n, d_out], "b": [d_out]}} from init_mlp'
    )
    if not isinstance(params, Mapping) or not {"hidden", "output"} <= set(params):
        raise ValueError(f"params must be MLP parameters {layout}, got {_describe(params)}")
    hidden, output = params["hidden"], params["output"]
    if not isinstance(hidden, (list, tuple)):
        raise ValueError(
            f'params["hidden"] must be a list of layer groups, got {_describe(hidden)}'
        )
    sizes: list[int] = []
    for i, group in enumerate([*hidden, output]):
        where = f'params["hidden"][{i}]' if i < len(hidden) else 'params["output"]'
        if not isinstance(group, Mapping) or not {"w", "b"} <= set(group):
            raise ValueError(f'{where} must be a dict with "w" and "b", got {_describe(group)}')
        w, b = jnp.shape(group["w"]), jnp.shape(group["b"])
        stacked = i < len(hidden)
        want_w = "[k, n_in, n_out]" if stacked else "[n_in, n_out]"
        if len(w) != (3 if stacked else 2):
            raise ValueError(f'{where}["w"] must have shape {want_w}, got shape {w}')
        want_b = w[:1] + w[-1:] if stacked else w[-1:]
        if b != want_b:
            raise ValueError(
                f'{where}["b"] must have shape {want_b} to match "w" of shape {w}, got shape {b}'
            )
        if sizes and w[-2] != sizes[-1]:
            raise ValueError(
                f'{where}["w"] of shape {w} takes {w[-2]} inputs, but the layer below gives '
                f"{sizes[-1]}"
            )
        if not sizes:
            sizes.append(w[-2])
        sizes += [w[-1]] * (w[0] if stacked else 1)
    return sizes


def _check_width(x: Array, sizes: Sequence[int]) -> None:
    if x.shape[-1] != sizes[0]:
        raise ValueError(
            f"x has {x.shape[-1]} features (shape {x.shape}), but the MLP takes d_in={sizes[0]} "
            f"(sizes {list(sizes)})"
        )


def _check_init_output(
    name: str, init: Callable[..., Any], out: Any, shape: tuple[int, ...], dtype: Any
) -> Array:
    """An initializer's output, checked against the shape it was asked for."""
    got = getattr(out, "shape", None)
    if got is None or tuple(got) != shape:
        shown = f"shape {tuple(got)}" if got is not None else _describe(out)
        raise ValueError(
            f"{name} {init!r} returned {shown} when called with shape {shape}; an initializer "
            "must return an array of the shape it is given"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"{name} {init!r} returned dtype {out.dtype}; parameters must be floating")
    return jnp.asarray(out).astype(dtype)


def layer_groups(sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """Splits the hidden layers of ``sizes`` into runs of equal shape.

    Returns:
      ``(count, n_in, n_out)`` for each group, in order from the input.
    """
    sizes = _check_sizes(sizes)
    groups: list[tuple[int, int, int]] = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        if groups and groups[-1][1:] == (n_in, n_out):
            groups[-1] = (groups[-1][0] + 1, n_in, n_out)
        else:
            groups.append((1, n_in, n_out))
    return groups


def init_mlp(
    key: PRNGKey,
    sizes: Sequence[int],
    *,
    weight_init: Initializer | None = None,
    bias_init: Initializer = zeros,
    output_init: Initializer | None = None,
    dtype: DTypeLike = jnp.float32,
) -> Params:
    """Builds the parameters of an MLP with layer sizes ``[d_in, h1, ..., d_out]``.

    Layer ``l`` (from 0, the output layer last) uses the ``l``-th of
    ``len(sizes) - 1`` keys split from ``key``, whatever the grouping, so its
    weights do not depend on how layers are stacked. vmap over keys gives
    per-seed parameters: ``jax.vmap(lambda k: init_mlp(k, sizes))(keys)``.

    Args:
      key: a PRNG key.
      sizes: ``[d_in, hidden..., d_out]``, at least two positive integers (Python
        or numpy ints, or a 1-D integer array).
      weight_init: initializer of every weight ``(fan_in, fan_out)``; default
        :func:`jaxstab.he_normal`.
      bias_init: initializer of every bias; default zeros.
      output_init: initializer of the output layer's weight; default ``weight_init``.
      dtype: parameter dtype.

    Returns:
      ``{"hidden": [{"w", "b"}, ...], "output": {"w", "b"}}`` (see the module doc).

    Raises:
      ValueError: for bad sizes, a non-floating dtype, an initializer that is not
        callable, or one that returns an array of another shape than it was asked for.
    """
    sizes = _check_sizes(sizes)
    groups = layer_groups(sizes)
    weight_init = he_normal() if weight_init is None else weight_init
    output_init = weight_init if output_init is None else output_init
    for name, init in (
        ("weight_init", weight_init),
        ("bias_init", bias_init),
        ("output_init", output_init),
    ):
        if not callable(init):
            raise ValueError(f"{name} must be an initializer init(key, shape, dtype), got {init!r}")
    dtype = _checks.float_dtype("dtype", dtype)
    keys = jax.random.split(key, len(sizes) - 1)

    def layer(name: str, init: Initializer, k: PRNGKey, n_in: int, n_out: int) -> dict[str, Array]:
        k_w, k_b = jax.random.split(k)
        w = _check_init_output(name, init, init(k_w, (n_in, n_out), dtype), (n_in, n_out), dtype)
        b = bias_init(k_b, (n_out,), dtype)
        return {"w": w, "b": _check_init_output("bias_init", bias_init, b, (n_out,), dtype)}

    hidden = []
    start = 0
    for count, n_in, n_out in groups:
        group_keys = keys[start : start + count]
        hidden.append(
            jax.vmap(lambda k, a=n_in, b=n_out: layer("weight_init", weight_init, k, a, b))(
                group_keys
            )
        )
        start += count
    output = layer("output_init", output_init, keys[-1], sizes[-2], sizes[-1])
    return {"hidden": hidden, "output": output}


def mlp_sizes(params: Params) -> list[int]:
    """The layer sizes ``[d_in, hidden..., d_out]`` of MLP parameters (for one network).

    Raises:
      ValueError: if ``params`` is not laid out as :func:`init_mlp` builds it.
    """
    return check_params(params)


def split_stacks(params: Params, max_len: int = SPLIT_MAX_LEN) -> Params:
    """The same MLP with every stack of at most ``max_len`` layers split into single layers.

    A group ``{"w": [k, n, m], "b": [k, m]}`` with ``k <= max_len`` becomes
    ``k`` groups ``{"w": [1, n, m], "b": [1, m]}``; longer stacks stay stacked
    and scanned, so compile time still does not grow with depth. Everything
    that takes MLP parameters accepts either layout and computes the same
    function (a scan of length one is straight-line code).

    Why: under ``jax.vmap`` over seeds, a stacked group is one
    ``[seeds, k, n, m]`` array. Each step slices layers out of it, and the
    gradient is gathered back into the same layout; on XLA:CPU that costs about
    17% of a depth-8, width-128 training step (``BENCHMARKS.md``). Split, each
    layer is its own buffer and its matmuls read it in place. Split once, before
    training (the optimizer state then takes the same layout), not inside the
    step.

    Args:
      params: MLP parameters from :func:`init_mlp`, for one network; vmap it
        for seed-stacked parameters (``jax.vmap(split_stacks)(params)``).
      max_len: the longest stack to split; 0 splits nothing.

    Returns:
      Parameters with the same leaves, regrouped.

    Example:
      >>> params = init_mlp(jax.random.key(0), [4, 8, 8, 8, 2])
      >>> [g["w"].shape for g in split_stacks(params)["hidden"]]
      [(1, 4, 8), (1, 8, 8), (1, 8, 8)]
    """
    max_len = _checks.integer("max_len", max_len, minimum=0)
    check_params(params)
    hidden = []
    for group in params["hidden"]:
        count = group["w"].shape[-3]
        if count == 1 or count > max_len:
            hidden.append(group)
        else:
            hidden += [jax.tree.map(lambda a, i=i: a[i : i + 1], group) for i in range(count)]
    return {"hidden": hidden, "output": params["output"]}


def merge_stacks(params: Params) -> Params:
    """The inverse of :func:`split_stacks`: consecutive groups of equal shape stacked again.

    Gives :func:`init_mlp`'s layout (one scanned group per run of equal
    layers). Useful where compile time matters more than speed: a program that
    evaluates split parameters a few times compiles each pass as straight-line
    code, and evaluating ``merge_stacks(params)`` compiles it as a scan.

    Args:
      params: MLP parameters in any grouping (for one network; vmap it for
        seed-stacked ones).

    Returns:
      Parameters with the same leaves, regrouped.
    """
    check_params(params)
    hidden: list[dict[str, Array]] = []
    for group in params["hidden"]:
        n_in, n_out = group["w"].shape[-2:]
        if hidden and n_in == n_out and hidden[-1]["w"].shape[-2:] == (n_in, n_out):
            hidden[-1] = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), hidden[-1], group)
        else:
            hidden.append(group)
    return {"hidden": hidden, "output": params["output"]}


def _check_remat(remat: Any) -> str | None:
    """``remat`` as None (off), ``"layer"`` or ``"sqrt"``; a clear error otherwise."""
    if remat is False:
        return None
    if remat is True or remat == "layer":
        return "layer"
    if remat == "sqrt":
        return "sqrt"
    raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {remat!r}")


def scan_hidden(
    params: Params,
    x: Array,
    activation: ActivationLike = "relu",
    *,
    collect: Callable[[Array, Array], Any] | None = None,
    offsets: Sequence[Array] | None = None,
    remat: Remat = False,
) -> tuple[Array, list[Any]]:
    """Runs the hidden layers, one ``lax.scan`` per group; the shared forward pass.

    Args:
      params: MLP parameters from :func:`init_mlp`.
      x: inputs ``[batch, d_in]``.
      activation: a name or an elementwise callable.
      collect: ``collect(z, h)`` of each layer's pre-activation ``z`` and
        activation ``h = phi(z)``, stacked by the scan; default nothing.
      offsets: per group, an array ``[k, batch, n_out]`` added to the
        pre-activations. Differentiating with respect to zero offsets gives
        ``dL/dz`` of every layer from one backward pass.
      remat: what the backward pass stores across the depth. ``False``: every
        layer's activations. ``True`` or ``"layer"``: only each layer's input
        (``jax.checkpoint`` per layer; one extra forward). ``"sqrt"``: only the
        inputs of blocks of ``isqrt(k)`` layers plus one block's activations,
        ``O(sqrt(k))`` memory for a stack of ``k`` (two-level checkpointing;
        Chen et al. 2016, arXiv:1604.06174).

    Returns:
      ``(h, collected)``: the last hidden activation ``[batch, hL]`` and, per
      group, the stacked output of ``collect`` (leading axis ``k``).
    """
    phi = get_activation(activation)
    policy = _check_remat(remat)
    _check_width(jnp.asarray(x), check_params(params))
    collected = []
    h = x
    for i, group in enumerate(params["hidden"]):

        def layer(h: Array, xs: tuple[dict[str, Array], Array | None]) -> tuple[Array, Any]:
            p, offset = xs
            z = h @ p["w"] + p["b"][None, :]
            if offset is not None:
                z = z + offset
            h_next = phi(z)
            return h_next, (collect(z, h_next) if collect is not None else None)

        group_offsets = None if offsets is None else offsets[i]
        if policy == "sqrt":
            h, out = _scan_blocks(layer, h, group, (group, group_offsets))
        else:
            body = jax.checkpoint(layer) if policy == "layer" else layer
            h, out = scan_group(body, h, group, (group, group_offsets))
        collected.append(out)
    return h, collected


def scan_group(
    body: Callable[[Array, Any], tuple[Array, Any]], h: Array, group: dict[str, Array], xs: Any
) -> tuple[Array, Any]:
    """``lax.scan(body, h, xs)`` over one group's stacked layers.

    A group that changes the width has one layer (the carry changes shape, so
    it cannot be scanned): ``body`` is applied to it directly and its output
    given the same leading axis of length 1.
    """
    if group["w"].shape[-2] == group["w"].shape[-1]:
        return lax.scan(body, h, xs)
    h, out = body(h, jax.tree.map(lambda a: a[0], xs))
    return h, jax.tree.map(lambda a: a[None], out)


def _scan_blocks(
    body: Callable[[Array, Any], tuple[Array, Any]], h: Array, group: dict[str, Array], xs: Any
) -> tuple[Array, Any]:
    """``scan_group`` with two-level checkpointing: an outer scan over blocks of layers.

    A stack of ``k`` layers runs as ``k // b`` blocks of ``b = isqrt(k)``
    layers, then the ``k mod b < b`` remaining layers. Each block, an inner
    scan, is one ``jax.checkpoint``: the backward pass keeps only the block
    inputs, then recomputes one block at a time with its activations, so it
    stores ``O(sqrt(k))`` activations instead of ``k`` layer inputs. The
    remaining layers are checkpointed one by one.
    """
    count = group["w"].shape[-3]
    size = math.isqrt(count)
    if group["w"].shape[-2] != group["w"].shape[-1] or size < 2:
        return scan_group(jax.checkpoint(body), h, group, xs)
    n_blocks = count // size
    split = n_blocks * size
    head = jax.tree.map(lambda a: a[:split].reshape(n_blocks, size, *a.shape[1:]), xs)

    @jax.checkpoint
    def block(h: Array, block_xs: Any) -> tuple[Array, Any]:
        return lax.scan(body, h, block_xs)

    h, out = lax.scan(block, h, head)
    out = jax.tree.map(lambda a: a.reshape(split, *a.shape[2:]), out)
    if split < count:
        h, rest = lax.scan(jax.checkpoint(body), h, jax.tree.map(lambda a: a[split:], xs))
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)
    return h, out


@overload
def apply_mlp(
    params: Params,
    x: ArrayLike,
    activation: ActivationLike = ...,
    *,
    capture: Literal[False] = ...,
    remat: Remat = ...,
) -> Array: ...


@overload
def apply_mlp(
    params: Params,
    x: ArrayLike,
    activation: ActivationLike = ...,
    *,
    capture: Literal[True],
    remat: Remat = ...,
) -> tuple[Array, Any]: ...


def apply_mlp(
    params: Params,
    x: ArrayLike,
    activation: ActivationLike = "relu",
    *,
    capture: bool = False,
    remat: Remat = False,
) -> Array | tuple[Array, Any]:
    """Applies the MLP: hidden layers ``h = phi(h @ w + b)``, then linear logits.

    Args:
      params: parameters from :func:`init_mlp`.
      x: inputs ``[batch, d_in]``.
      activation: a name from :data:`jaxstab.ACTIVATIONS` or an elementwise callable.
      capture: also return every hidden layer's pre-activation.
      remat: rematerialize in the backward pass for bounded activation memory
        in very deep stacks, at the cost of a second forward: ``True`` (or
        ``"layer"``) keeps each layer's input, ``"sqrt"`` only about
        ``2 sqrt(L)`` of them (see :func:`scan_hidden`).

    Returns:
      ``logits [batch, d_out]``; with ``capture=True``, ``(logits, preactivations)``
      where ``preactivations`` has one ``[batch, width]`` entry per hidden layer:
      one stacked array ``[L, batch, width]`` when all hidden widths are equal,
      else a tuple of arrays.

    Raises:
      ValueError: (at trace time, from shapes) if ``x`` is not 2-D or its width is
        not the MLP's ``d_in``, if ``params`` is not laid out as :func:`init_mlp`
        builds it, or for an unknown activation or remat policy.
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a batch [batch, d_in], got shape {x.shape}")
    _check_width(x, check_params(params))
    collect = (lambda z, h: z) if capture else None
    h, collected = scan_hidden(params, x, activation, collect=collect, remat=remat)
    logits = h @ params["output"]["w"] + params["output"]["b"][None, :]
    if not capture:
        return logits
    return logits, stack_layers(collected)


def stack_layers(per_group: Sequence[Any]) -> Any:
    """Joins per-group stacked outputs into one per-layer sequence.

    Concatenates along the layer axis when every leaf agrees in shape past it
    (equal widths), else returns a tuple of per-layer pytrees.
    """
    if not per_group:
        return ()
    leaves = [jax.tree.leaves(g) for g in per_group]
    if all(len({g[i].shape[1:] for g in leaves}) == 1 for i in range(len(leaves[0]))):
        return jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *per_group)
    layers = []
    for group, group_leaves in zip(per_group, leaves):
        for i in range(group_leaves[0].shape[0]):
            layers.append(jax.tree.map(lambda a, i=i: a[i], group))
    return tuple(layers)
