"""Per-layer signal statistics of any JAX model, read from its jaxpr.

A model is any ``apply(params, x)`` over a pytree of parameters: jaxstab's MLP
dict, flax.linen variables, a flax.nnx state after ``nnx.split``, the array part
of an equinox module after ``eqx.partition``, a plain dict. Nothing in the
model changes: the probe traces ``apply`` with :func:`jax.make_jaxpr`, finds
its layers in the jaxpr, and evaluates the jaxpr again with statistics taken
where the layers are.

**What is an entry.** Each entry of a result is one point of the forward pass,
in the order the program computes them (from the input):

* ``"dense"``: a ``dot_general`` of a parameter-derived operand (the weight)
  and a data-derived one (the input ``h``); its value ``z`` is the product,
  through transposes and dtype casts, plus a following parameter-derived
  add (the bias). ``"conv"``: the same for ``conv_general_dilated`` with the
  kernel as right operand.
* ``"residual"``: an ``add`` of two data streams, one of them the output of
  an entry (``h + f(h)``).
* ``"norm"``: a data stream multiplied by ``rsqrt`` of a statistic of data
  (or divided by its ``sqrt``), then scaled and shifted by parameters
  (LayerNorm, RMSNorm).

Each entry's *activation* ``a = phi(z)`` is the result of the elementwise
operations applied to ``z`` alone (with parameters and constants) before it
meets anything else: the next layer's input in an MLP, ``z`` itself where
nothing elementwise follows. ``phi'(z)`` (for the saturated fraction) is the
forward-mode derivative of exactly those operations. An activation applied in
another scope than ``z`` (at the start of the next scan step, say) is not
seen; there ``a = z``.

**Names.** A dense, conv or norm entry is named by its parameter's path:
the keys joined by ``/`` (``jax.tree_util`` key paths: dict keys, sequence
indices, attribute names; a trailing ``value`` of a flax.nnx Variable is
dropped), then the layer index in a stacked parameter in brackets:
``"params/Dense_0/kernel"``, ``"hidden/1/w[3]"`` (layer 3 of the stack
``params["hidden"][1]["w"]``, run by ``lax.scan``). A residual or a norm without
parameters is named after the latest dense or conv entry before it:
``"hidden/1/w[3]+residual"``. A weight used twice gets ``#1``, ``#2``... on its
later uses.

**Scans.** A layer inside ``lax.scan`` (flax ``nn.scan``, jaxstab's stacks)
gives one entry per step. Its statistics are reduced inside the scan body and
leave it as scan outputs (scalars per step), so no ``[layers, batch, width]``
tensor is made; gradients of ``dL/dz`` are read the same way, by an identity
*tap* whose backward pass writes ``mean(g²)`` into the cotangent of a scalar
zero (:func:`layer_stats`). ``jax.checkpoint`` regions stay checkpointed.
Layers inside ``lax.cond``, ``lax.while_loop`` or custom-derivative functions
are not seen.

Every function here is jittable and vmappable over seeds (``jax.vmap`` over
stacked params); results are pytrees whose arrays have one value per entry
(a leading seeds axis under ``vmap``), with the names as static metadata.

Example:
  >>> import jaxstab as js
  >>> params = js.init_mlp(jax.random.key(0), [4, 16, 16, 16, 3])
  >>> x = jax.random.normal(jax.random.key(1), (64, 4))
  >>> stats = forward(lambda p, x: js.apply_mlp(p, x, "relu"), params, x)
  >>> stats.names
  ('hidden/0/w[0]', 'hidden/1/w[0]', 'hidden/1/w[1]', 'output/w')
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal, Var

from jaxstab import _checks, theory
from jaxstab._activations import get_activation
from jaxstab._typing import ActivationLike, Array, ArrayLike, Params

__all__ = [
    "SATURATION_THRESHOLD",
    "Backward",
    "Forward",
    "TheoryComparison",
    "forward",
    "jacobian_singular_values",
    "layer_stats",
    "lsuv",
    "theory_comparison",
]

SATURATION_THRESHOLD = 1e-2
"""Default |phi'(z)| below which a unit counts as saturated: tanh at |z| > 3.0,
sigmoid at |z| > 4.6; for ReLU a saturated unit is a dead one."""

_LAYERS = ("dense", "conv")

# ---------------------------------------------------------------------------
# Results.


_META = ("names", "kinds", "chained")  # static fields of the results


def _report(cls: type) -> type:
    """Registers a result dataclass as a pytree: arrays are children, names static."""
    names = [f.name for f in dataclasses.fields(cls)]
    meta = [n for n in names if n in _META]
    return jax.tree_util.register_dataclass(
        cls, data_fields=[n for n in names if n not in meta], meta_fields=meta
    )


@_report
@dataclasses.dataclass(frozen=True)
class Forward:
    """Forward statistics of every entry (each array ``[entries]``, seeds first under vmap).

    Means run over every element of ``z`` (examples and units). A *unit* is
    an output feature of the layer (the weight's free axes of a dot product,
    the output-feature axis of a convolution; for a residual or norm entry,
    the units of its input, else the last axis); the *examples* are the other
    axes. Fields that do not apply to an entry's kind are NaN.
    """

    names: tuple[str, ...]  # static: one name per entry (see the module doc).
    kinds: tuple[str, ...]  # static: "dense", "conv", "residual" or "norm".
    second_moment: Array  # q: mean of z².
    mean: Array  # mean of z.
    variance: Array  # variance of z.
    activation_second_moment: Array  # mean of a², a = phi(z) the entry's activation.
    dead_fraction: Array  # fraction of units with a == 0 on every example.
    saturated_fraction: Array  # fraction of units with |phi'(z)| < threshold on every example.
    input_second_moment: Array  # dense/conv: mean of h², h the layer's data operand.
    sigma_w2: Array  # dense/conv: fan_in * mean(W²), the mean-field weight variance.
    sigma_b2: Array  # dense/conv: mean(b²) of the added bias, 0 without one.


@_report
@dataclasses.dataclass(frozen=True)
class Backward:
    """Gradient statistics of every entry, for a scalar loss ``L`` (arrays ``[entries]``)."""

    names: tuple[str, ...]  # static, as in Forward.
    kinds: tuple[str, ...]  # static, as in Forward.
    grad_second_moment: Array  # mean over z's elements of (dL/dz)².
    weight_grad_norm: Array  # dense/conv: norm of dL/dW for the weight as this layer uses it.
    bias_grad_norm: Array  # dense/conv with a bias: norm of dL/db.
    param_grad_norm: dict[str, Array]  # per parameter leaf path: norm of dL/dleaf.


@_report
@dataclasses.dataclass(frozen=True)
class TheoryComparison:
    """Measured and mean-field ``q`` of every dense/conv entry (arrays ``[layers]``)."""

    names: tuple[str, ...]  # static: the dense/conv entries' names.
    chained: tuple[bool, ...]  # static: the layer's input is phi(z) of the layer before
    # (the plain-MLP parts); False where the prediction starts over from the input.
    measured: Array  # q = mean of z².
    predicted: Array  # the mean-field q (see theory_comparison).
    sigma_w2: Array  # fan_in * mean(W²).
    sigma_b2: Array  # mean(b²).


# ---------------------------------------------------------------------------
# Primitive classes (by name, stable across jax versions).

_ELEMENTWISE = frozenset(
    "abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type "
    "copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt "
    "integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter not "
    "or pow reduce_precision rem round rsqrt select_n sign sin sinh sqrt square "
    "stop_gradient sub tan tanh xor".split()
)
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
_REMATS = frozenset({"remat2", "checkpoint", "remat"})
_CUSTOM = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})
_LAYOUT = frozenset({"transpose", "convert_element_type", "copy", "copy_p"})
_FACTOR_PASS = frozenset(
    {"broadcast_in_dim", "reshape", "convert_element_type", "squeeze", "expand_dims"}
    | {"transpose", "copy", "copy_p"}
)
_LINEAR = frozenset(
    {"transpose", "reshape", "broadcast_in_dim", "squeeze", "expand_dims", "slice"}
    | {"dynamic_slice", "rev", "convert_element_type", "copy", "copy_p", "neg"}
    | {"reduce_precision"}
)
_REDUCTIONS = frozenset(
    {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin"}
    | {"reduce_and", "reduce_or"}
)

_CONST, _PARAM, _DATA = 0, 1, 2


def _inner(eqn: JaxprEqn) -> tuple[Jaxpr, list[Any]] | None:
    """The jaxpr (and its consts) that a call-like equation runs, if any."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        j = eqn.params.get(key)
        if isinstance(j, ClosedJaxpr):
            return j.jaxpr, list(j.consts)
        if isinstance(j, Jaxpr):
            return j, []
    return None


