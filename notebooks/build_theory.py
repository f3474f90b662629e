"""Builds and executes the notebooks of the `theory` experiments.

    .venv/bin/python notebooks/build_theory.py [NAME ...]

For each experiment (default: signal_propagation, phase_diagram, dying_relu) writes
``notebooks/<name>.ipynb`` and executes it with nbclient in a temporary working
directory, so the committed notebook shows the quick run's claims table and figures
(the quick run's files stay in that temporary directory).
"""

from __future__ import annotations

import ast
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("signal_propagation", "phase_diagram", "dying_relu")

IMPORT = """\
import pathlib
import sys

import jaxstab

# The experiment lives in experiments/ of the repository: found from the working
# directory (or a parent), else beside the installed jaxstab package.
here = pathlib.Path.cwd()
candidates = [p / "experiments" for p in (here, *here.parents)]
candidates.append(pathlib.Path(jaxstab.__file__).resolve().parents[1] / "experiments")
experiments = next(p for p in candidates if (p / "@NAME@.py").is_file())
sys.path.insert(0, str(experiments))
import @NAME@ as experiment

print(experiment.get_config(quick=True))"""

RUN = """\
import time

start = time.perf_counter()
result = experiment.main(["--quick"])  # writes runs/experiments/@NAME@/ under the cwd
print(f"quick run: {time.perf_counter() - start:.1f} s wall")"""

CLAIMS = """\
def fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


rows = [("agrees", "measured", "published", "tolerance", "claim")]
rows += [
    ("yes" if c["agrees"] else "NO", fmt(c["measured"]), fmt(c["published"]),
     fmt(c.get("tolerance", "")), c["claim"])
    for c in result["claims"]
]
widths = [max(len(r[i]) for r in rows) for i in range(4)]
for r in rows:
    print("  ".join(r[i].ljust(widths[i]) for i in range(4)), " ", r[4])"""

FIGURES = """\
from IPython.display import Image, display

workdir = pathlib.Path("runs/experiments/@NAME@")
for figure in result["figures"]:
    display(Image(filename=str(workdir / figure)))"""

DETAILS = {
    "signal_propagation": """\
m = result["measured"]
print(f"{'setting':16} {'sigma_w2':>8} {'chi1':>7} {'q^L meas':>9} {'q^L theory':>10} "
      f"{'factor meas':>11} {'rel err':>8}")
for name, p in m["profiles"].items():
    print(f"{name:16} {p['sigma_w2']:8.3f} {p['chi1']:7.4f} {p['qL_measured']:9.4g} "
          f"{p['qL_theory']:10.4g} {p['backward_factor_tail_measured']:11.4f} "
          f"{p['backward_factor_rel_err_vs_chi1']:8.4f}")
print()
print(f"{'Jacobian':18} {'var/mean^2':>10} {'theory':>8} {'in [1/2, 2]':>11}")
for name, s in m["spectra"].items():
    print(f"{name:18} {s['lambda_nvar']:10.3f} {s['lambda_nvar_theory']:8.3f} "
          f"{s['fraction_sv_in_half_to_double']:11.3f}")""",
    "phase_diagram": """\
m = result["measured"]
cfg = result["config"]
print("median final training accuracy (rows: depth; columns: sigma_w2), T = trainable")
print("depth " + "".join(f"{s:>9.2f}" for s in cfg["sigma_w2"]))
for depth, accs, ts in zip(cfg["depths"], m["median_accuracy"], m["trainable"]):
    print(f"{depth:5d} " + "".join(f"{a:8.2f}{'T' if t else ' '}" for a, t in zip(accs, ts)))
print("6 xi_c" + "".join(f"{v:9.1f}" for v in m["six_xi_c_cells"]))
print(f"agreement with depth < 6 xi_c: {m['agreement_fraction']:.2f}")""",
    "dying_relu": """\
m = result["measured"]
cfg = result["config"]
print(f"{'N':>2} {'L':>3} {'closed form':>11} {'MC input':>9} {'MC all inputs':>13} "
      f"{'over batch':>10} {'z':>6}")
for width, w in m["per_width"].items():
    for depth in cfg["table_depths"]:
        if depth <= cfg["max_depth"]:
            i = depth - 1
            print(f"{width:>2} {depth:3d} {w['closed_form'][i]:11.4f} {w['dead_at_input'][i]:9.4f} "
                  f"{w['dead_at_input_all_inputs'][i]:13.4f} {w['dead_over_batch'][i]:10.4f} "
                  f"{w['z_at_table_depths'][str(depth)]:6.2f}")""",
}


def module_doc(name: str) -> str:
    """The experiment module's docstring (the claim, the paper and the method)."""
    tree = ast.parse((ROOT / "experiments" / f"{name}.py").read_text())
    return ast.get_docstring(tree) or name


def build(name: str) -> nbformat.NotebookNode:
    """The notebook of one experiment, unexecuted."""
    doc = module_doc(name)
    title, _, body = doc.partition("\n")
    cells = [
        nbformat.v4.new_markdown_cell(f"# `{name}`: {title}\n\n{body.strip()}"),
        nbformat.v4.new_code_cell(IMPORT.replace("@NAME@", name)),
        nbformat.v4.new_markdown_cell(
            "The quick configuration (the full one: `python experiments/"
            f"{name}.py`; its numbers are in `docs/findings_theory.md`)."
        ),
        nbformat.v4.new_code_cell(RUN.replace("@NAME@", name)),
        nbformat.v4.new_markdown_cell("The published claims against the measured numbers."),
        nbformat.v4.new_code_cell(CLAIMS),
        nbformat.v4.new_code_cell(DETAILS[name]),
        nbformat.v4.new_code_cell(FIGURES.replace("@NAME@", name)),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def main(names: list[str]) -> None:
    """Builds, executes (in a temporary directory) and writes each notebook."""
    for name in names or EXPERIMENTS:
        nb = build(name)
        with tempfile.TemporaryDirectory() as tmp:
            client = NotebookClient(
                nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp}}
            )
            client.execute()
        path = ROOT / "notebooks" / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
