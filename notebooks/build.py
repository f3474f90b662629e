"""Builds and executes every experiment's notebook, saved with its outputs.

    .venv/bin/python notebooks/build.py [NAME ...]

Each notebook imports its experiment from ``experiments/``, runs the quick config
(``main(["--quick"])``, workdir ``runs/experiments/<name>`` under the kernel's working
directory) and shows what the findings page shows for the full config: the claims
table and the experiment's own section (``_findings.claims_table`` and the module's
``findings(result)``), then the figures. The notebooks run with nbclient in a
temporary directory, so building them writes nothing but the ``.ipynb`` files.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
from _findings import EXPERIMENTS  # noqa: E402

TIMEOUT_S = 600  # per cell; the quick configs take well under a minute

# Finds experiments/ from the kernel's working directory or, when the notebook runs
# elsewhere (a temporary directory), beside the installed jaxstab package (editable
# install: jaxstab/ sits beside experiments/ in the repository).
IMPORT = """\
import pathlib
import sys

import jaxstab

here = pathlib.Path.cwd()
candidates = [p / "experiments" for p in (here, *here.parents)]
candidates.append(pathlib.Path(jaxstab.__file__).resolve().parents[1] / "experiments")
experiments = next(p for p in candidates if (p / "@NAME@.py").is_file())
sys.path.insert(0, str(experiments))
import _findings
import @NAME@ as experiment

print(experiment.get_config(quick=True))"""

RUN = """\
import time

start = time.perf_counter()
result = experiment.main(["--quick"])  # writes runs/experiments/@NAME@/ under the cwd
print(f"quick run: {time.perf_counter() - start:.1f} s wall")"""

CLAIMS = """\
from IPython.display import Markdown, display

display(Markdown(_findings.claims_table(result["claims"])))"""

SECTION = """\
display(Markdown(experiment.findings(result)))"""

FIGURES = """\
from IPython.display import Image

workdir = pathlib.Path("runs/experiments/@NAME@")
for figure in result["figures"]:
    display(Image(filename=str(workdir / figure)))"""


def module_doc(name: str) -> str:
    """The experiment module's docstring (the claim, the paper and the method)."""
    tree = ast.parse((ROOT / "experiments" / f"{name}.py").read_text())
    return ast.get_docstring(tree) or name


def build(name: str) -> nbformat.NotebookNode:
    """The notebook of one experiment, unexecuted."""
    title, _, body = module_doc(name).partition("\n")
    cells = [
        nbformat.v4.new_markdown_cell(f"# `{name}`: {title}\n\n{body.strip()}"),
        nbformat.v4.new_code_cell(IMPORT.replace("@NAME@", name)),
        nbformat.v4.new_markdown_cell(
            "The quick configuration, which checks that every claim is computed (the full "
            f"one: `python experiments/{name}.py`; its numbers are in `docs/findings.md`)."
        ),
        nbformat.v4.new_code_cell(RUN.replace("@NAME@", name)),
        nbformat.v4.new_markdown_cell("## The published claims against the measured numbers"),
        nbformat.v4.new_code_cell(CLAIMS),
        nbformat.v4.new_code_cell(SECTION),
        nbformat.v4.new_markdown_cell("## Figures"),
        nbformat.v4.new_code_cell(FIGURES.replace("@NAME@", name)),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: all of {', '.join(EXPERIMENTS)}")
    args = parser.parse_args(argv)
    names = [n for n in args.names if not n.startswith("-")] or list(EXPERIMENTS)
    known = {p.stem for p in (ROOT / "experiments").glob("[!_]*.py")}
    unknown = sorted(set(names) - known)
    if unknown:
        parser.error(f"unknown experiments {unknown}; valid: {', '.join(sorted(known))}")
    for name in names:
        nb = build(name)
        with tempfile.TemporaryDirectory() as cwd:
            NotebookClient(
                nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": cwd}}
            ).execute()
        path = ROOT / "notebooks" / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