def _bind(eqn: JaxprEqn, invals: Sequence[Any]) -> list[Any]:
    """Evaluates one equation as :func:`jax.core.eval_jaxpr` does; always a list."""
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


# jaxpr variables: their avals are typed loosely by jax.


def _literal(v: Any) -> Any:
    return v.val


def _dtype(v: Any) -> Any:
    return v.aval.dtype


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(v.aval.shape)


def _size(v: Any) -> int:
    return math.prod(_shape(v))


def _elementwise(eqn: JaxprEqn, data: Sequence[bool]) -> bool:
    """Whether ``eqn`` maps its data operands (``data`` mask) elementwise, shape kept."""
    name = eqn.primitive.name
    if name in _ELEMENTWISE:
        return True
    inner = _inner(eqn) if (name in _CALLS or name in _CUSTOM) else None
    if inner is None:
        return False
    jaxpr = inner[0]
    live = {v for v, d in zip(jaxpr.invars, data) if d}
    shapes = {_shape(v) for v in live}
    for sub in jaxpr.eqns:
        mask = [isinstance(v, Var) and v in live for v in sub.invars]
        if not any(mask):
            continue
        outs = [_shape(o) for o in sub.outvars]
        if len(outs) != 1 or outs[0] not in shapes or not _elementwise(sub, mask):
            return False
        if any(m and _shape(v) != outs[0] for v, m in zip(sub.invars, mask)):
            return False
        live.update(sub.outvars)
    return all(isinstance(v, Var) and v in live for v in jaxpr.outvars)


# ---------------------------------------------------------------------------
# Static analysis of a jaxpr: what each variable derives from, and the entries.


