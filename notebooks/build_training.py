"""Builds and runs the training group's notebooks: one per experiment, saved with outputs.

    .venv/bin/python notebooks/build_training.py [NAME ...]

Each notebook imports its experiment module from ``experiments/``, runs the quick
config (``main(["--quick"])``, workdir ``runs/experiments/<name>`` relative to the
kernel's working directory), prints the claims as a table and shows the figures.
The notebooks are executed with nbclient in a temporary directory, so building them
writes nothing into the repository but the ``.ipynb`` files.
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
EXPERIMENTS = ("glorot2010_saturation", "he2015_depth", "clipping_rescue")
TIMEOUT_S = 600  # per cell; the quick configs take well under a minute

# Finds experiments/ from the kernel's working directory or, when the notebook runs
# elsewhere (a temporary directory), from the installed jaxstab package (editable
# install: jaxstab/ sits beside experiments/ in the repository).
IMPORT_CELL = """\
import pathlib
import sys

import jaxstab

candidates = [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]
candidates.append(pathlib.Path(jaxstab.__file__).resolve().parents[1])
root = next(p for p in candidates if (p / "experiments" / "{name}.py").is_file())
sys.path.insert(0, str(root / "experiments"))
import {name}  # noqa: E402
"""

RUN_CELL = """\
result = {name}.main(["--quick"])  # workdir: runs/experiments/{name} under the cwd
workdir = pathlib.Path("runs/experiments/{name}")
print("config:", result["config"])
"""

CLAIMS_CELL = """\
rows = [("#", "agrees", "measured", "tolerance", "claim")]
for i, c in enumerate(result["claims"], 1):
    m = c["measured"]
    items = m.items() if isinstance(m, dict) else [("", m)]
    measured = ", ".join(
        (f"{k}=" if k else "") + (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in items
    )
    rows.append((str(i), str(c["agrees"]), measured, str(c["tolerance"]), c["claim"]))
widths = [max(len(r[j]) for r in rows) for j in range(4)]
for r in rows:
    print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[4])
print()
for i, c in enumerate(result["claims"], 1):
    print(f"{i}. published: {c['published']}")
"""

FIGURES_CELL = """\
from IPython.display import Image, display

for name in result["figures"]:
    print(name)
    display(Image(filename=str(workdir / name)))
"""


def docstring(name: str) -> str:
    """The experiment module's docstring, read without importing it."""
    tree = ast.parse((ROOT / "experiments" / f"{name}.py").read_text())
    return ast.get_docstring(tree) or name


def build(name: str) -> nbformat.NotebookNode:
    """The notebook of one experiment, not yet executed."""
    doc = docstring(name)
    title, _, body = doc.partition("\n")
    intro = (
        f"# {name}: {title}\n\n{body.strip()}\n\n"
        "This notebook runs the **quick** (shrunk) configuration so that it executes in "
        "seconds; the numbers of the full configuration are in `docs/findings_training.md`."
    )
    cells = [
        nbformat.v4.new_markdown_cell(intro),
        nbformat.v4.new_code_cell(IMPORT_CELL.format(name=name)),
        nbformat.v4.new_code_cell(RUN_CELL.format(name=name)),
        nbformat.v4.new_markdown_cell("## Claims: published against measured"),
        nbformat.v4.new_code_cell(CLAIMS_CELL),
        nbformat.v4.new_markdown_cell("## Figures"),
        nbformat.v4.new_code_cell(FIGURES_CELL.format(name=name)),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def execute(nb: nbformat.NotebookNode) -> None:
    """Runs the notebook in place, with a temporary working directory."""
    with tempfile.TemporaryDirectory() as cwd:
        NotebookClient(
            nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": cwd}}
        ).execute()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: all of {', '.join(EXPERIMENTS)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"unknown experiments {unknown}; valid: {', '.join(EXPERIMENTS)}")
    for name in args.names or EXPERIMENTS:
        nb = build(name)
        execute(nb)
        path = ROOT / "notebooks" / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
