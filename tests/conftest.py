"""Strict settings for the whole suite: implicit rank promotion raises, and
warnings raised from jaxstab's own code are errors."""

import warnings

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _strict_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module=r"jaxstab(\..*)?$")
        warnings.filterwarnings("error", category=FutureWarning, module=r"jaxstab")
        yield