class _Level:
    """One ``lax.scan``: stands for the step index in parameter indices."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True)
class _Ref:
    """A parameter leaf a variable derives from.

    ``state``: "aligned" (the variable is ``leaf[index]``), "keepdim"
    (``leaf[index][None]``), "linear" (a linear function of ``leaf[index]``,
    so rescaling that slice rescales it) or "other".
    """

    leaf: int
    index: tuple[int | _Level, ...]
    state: str


@dataclasses.dataclass(frozen=True)
class _Info:
    kind: int  # _CONST, _PARAM or _DATA (depends on the data, maybe also on params).
    refs: frozenset[_Ref] = frozenset()  # _PARAM: the leaves; a norm factor: params mixed in.
    units: tuple[int, ...] | None = None  # _DATA: the unit (feature) axes, if known.
    factor: str | None = None  # _DATA: "r" an rsqrt of a statistic, "s" a sqrt of one.


_CONST_INFO = _Info(_CONST)


def _other(refs: frozenset[_Ref]) -> frozenset[_Ref]:
    return frozenset(_Ref(r.leaf, r.index, "other") for r in refs)


@dataclasses.dataclass(eq=False)
class _Entry:
    id: int
    kind: str
    value: Var
    units: tuple[int, ...] | None
    refs: frozenset[_Ref] = frozenset()  # dense/conv: the weight's; norm: its scale's or bias'.
    primary: _Ref | None = None  # the parameter the entry is named after.
    dot_eqn: int = -1
    weight_pos: int = -1
    data_pos: int = -1
    fan_in: int = 0
    bias_eqn: int = -1  # the eqn adding the bias (then the value's eqn), or -1.
    bias_pos: int = -1
    bias_tap: tuple[int, int] | None = None  # (eqn, operand) where dL/db is read.
    frontier: Var | None = None  # the activation a.
    chain_eqns: tuple[int, ...] = ()  # the eqns computing a from z, in order.
    replay_eqns: tuple[int, ...] = ()  # those and the constants they use.
    replayable: bool = False  # phi has no parameter or outside input: usable by theory.


@dataclasses.dataclass(eq=False)
class _Pending:
    """A dense/conv/norm entry whose value may still grow (transpose, bias add, scale)."""

    kind: str
    cur: Var
    units: tuple[int, ...] | None
    refs: frozenset[_Ref]
    dot_eqn: int = -1
    weight_pos: int = -1
    data_pos: int = -1
    fan_in: int = 0
    bias_eqn: int = -1
    bias_pos: int = -1
    bias_tap: tuple[int, int] | None = None
    shift_refs: frozenset[_Ref] = frozenset()  # norm: parameters added after the scale.


@dataclasses.dataclass(eq=False)
class _Sub:
    eqn: int
    scope: _Scope
    length: int | None  # a scan's length; None for a checkpointed region.
    reverse: bool
    level: _Level | None


@dataclasses.dataclass(eq=False)
class _Scope:
    jaxpr: Jaxpr
    consts: list[Any]
    entries: list[_Entry]
    order: list[tuple[str, int]]  # ("entry", id) / ("sub", eqn): program order.
    subs: dict[int, _Sub]
    actions: dict[int, list[tuple[str, _Entry]]]
    links: dict[Var, Any]
    levels: tuple[_Level, ...]


@dataclasses.dataclass(frozen=True)
class _Ctx:
    leaf_sizes: tuple[int, ...]


def _primary(refs: frozenset[_Ref], ctx: _Ctx) -> _Ref | None:
    """The parameter a layer is named after: a rescalable one first, then the largest."""
    if not refs:
        return None
    return max(
        refs,
        key=lambda r: (r.state != "other", ctx.leaf_sizes[r.leaf], -r.leaf),
    )


def _param_info(eqn: JaxprEqn, infos: list[_Info]) -> _Info:
    """The provenance of a parameter-only result: index slicing and linear maps tracked."""
    name = eqn.primitive.name
    params = [(p, i) for p, i in enumerate(infos) if i.kind == _PARAM]
    refs = frozenset().union(*(i.refs for _, i in params))
    if len(params) != 1 or len(refs) != 1:
        return _Info(_PARAM, _other(refs))
    pos, _ = params[0]
    (r,) = refs
    op = eqn.invars[pos]
    shape = _shape(op)
    if r.state == "other":
        return _Info(_PARAM, refs)
    if name in ("convert_element_type", "copy", "copy_p"):
        return _Info(_PARAM, refs)
    if r.state == "keepdim" and (
        (name == "squeeze" and tuple(eqn.params["dimensions"]) == (0,))
        or (name == "reshape" and tuple(eqn.params["new_sizes"]) == shape[1:])
    ):
        return _Info(_PARAM, frozenset({_Ref(r.leaf, r.index, "aligned")}))
    if r.state == "aligned" and name == "squeeze":
        dims = sorted(eqn.params["dimensions"])
        if dims == list(range(len(dims))):  # leading size-1 axes: leaf[index][0, 0...]
            index = r.index + (0,) * len(dims)
            return _Info(_PARAM, frozenset({_Ref(r.leaf, index, "aligned")}))
    if r.state == "aligned" and name in ("slice", "dynamic_slice") and shape:
        if name == "slice":
            start = list(eqn.params["start_indices"])
            limit = list(eqn.params["limit_indices"])
            strides = eqn.params.get("strides")
            unit = strides is None or all(s == 1 for s in strides)
        else:
            idx = eqn.invars[1:]
            if all(isinstance(v, Literal) for v in idx):
                start = [int(_literal(v)) for v in idx]
                limit = [s + n for s, n in zip(start, eqn.params["slice_sizes"])]
                unit = True
            else:
                unit = False
        if (
            unit
            and limit[0] - start[0] == 1
            and all((s, lim) == (0, n) for s, lim, n in zip(start[1:], limit[1:], shape[1:]))
        ):  # leaf[index][i : i + 1]
            return _Info(_PARAM, frozenset({_Ref(r.leaf, (*r.index, start[0]), "keepdim")}))
    others_const = all(i.kind == _CONST for p, i in enumerate(infos) if p != pos)
    linear = name in _LINEAR or (
        name in ("mul", "div") and others_const and (name == "mul" or pos == 0)
    )
    if linear and others_const:
        return _Info(_PARAM, frozenset({_Ref(r.leaf, r.index, "linear")}))
    return _Info(_PARAM, _other(refs))


def _slice_info(info: _Info, level: _Level) -> _Info:
    """The per-step view of a scanned-over operand (its leading axis removed)."""
    if info.kind == _PARAM:
        refs = set()
        for r in info.refs:
            if r.state == "aligned":
                refs.add(_Ref(r.leaf, (*r.index, level), "aligned"))
            elif r.state == "keepdim":  # leaf[index][None]: a length-1 scan.
                refs.add(_Ref(r.leaf, r.index, "aligned"))
            else:
                refs.add(_Ref(r.leaf, r.index, "other"))
        return _Info(_PARAM, frozenset(refs))
    if info.kind == _DATA and info.units is not None and 0 not in info.units:
        return _Info(_DATA, units=tuple(u - 1 for u in info.units))
    return _Info(info.kind)


def _join(a: _Info, b: _Info) -> _Info:
    if a == b:
        return a
    kind = max(a.kind, b.kind)
    refs = _other(a.refs | b.refs) if kind == _PARAM else frozenset()
    units = a.units if (kind == _DATA and a.units == b.units) else None
    return _Info(kind, refs, units)


def _carry_info(info: _Info) -> _Info:
    return _Info(info.kind, info.refs if info.kind == _PARAM else frozenset(), info.units)


class _Analysis:
    """The entries of one scope (a jaxpr), found in two passes.

    Pass 1 (:meth:`_step`, in program order) follows what each variable derives
    from (:class:`_Info`) and creates the entries; pass 2 (:meth:`_activation`)
    finds each entry's activation, which needs every later use of its value.
    Scan bodies and checkpointed regions are analyzed as scopes of their own.
    """

    def __init__(
        self,
        jaxpr: Jaxpr,
        consts: list[Any],
        in_infos: list[_Info],
        levels: tuple[_Level, ...],
        ctx: _Ctx,
    ) -> None:
        self.jaxpr, self.consts, self.levels, self.ctx = jaxpr, consts, levels, ctx
        self.eqns = jaxpr.eqns
        self.info: dict[Var, _Info] = dict.fromkeys(jaxpr.constvars, _CONST_INFO)
        self.links: dict[Var, Any] = {}
        for k, (v, inf) in enumerate(zip(jaxpr.invars, in_infos)):
            self.info[v] = inf
            self.links[v] = ("invar", k)
        self.consumers: dict[Var, list[int]] = collections.defaultdict(list)
        for i, eqn in enumerate(self.eqns):
            for u in eqn.invars:
                if isinstance(u, Var):
                    self.consumers[u].append(i)
        self.outset = {v for v in jaxpr.outvars if isinstance(v, Var)}
        self.defined: dict[Var, int] = {}
        self.chain: dict[Var, int] = {}  # var -> the entry whose elementwise results hold it
        self.entries: list[_Entry] = []
        self.pending: dict[Var, _Pending] = {}
        self.subs: dict[int, _Sub] = {}

    def run(self) -> tuple[_Scope, list[_Info]]:
        for i, eqn in enumerate(self.eqns):
            self._step(i, eqn)
        for p in list(self.pending.values()):
            self._finalize(p)
        actions: dict[int, list[tuple[str, _Entry]]] = collections.defaultdict(list)
        for e in self.entries:
            self._activation(e)
            assert e.frontier is not None
            if e.kind in _LAYERS:
                actions[e.dot_eqn].append(("dot", e))
                if e.bias_tap is not None:
                    actions[e.bias_tap[0]].append(("bias", e))
            actions[self.defined[e.value]].append(("value", e))
            actions[self.defined[e.frontier]].append(("frontier", e))
        keyed = [(self.defined[e.value], 1, ("entry", e.id)) for e in self.entries]
        keyed += [(j, 0, ("sub", j)) for j in self.subs]
        order = [key for *_, key in sorted(keyed)]
        scope = _Scope(
            self.jaxpr,
            self.consts,
            self.entries,
            order,
            self.subs,
            dict(actions),
            self.links,
            self.levels,
        )
        return scope, [self._get(v) for v in self.jaxpr.outvars]

    def _get(self, v: Any) -> _Info:
        return _CONST_INFO if isinstance(v, Literal) else self.info[v]

    def _add_entry(
        self, kind: str, value: Var, units: Any, refs: frozenset[_Ref], **kw: Any
    ) -> None:
        e = _Entry(len(self.entries), kind, value, units, refs, _primary(refs, self.ctx), **kw)
        self.entries.append(e)
        self.chain[value] = e.id

    def _finalize(self, p: _Pending) -> None:
        del self.pending[p.cur]
        fields = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
        for key in ("kind", "cur", "units", "refs", "shift_refs"):
            del fields[key]
        self._add_entry(p.kind, p.cur, p.units, p.refs or p.shift_refs, **fields)

    # --- pass 1 -------------------------------------------------------------------

    def _step(self, i: int, eqn: JaxprEqn) -> None:
        infos = [self._get(v) for v in eqn.invars]
        for o in eqn.outvars:
            self.defined[o] = i
        if self._grow(i, eqn, infos):
            return
        name = eqn.primitive.name
        if name == "scan":
            self._scan(i, eqn, infos)
        elif name in _REMATS:
            self._remat(i, eqn, infos)
        elif not self._layer(i, eqn, infos):
            kind = max((inf.kind for inf in infos), default=_CONST)
            if kind == _PARAM:
                param = _param_info(eqn, infos)
                self.info.update(dict.fromkeys(eqn.outvars, param))
            elif kind == _CONST or len(eqn.outvars) != 1:
                self.info.update(dict.fromkeys(eqn.outvars, _Info(kind)))
            else:
                self._data(eqn, infos)

    def _grow(self, i: int, eqn: JaxprEqn, infos: list[_Info]) -> bool:
        """A pending layer's value grows through ``eqn`` (True), or is final when used."""
        grown: tuple[_Pending, int] | None = None
        for pos, v in enumerate(eqn.invars):
            if isinstance(v, Var) and v in self.pending:
                p = self.pending[v]
                if grown is None and self._continues(p, eqn, pos, infos):
                    grown = (p, pos)
                else:
                    self._finalize(p)
        if grown is None:
            return False
        p, pos = grown
        name = eqn.primitive.name
        out = eqn.outvars[0]
        del self.pending[p.cur]
        if name == "transpose" and p.units is not None:
            p.units = _permuted(p.units, eqn.params["permutation"])
        if p.kind in _LAYERS and name == "add":
            p.bias_eqn, p.bias_pos, p.bias_tap = i, 1 - pos, (i, 1 - pos)
            # Read dL/db before a broadcast that enlarges b: the sum over the
            # broadcast axes is what the bias leaf receives.
            b = eqn.invars[1 - pos]
            while isinstance(b, Var) and b in self.defined:
                src = self.eqns[self.defined[b]]
                if src.primitive.name != "broadcast_in_dim" or _size(src.invars[0]) >= _size(b):
                    break
                p.bias_tap = (self.defined[b], 0)
                b = src.invars[0]
        elif p.kind == "norm" and name in ("mul", "div"):
            p.refs = p.refs | infos[1 - pos].refs
        elif p.kind == "norm":
            p.shift_refs = p.shift_refs | infos[1 - pos].refs
        p.cur = out
        self.pending[out] = p
        self.info[out] = _Info(_DATA, units=p.units)
        if p.kind in _LAYERS and name == "add":
            self._finalize(p)  # a layer's value ends at its bias
        return True

    def _continues(self, p: _Pending, eqn: JaxprEqn, pos: int, infos: list[_Info]) -> bool:
        if len(self.consumers[p.cur]) != 1 or p.cur in self.outset or len(eqn.outvars) != 1:
            return False
        name = eqn.primitive.name
        others = [inf.kind for q, inf in enumerate(infos) if q != pos]
        if p.kind in _LAYERS and name in _LAYOUT and not others:
            return True  # a transpose or cast of the product
        if others != [_PARAM] or _shape(eqn.outvars[0]) != _shape(p.cur):
            return False
        if p.kind in _LAYERS:
            return name == "add"  # the bias
        return name in ("mul", "add") or (name in ("sub", "div") and pos == 0)  # scale, shift

    def _scan(self, i: int, eqn: JaxprEqn, infos: list[_Info]) -> None:
        prm = eqn.params
        nc, nk = prm["num_consts"], prm["num_carry"]
        body: ClosedJaxpr = prm["jaxpr"]
        level = _Level()
        head = [_carry_info(inf) for inf in infos[: nc + nk]]
        xs = [_slice_info(inf, level) for inf in infos[nc + nk :]]
        for _ in range(8):  # the carries' infos: the least fixed point of the join
            sub, outs = _Analysis(
                body.jaxpr, list(body.consts), head + xs, (*self.levels, level), self.ctx
            ).run()
            joined = head[:nc] + [_join(a, b) for a, b in zip(head[nc:], outs[:nk])]
            if joined == head:
                break
            head = joined
        self.subs[i] = _Sub(i, sub, int(prm["length"]), bool(prm["reverse"]), level)
        ys = [
            _Info(
                o.kind, _other(o.refs), None if o.units is None else tuple(u + 1 for u in o.units)
            )
            for o in outs[nk:]
        ]
        for k, (o, inf) in enumerate(zip(eqn.outvars, head[nc:] + ys)):
            self.info[o] = _carry_info(inf)
            self.links[o] = ("sub", i, k)

    def _remat(self, i: int, eqn: JaxprEqn, infos: list[_Info]) -> None:
        inner = _inner(eqn)
        assert inner is not None
        sub, outs = _Analysis(
            inner[0], inner[1], [_carry_info(f) for f in infos], self.levels, self.ctx
        ).run()
        self.subs[i] = _Sub(i, sub, None, False, None)
        for k, (o, inf) in enumerate(zip(eqn.outvars, outs)):
            self.info[o] = _carry_info(inf)
            self.links[o] = ("sub", i, k)

    def _layer(self, i: int, eqn: JaxprEqn, infos: list[_Info]) -> bool:
        """A matmul or convolution of a parameter and data starts a pending layer."""
        name = eqn.primitive.name
        if name not in ("dot_general", "conv_general_dilated"):
            return False
        kinds = [inf.kind for inf in infos]
        ins, out = eqn.invars, eqn.outvars[0]
        if name == "dot_general" and sorted(kinds) == [_PARAM, _DATA]:
            wpos = kinds.index(_PARAM)
            (contract, batch) = eqn.params["dimension_numbers"]
            nb = len(batch[0])
            n_lhs_free = len(_shape(ins[0])) - len(contract[0]) - nb
            n_w_free = len(_shape(ins[wpos])) - len(contract[wpos]) - nb
            # Output axes: batch, then lhs free, then rhs free; units are the weight's.
            start = nb if wpos == 0 else nb + n_lhs_free
            units = tuple(range(nb)) + tuple(range(start, start + n_w_free))
            fan_in = math.prod(_shape(ins[wpos])[d] for d in contract[wpos])
            p = _Pending("dense", out, units, infos[wpos].refs, i, wpos, 1 - wpos, fan_in)
        elif name == "conv_general_dilated" and kinds[:2] == [_DATA, _PARAM]:
            dn = eqn.params["dimension_numbers"]
            rhs = _shape(ins[1])
            fan_in = rhs[dn.rhs_spec[1]] * math.prod(rhs[d] for d in dn.rhs_spec[2:])
            units = (dn.out_spec[1],)
            p = _Pending("conv", out, units, infos[1].refs, i, 1, 0, fan_in)
        else:
            return False
        self.info[out] = _Info(_DATA, units=units)
        self.pending[out] = p
        return True

    def _data(self, eqn: JaxprEqn, infos: list[_Info]) -> None:
        """A data result: a norm, a residual, an elementwise step of an entry, or other."""
        name = eqn.primitive.name
        ins, out = eqn.invars, eqn.outvars[0]
        data = [inf.kind == _DATA for inf in infos]
        data_infos = [inf for inf in infos if inf.kind == _DATA]
        same = all(_shape(v) == _shape(out) for v, d in zip(ins, data) if d)
        ew = same and _elementwise(eqn, data)
        units = None
        if name == "transpose" and data_infos[0].units is not None:
            units = _permuted(data_infos[0].units, eqn.params["permutation"])
        elif ew:
            units = next((inf.units for inf in data_infos if inf.units is not None), None)
        pair = len(ins) == 2 and data == [True, True]

        # A normalization: data times rsqrt of a statistic of data (or over its sqrt).
        if pair and name in ("mul", "div"):
            a, b = infos
            norm: tuple[int, _Info] | None = None
            if name == "mul" and (a.factor == "r") != (b.factor == "r"):
                norm = (0, b) if b.factor == "r" else (1, a)
            elif name == "div" and a.factor is None and b.factor == "s":
                norm = (0, b)
            if norm is not None and _shape(ins[norm[0]]) == _shape(out):
                units = infos[norm[0]].units
                self.info[out] = _Info(_DATA, units=units)
                self.pending[out] = _Pending("norm", out, units, norm[1].refs)
                return

        # A residual: two data streams added, at least one an entry's result.
        if pair and same and name in ("add", "add_any"):
            ca, cb = (self.chain.get(v) if isinstance(v, Var) else None for v in ins)
            if ca != cb and (ca is not None or cb is not None):
                units = next((inf.units for inf in infos if inf.units is not None), None)
                self.info[out] = _Info(_DATA, units=units)
                self._add_entry("residual", out, units, frozenset())
                return

        factor = None
        if name in ("rsqrt", "sqrt") and data == [True]:
            factor = "r" if name == "rsqrt" else "s"
        elif len(data_infos) == 1 and data_infos[0].factor is not None:
            if name in _FACTOR_PASS or name == "mul":
                factor = data_infos[0].factor
        refs = frozenset().union(*(inf.refs for inf in infos)) if factor else frozenset()
        self.info[out] = _Info(_DATA, refs, units, factor)
        if ew:
            labels = {
                self.chain.get(v) if isinstance(v, Var) else None for v, d in zip(ins, data) if d
            }
            if len(labels) == 1 and None not in labels:
                self.chain[out] = next(c for c in labels if c is not None)

    # --- pass 2 -------------------------------------------------------------------

    def _activation(self, e: _Entry) -> None:
        """``e``'s activation: the last of its elementwise results used by something else.

        Results used only by reductions (the variance inside a LayerNorm that
        follows) count only if nothing else is used.
        """
        eqns, defined = self.eqns, self.defined
        candidates = []
        for v in [v for v, c in self.chain.items() if c == e.id]:
            outside = [
                j
                for j in self.consumers[v]
                if not (len(eqns[j].outvars) == 1 and self.chain.get(eqns[j].outvars[0]) == e.id)
            ]
            if v in self.outset or outside:
                strong = v in self.outset or any(
                    eqns[j].primitive.name not in _REDUCTIONS for j in outside
                )
                candidates.append((strong, v))
        pick = [v for s, v in candidates if s] or [v for _, v in candidates] or [e.value]
        frontier = max(pick, key=lambda v: defined[v])
        need: set[int] = set()
        stack = [frontier]
        while stack:
            v = stack.pop()
            if v is e.value or defined[v] in need:
                continue
            need.add(defined[v])
            stack += [
                u
                for u in eqns[defined[v]].invars
                if isinstance(u, Var) and self.chain.get(u) == e.id
            ]
        # phi for theory: the same ops and the constants they use, computed from
        # literals and closed-over constants (no parameter, nothing from outside).
        replay, ok = set(need), True
        todo = [
            u
            for j in need
            for u in eqns[j].invars
            if isinstance(u, Var) and self.chain.get(u) != e.id
        ]
        while todo and ok:
            v = todo.pop()
            ok = self.info[v].kind == _CONST and (v in defined or v in self.jaxpr.constvars)
            if ok and v in defined and defined[v] not in replay:
                replay.add(defined[v])
                todo += [u for u in eqns[defined[v]].invars if isinstance(u, Var)]
        e.frontier = frontier
        e.chain_eqns = tuple(sorted(need))
        e.replay_eqns, e.replayable = tuple(sorted(replay)), ok
        self.links[frontier] = ("entry", e.id)


