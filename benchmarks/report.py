"""The Markdown report: the machine, a table per section, goals with PASS/FAIL.

Sections build a :class:`Section`; :func:`render` joins them under a header
that names the machine and the command; :func:`write_atomic` replaces the file
in one step, so a reader never sees half a report.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class Goal:
    """A target on a ratio measured in the run.

    Attributes:
      name: what is compared, e.g. ``"compile(depth 1024) / compile(depth 8)"``.
      value: the measured ratio (median of per-round ratios), or None if not measured.
      target: the bound.
      higher_is_better: ``value >= target`` passes if True, ``value <= target`` if False.
      spread: the measured spread, shown next to the value, e.g. ``"1.01-1.10"``.
      reason: why the value is missing, when it is.
      cpu_value: the same ratio from CPU time instead of wall-clock time, a
        check that a busy machine did not decide the verdict.
    """

    name: str
    value: float | None
    target: float
    higher_is_better: bool
    spread: str = ""
    reason: str = ""
    cpu_value: float | None = None

    @property
    def verdict(self) -> str:
        """``"PASS"``, ``"FAIL"``, or ``"n/a"`` when nothing was measured."""
        if self.value is None:
            return "n/a"
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "PASS" if ok else "FAIL"

    def line(self) -> str:
        """One printable line: name, value, target and verdict."""
        sign = ">=" if self.higher_is_better else "<="
        if self.value is None:
            return f"{self.name}: not measured ({self.reason}); goal {sign} {self.target:g}: n/a"
        spread = f" ({self.spread})" if self.spread else ""
        return (
            f"{self.name} = {self.value:.3f}{spread}; goal {sign} {self.target:g}: {self.verdict}"
        )


@dataclasses.dataclass
class Section:
    """One section of the report.

    Attributes:
      key: the section's name on the command line (``compile``, ...).
      title: the heading after the key.
      intro: Markdown paragraphs above the table (what is measured, how).
      columns: the table's header.
      rows: the table's rows, each as many cells as ``columns``.
      goals: targets checked in this section.
      notes: Markdown paragraphs below the table (findings, caveats).
      seconds: wall-clock seconds the section took.
      data: the raw measurements, as plain data (``python -m benchmarks --json``).
    """

    key: str
    title: str
    intro: str
    columns: list[str]
    rows: list[list[str]] = dataclasses.field(default_factory=list)
    goals: list[Goal] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; ``|`` inside cells is escaped."""
    esc = lambda cell: str(cell).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {list(row)!r} has {len(row)} cells, expected {len(columns)}")
        lines.append("| " + " | ".join(esc(c) for c in row) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def machine() -> list[tuple[str, str]]:
    """What the numbers were measured on, as (field, value) pairs."""
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # Not on Linux.
        usable = cores
    try:
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "unknown"
    devices = jax.devices()
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{cpu_model()}, {cores} cores ({usable} usable)"),
        ("load average at start (1, 5, 15 min)", load),
        ("jax / jaxlib", f"{jax.__version__} / {_version('jaxlib')}"),
        ("devices", ", ".join(f"{d.platform}:{d.device_kind}" for d in devices)),
        ("python", f"{platform.python_version()} ({sys.platform})"),
        ("optax / equinox / torch", " / ".join(_version(m) for m in ("optax", "equinox", "torch"))),
    ]


def render(
    sections: Sequence[Section],
    *,
    command: str,
    machine_info: Sequence[tuple[str, str]],
    header: str = "",
    footer: str = "",
) -> str:
    """The whole report as Markdown."""
    parts = ["# Benchmarks", ""]
    if header:
        parts += [header.strip(), ""]
    parts += [f"Generated by `{command}`.", "", "## Machine", ""]
    parts += [table(["", ""], [list(kv) for kv in machine_info]), ""]
    goals = [(s.key, g) for s in sections for g in s.goals]
    if goals:
        parts += ["## Goals", ""]
        rows = []
        for key, g in goals:
            sign = ">=" if g.higher_is_better else "<="
            value = "—" if g.value is None else f"{g.value:.3f}"
            cpu = "—" if g.cpu_value is None else f"{g.cpu_value:.3f}"
            spread = g.spread or g.reason
            rows.append([key, g.name, value, spread, cpu, f"{sign} {g.target:g}", g.verdict])
        columns = ["section", "ratio", "measured (wall)", "spread", "from CPU time", "goal"]
        parts += [table([*columns, "verdict"], rows), ""]
    for s in sections:
        parts += [f"## {s.key}: {s.title}", ""]
        if s.intro:
            parts += [s.intro.strip(), ""]
        parts += [table(s.columns, s.rows), ""]
        for g in s.goals:
            parts += [f"- **{g.verdict}**: {g.line()}"]
        if s.goals:
            parts.append("")
        for note in s.notes:
            parts += [note.strip(), ""]
        parts += [f"_Section time: {s.seconds:.0f} s._", ""]
    if footer:
        parts += [footer.strip(), ""]
    return "\n".join(parts)


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bench-", suffix=".md", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is not.
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
