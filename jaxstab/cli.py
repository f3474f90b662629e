"""The ``jaxstab`` command: ``jaxstab sweep`` and ``jaxstab report DIR``.

The sweep's options are derived from :func:`jaxstab.sweep.settings` (one per
setting of :class:`jaxstab.experiment.Config`). Every value is checked before
anything is written or compiled: a bad one exits with status 2 and a message
naming it, leaving nothing behind. Ctrl-C exits with status 130 and one line;
the directory is then resumable with ``--resume``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from jaxstab.sweep import report, store
from jaxstab.sweep.spec import Setting, settings

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax.monitoring's XLA compile


class UsageError(Exception):
    """A bad command-line value or directory; reported with exit status 2."""


def compile_cache_dir() -> Path:
    """Where ``jaxstab sweep`` keeps jax's persistent compilation cache (see
    :func:`jaxstab.compile_cache.cache_dir`)."""
    from jaxstab.compile_cache import cache_dir

    return cache_dir()


# --- the parser ----------------------------------------------------------------------


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def run(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return run


def _help(s: Setting) -> str:
    text = s.help
    if s.choices is not None:
        text += f": {', '.join(s.choices)}"
    if s.is_axis:
        default = ",".join(s.format(v) for v in s.default)
        return f"{text}; comma-separated (default {default})"
    return f"{text} (default {s.format(s.default)})"


def _cpu_devices(text: str) -> int | str:
    from jaxstab.devices import usable_cores

    if text == "auto":
        return text
    limit = max(8, usable_cores())
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad CPU device count {text!r}: auto or an integer"
        ) from None
    if not 1 <= n <= limit:
        raise argparse.ArgumentTypeError(
            f"CPU device count {n} is out of range: 1 to {limit} (max(8, usable cores)); "
            "more devices than cores only add overhead"
        )
    return n


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxstab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "sweep",
        help="train a grid of MLPs over many seeds and write results",
        description="Train every combination of the grid values, each for every seed. "
        "On --resume, options not given keep the sweep's stored values, and given ones "
        "add grid values or seeds.",
    )
    grid = s.add_argument_group("grid (each a comma-separated list)")
    fixed = s.add_argument_group("per sweep")
    for setting in settings():
        group = grid if setting.is_axis else fixed
        group.add_argument(
            setting.flag,
            dest=setting.option,
            type=_typed(setting.parse_list if setting.is_axis else setting.parse),
            default=None,
            metavar="LIST" if setting.is_axis else setting.kind.__name__.upper(),
            help=_help(setting),
        )
    s.add_argument(
        "--out", type=Path, default=Path("runs/sweep"), help="directory (default runs/sweep)"
    )
    s.add_argument(
        "--resume", action="store_true",
        help="continue the sweep in --out: compute only what is missing; may add grid values "
        "and seeds",
    )  # fmt: skip
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--no-figures", action="store_true", help="write the tables only")
    s.add_argument(
        "--profile", action="store_true",
        help="print compile, train and write seconds for every program group",
    )  # fmt: skip
    s.add_argument(
        "--no-compile-cache", action="store_true",
        help="do not use jax's persistent compilation cache (default: on, in "
        "$XDG_CACHE_HOME/jaxstab/jax or ~/.cache/jaxstab/jax)",
    )  # fmt: skip
    s.add_argument(
        "--cpu-devices", type=_cpu_devices, default="auto",
        help="JAX CPU devices to spread the runs over; auto: one per usable core "
        "(ignored when XLA_FLAGS sets the count)",
    )  # fmt: skip
    s.add_argument(
        "--distributed", action="store_true",
        help="one process of a multi-host sweep: calls jax.distributed.initialize with "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID from the environment",
    )  # fmt: skip
    r = sub.add_parser("report", help="print the summary table of a sweep directory")
    r.add_argument("dir", type=Path)
    r.add_argument("--figures", action="store_true", help="also (re)draw DIR/figures")
    return parser


# --- interrupts ------------------------------------------------------------------------


class _Interrupts:
    """SIGINT raises KeyboardInterrupt and is remembered, so one raised where jax
    swallows exceptions (a callback) still stops the sweep at the next check."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        # Inside a garbage-collector callback (jax registers one) Python would print
        # the exception as "ignored" with a traceback and go on: only remember it
        # there; the next check() stops the sweep.
        f = frame
        while f is not None:
            if f.f_code.co_name.endswith("gc_callback"):
                return
            f = f.f_back
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.count:
            raise KeyboardInterrupt

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --- progress ------------------------------------------------------------------------