def _permuted(units: tuple[int, ...], permutation: Sequence[int]) -> tuple[int, ...]:
    perm = list(permutation)
    return tuple(sorted(perm.index(u) for u in units))


# ---------------------------------------------------------------------------
# The flattened list of entries: names, predecessors, where their records are.


@dataclasses.dataclass(frozen=True)
class _Desc:
    entry: _Entry
    scope: _Scope
    where: tuple[tuple[int, int | None], ...]  # (sub eqn, step) from the top scope down.
    levels: dict[_Level, int]
    pred: int | None  # the entry whose activation is this layer's input.


def _walk(
    scope: _Scope,
    in_links: list[int | None],
    levels: dict[_Level, int],
    where: tuple[tuple[int, int | None], ...],
    out: list[_Desc],
) -> list[int | None]:
    """Appends ``scope``'s entries, steps of scans expanded, in execution order."""
    local: dict[int, int] = {}
    sub_outs: dict[int, list[int | None]] = {}

    def resolve(v: Any) -> int | None:
        link = scope.links.get(v) if isinstance(v, Var) else None
        if link is None:
            return None
        if link[0] == "entry":
            return local.get(link[1])
        if link[0] == "invar":
            return in_links[link[1]]
        return sub_outs[link[1]][link[2]] if link[1] in sub_outs else None

    for kind, key in scope.order:
        if kind == "entry":
            e = scope.entries[key]
            pred = None
            if e.kind in _LAYERS:
                pred = resolve(scope.jaxpr.eqns[e.dot_eqn].invars[e.data_pos])
            local[e.id] = len(out)
            out.append(_Desc(e, scope, where, levels, pred))
            continue
        sub = scope.subs[key]
        eqn = scope.jaxpr.eqns[key]
        ops = [resolve(v) for v in eqn.invars]
        if sub.length is None:
            sub_outs[key] = _walk(sub.scope, ops, levels, (*where, (key, None)), out)
            continue
        nc, nk = eqn.params["num_consts"], eqn.params["num_carry"]
        carry = ops[nc : nc + nk]
        steps = range(sub.length - 1, -1, -1) if sub.reverse else range(sub.length)
        assert sub.level is not None
        for step in steps:
            body_in = ops[:nc] + carry + [None] * (len(ops) - nc - nk)
            res = _walk(sub.scope, body_in, {**levels, sub.level: step}, (*where, (key, step)), out)
            carry = res[:nk]
        sub_outs[key] = carry + [None] * (len(eqn.outvars) - nk)
    return [resolve(v) for v in scope.jaxpr.outvars]


