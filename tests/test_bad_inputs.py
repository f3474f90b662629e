"""Bad inputs to the public library functions: one table, one expectation per row.

Every row calls a public function (initializers, losses, the MLP, activations,
mean-field theory, data sets, and the shared validators) with one bad argument
and asserts the exception type and that the message names both the parameter and
the bad value as the user wrote it (and, where useful, what is valid). The last
test asserts how many bad inputs the table tries and prints the number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstab as js
from jaxstab import _checks, data, theory

KEY = jax.random.key(0)
PARAMS = js.init_mlp(KEY, [4, 8, 8, 3])
X = jnp.ones((2, 4))


class Case(NamedTuple):
    id: str
    call: Callable[[], Any]
    says: tuple[str, ...]  # substrings the message must contain: the parameter, the value
    error: type[Exception] = ValueError


def _vs(**kw: Any) -> Any:
    return js.variance_scaling(**{"scale": 1.0, "mode": "fan_in", "distribution": "normal", **kw})


def _transposed(key: Any, shape: Any, dtype: Any = None) -> Any:
    return js.he_normal()(key, tuple(shape)[::-1], dtype)


def _arrays(**changes: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    base = {
        "x_train": rng.normal(size=(6, 3)),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": rng.normal(size=(4, 3)),
        "y_test": np.array([2, 1, 0, 1]),
    }
    return {**base, **changes}


CASES = [
    # ---- initializers: construction ----------------------------------------------
    Case("vs scale 0", lambda: _vs(scale=0.0), ("scale", "positive", "got 0.0")),
    Case("vs scale -1", lambda: _vs(scale=-1), ("scale", "got -1")),
    Case("vs scale nan", lambda: _vs(scale=math.nan), ("scale", "got nan")),
    Case("vs scale inf", lambda: _vs(scale=math.inf), ("scale", "got inf")),
    Case("vs scale str", lambda: _vs(scale="1"), ("scale", "got '1'")),
    Case("vs scale bool", lambda: _vs(scale=True), ("scale", "got True")),
    Case("vs scale np.float32", lambda: _vs(scale=np.float32(-2)), ("scale", "np.float32(-2.0)")),
    Case("vs scale jax array", lambda: _vs(scale=jnp.array(-2.0)), ("scale", "Array(-2.")),
    Case("vs scale vector", lambda: _vs(scale=np.ones(2)), ("scale", "array([1., 1.])")),
    Case("vs mode", lambda: _vs(mode="fan_max"), ("mode 'fan_max'", "valid: fan_in, fan_out")),
    Case("vs distribution", lambda: _vs(distribution="cauchy"), ("'cauchy'", "uniform")),
    Case("vs in==out", lambda: _vs(in_axis=-1, out_axis=-1), ("in_axis=-1", "out_axis=-1")),
    Case("vs in==batch", lambda: _vs(in_axis=0, batch_axis=(0,)), ("batch_axis=(0,)", "in_axis=0")),
    Case("vs in_axis float", lambda: _vs(in_axis=1.5), ("in_axis", "got 1.5")),
    Case("vs dtype int", lambda: _vs(dtype=jnp.int32), ("dtype", "int32", "float32")),
    Case("xavier gain 0", lambda: js.xavier_normal(gain=0.0), ("gain", "got 0.0")),
    Case("xavier gain -inf", lambda: js.xavier_uniform(gain=-math.inf), ("gain", "got -inf")),
    Case("he slope nan", lambda: js.he_normal(negative_slope=math.nan), ("negative_slope", "nan")),
    Case("he mode", lambda: js.he_uniform(mode="avg"), ("mode 'avg'", "fan_avg")),
    Case("orthogonal gain", lambda: js.orthogonal(gain=-1.0), ("gain", "got -1.0")),
    Case("orthogonal axis float", lambda: js.orthogonal(column_axis=0.5), ("column_axis", "0.5")),
    Case("normal stddev", lambda: js.normal(-0.1), ("stddev", ">= 0", "got -0.1")),
    Case("constant nan", lambda: js.constant(math.nan), ("value", "got nan")),
    Case("gain name", lambda: js.calculate_gain("swish"), ("'swish'", "valid: linear")),
    Case("gain param", lambda: js.calculate_gain("tanh", 0.1), ("'tanh'", "got 0.1")),
    Case("gain slope", lambda: js.calculate_gain("leaky_relu", "a"), ("param", "got 'a'")),
    Case("get_initializer", lambda: js.get_initializer("xavier"), ("'xavier'", "xavier_uniform")),
    Case("get_initializer int", lambda: js.get_initializer(3), ("initializer 3", "he_normal")),
    # ---- initializers: call --------------------------------------------------------
    Case("in_axis 5 on 2-D", lambda: _vs(in_axis=5)(KEY, (4, 6)), ("in_axis=5", "(4, 6)")),
    Case("out_axis -3 on 2-D", lambda: _vs(out_axis=-3)(KEY, (4, 6)), ("out_axis=-3", "[-2, 1]")),
    Case("in 0 == out -2", lambda: _vs(in_axis=0, out_axis=-2)(KEY, (4, 6)), ("in_axis=0", "-2")),
    Case("negative dim", lambda: js.he_normal()(KEY, (-1, 4)), ("shape", "(-1, 4)", ">= 1")),
    Case("zero dim", lambda: js.he_normal()(KEY, (4, 0)), ("shape", "(4, 0)")),
    Case("float dim", lambda: js.he_normal()(KEY, (4, 2.5)), ("shape", "2.5")),
    Case("1-D weight", lambda: js.xavier_normal()(KEY, (5,)), ("shape (5,)", "2 dimensions")),
    Case("0-D weight", lambda: js.lecun_normal()(KEY, ()), ("shape ()",)),
    Case("string shape", lambda: js.he_normal()(KEY, "44"), ("shape", "'44'")),
    Case("call dtype", lambda: js.he_normal()(KEY, (4, 4), jnp.int8), ("int8", "floating")),
    Case("call dtype name", lambda: js.zeros(KEY, (4,), "float99"), ("dtype", "'float99'")),
    Case("bias negative dim", lambda: js.zeros(KEY, (-3,)), ("shape", "(-3,)")),
    Case("orthogonal axis", lambda: js.orthogonal(column_axis=3)(KEY, (4, 4)), ("column_axis=3",)),
    Case("fans axis", lambda: js.compute_fans((3, 4), out_axis=-3), ("out_axis=-3", "(3, 4)")),
    Case(
        "critical in==out",
        lambda: js.critical("relu", in_axis=-2, out_axis=-2),
        ("in_axis=-2", "out_axis=-2"),
    ),
    # ---- losses ---------------------------------------------------------------------
    Case(
        "label 3 of 3",
        lambda: js.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 3])),
        ("label 3", "labels[1]", "[0, 3)"),
    ),
    Case(
        "label -1",
        lambda: js.softmax_cross_entropy(jnp.zeros((2, 3)), np.array([-1, 0])),
        ("label -1", "labels[0]", "[0, 3)"),
    ),
    Case(
        "label shape",
        lambda: js.softmax_cross_entropy(jnp.zeros((3, 4)), jnp.zeros((3, 2))),
        ("labels of shape (3, 2)", "logits of shape (3, 4)"),
    ),
    Case("scalar logits", lambda: js.log_softmax(jnp.array(1.0)), ("logits", "shape ()")),
    Case("softmax axis", lambda: js.softmax(jnp.zeros((2, 3)), axis=2), ("axis=2", "(2, 3)")),
    Case("log_softmax axis", lambda: js.log_softmax(jnp.zeros(3), axis=-2), ("axis=-2", "(3,)")),
    # ---- the MLP --------------------------------------------------------------------
    Case("sizes short", lambda: js.init_mlp(KEY, [5]), ("sizes", "[5]")),
    Case("sizes zero", lambda: js.init_mlp(KEY, [5, 0, 3]), ("sizes[1] is 0",)),
    Case("sizes numpy neg", lambda: js.init_mlp(KEY, np.array([4, -8, 3])), ("[4, -8, 3]",)),
    Case("sizes float", lambda: js.init_mlp(KEY, [4, 2.5]), ("sizes[1] is 2.5",)),
    Case("sizes bool", lambda: js.init_mlp(KEY, [4, True, 2]), ("sizes[1] is True",)),
    Case("sizes int", lambda: js.init_mlp(KEY, 7), ("sizes", "got 7")),
    Case(
        "weight_init shape",
        lambda: js.init_mlp(KEY, [4, 8, 3], weight_init=_transposed),
        ("weight_init", "returned shape (8, 4)", "shape (4, 8)"),
    ),
    Case(
        "bias_init shape",
        lambda: js.init_mlp(KEY, [4, 8, 3], bias_init=lambda k, s, d=None: jnp.zeros(3)),
        ("bias_init", "returned shape (3,)", "shape (8,)"),
    ),
    Case(
        "weight_init str",
        lambda: js.init_mlp(KEY, [4, 3], weight_init="he_normal"),
        ("weight_init", "'he_normal'"),
    ),
    Case("mlp dtype", lambda: js.init_mlp(KEY, [4, 3], dtype=jnp.int32), ("dtype", "int32")),
    Case("apply empty params", lambda: js.apply_mlp({}, X), ("params", "keys []")),
    Case("apply width", lambda: js.apply_mlp(PARAMS, jnp.ones((2, 5))), ("5 features", "d_in=4")),
    Case(
        "apply width jit",
        lambda: jax.jit(js.apply_mlp)(PARAMS, jnp.ones((2, 7))),
        ("7 features", "d_in=4"),
    ),
    Case("apply rank", lambda: js.apply_mlp(PARAMS, jnp.ones(4)), ("x", "shape (4,)")),
    Case("apply remat", lambda: js.apply_mlp(PARAMS, X, remat="block"), ("remat", "'block'")),
    Case("apply activation", lambda: js.apply_mlp(PARAMS, X, "relux"), ("'relux'", "tanh")),
    Case(
        "apply bias shape",
        lambda: js.apply_mlp(
            {"hidden": [], "output": {"w": jnp.ones((4, 3)), "b": jnp.ones(4)}}, X
        ),
        ('params["output"]["b"]', "(3,)", "shape (4,)"),
    ),
    Case("mlp_sizes", lambda: js.mlp_sizes({"w": 1}), ("params", "keys ['w']")),
    Case("split max_len", lambda: js.split_stacks(PARAMS, max_len=-1), ("max_len", "got -1")),
    # ---- activations ---------------------------------------------------------------
    Case("activation name", lambda: js.get_activation("relux"), ("'relux'", "sigmoid")),
    Case("activation type", lambda: js.get_activation(3), ("activation", "got 3")),
    Case(
        "activation param",
        lambda: js.get_activation("relu", negative_slope=0.1),
        ("negative_slope", "'relu'"),
    ),
    Case(
        "activation param nan",
        lambda: js.get_activation("elu", alpha=math.nan),
        ("alpha", "got nan"),
    ),
    # ---- mean-field theory ---------------------------------------------------------
    Case("q_star sigma_w2", lambda: theory.q_star("tanh", -1.0, 0.0), ("sigma_w2", "-1.0")),
    Case("chi1 sigma_b2 nan", lambda: theory.chi1("tanh", 1.0, math.nan), ("sigma_b2", "nan")),
    Case("q_star q0", lambda: theory.q_star("tanh", 1.0, 0.0, 0.0), ("q0", "> 0", "got 0.0")),
    Case("q_star num_iters", lambda: theory.q_star("tanh", 1.0, 0.0, num_iters=0), ("num_iters",)),
    Case("length_map q", lambda: theory.length_map("relu", 1.0, 0.0, -2.0), ("q ", "-2.0")),
    Case(
        "correlation_map c",
        lambda: theory.correlation_map("tanh", 1.0, 0.1, 1.5),
        ("c ", "[-1, 1]", "1.5"),
    ),
    Case("c_star c0", lambda: theory.c_star("tanh", 1.0, 0.1, c0=2.0), ("c0", "2.0")),
    Case("q_profile depth 0", lambda: theory.q_profile("relu", 1.0, 0.0, 1.0, 0), ("depth", "0")),
    Case("q_profile depth float", lambda: theory.q_profile("relu", 1.0, 0.0, 1.0, 2.5), ("2.5",)),
    Case(
        "theory grid",
        lambda: theory.chi1("tanh", jnp.ones(3), 0.0),
        ("sigma_w2", "shape (3,)", "vmap"),
    ),
    Case("theory activation", lambda: theory.chi1("nope", 1.0, 0.0), ("'nope'",)),
    Case(
        "critical relu bias",
        lambda: theory.critical_sigma_w2("relu", 0.3),
        ("'relu'", "sigma_b2=0.3", "q* = inf"),
    ),
    Case("critical() relu bias", lambda: js.critical("relu", 0.3), ("sigma_b2=0.3",)),
    Case("critical sigma_b2", lambda: theory.critical_sigma_w2("tanh", -0.1), ("sigma_b2", "-0.1")),
    # ---- data sets -----------------------------------------------------------------
    Case(
        "one class inferred",
        lambda: data.from_arrays(**_arrays(y_train=np.zeros(6, int), y_test=np.zeros(4, int))),
        ("every label is 0", "1 class", "at least 2"),
    ),
    Case("num_classes 1", lambda: data.from_arrays(**_arrays(), num_classes=1), ("num_classes",)),
    Case(
        "label out of range",
        lambda: data.from_arrays(**_arrays(y_test=np.array([0, 1, 3, 1])), num_classes=3),
        ("y_test[2] = 3", "[0, num_classes=3)"),
    ),
    Case(
        "mixture classes",
        lambda: data.gaussian_mixture(num_classes=1),
        ("num_classes", ">= 2", "got 1"),
    ),
    Case("teacher classes", lambda: data.teacher_mlp(num_classes=1), ("num_classes", "got 1")),
    Case("teacher activation", lambda: data.teacher_mlp(activation="softsign"), ("'softsign'",)),
    Case(
        "separation",
        lambda: data.gaussian_mixture(separation=-1.0),
        ("separation", "got -1.0"),
    ),
    Case("test_fraction", lambda: data.load_digits(test_fraction=1.5), ("test_fraction", "1.5")),
    Case("dataset name", lambda: data.get_dataset("imagenet"), ("'imagenet'", "digits")),
    Case(
        "npz missing",
        lambda: data.load_npz("/nonexistent/x.npz"),
        ("/nonexistent/x.npz",),
        FileNotFoundError,
    ),
    # ---- the shared validators, directly -------------------------------------------
    Case("positive_int 0", lambda: _checks.positive_int("width", 0), ("width", "got 0")),
    Case("positive_int 2.0", lambda: _checks.positive_int("width", 2.0), ("width", "got 2.0")),
    Case(
        "positive_int traced",
        lambda: jax.jit(lambda n: _checks.positive_int("depth", n))(3),
        ("depth", "static"),
    ),
    Case(
        "number traced",
        lambda: jax.jit(lambda v: _checks.positive_number("lr", v))(0.1),
        ("lr", "traced"),
    ),
    Case("probability", lambda: _checks.probability("p", 1.5), ("p must be", "[0, 1]", "1.5")),
    Case("one_of bool", lambda: _checks.one_of("remat", True, ("layer", 1)), ("remat True",)),
    Case("shape str", lambda: _checks.shape("shape", "ab"), ("shape", "'ab'")),
    Case("axes repeat", lambda: _checks.axes("axis", (0, -2), 2), ("axis=(0, -2)", "repeats")),
]

EXPECTED_CASES = 104


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case) -> None:
    with pytest.raises(case.error) as info:
        case.call()
    message = str(info.value)
    for part in case.says:
        assert part in message, f"{case.id}: {part!r} not in {message!r}"


def test_bad_input_count() -> None:
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "duplicate case ids"
    print(f"\nbad-input suite: {len(CASES)} bad inputs tried")
    assert len(CASES) == EXPECTED_CASES
