"""The README's example runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert "clipped" in capsys.readouterr().out


def test_doctests_in_the_package():
    import doctest

    import jaxstab._train

    result = doctest.testmod(jaxstab._train, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