def _path_str(path: tuple[Any, ...]) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            parts.append(str(k.key))
        else:
            parts.append(str(k).strip(".[]'\""))
    if len(parts) > 1 and isinstance(path[-1], jax.tree_util.GetAttrKey) and parts[-1] == "value":
        parts.pop()  # a flax.nnx Variable's payload
    return "/".join(parts) or "params"


# ---------------------------------------------------------------------------
# Evaluation: the jaxpr again, with statistics, taps and LSUV where the entries are.


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tap(x: Array, slot: Array, mean: bool) -> Array:
    """Identity in ``x``; its backward pass writes ``mean(g²)`` (or ``sum``) into ``slot``."""
    del slot, mean
    return x


def _tap_fwd(x: Array, slot: Array, mean: bool) -> tuple[Array, Array]:
    del mean
    return x, jnp.zeros_like(slot)


def _tap_bwd(mean: bool, zero: Array, g: Array) -> tuple[Array, Array]:
    g2 = jnp.square(g.astype(jnp.promote_types(g.dtype, zero.dtype)))
    return g, (jnp.mean(g2) if mean else jnp.sum(g2)).astype(zero.dtype)


_tap.defvjp(_tap_fwd, _tap_bwd)


@dataclasses.dataclass(frozen=True)
class _Opts:
    threshold: float = SATURATION_THRESHOLD
    lsuv: frozenset[int] = frozenset()  # leaves whose layers LSUV rescales.
    tol: float = 0.1
    max_iters: int = 10
    capture: tuple[_Scope, int] | None = None  # (scope, entry id) whose z is recorded.


def _float(x: Array) -> Array:
    return lax.stop_gradient(x).astype(jnp.promote_types(x.dtype, jnp.float32))


def _example_axes(e: _Entry, ndim: int) -> tuple[int, ...]:
    units = e.units if e.units is not None else ((ndim - 1,) if ndim else ())
    return tuple(a for a in range(ndim) if a not in units)


