"""``python -m benchmarks``: runs the sections and writes the Markdown report.

Options: ``--tiny`` (smoke-test sizes), ``--out PATH`` (default BENCHMARKS.md
at the repository root), ``--only SECTION,...`` (default: every section but
``sweep``, which ``time_to_result`` supersedes), ``--repeats N``,
``--cpu-devices N`` (default: one JAX CPU device per usable core, as
``jaxstab sweep`` does), ``--json PATH`` (the raw measurements).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pathlib
import sys
import time
import traceback
from collections.abc import Callable, Sequence

import jaxstab as js
from benchmarks import (
    compile_time,
    dispatch,
    gpu,
    memory,
    report,
    settings,
    sweep_time,
    throughput,
    time_to_result,
    utilization,
)
from benchmarks.report import Section

ROOT = pathlib.Path(__file__).resolve().parent.parent
FINDINGS = pathlib.Path(__file__).resolve().parent / "findings.md"
SECTIONS: dict[str, Callable[[settings.Settings], Section]] = {
    "compile": compile_time.run,
    "throughput": throughput.run,
    "utilization": utilization.run,
    "memory": memory.run,
    "time_to_result": time_to_result.run,
    "dispatch": dispatch.run,
    "sweep": sweep_time.run,
    "gpu": gpu.run,
}
DEFAULT_SECTIONS = [key for key in SECTIONS if key != "sweep"]

HOW_TO_RUN = """\
## How to run

```sh
make bench                     # installs the bench extra, runs python -m benchmarks: ~50 min
                               # on 2 idle cores (estimated): ~10 the in-process sections,
                               # ~35 time_to_result (3 rounds of ~11 min), ~5 dispatch
.venv/bin/python -m benchmarks --only time_to_result,dispatch   # the whole-process sections
.venv/bin/python -m benchmarks --only compile,memory --repeats 3
.venv/bin/python -m benchmarks --only sweep    # the old `jaxstab sweep` 1 vs 2 devices section
.venv/bin/python -m benchmarks --tiny --out /tmp/B.md --json /tmp/B.json   # toy sizes; the tests
```

Each measurement is logged to stderr as it is taken (`--quiet` turns that off);
`--json PATH` also writes every raw sample and goal.

The baselines are the optional `bench` extra (`pip install -e ".[bench]"`:
equinox and torch); a missing one is reported as "not installed". The
time-to-result section runs `jaxstab sweep`, `benchmarks/torch_sweep.py`,
`benchmarks/compile_job.py` and every `experiments/*.py --quick` as separate
processes, each with an empty persistent compilation cache of its own (but the
second sweep, which reuses the first one's); the dispatch section extracts the
old engine with `git archive 489a176`, so it needs the repository's history.

On a GPU machine (a CUDA build of jax, e.g. `pip install "jax[cuda12]"`, and
optionally a CUDA build of torch), the same single command runs every section
on the GPU and writes a separate report (an estimate: it has not run on a GPU
yet, none was available):

```sh
python -m benchmarks --out BENCHMARKS_gpu.md
```
"""


def _section_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(bad) or repr(text)}; valid: {', '.join(SECTIONS)}"
        )
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--out", default=str(ROOT / "BENCHMARKS.md"), help="report path (default: %(default)s)"
    )
    parser.add_argument(
        "--only",
        type=_section_list,
        default=DEFAULT_SECTIONS,
        metavar="SECTION,...",
        help=f"sections to run, of: {', '.join(SECTIONS)} (default: all but sweep)",
    )
    parser.add_argument("--json", default=None, help="also write the raw measurements here")
    parser.add_argument("--quiet", action="store_true", help="no per-measurement log")
    parser.add_argument(
        "--cpu-devices",
        type=_positive,
        default=None,
        help="JAX CPU devices (default: one per usable core; XLA_FLAGS can set it instead)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive,
        default=None,
        help="timed samples per measurement (default: 5, 3 for throughput; --tiny: 2)",
    )
    return parser.parse_args(argv)


def _failed(key: str, error: BaseException) -> Section:
    """A section that reports its own crash instead of taking the run down."""
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return Section(key, "failed", "", ["error"], rows=[[last]])


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the selected sections; returns 1 if one of them crashed."""
    args = parse_args(argv)
    js.set_cpu_devices(args.cpu_devices)  # before the first JAX operation
    logging.basicConfig(format="[benchmarks] %(message)s", stream=sys.stderr)
    logging.getLogger("benchmarks").setLevel(logging.WARNING if args.quiet else logging.INFO)
    conf = (settings.tiny if args.tiny else settings.full)(args.repeats)
    command = "python -m benchmarks" + "".join(
        f" {a}" for a in (sys.argv[1:] if argv is None else argv)
    )
    machine_info = report.machine()
    sections, crashed = [], False
    for key in args.only:
        print(f"[benchmarks] {key} ...", flush=True)
        start = time.perf_counter()
        try:
            section = SECTIONS[key](conf)
        except Exception as e:  # Report it, run the others, exit non-zero.
            traceback.print_exc()
            section, crashed = _failed(key, e), True
        section.seconds = time.perf_counter() - start
        print(f"[benchmarks] {key} done in {section.seconds:.0f} s", flush=True)
        for goal in section.goals:
            print(f"[benchmarks]   {goal.verdict}: {goal.line()}", flush=True)
        sections.append(section)
    header = ""
    if conf.tiny:
        header = "**Tiny sizes (`--tiny`)**: a smoke test; these numbers mean nothing."
    footer = HOW_TO_RUN
    if FINDINGS.exists():
        footer = FINDINGS.read_text(encoding="utf-8") + "\n" + HOW_TO_RUN
    text = report.render(
        sections, command=command, machine_info=machine_info, header=header, footer=footer
    )
    report.write_atomic(args.out, text)
    print(f"[benchmarks] wrote {args.out}", flush=True)
    if args.json:
        raw = {
            s.key: {"data": s.data, "goals": [dataclasses.asdict(g) for g in s.goals]}
            for s in sections
        }
        report.write_atomic(args.json, json.dumps(raw, indent=1, default=str))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
