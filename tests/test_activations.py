"""Activations by name: values against their definitions, hashing, errors."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

import jaxstab as js

X = np.linspace(-6.0, 6.0, 97)
SELU_LAMBDA, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772

DEFINITIONS = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "linear": lambda x: x,
}


def test_registry_is_complete():
    assert set(js.ACTIVATIONS) == set(DEFINITIONS)


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_values_match_definition(name):
    phi = js.get_activation(name)
    np.testing.assert_allclose(phi(jnp.asarray(X)), DEFINITIONS[name](X), rtol=2e-6, atol=2e-6)


def test_parameters_and_alias():
    leaky = js.get_activation("leaky_relu", negative_slope=0.2)
    np.testing.assert_allclose(leaky(jnp.asarray(X)), np.where(X > 0, X, 0.2 * X), rtol=1e-6)
    elu = js.get_activation("elu", alpha=0.5)
    np.testing.assert_allclose(elu(jnp.asarray(X)), np.where(X > 0, X, 0.5 * np.expm1(X)), 1e-6)
    assert js.get_activation("swish") == js.get_activation("silu")


def test_equal_by_value_so_static_jit_traces_once():
    a = js.get_activation("leaky_relu", negative_slope=0.1)
    b = js.get_activation("leaky_relu", negative_slope=0.1)
    assert a == b and hash(a) == hash(b)
    assert a != js.get_activation("leaky_relu", negative_slope=0.2)
    traces = []

    @functools.partial(jax.jit, static_argnums=1)
    def g(x, phi):
        traces.append(phi)  # runs once per trace
        return phi(x)

    g(jnp.ones(3), a)
    g(jnp.ones(3), b)
    assert traces == [a]


def test_numpy_scalar_parameters_give_the_same_activation():
    a = js.get_activation("leaky_relu", negative_slope=np.float64(0.25))
    assert a == js.get_activation("leaky_relu", negative_slope=0.25)
    np.testing.assert_array_equal(a(jnp.asarray([-4.0, 2.0])), [-1.0, 2.0])


def test_callable_passes_through():
    fn = lambda x: x**3
    assert js.get_activation(fn) is fn


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        (("relux",), {}, "unknown activation 'relux'; valid names: sigmoid, tanh, relu"),
        (("relu",), {"negative_slope": 0.1}, r"unknown parameter\(s\) \['negative_slope'\]"),
        (("leaky_relu",), {"slope": 0.1}, r"\['slope'\] for activation 'leaky_relu'; valid: "),
        (
            ("leaky_relu",),
            {"negative_slope": float("nan")},
            "leaky_relu parameter negative_slope must be a finite number, got nan",
        ),
        (("elu",), {"alpha": True}, "elu parameter alpha must be a finite number, got True"),
        (("gelu",), {"approximate": 1.0}, "gelu parameter approximate must be True or False"),
        ((lambda x: x,), {"alpha": 1.0}, r"parameters \['alpha'\] can only be given"),
        ((3,), {}, "activation must be a name or a callable, got 3"),
    ],
)
def test_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        js.get_activation(*args, **kwargs)