def _lsuv_scale(u: Array, b: Array | None, opts: _Opts) -> tuple[Array, Array]:
    """The scale s of ``z = s u + b`` with ``|Var z - 1| < tol``, as LSUV's iteration finds it."""
    u32 = lax.stop_gradient(u).astype(jnp.promote_types(u.dtype, jnp.float32))
    b32 = None if b is None else lax.stop_gradient(b).astype(u32.dtype)

    def variance(s: Array) -> Array:
        return jnp.var(s * u32 if b32 is None else s * u32 + b32)

    def cond(state: tuple[Array, Array, Array]) -> Array:
        _, var, i = state
        return (jnp.abs(var - 1.0) >= opts.tol) & (i < opts.max_iters)

    def body(state: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        s, var, i = state
        s = s / jnp.sqrt(var)
        return s, variance(s), i + 1

    one = jnp.ones((), u32.dtype)
    s, _, _ = lax.while_loop(cond, body, (one, variance(one), jnp.zeros((), jnp.int32)))
    z = s.astype(u.dtype) * u if b is None else s.astype(u.dtype) * u + b
    return z, s


def _eval_scope(
    scope: _Scope, consts: Sequence[Any], args: Sequence[Any], slots: Any, opts: _Opts
) -> tuple[list[Any], dict[str, Any]]:
    """Evaluates one scope; returns its outputs and its records (see ``_flatten``)."""
    jaxpr = scope.jaxpr
    env: dict[Var, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    recs: dict[int, dict[str, Array]] = {e.id: {} for e in scope.entries}
    sub_recs: dict[int, Any] = {}

    def slot(e: _Entry, field: str) -> Any:
        return None if slots is None else slots["entries"][e.id].get(field)

    for i, eqn in enumerate(jaxpr.eqns):
        acts = scope.actions.get(i, ())
        invals = [read(v) for v in eqn.invars]
        if i in scope.subs:
            outs, sub_recs[i] = _eval_sub(scope.subs[i], eqn, invals, slots, opts)
        else:
            for act, e in acts:
                if act == "dot":
                    h, w = invals[e.data_pos], invals[e.weight_pos]
                    recs[e.id]["input_second_moment"] = jnp.mean(jnp.square(_float(h)))
                    recs[e.id]["sigma_w2"] = e.fan_in * jnp.mean(jnp.square(_float(w)))
                    if (s := slot(e, "w")) is not None:
                        invals[e.weight_pos] = _tap(w, s, False)
                elif act == "bias" and (s := slot(e, "b")) is not None:
                    assert e.bias_tap is not None
                    pos = e.bias_tap[1]
                    invals[pos] = _tap(invals[pos], s, False)
            outs = _bind(eqn, invals)
        for o, val in zip(eqn.outvars, outs):
            env[o] = val
        for act, e in acts:
            if act == "value":
                _at_value(e, env, invals, recs[e.id], slot(e, "z"), scope, opts)
        for act, e in acts:
            if act == "frontier":
                _at_frontier(e, env, read, recs[e.id], scope, opts)
    return [read(v) for v in jaxpr.outvars], {"entries": recs, "subs": sub_recs}


def _at_value(
    e: _Entry,
    env: dict[Var, Any],
    invals: list[Any],
    rec: dict[str, Array],
    z_slot: Any,
    scope: _Scope,
    opts: _Opts,
) -> None:
    z = env[e.value]
    if e.kind in _LAYERS:
        bias = invals[e.bias_pos] if e.bias_eqn >= 0 else None
        rec["sigma_b2"] = (
            jnp.zeros((), jnp.float32) if bias is None else jnp.mean(jnp.square(_float(bias)))
        )
        r = e.primary
        if r is not None and r.leaf in opts.lsuv:
            u = invals[1 - e.bias_pos] if bias is not None else z
            z, rec["scale"] = _lsuv_scale(u, bias, opts)
    if z_slot is not None:
        z = _tap(z, z_slot, True)
    env[e.value] = z
    zf = _float(z)
    mean = jnp.mean(zf)
    rec["second_moment"] = jnp.mean(jnp.square(zf))
    rec["mean"] = mean
    rec["variance"] = jnp.mean(jnp.square(zf - mean))
    if opts.capture is not None and opts.capture == (scope, e.id):
        rec["capture"] = z


def _replay(scope: _Scope, e: _Entry, eqn_ids: Sequence[int], read: Callable[[Any], Any]) -> Any:
    """``z -> a`` for entry ``e``: its elementwise ops again, other operands from ``read``."""
    eqns = scope.jaxpr.eqns

    def phi(z: Array) -> Array:
        local: dict[Var, Any] = {e.value: z}
        for j in eqn_ids:
            eqn = eqns[j]
            vals = [local[v] if isinstance(v, Var) and v in local else read(v) for v in eqn.invars]
            for o, val in zip(eqn.outvars, _bind(eqn, vals)):
                local[o] = val
        assert e.frontier is not None
        return local[e.frontier]

    return phi


def _at_frontier(
    e: _Entry,
    env: dict[Var, Any],
    read: Callable[[Any], Any],
    rec: dict[str, Array],
    scope: _Scope,
    opts: _Opts,
) -> None:
    assert e.frontier is not None
    z = lax.stop_gradient(env[e.value])
    a = _float(env[e.frontier])
    if e.frontier is e.value:
        dphi = jnp.ones_like(a)
    else:
        phi = _replay(scope, e, e.chain_eqns, lambda v: lax.stop_gradient(read(v)))
        dphi = _float(jax.jvp(phi, (z,), (jnp.ones_like(z),))[1])
    axes = _example_axes(e, a.ndim)
    rec["activation_second_moment"] = jnp.mean(jnp.square(a))
    dead = jnp.all(a == 0, axis=axes)
    saturated = jnp.all(jnp.abs(dphi) < opts.threshold, axis=axes)
    rec["dead_fraction"] = jnp.mean(dead.astype(jnp.float32))
    rec["saturated_fraction"] = jnp.mean(saturated.astype(jnp.float32))


def _eval_sub(
    sub: _Sub, eqn: JaxprEqn, invals: list[Any], slots: Any, opts: _Opts
) -> tuple[list[Any], Any]:
    sub_slots = None if slots is None else slots["subs"][sub.eqn]
    if sub.length is None:  # a checkpointed region: checkpointed again, stats included
        prm = eqn.params

        def region(args: list[Any], slots: Any) -> tuple[list[Any], Any]:
            return _eval_scope(sub.scope, sub.scope.consts, args, slots, opts)

        ckpt = jax.checkpoint(region, prevent_cse=prm["prevent_cse"], policy=prm["policy"])
        return ckpt(list(invals), sub_slots)
    prm = eqn.params
    nc, nk = prm["num_consts"], prm["num_carry"]
    consts, init, xs = invals[:nc], invals[nc : nc + nk], invals[nc + nk :]
    if sub.length == 1:  # one step: straight-line code (split_stacks' layers), stacked as a scan
        first = jax.tree.map(lambda a: a[0], (xs, sub_slots))
        outs, recs = _eval_scope(
            sub.scope, sub.scope.consts, [*consts, *init, *first[0]], first[1], opts
        )
        stacked = jax.tree.map(lambda a: a[None], (outs[nk:], recs))
        return [*outs[:nk], *stacked[0]], stacked[1]

    def body(carry: list[Any], x: tuple[list[Any], Any]) -> tuple[list[Any], Any]:
        xs_t, slot_t = x
        outs, recs = _eval_scope(
            sub.scope, sub.scope.consts, [*consts, *carry, *xs_t], slot_t, opts
        )
        return outs[:nk], (outs[nk:], recs)

    carry, (ys, recs) = lax.scan(
        body,
        list(init),
        (list(xs), sub_slots),
        length=sub.length,
        reverse=sub.reverse,
        unroll=prm["unroll"],
    )
    return [*carry, *ys], recs


# ---------------------------------------------------------------------------
# Records in entry order.


def _flatten(scope: _Scope, recs: dict[str, Any], fields: Sequence[str]) -> dict[str, Array]:
    """Per field, ``[..., entries]``: ``scope``'s records in execution order.

    A scope's own records have the shape of the enclosing scans' steps; a
    scan's records gain its step axis last, so each scan's entries are laid out
    step by step (reversed for a reverse scan).
    """
    parts: dict[str, list[Array]] = {f: [] for f in fields}
    for kind, key in scope.order:
        if kind == "entry":
            rec = recs["entries"][key]
            like = rec["second_moment"] if "second_moment" in rec else next(iter(rec.values()))
            for f in fields:
                parts[f].append(rec.get(f, jnp.full(like.shape, jnp.nan, like.dtype))[..., None])
            continue
        sub = scope.subs[key]
        inner = _flatten(sub.scope, recs["subs"][key], fields)
        for f in fields:
            a = inner[f]
            if sub.length is not None:
                if sub.reverse:
                    a = jnp.flip(a, axis=-2)
                a = a.reshape(*a.shape[:-2], a.shape[-2] * a.shape[-1])
            parts[f].append(a)
    return {f: jnp.concatenate(p, axis=-1) for f, p in parts.items()}


# ---------------------------------------------------------------------------
# A traced program.


def _inline(closed: ClosedJaxpr) -> ClosedJaxpr:
    """The same program with jit calls inlined (scans and checkpoints kept, their bodies too)."""

    def run(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
        env: dict[Var, Any] = dict(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, args))

        def read(v: Any) -> Any:
            return v.val if isinstance(v, Literal) else env[v]

        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            invals = [read(v) for v in eqn.invars]
            inner = _inner(eqn)
            if name in _CALLS and inner is not None:
                outs = run(inner[0], inner[1], invals)
            elif name in _REMATS and inner is not None:
                j, c = inner
                prm = eqn.params
                outs = list(
                    jax.checkpoint(
                        lambda *a, j=j, c=c: run(j, c, a),
                        prevent_cse=prm["prevent_cse"],
                        policy=prm["policy"],
                    )(*invals)
                )
            elif name == "scan":
                prm = eqn.params
                nc, nk = prm["num_consts"], prm["num_carry"]
                body: ClosedJaxpr = prm["jaxpr"]
                consts_v = invals[:nc]

                def step(
                    carry: list[Any], x: list[Any], body: Any = body, cv: Any = consts_v
                ) -> Any:
                    outs = run(body.jaxpr, body.consts, [*cv, *carry, *x])
                    return outs[: len(carry)], outs[len(carry) :]

                carry, ys = lax.scan(
                    step,
                    invals[nc : nc + nk],
                    invals[nc + nk :],
                    length=prm["length"],
                    reverse=prm["reverse"],
                    unroll=prm["unroll"],
                )
                outs = [*carry, *ys]
            else:
                outs = _bind(eqn, invals)
            for o, val in zip(eqn.outvars, outs):
                env[o] = val
        return [read(v) for v in jaxpr.outvars]

    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]
    return jax.make_jaxpr(lambda *a: run(closed.jaxpr, closed.consts, a))(*avals)


@dataclasses.dataclass(eq=False)
class _Program:
    """``fn(params, data)`` traced and analyzed: the entries and how to evaluate it."""

    closed: ClosedJaxpr
    scope: _Scope
    descs: list[_Desc]
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    paths: tuple[str, ...]
    param_treedef: Any
    n_params: int
    out_tree: Any
    out_shapes: list[Any]

    def leaves(self, params: Params, data: Any) -> tuple[list[Any], list[Any]]:
        return jax.tree.leaves(params), jax.tree.leaves(data)

    def run(
        self,
        param_leaves: Sequence[Any],
        data_leaves: Sequence[Any],
        opts: _Opts,
        slots: Any = None,
    ) -> tuple[list[Any], dict[str, Any]]:
        return _eval_scope(
            self.scope, self.closed.consts, [*param_leaves, *data_leaves], slots, opts
        )

    def zero_slots(self, dtype: Any) -> Any:
        def build(scope: _Scope, shape: tuple[int, ...]) -> dict[str, Any]:
            entries = {}
            for e in scope.entries:
                fields = ["z"]
                if e.kind in _LAYERS:
                    fields.append("w")
                    if e.bias_tap is not None:
                        fields.append("b")
                entries[e.id] = {f: jnp.zeros(shape, dtype) for f in fields}
            subs = {}
            for j, sub in scope.subs.items():
                subs[j] = build(sub.scope, shape if sub.length is None else (*shape, sub.length))
            return {"entries": entries, "subs": subs}

        return build(self.scope, ())

    def forward_report(self, recs: dict[str, Any]) -> Forward:
        fields = [f.name for f in dataclasses.fields(Forward) if f.name not in ("names", "kinds")]
        flat = _flatten(self.scope, recs, fields)
        return Forward(self.names, self.kinds, **flat)

    def describe(self, i: int) -> str:
        return f"{self.names[i]!r} ({self.kinds[i]})"


def _make_program(fn: Callable[..., Any], params: Params, data: Any) -> _Program:
    """Traces ``fn(params, data)`` and finds its entries."""
    if not callable(fn):
        raise TypeError(f"expected a function apply(params, x), got {type(fn).__name__}: {fn!r}")
    param_paths, param_treedef = jax.tree_util.tree_flatten_with_path(params)
    data_leaves, data_treedef = jax.tree.flatten(data)
    leaves = [leaf for _, leaf in param_paths]
    for path, leaf in param_paths:
        if not hasattr(leaf, "shape") and not isinstance(leaf, (int, float, complex)):
            raise TypeError(
                f"parameter leaf {_path_str(path)!r} is a {type(leaf).__name__}, not an array; "
                "pass the array part of the model (eqx.partition / nnx.split)"
            )
    n = len(leaves)

    def flat_fn(*args: Any) -> Any:
        p = jax.tree.unflatten(param_treedef, args[:n])
        d = jax.tree.unflatten(data_treedef, args[n:])
        return fn(p, d)

    closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*leaves, *data_leaves)
    closed = _inline(closed)
    ctx = _Ctx(tuple(int(np.size(leaf)) for leaf in leaves))
    in_infos = [_Info(_PARAM, frozenset({_Ref(k, (), "aligned")})) for k in range(n)]
    in_infos += [_Info(_DATA) for _ in data_leaves]
    scope, _ = _Analysis(closed.jaxpr, list(closed.consts), in_infos, (), ctx).run()
    descs: list[_Desc] = []
    _walk(scope, [None] * len(in_infos), {}, (), descs)
    paths = tuple(_path_str(p) for p, _ in param_paths)
    if not any(d.entry.kind in _LAYERS for d in descs):
        raise ValueError(
            "found no layer in the model: no dot_general or conv_general_dilated of a "
            "parameter and the input (checked outside lax.cond, lax.while_loop and "
            f"custom-derivative functions); parameter leaves: {paths}"
        )
    names = _names(descs, paths)
    out_leaves, out_tree = jax.tree.flatten(out_shape)
    return _Program(
        closed,
        scope,
        descs,
        names,
        tuple(d.entry.kind for d in descs),
        paths,
        param_treedef,
        n,
        out_tree,
        out_leaves,
    )


