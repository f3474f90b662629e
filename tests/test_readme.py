"""The README's example runs as written."""

import doctest
import importlib
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert "clipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name", ["_mlp", "_train", "data", "theory._maps", "theory._critical", "engine._runs"]
)
def test_doctests_in_the_package(name):
    module = importlib.import_module(f"jaxstab.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
