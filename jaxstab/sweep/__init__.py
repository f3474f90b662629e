"""Sweeps on disk: a grid of :class:`jaxstab.experiment.Config` over seeds, run and resumed.

* :mod:`~jaxstab.sweep.spec`: :class:`SweepSpec`, the grid, derived from the
  settings of ``Config`` (the command line's options come from the same place).
* :mod:`~jaxstab.sweep.runner`: checks (memory, disk, the directory), the plan
  of missing runs, training them group by group, assembling the tables.
* :mod:`~jaxstab.sweep.store`: every file: atomic writes, the lock, parts,
  CSV tables, provenance.
* :mod:`~jaxstab.sweep.report`: table rows, bootstrap intervals, the summary.
* :mod:`~jaxstab.sweep.plots`: figures from the tables (the command line draws
  them; nothing here imports matplotlib until asked).

Example (the command line does the same, with progress, figures and Ctrl-C):
  >>> from jaxstab import sweep                                   # doctest: +SKIP
  >>> summary = sweep.run_sweep(Path("runs/x"), {"depths": (2, 8), "seeds": 4})
  >>> rows = sweep.read_results(Path("runs/x"))                   # one dict per run
"""

from jaxstab.sweep.report import bootstrap_ci as bootstrap_ci
from jaxstab.sweep.report import read_layer_stats as read_layer_stats
from jaxstab.sweep.report import read_results as read_results
from jaxstab.sweep.report import summary_table as summary_table
from jaxstab.sweep.runner import Summary as Summary
from jaxstab.sweep.runner import run_sweep as run_sweep
from jaxstab.sweep.spec import SweepSpec as SweepSpec
from jaxstab.sweep.spec import settings as settings
from jaxstab.sweep.store import SweepError as SweepError
from jaxstab.sweep.store import atomic_path as atomic_path
from jaxstab.sweep.store import save_figure as save_figure
from jaxstab.sweep.store import write_npz as write_npz
from jaxstab.sweep.store import write_text as write_text

__all__ = [
    "Summary",
    "SweepError",
    "SweepSpec",
    "atomic_path",
    "bootstrap_ci",
    "read_layer_stats",
    "read_results",
    "run_sweep",
    "save_figure",
    "settings",
    "summary_table",
    "write_npz",
    "write_text",
]