def _resolved(r: _Ref, levels: dict[_Level, int]) -> tuple[int, ...]:
    return tuple(levels[i] if isinstance(i, _Level) else i for i in r.index)


def _names(descs: list[_Desc], paths: tuple[str, ...]) -> tuple[str, ...]:
    names, last, seen = [], "input", collections.Counter[str]()
    for d in descs:
        r = d.entry.primary
        if r is not None and (d.entry.kind in _LAYERS or d.entry.kind == "norm"):
            name = paths[r.leaf]
            if r.state != "other":
                name += "".join(f"[{i}]" for i in _resolved(r, d.levels))
        else:
            name = f"{last}+{d.entry.kind}"
        if d.entry.kind in _LAYERS:
            last = name
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name] - 1}")
    return tuple(names)


# ---------------------------------------------------------------------------
# Public functions.


def _check_threshold(saturation_threshold: Any) -> float:
    return float(_checks.positive_number("saturation_threshold", saturation_threshold))


def forward(
    apply: Callable[[Params, Any], Any],
    params: Params,
    x: Any,
    *,
    saturation_threshold: float = SATURATION_THRESHOLD,
) -> Forward:
    """Measures every entry's forward statistics on a batch.

    Args:
      apply: the model, ``apply(params, x)``; any function of a parameter
        pytree and an input pytree that JAX can trace.
      params: the parameter pytree (arrays only).
      x: the input batch (any pytree of arrays).
      saturation_threshold: ``|phi'(z)|`` under which a unit is saturated.

    Returns:
      A :class:`Forward` with one value per entry (see the module doc).
      ``second_moment`` of a dense layer is the mean-field ``q^l``
      (:func:`theory_comparison`).

    Raises:
      ValueError: the model has no matmul or convolution over a parameter.
      TypeError: ``apply`` is not callable, or a parameter leaf is not an array.

    References:
      Glorot & Bengio 2010 (saturation); Lu et al. 2019, arXiv 1903.06733 (dead units).
    """
    opts = _Opts(threshold=_check_threshold(saturation_threshold))
    prog = _make_program(apply, params, x)
    _, recs = prog.run(*prog.leaves(params, x), opts)
    return prog.forward_report(recs)


def layer_stats(
    fn: Callable[..., Any],
    params: Params,
    batch: Any,
    *,
    loss: Callable[[Any, Any], Array] | None = None,
    saturation_threshold: float = SATURATION_THRESHOLD,
) -> tuple[Forward, Backward]:
    """Forward and backward statistics of every entry from one forward and one backward pass.

    ``dL/dz`` of every entry is read by an identity tap on ``z`` whose backward
    pass writes ``mean(g²)`` into the cotangent of a scalar zero (inside a
    scan, one zero per step, carried as a scan input), so nothing of size
    ``[layers, batch, width]`` is kept beyond what the plain backward pass keeps.

    Args:
      fn: the loss ``fn(params, batch) -> scalar``; or, with ``loss``, the model
        ``apply(params, x)``.
      params: the parameter pytree.
      batch: ``fn``'s data; with ``loss``, a pair ``(x, labels)``.
      loss: ``loss(output, labels) -> scalar``; then the loss is
        ``loss(apply(params, x), labels)``.
      saturation_threshold: as in :func:`forward`.

    Returns:
      ``(Forward, Backward)``. ``Backward.grad_second_moment`` is the mean of
      ``(dL/dz)²`` for the loss as given: for a batch-mean loss, multiply by
      ``batch²`` for per-example gradients.

    Raises:
      TypeError: the loss is not a scalar; ``batch`` is not a pair with ``loss``.
      ValueError: as :func:`forward`.

    References:
      Schoenholz et al. 2017, "Deep Information Propagation", arXiv 1611.01232.
    """
    threshold = _check_threshold(saturation_threshold)
    if loss is not None:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(
                f"with loss=..., batch must be a pair (x, labels), got {type(batch).__name__}"
            )
        apply = fn

        def loss_fn(p: Params, b: Any) -> Array:
            return loss(apply(p, b[0]), b[1])

    else:
        loss_fn = fn
    prog = _make_program(loss_fn, params, batch)
    if len(prog.out_shapes) != 1 or prog.out_shapes[0].shape != ():
        shapes = [tuple(s.shape) for s in prog.out_shapes]
        raise TypeError(f"the loss must return one scalar, got outputs of shapes {shapes}")
    param_leaves, data_leaves = prog.leaves(params, batch)
    dtype = jnp.result_type(float)
    opts = _Opts(threshold=threshold)
    inexact = [jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in param_leaves]

    def run(float_leaves: list[Any], slots: Any) -> tuple[Array, Any]:
        it = iter(float_leaves)
        p_leaves = [next(it) if f else leaf for f, leaf in zip(inexact, param_leaves)]
        outs, recs = prog.run(p_leaves, data_leaves, opts, slots)
        return outs[0], recs

    floats = [leaf for f, leaf in zip(inexact, param_leaves) if f]
    (g_floats, g_slots), recs = jax.grad(run, argnums=(0, 1), has_aux=True)(
        floats, prog.zero_slots(dtype)
    )
    paths = [p for f, p in zip(inexact, prog.paths) if f]
    flat = _flatten(prog.scope, _slot_records(g_slots), ["z", "w", "b"])
    backward = Backward(
        prog.names,
        prog.kinds,
        grad_second_moment=flat["z"],
        weight_grad_norm=jnp.sqrt(flat["w"]),
        bias_grad_norm=jnp.sqrt(flat["b"]),
        param_grad_norm={
            path: jnp.sqrt(jnp.sum(jnp.square(_float(g)))) for path, g in zip(paths, g_floats)
        },
    )
    return prog.forward_report(recs), backward


def _slot_records(slots: dict[str, Any]) -> dict[str, Any]:
    """Slots (and their cotangents) have the records' layout; ``z`` leads each entry."""
    entries = {k: {"second_moment": v["z"], **v} for k, v in slots["entries"].items()}
    return {"entries": entries, "subs": {k: _slot_records(v) for k, v in slots["subs"].items()}}


def _find(prog: _Program, at: int | str) -> int:
    if isinstance(at, bool) or not isinstance(at, (int, str)):
        raise TypeError(f"at must be an entry index or name, got {type(at).__name__}: {at!r}")
    if isinstance(at, str):
        if at not in prog.names:
            raise ValueError(f"unknown entry {at!r}; the entries are {list(prog.names)}")
        return prog.names.index(at)
    n = len(prog.names)
    if not -n <= at < n:
        raise ValueError(f"entry index {at} out of range for {n} entries {list(prog.names)}")
    return at % n


def jacobian_singular_values(
    apply: Callable[[Params, Any], Any],
    params: Params,
    x: ArrayLike,
    *,
    at: int | str | None = None,
    batch_axis: int = 0,
) -> Array:
    """Singular values of the Jacobian of one example's output (or an entry's ``z``).

    For each example of ``x`` (slices along ``batch_axis``, kept as a batch of
    one), the Jacobian of the flattened model output, or of the entry ``at``'s
    value ``z``, with respect to the flattened example. At criticality the
    squared singular values have mean 1 and a spread that grows with depth,
    unless the weights are orthogonal and phi' is near 1 (dynamical isometry).

    Args:
      apply: the model ``apply(params, x)``.
      params: the parameter pytree.
      x: a batch (one array).
      at: ``None`` for the output, else an entry's index (negative counts from
        the end) or name as :func:`forward` reports them.
      batch_axis: the axis of ``x`` that indexes examples.

    Returns:
      ``[batch, min(out_size, in_size)]`` singular values, in descending order.

    Raises:
      ValueError: ``batch_axis`` out of range for ``x``; an unknown entry.

    References:
      Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep
      learning through dynamical isometry", arXiv 1711.04735.
    """
    x = jnp.asarray(x)
    (axis,) = _checks.axes("batch_axis", batch_axis, x.ndim, shape=x.shape)
    one = jnp.expand_dims(jnp.take(x, 0, axis=axis), axis)
    prog = _make_program(apply, params, one)
    param_leaves = jax.tree.leaves(params)
    if at is None:
        capture = None
    else:
        desc = prog.descs[_find(prog, at)]
        capture = (desc.scope, desc.entry.id)
        where = desc.where
        eid = desc.entry.id
    opts = _Opts(capture=capture)

    def f(xi: Array) -> Array:
        outs, recs = prog.run(param_leaves, [xi], opts)
        if capture is None:
            return jnp.concatenate([jnp.ravel(o) for o in outs])
        steps = []
        for key, step in where:
            recs = recs["subs"][key]
            if step is not None:
                steps.append(step)
        return jnp.ravel(recs["entries"][eid]["capture"][tuple(steps)])

    out_size = math.prod(jax.eval_shape(f, one).shape)
    jac_fn = jax.jacfwd(f) if one.size <= out_size else jax.jacrev(f)

    def per_example(xi: Array) -> Array:
        xi = jnp.expand_dims(xi, axis)
        jac = jac_fn(xi).reshape(out_size, xi.size)
        return jnp.linalg.svd(jac, compute_uv=False)

    return jax.vmap(per_example, in_axes=axis)(x)


