"""What the training group's experiments share: glorot2010_saturation, he2015_depth and
clipping_rescue (their notebooks run the quick configs end to end).

Here: their configs and the scalar round trip of ``_common``. Each experiment's own
tests (helpers against hand computations, the engine against a plain loop, Monte
Carlo against theory) are in tests/test_exp_<name>.py.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import _common
import clipping_rescue
import glorot2010_saturation as glorot
import he2015_depth

# Each module's docstring names its paper.
PAPERS = {glorot: "Glorot & Bengio 2010", he2015_depth: "1502.01852", clipping_rescue: "1211.5063"}


@pytest.mark.parametrize("module", list(PAPERS), ids=lambda m: m.NAME)
def test_configs_are_frozen_and_quick_is_smaller(module):
    full, quick = module.get_config(), module.get_config(quick=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.seed = 1  # type: ignore[misc]
    assert quick.steps < full.steps
    assert PAPERS[module] in module.__doc__


# --- glorot2010_saturation: tests/test_exp_glorot2010_saturation.py -------------------


def test_scalars_round_trip():
    arrays = {"a": jnp.arange(3.0), "b": jnp.arange(8.0).reshape(2, 4), "c": jnp.float32(7)}
    flat = _common.to_scalars(arrays)
    assert len(flat) == 3 + 8 + 1 and all(v.shape == () for v in flat.values())
    # As the engine returns them: a leading [runs, evals] on every scalar.
    evals = {k: np.full((2, 3), float(v)) for k, v in flat.items()}
    back = _common.from_scalars(evals, {k: v.shape for k, v in arrays.items()})
    for k, v in arrays.items():
        assert back[k].shape == (2, 3, *v.shape)
        np.testing.assert_array_equal(back[k][1, 2], v)


# --- he2015_depth: tests/test_exp_he2015_depth.py ----------------------------------------
