"""Every notebook executes (its experiment's --quick config) and leaves a results.json."""

import json
import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
from _common import CLAIM_FIELDS

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
KEYS = {"provenance", "experiment", "quick", "config", "measured", "claims", "figures"}


def test_there_is_a_notebook_per_experiment():
    experiments = pathlib.Path(__file__).resolve().parents[1] / "experiments"
    names = {p.stem for p in experiments.glob("*.py") if not p.stem.startswith("_")}
    assert names and names == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    result = json.loads(
        (tmp_path / "runs" / "experiments" / path.stem / "results.json").read_text()
    )
    assert KEYS <= set(result) and result["experiment"] == path.stem and result["quick"] is True
    # The quick config checks that every claim is computed, not that it agrees.
    assert result["claims"]
    for c in result["claims"]:
        assert set(CLAIM_FIELDS) <= set(c), c
        assert c["measured"] is not None and c["source"] and c["rule"], c
        assert c["agrees"] in (True, False, None), c
    for fig in result["figures"]:
        assert (tmp_path / "runs" / "experiments" / path.stem / fig).read_bytes()[:4] == b"\x89PNG"
