"""The ``jaxstab`` command: ``jaxstab sweep`` and ``jaxstab report DIR``.

Every argument is checked before any computation; a bad one exits with status
2 and a message naming the value and the valid choices, leaving no directory
behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jaxstab import sweep
from jaxstab._activations import ACTIVATIONS
from jaxstab._initializers import INITIALIZERS
from jaxstab.experiment import OPTIMIZERS

DEFAULTS = sweep.SweepSpec()


class UsageError(Exception):
    """A bad command-line value; reported with exit status 2."""


def _list(
    kind: Callable[[str], Any], what: str, choices: Sequence[str] | None = None
) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        items = [t.strip() for t in text.split(",")]
        if not text.strip() or any(not t for t in items):
            raise argparse.ArgumentTypeError(
                f"malformed list {text!r} for {what}: expected comma-separated values like 2,4,8"
            )
        out = []
        for t in items:
            if choices is not None and t not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {t!r}; valid: {', '.join(choices)}"
                )
            try:
                out.append(kind(t))
            except ValueError:
                raise argparse.ArgumentTypeError(f"bad {what} {t!r} in {text!r}") from None
        return tuple(out)

    parse.__name__ = what
    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _single(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}") from None

    parse.__name__ = what
    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise ValueError(text)
    return value


def _cpu_devices(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _clip(text: str) -> float | None:
    return None if text.lower() == "none" else _positive_float(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxstab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="train a grid of MLPs over many seeds and write results")
    d = DEFAULTS
    join = lambda v: ",".join("none" if x is None else str(x) for x in v)
    s.add_argument(
        "--depths",
        type=_list(_positive_int, "depth (a positive int)"),
        default=d.depths,
        help=f"hidden layers (default {join(d.depths)})",
    )
    s.add_argument(
        "--widths",
        type=_list(_positive_int, "width (a positive int)"),
        default=d.widths,
        help=f"default {join(d.widths)}",
    )
    s.add_argument(
        "--activations",
        type=_list(str, "activation", ACTIVATIONS),
        default=d.activations,
        help=f"of {', '.join(ACTIVATIONS)} (default {join(d.activations)})",
    )
    s.add_argument(
        "--inits",
        type=_list(str, "init", tuple(INITIALIZERS)),
        default=d.inits,
        help=f"of {', '.join(INITIALIZERS)} (default {join(d.inits)})",
    )
    s.add_argument(
        "--optimizers",
        type=_list(str, "optimizer", OPTIMIZERS),
        default=d.optimizers,
        help=f"of {', '.join(OPTIMIZERS)} (default {join(d.optimizers)})",
    )
    s.add_argument(
        "--lrs",
        type=_list(_positive_float, "learning rate (a positive number)"),
        default=d.lrs,
        help=f"default {join(d.lrs)}",
    )
    s.add_argument(
        "--clips",
        type=_list(_clip, "clip (none or a positive number)"),
        default=d.clips,
        help=f"global-norm thresholds, none for no clipping (default {join(d.clips)})",
    )
    s.add_argument(
        "--seeds",
        type=_single(_positive_int, "number of seeds (a positive int)"),
        default=d.seeds,
        help=f"seeds per configuration (default {d.seeds})",
    )
    s.add_argument(
        "--steps",
        type=_single(_positive_int, "number of steps (a positive int)"),
        default=d.steps,
        help=f"default {d.steps}",
    )
    s.add_argument(
        "--batch-size",
        type=_single(_positive_int, "batch size (a positive int)"),
        default=d.batch_size,
        help=f"default {d.batch_size}",
    )
    s.add_argument(
        "--eval-every",
        type=_single(_positive_int, "eval interval (a positive int)"),
        default=d.eval_every,
        help=f"default {d.eval_every}",
    )
    s.add_argument(
        "--dataset",
        default=d.dataset,
        help="digits, teacher, mixture or a .npz path (default digits)",
    )
    s.add_argument(
        "--seed",
        type=_single(int, "seed (an int)"),
        default=d.seed,
        help="base PRNG seed (default 0)",
    )
    s.add_argument(
        "--out", type=Path, default=Path("runs/sweep"), help="output directory (default runs/sweep)"
    )
    s.add_argument(
        "--resume", action="store_true", help="skip configurations already finished in --out"
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--cpu-devices",
        type=_single(_cpu_devices, "CPU device count (auto or a positive int)"),
        default="auto",
        help="JAX CPU devices to shard the seeds over; auto: one per usable core "
        "(default auto; ignored when XLA_FLAGS sets the count)",
    )
    r = sub.add_parser(
        "report", help="print the summary table and redraw the figures of a sweep directory"
    )
    r.add_argument("dir", type=Path)
    return parser


def _check_out(out: Path, resume: bool, spec: sweep.SweepSpec) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    existing = out if out.exists() else next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir():
        raise UsageError(f"--out {out} cannot be created: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} is not writable ({existing} denies writing)")
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise UsageError(
                f"--out {out} already holds files; pass --resume to continue it, "
                "or choose a new --out"
            )
        try:
            sweep.check_resume(out, spec)
        except ValueError as e:
            raise UsageError(str(e)) from None


def _progress(quiet: bool) -> tuple[Callable[[int, int, str], None], Callable[[], None]]:
    if quiet:
        return (lambda done, total, label: None), (lambda: None)
    try:
        from tqdm import tqdm
    except ImportError:
        return (lambda done, total, label: print(f"[{done}/{total}] {label}", file=sys.stderr)), (
            lambda: None
        )
    bar: dict[str, Any] = {}

    def update(done: int, total: int, label: str) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(
                total=total, initial=done, unit="config", desc="sweep", file=sys.stderr
            )
        bar["bar"].set_postfix_str(label)
        bar["bar"].update(done - bar["bar"].n)

    return update, (lambda: bar["bar"].close() if "bar" in bar else None)


def _set_cpu_devices(choice: int | str) -> None:
    """One CPU device per core (or ``choice``), before the first JAX operation."""
    from jaxstab.devices import set_cpu_devices

    try:
        set_cpu_devices(None if choice == "auto" else int(choice))
    except RuntimeError as e:  # JAX already running (main() called in-process)
        if choice != "auto":
            raise UsageError(f"--cpu-devices {choice}: {e}") from None


def sweep_command(args: argparse.Namespace) -> int:
    _set_cpu_devices(args.cpu_devices)
    spec = sweep.SweepSpec(
        depths=args.depths,
        widths=args.widths,
        activations=args.activations,
        inits=args.inits,
        optimizers=args.optimizers,
        lrs=args.lrs,
        clips=args.clips,
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
        dataset=args.dataset,
        seed=args.seed,
    )
    from jaxstab.data import get_dataset

    try:
        spec.configs()  # validates every configuration
        _check_out(args.out, args.resume, spec)
        data = get_dataset(args.dataset)
    except (ValueError, FileNotFoundError, UsageError) as e:
        raise UsageError(str(e)) from None
    update, close = _progress(args.quiet)
    start = time.perf_counter()
    try:
        info = sweep.run_sweep(spec, args.out, data=data, progress=update)
    except KeyboardInterrupt:
        close()
        print(
            f"\ninterrupted: finished configurations are in {args.out}; rerun with --resume",
            file=sys.stderr,
        )
        return 130
    close()
    print(sweep.summary_table(sweep.read_rows(args.out)))
    print(
        f"\n{info['configs']} configurations x {spec.seeds} seeds ({info['skipped']} resumed), "
        f"{info['programs_compiled']} programs compiled, {time.perf_counter() - start:.0f} s; "
        f"results in {args.out}/results.csv, figures in {args.out}/figures/"
    )
    return 0


def report_command(args: argparse.Namespace) -> int:
    if not (args.dir / "results.csv").exists():
        raise UsageError(f"{args.dir} holds no results.csv: not a finished sweep directory")
    from jaxstab import _plots

    print(sweep.summary_table(sweep.read_rows(args.dir)))
    paths = _plots.draw_all(args.dir)
    print("\nfigures: " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)  # malformed values exit 2 here, with the message
    try:
        if args.command == "sweep":
            return sweep_command(args)
        return report_command(args)
    except UsageError as e:
        parser.exit(2, f"jaxstab {args.command}: error: {e}\n")
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