def lsuv(
    apply: Callable[[Params, Any], Any],
    params: Params,
    x: Any,
    *,
    layers: Sequence[str] | None = None,
    tol: float = 0.1,
    max_iters: int = 10,
) -> Params:
    """Layer-sequential unit-variance rescaling of any model's layers.

    In order from the input, each dense/conv layer's pre-activation
    ``z = h W + b`` on the batch ``x`` is measured and ``W`` divided by
    ``sqrt(Var z)`` until ``|Var z - 1| < tol`` or ``max_iters`` rescalings;
    later layers see the rescaled ones. Each layer of a stacked (scanned)
    weight gets its own scale. The scales are written into the parameter
    leaves, so the result has the structure and leaf types of ``params``.
    Pure and jittable (each layer's loop is a ``lax.while_loop`` at the layer,
    inside the model's own scans). The orthogonal start of the paper is the
    caller's choice.

    Args:
      apply: the model ``apply(params, x)``.
      params: the parameter pytree.
      x: a data batch.
      layers: the weight paths to rescale (leaf paths as in the entry names,
        without the ``[i]`` layer index); default every dense/conv weight.
      tol: tolerance on the variance, in ``(0, 1)``.
      max_iters: most rescalings per layer, a positive int.

    Returns:
      ``params`` with the selected weights rescaled.

    Raises:
      ValueError: a bad ``tol``/``max_iters``; a path in ``layers`` that is no
        layer's weight; a weight that is not a linear function of one slice of
        one leaf, or that several layers share.

    References:
      Mishkin & Matas 2016, "All you need is a good init", arXiv 1511.06422.
    """
    tol = _checks.probability("tol", tol, lo_open=True, hi_open=True)
    max_iters = _checks.positive_int("max_iters", max_iters)
    prog = _make_program(apply, params, x)
    layer_descs = [(i, d) for i, d in enumerate(prog.descs) if d.entry.kind in _LAYERS]
    by_path: dict[str, list[int]] = collections.defaultdict(list)
    for i, d in layer_descs:
        r = d.entry.primary
        if r is not None:
            by_path[prog.paths[r.leaf]].append(i)
    if layers is None:
        chosen = list(by_path)
    else:
        if isinstance(layers, str):
            raise TypeError(f"layers must be a sequence of paths, got the string {layers!r}")
        chosen = list(layers)
        unknown = [p for p in chosen if p not in by_path]
        if unknown:
            raise ValueError(
                f"unknown layer path(s) {unknown}; the layers' weights are {sorted(by_path)}"
            )
    targets: dict[int, list[tuple[int, tuple[int, ...]]]] = collections.defaultdict(list)
    for path in chosen:
        for i in by_path[path]:
            d = prog.descs[i]
            r = d.entry.primary
            assert r is not None
            if r.state == "other" or not set(d.scope.levels) <= set(r.index):
                raise ValueError(
                    f"cannot rescale layer {prog.describe(i)}: its weight is not a linear "
                    f"function of one slice of {path!r} (or that slice is shared across "
                    "scan steps)"
                )
            index = _resolved(r, d.levels)
            if any(index == j for _, j in targets[r.leaf]):
                raise ValueError(f"layer {prog.describe(i)} shares its weight with another layer")
            targets[r.leaf].append((i, index))
    opts = _Opts(lsuv=frozenset(targets), tol=float(tol), max_iters=max_iters)
    param_leaves, data_leaves = prog.leaves(params, x)
    _, recs = prog.run(param_leaves, data_leaves, opts)
    scale = _flatten(prog.scope, recs, ["scale"])["scale"]
    new = list(param_leaves)
    for leaf, items in targets.items():
        depth = {len(j) for _, j in items}
        if len(depth) != 1:
            raise ValueError(f"weight {prog.paths[leaf]!r} is indexed at different depths")
        (k,) = depth
        a = jnp.asarray(new[leaf])
        values = scale[..., np.asarray([i for i, _ in items])]
        if k == 0:
            mult = values[0]
        else:
            idx = np.asarray([j for _, j in items], dtype=np.int32)
            mult = jnp.ones(a.shape[:k], scale.dtype).at[tuple(idx.T)].set(values)
        new[leaf] = a * mult.reshape(mult.shape + (1,) * (a.ndim - k)).astype(a.dtype)
    return jax.tree.unflatten(prog.param_treedef, new)


def theory_comparison(
    apply: Callable[[Params, Any], Any],
    params: Params,
    x: Any,
    *,
    activation: ActivationLike | None = None,
) -> TheoryComparison:
    """Measured per-layer ``q`` beside the mean-field prediction, for any model.

    For each dense/conv layer ``l``, ``sigma_w2 = fan_in * mean(W²)`` and
    ``sigma_b2 = mean(b²)`` are read from its own parameters (``fan_in`` the
    contracted size of its matmul). Where its input is ``phi(z)`` of the layer
    before (the plain-MLP parts: ``chained[l]``) the prediction is
    the length map of the previous *prediction*,
    ``q^l = sigma_w2 E[phi(sqrt(q^{l-1}) u)²] + sigma_b2``, ``u ~ N(0, 1)``
    (:func:`jaxstab.theory.length_map`; with equal sigmas along a part this is
    :func:`jaxstab.theory.q_profile`). Elsewhere (the first layer, after a
    residual or norm) it starts over from the measured input:
    ``q^l = sigma_w2 mean(h²) + sigma_b2``, the exact expectation over the
    weights.

    Args:
      apply: the model ``apply(params, x)``.
      params: the parameter pytree.
      x: a data batch.
      activation: ``phi`` for every chained layer; default the model's own
        elementwise ops between the two layers (read from the jaxpr; a layer
        whose phi uses parameters or values from outside its scope then starts
        over).

    Returns:
      A :class:`TheoryComparison`.

    References:
      Poole et al. 2016, arXiv 1606.05340, eq. (3).
    """
    phi_given = None if activation is None else get_activation(activation)
    prog = _make_program(apply, params, x)
    _, recs = prog.run(*prog.leaves(params, x), _Opts())
    fwd = prog.forward_report(recs)
    idx = [i for i, d in enumerate(prog.descs) if d.entry.kind in _LAYERS]
    predicted: dict[int, Array] = {}
    chained = []
    for i in idx:
        d = prog.descs[i]
        sw2, sb2 = fwd.sigma_w2[..., i], fwd.sigma_b2[..., i]
        pred = d.pred
        phi = None
        if pred is not None and prog.descs[pred].entry.kind in _LAYERS:
            p = prog.descs[pred]
            if phi_given is not None:
                phi = phi_given
            elif p.entry.replayable:
                phi = _static_phi(p)
        if phi is not None and pred is not None:
            predicted[i] = _length_map(phi, sw2, sb2, predicted[pred])
        else:
            predicted[i] = sw2 * fwd.input_second_moment[..., i] + sb2
        chained.append(phi is not None)
    return TheoryComparison(
        tuple(prog.names[i] for i in idx),
        tuple(chained),
        measured=fwd.second_moment[..., np.asarray(idx)],
        predicted=jnp.stack([predicted[i] for i in idx], axis=-1),
        sigma_w2=fwd.sigma_w2[..., np.asarray(idx)],
        sigma_b2=fwd.sigma_b2[..., np.asarray(idx)],
    )


def _length_map(phi: Callable[[Array], Array], sw2: Array, sb2: Array, q: Array) -> Array:
    return theory.length_map(phi, sw2, sb2, q).astype(q.dtype)


def _static_phi(d: _Desc) -> Callable[[Array], Array]:
    """The entry's ``z -> a`` as a function of any array: its eqns on ``z``-shaped chunks."""
    e, scope = d.entry, d.scope
    consts = dict(zip(scope.jaxpr.constvars, scope.consts))
    phi = _replay(scope, e, e.replay_eqns, lambda v: v.val if isinstance(v, Literal) else consts[v])
    shape, dtype = _shape(e.value), _dtype(e.value)
    size = max(math.prod(shape), 1)

    def fn(u: Array) -> Array:
        u = jnp.asarray(u)
        flat = u.reshape(-1).astype(dtype)
        chunks = -(-flat.size // size)
        padded = jnp.pad(flat, (0, chunks * size - flat.size)).reshape(chunks, *shape)
        out = jax.vmap(phi)(padded).reshape(-1)[: flat.size]
        return out.reshape(u.shape).astype(u.dtype)

    return fn
