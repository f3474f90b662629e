"""Strict settings for the whole suite: implicit rank promotion raises, and
warnings raised from jaxstab's own code are errors.

Compiled programs are shared between the test processes (xdist workers and the
command-line subprocesses) through jax's persistent compilation cache, so a
program that several tests compile is compiled once.
"""

import os
import tempfile
import warnings

os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxstab-test-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _strict_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module=r"jaxstab(\..*)?$")
        yield