def _label(c: Any) -> str:
    return f"depth {c.depth} width {c.width} {c.activation} {c.optimizer} {c.schedule}"


class _Progress:
    """The progress bar: runs done, and the phase (preparing, compiling, training).

    The phase follows jax's compile events (``jax.monitoring``), so the bar
    says "compiling" exactly while XLA compiles.
    """

    def __init__(self, enabled: bool, profile: bool):
        self.enabled, self.profile = enabled, profile
        self.bar: Any = None
        self.label = ""
        self.shown = ""
        self.compiling = 0
        self.lock = threading.Lock()
        self.groups: list[str] = []

    def __enter__(self) -> _Progress:
        import jax.monitoring

        jax.monitoring.register_scalar_listener(self._on_start)
        jax.monitoring.register_event_duration_secs_listener(self._on_end)
        return self

    def __exit__(self, *exc: object) -> None:
        import jax.monitoring

        jax.monitoring.unregister_scalar_listener(self._on_start)
        jax.monitoring.unregister_event_duration_listener(self._on_end)
        if self.bar is not None:
            self.bar.close()

    def _on_start(self, event: str, value: float, **kwargs: Any) -> None:
        if event == _COMPILE_EVENT:
            with self.lock:
                self.compiling += 1
            self.phase("compiling")

    def _on_end(self, event: str, duration_secs: float, **kwargs: Any) -> None:
        if event == _COMPILE_EVENT:
            with self.lock:
                self.compiling = max(self.compiling - 1, 0)
                done = self.compiling == 0
            if done:
                self.phase("training")

    def phase(self, name: str) -> None:
        text = f"{name}: {self.label}"
        if self.bar is not None and self.label and text != self.shown:
            self.shown = text
            self.bar.set_postfix_str(text, refresh=True)

    def start(self, total: int, done: int) -> None:
        if not self.enabled or total == done:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            print(f"{total - done} of {total} runs to train", file=sys.stderr)
            return
        self.bar = tqdm(total=total, initial=done, unit="run", desc="sweep", file=sys.stderr)

    def group_start(self, group: list[Any]) -> None:
        self.label = _label(group[0])
        self.phase("preparing")
        if self.enabled and self.bar is None:
            print(f"training {_label(group[0])}", file=sys.stderr)

    def group_done(self, group: list[Any], clock: Mapping[str, float]) -> None:
        runs = sum(c.seeds for c in group)
        if self.bar is not None:
            self.bar.update(runs)
        if self.profile:
            line = (
                f"  {_label(group[0])}: {runs} runs, trace+lower {clock.get('lower', 0):.1f} s, "
                f"compile {clock.get('compile', 0):.1f} s, train {clock.get('run', 0):.1f} s, "
                f"write {clock.get('write', 0):.2f} s"
            )
            self.groups.append(line)


# --- the commands -----------------------------------------------------------------------


def _set_cpu_devices(choice: int | str) -> None:
    """One CPU device per core (or ``choice``), before the first JAX operation."""
    from jaxstab.devices import set_cpu_devices

    try:
        set_cpu_devices(None if choice == "auto" else int(choice))
    except RuntimeError as e:  # JAX already running (main() called in-process)
        if choice != "auto":
            raise UsageError(f"--cpu-devices {choice}: {e}") from None


def _compile_cache(enabled: bool) -> str | None:
    """Turns jax's persistent compilation cache on (in :func:`compile_cache_dir`) or off."""
    from jaxstab.compile_cache import enable

    return enable(enabled)


def _distributed() -> None:
    """``jax.distributed.initialize`` with the process count and id from the environment.

    This jax reads ``JAX_COORDINATOR_ADDRESS`` itself but not ``JAX_NUM_PROCESSES``
    or ``JAX_PROCESS_ID``; on a cluster jax detects (SLURM, ...) all may be unset.
    """
    import jax

    kwargs: dict[str, Any] = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = os.environ["JAX_COORDINATOR_ADDRESS"]
    for var, name in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        text = os.environ.get(var)
        if text:
            try:
                kwargs[name] = int(text)
            except ValueError:
                raise UsageError(f"--distributed: {var}={text!r} is not an integer") from None
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(
            f"--distributed: jax.distributed.initialize failed ({first}); set "
            "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID"
        ) from None


def _figures(out: Path, folder: Path) -> tuple[list[Path], list[str]]:
    """Draws the figures of ``out`` into ``folder``; (written, problems) — never raises."""
    from jaxstab.sweep import plots

    rows = report.read_results(out)
    try:
        stats: list[dict[str, Any]] | None = report.read_layer_stats(out)
        problems: list[str] = []
    except store.SweepError as e:
        stats, problems = None, [f"per-layer figure without data: {e}"]
    written = []
    for path, problem in plots.draw_all(rows, stats, folder):
        if problem is None:
            written.append(path)
        else:
            problems.append(f"{path} not written: {problem}")
    return written, problems


def sweep_command(args: argparse.Namespace, interrupts: _Interrupts, argv: Sequence[str]) -> int:
    start = time.perf_counter()
    _set_cpu_devices(args.cpu_devices)
    _compile_cache(not args.no_compile_cache)
    if args.distributed:
        _distributed()
    import jax

    from jaxstab.sweep import runner

    given = {s.option: getattr(args, s.option) for s in settings()}
    given = {k: v for k, v in given.items() if v is not None}
    out: Path = args.out
    writer = jax.process_index() == 0
    progress = _Progress(enabled=writer and not args.quiet, profile=args.profile)
    with progress:
        summary = runner.run_sweep(
            out,
            given,
            resume=args.resume,
            argv=argv,
            on_plan=lambda p: progress.start(p.spec.num_runs, p.done_runs),
            on_group_start=progress.group_start,
            on_group_done=progress.group_done,
            check_interrupt=interrupts.check,
        )
    if summary is None:  # another process of a multi-host sweep: process 0 reports
        return 0
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    interrupts.check()
    t_fig, problems = 0.0, list[str]()
    if not args.no_figures:
        t0 = time.perf_counter()
        _, problems = _figures(out, out / "figures")
        t_fig = time.perf_counter() - t0
        for p in problems:
            print(f"warning: {p}", file=sys.stderr)
    interrupts.check()
    print(report.summary_table(report.read_results(out)))
    t = summary.timings
    spec = summary.spec
    compiled = int(t.get("executables", 0))
    print(
        f"\n{len(spec.configs())} grid points x {spec['seeds']} seeds = {summary.runs} runs "
        f"({summary.resumed} resumed, {summary.computed} trained), "
        f"{compiled} program{'' if compiled == 1 else 's'} compiled"
    )
    print(
        f"time: compile {t.get('lower', 0) + t.get('compile', 0):.1f} s "
        f"(trace+lower {t.get('lower', 0):.1f}, XLA {t.get('compile', 0):.1f}), "
        f"train {t.get('run', 0):.1f} s, write {t.get('write', 0):.1f} s, "
        f"figures {t_fig:.1f} s, total {time.perf_counter() - start:.1f} s"
    )
    if args.profile and progress.groups:
        print("per program group:\n" + "\n".join(progress.groups))
    figures = "" if args.no_figures else f", figures in {out}/figures/"
    print(f"results in {out}/results.csv, curves.csv and layer_stats.csv{figures}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    if not (folder / "results.csv").is_file():
        raise UsageError(f"{folder} holds no results.csv: not a finished sweep directory")
    rows = report.read_results(folder)
    print(report.summary_table(rows))
    if args.figures:
        store.probe_writable(folder / "figures")
        written, problems = _figures(folder, folder / "figures")
        for p in problems:
            print(f"warning: {p}", file=sys.stderr)
        if written:
            print("\nfigures: " + ", ".join(str(p) for p in written))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    Called without ``argv`` (the installed ``jaxstab`` command), an interrupted
    sweep ends the process at once with status 130 after its one-line message,
    so no XLA thread can outlive the interpreter's teardown.
    """
    parser = _parser()
    command = "jaxstab"
    with _Interrupts() as interrupts:
        try:
            args = parser.parse_args(argv)  # malformed values exit 2 here, with the message
            command = f"jaxstab {args.command}"
            record = ["jaxstab", *(sys.argv[1:] if argv is None else argv)]
            if args.command == "sweep":
                code = sweep_command(args, interrupts, record)
            else:
                code = report_command(args)
            interrupts.check()
            return code
        except (UsageError, store.SweepError) as e:
            parser.exit(EXIT_USAGE, f"{command}: error: {e}\n")
        except KeyboardInterrupt:
            where = getattr(locals().get("args"), "out", None)
            resume = f"; rerun with --resume to finish {where}" if where is not None else ""
            print(f"{command}: interrupted{resume}", file=sys.stderr)
            if argv is None:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_INTERRUPTED)
            return EXIT_INTERRUPTED
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
