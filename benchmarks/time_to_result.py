"""Section ``time_to_result``: whole processes, start to exit, compilation included.

What a researcher waits for (issue 13): each job runs as a fresh process,
exactly as a user starts it, and is timed from start to exit. Every kind of
process runs once per round, the kinds one after the other (round robin), for
``time_to_result_repeats`` rounds; a ratio is the median of its per-round
ratios, so a slow spell of the machine hits both sides of it.

The jobs:

a. the 32-seed job (depth 8, width 128, ReLU, He, SGD 0.05, clip 1, 200
   steps, batch 128, evaluations every 50 steps, the digits) through
   ``jaxstab sweep`` against the same job as a PyTorch script
   (:mod:`benchmarks.torch_sweep`);
b. the default sweep (``make run``'s job) against the same grid as a PyTorch
   script;
c. one architecture's compilation: the engine's against the hand-written
   program of the same job (:mod:`benchmarks.compile_job`);
d. a second sweep over the default sweep's architectures with another
   learning rate and clip, run with the persistent compilation cache that
   sweep (b) filled: its compilation share;
e. every experiment's ``--quick`` config.

Each JAX process runs under :mod:`benchmarks.compile_events`, which records
the wall-clock seconds it spent tracing, lowering and compiling. Each gets a
fresh, empty persistent-cache directory (``JAX_COMPILATION_CACHE_DIR``, and
``--cache-dir`` if ``jaxstab sweep`` has one), except (d), which gets (b)'s.
PyTorch runs with as many threads as usable cores, as a user's script would;
how it trains the seeds (a Python loop, ``torch.func.vmap`` or batched
matmuls) is chosen per job by a short trial before the rounds: the fastest.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import processes
from benchmarks.processes import Process
from benchmarks.report import Goal, Section, table
from benchmarks.settings import Settings
from benchmarks.timing import Stats, ratio, summarize
from jaxstab.devices import usable_cores

log = logging.getLogger("benchmarks")

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
# The ways a user trains seeds in PyTorch that the goals compare against (the faster,
# by a trial); batched matmuls by hand ("bmm") are timed too, as a stronger reference.
TORCH_MODES = ("loop", "vmap")
TORCH_BY_HAND = "bmm"
GOAL_32 = 2.0
GOAL_DEFAULT = 3.0
GOAL_COMPILE = 1.5
GOAL_CACHED_SHARE = 0.10
GOAL_QUICK = 15.0

Runner = Callable[..., Process]


@dataclasses.dataclass(frozen=True)
class Job:
    """A ``jaxstab sweep`` grid; :meth:`args` are the options both scripts take.

    Attributes:
      depths, widths, activations, inits, lrs, clips: the grid's axes (``None``
        clip: no clipping).
      seeds: seeds per configuration.
      steps: SGD steps.
      batch_size: examples per step.
      eval_every: steps between evaluations.
    """

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    activations: tuple[str, ...]
    inits: tuple[str, ...]
    lrs: tuple[float, ...]
    clips: tuple[float | None, ...]
    seeds: int
    steps: int
    batch_size: int
    eval_every: int

    def args(self) -> list[str]:
        """``--depths 8 --widths 128 ...``: what ``jaxstab sweep`` and the PyTorch script take."""
        join = lambda values: ",".join(_text(v) for v in values)
        return [
            *("--depths", join(self.depths), "--widths", join(self.widths)),
            *("--activations", join(self.activations), "--inits", join(self.inits)),
            *("--optimizers", "sgd", "--lrs", join(self.lrs), "--clips", join(self.clips)),
            *("--seeds", str(self.seeds), "--steps", str(self.steps)),
            *("--batch-size", str(self.batch_size), "--eval-every", str(self.eval_every)),
            *("--dataset", "digits", "--seed", "0"),
        ]

    @property
    def configs(self) -> int:
        """Grid points."""
        axes = (self.depths, self.widths, self.activations, self.inits, self.lrs, self.clips)
        n = 1
        for axis in axes:
            n *= len(axis)
        return n

    def describe(self) -> str:
        """One line: the grid and sizes."""
        clips = ",".join(_text(c) for c in self.clips)
        return (
            f"depths {','.join(map(str, self.depths))} x widths {','.join(map(str, self.widths))}"
            f" x {','.join(self.activations)} x {','.join(self.inits)} x lr "
            f"{','.join(f'{v:g}' for v in self.lrs)} x clip {clips}: {self.configs} configs x "
            f"{self.seeds} seeds, {self.steps} steps, batch {self.batch_size}, evaluations "
            f"every {self.eval_every}"
        )


def _text(value: Any) -> str:
    """A grid value as the command lines take it: ``none``, ``0.05``, ``8``."""
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def jobs(tiny: bool) -> dict[str, Job]:
    """The jobs of issue 13 (``"32"``, ``"default"``, ``"second"``), or toy versions."""
    if tiny:
        one = Job((2,), (16,), ("relu",), ("he_normal",), (0.05,), (1.0,), 4, 10, 16, 5)
        default = Job(
            (2,),
            (8,),
            ("tanh", "relu"),
            ("xavier_normal", "he_normal"),
            (0.02,),
            (None,),
            2,
            10,
            16,
            5,
        )
    else:
        one = Job((8,), (128,), ("relu",), ("he_normal",), (0.05,), (1.0,), 32, 200, 128, 50)
        # `make run`: jaxstab sweep's defaults (tests/test_benchmarks.py checks they agree).
        default = Job(
            (2, 8, 16, 32),
            (64,),
            ("sigmoid", "tanh", "relu"),
            ("xavier_normal", "he_normal"),
            (0.02,),
            (None,),
            8,
            500,
            128,
            50,
        )
    second = dataclasses.replace(default, lrs=(0.05,), clips=(1.0,))
    return {"32": one, "default": default, "second": second}


def quick_experiments(tiny: bool) -> list[str]:
    """The experiments' module names; ``tiny``: the first one only."""
    names = sorted(p.stem for p in EXPERIMENTS.glob("*.py") if not p.stem.startswith("_"))
    return names[:1] if tiny else names


@dataclasses.dataclass
class Samples:
    """Per kind of process, its :class:`Process` of every round, in round order."""

    by_kind: dict[str, list[Process]] = dataclasses.field(default_factory=dict)

    def add(self, kind: str, process: Process) -> None:
        self.by_kind.setdefault(kind, []).append(process)

    def wall(self, kind: str) -> list[float]:
        return [p.wall for p in self.by_kind[kind]]

    def compile_wall(self, kind: str) -> list[float]:
        return [float(p.compile_wall or 0.0) for p in self.by_kind[kind]]


class Plan:
    """The processes of the section, built once; :meth:`round` runs one round of them.

    Args:
      settings: the sizes (``tiny`` selects the toy jobs).
      runner: :func:`benchmarks.processes.run` (tests pass a fake).
      sweep_options: the options ``jaxstab sweep --help`` lists.
      torch_modes: per job, the PyTorch script's ``--seeds-mode`` (None: no torch).
    """

    def __init__(
        self,
        settings: Settings,
        runner: Runner,
        sweep_options: set[str],
        torch_modes: dict[str, str] | None,
    ) -> None:
        self.settings, self.runner = settings, runner
        self.jobs = jobs(settings.tiny)
        self.experiments = quick_experiments(settings.tiny)
        self.sweep_options = sweep_options
        self.torch_modes = torch_modes
        self.threads = usable_cores()

    def extra_sweep_flags(self) -> list[str]:
        """The flags for scripted use that ``jaxstab sweep`` has (checked at run time)."""
        return [f for f in ("--quiet", "--no-figures", "--no-progress") if f in self.sweep_options]

    def sweep_args(self, job: Job, out: Path, cache: Path) -> list[str]:
        """``-m jaxstab sweep ...`` with the quiet, no-figure and cache options it has."""
        args = ["-m", "jaxstab", "sweep", *job.args(), "--out", str(out)]
        args += self.extra_sweep_flags()
        if "--cache-dir" in self.sweep_options:
            args += ["--cache-dir", str(cache)]
        return args

    def torch_args(self, job: Job, out: Path, mode: str) -> list[str]:
        """``-m benchmarks.torch_sweep ...`` for ``job``."""
        return [
            *("-m", "benchmarks.torch_sweep", *job.args(), "--out", str(out)),
            *("--seeds-mode", mode, "--threads", str(self.threads)),
        ]

    def compile_args(self, what: str) -> list[str]:
        """``-m benchmarks.compile_job WHAT ...`` for the 32-seed job's architecture."""
        j = self.jobs["32"]
        return [
            *("-m", "benchmarks.compile_job", what, "--depth", str(j.depths[0])),
            *("--width", str(j.widths[0]), "--seeds", str(j.seeds), "--steps", str(j.steps)),
            *("--batch", str(j.batch_size), "--eval-every", str(j.eval_every)),
            *("--lr", f"{j.lrs[0]:g}", "--clip", f"{j.clips[0]:g}"),
        ]

    def experiment_args(self, name: str, workdir: Path) -> list[str]:
        """``-m experiments.NAME --quick --workdir DIR`` (``--help`` at tiny sizes)."""
        if self.settings.tiny:
            return ["-m", f"experiments.{name}", "--help"]
        return ["-m", f"experiments.{name}", "--quick", "--workdir", str(workdir)]

    def round(self, samples: Samples) -> None:
        """Runs every kind of process once, in a fixed order."""
        run = self.runner
        with tempfile.TemporaryDirectory(prefix="jaxstab-bench-ttr-") as tmp_name:
            tmp = Path(tmp_name)
            cache = tmp / "cache"  # (b) fills it, (d) reuses it
            sweep = lambda job, name, c: run(
                self.sweep_args(self.jobs[job], tmp / name, c),
                cache_dir=c,
                compile_events=True,
            )
            samples.add("32/jaxstab", sweep("32", "a", tmp / "cache-a"))
            if self.torch_modes:
                mode = self.torch_modes["32"]
                samples.add("32/torch", run(self.torch_args(self.jobs["32"], tmp / "ta", mode)))
                args = self.torch_args(self.jobs["32"], tmp / "ta2", TORCH_BY_HAND)
                samples.add("32/torch-bmm", run(args))
            samples.add("default/jaxstab", sweep("default", "b", cache))
            samples.add("second/jaxstab", sweep("second", "d", cache))
            if self.torch_modes:
                mode = self.torch_modes["default"]
                args = self.torch_args(self.jobs["default"], tmp / "tb", mode)
                samples.add("default/torch", run(args))
                args = self.torch_args(self.jobs["default"], tmp / "tb2", TORCH_BY_HAND)
                samples.add("default/torch-bmm", run(args))
            for what in ("engine", "hand"):
                samples.add(f"compile/{what}", run(self.compile_args(what), compile_events=True))
            for name in self.experiments:
                args = self.experiment_args(name, tmp / f"e-{name}")
                samples.add(f"quick/{name}", run(args, compile_events=True))


def choose_torch_modes(
    plan: Plan, modes: Sequence[str] = TORCH_MODES
) -> tuple[dict[str, str], list[list[str]]]:
    """Per job, the fastest ``--seeds-mode`` in a short trial; and the trial's table rows.

    The trial trains the job for ``eval_every`` steps (one evaluation period)
    in each mode, one process each, and compares the script's own training
    seconds (start-up and data loading are the same for every mode).
    """
    chosen, rows = {}, []
    for key in ("32", "default"):
        job = plan.jobs[key]
        trial = dataclasses.replace(job, steps=job.eval_every)
        seconds = {}
        with tempfile.TemporaryDirectory(prefix="jaxstab-bench-trial-") as tmp:
            for mode in modes:
                proc = plan.runner(plan.torch_args(trial, Path(tmp) / mode, mode))
                seconds[mode] = float(proc.json_line()["seconds"]["train"])
        chosen[key] = min(seconds, key=seconds.__getitem__)
        cells = [f"{seconds[m]:.2f} s" + (" (chosen)" if m == chosen[key] else "") for m in modes]
        rows.append([f"({'a' if key == '32' else 'b'}) {trial.steps} steps", *cells])
    return chosen, rows


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def measure(
    settings: Settings,
    runner: Runner = processes.run,
    *,
    sweep_options: set[str] | None = None,
    torch: bool | None = None,
    trial: bool | None = None,
) -> tuple[Plan, Samples, list[list[str]]]:
    """Builds the plan, runs the PyTorch trial and the rounds; returns the raw samples.

    Args:
      settings: the sizes and rounds.
      runner: runs one process (:func:`benchmarks.processes.run`; tests pass a fake).
      sweep_options: ``jaxstab sweep``'s options; default: read from its ``--help``.
      torch: whether to run the PyTorch side; default: whether torch imports.
      trial: whether to choose the PyTorch script's ``--seeds-mode`` by a trial;
        default: at full size (tiny sizes use ``loop``).
    """
    torch = _torch_available() if torch is None else torch
    if sweep_options is None:
        sweep_options = processes.help_options(["-m", "jaxstab", "sweep"])
    plan = Plan(settings, runner, sweep_options, None)
    trial_rows: list[list[str]] = []
    if torch and (not settings.tiny if trial is None else trial):
        plan.torch_modes, trial_rows = choose_torch_modes(plan)
    elif torch:
        plan.torch_modes = dict.fromkeys(("32", "default"), "loop")
    samples = Samples()
    for i in range(settings.time_to_result_repeats):
        log.info("  round %d", i + 1)
        plan.round(samples)
    return plan, samples, trial_rows


def goals(plan: Plan, samples: Samples) -> list[Goal]:
    """The five goals of issue 13 from the samples (per-round ratios, medians)."""
    out = []

    def speedup(job: str, target: float, label: str) -> None:
        name = f"{label}: PyTorch script / jaxstab sweep, whole process"
        if f"{job}/torch" not in samples.by_kind:
            out.append(Goal(name, None, target, True, reason="torch not installed"))
            return
        r = ratio(samples.wall(f"{job}/torch"), samples.wall(f"{job}/jaxstab"))
        out.append(Goal(name, r.median, target, True, spread=_spread(r)))

    speedup("32", GOAL_32, "(a) the 32-seed job")
    speedup("default", GOAL_DEFAULT, "(b) the default sweep")
    r = ratio(samples.compile_wall("compile/engine"), samples.compile_wall("compile/hand"))
    out.append(
        Goal(
            "(c) one architecture's compile time: engine / hand-written",
            r.median,
            GOAL_COMPILE,
            False,
            spread=_spread(r),
        )
    )
    r = ratio(samples.compile_wall("second/jaxstab"), samples.wall("second/jaxstab"))
    out.append(
        Goal(
            "(d) a second sweep, warm persistent cache: compilation / whole process",
            r.median,
            GOAL_CACHED_SHARE,
            False,
            spread=_spread(r),
        )
    )
    medians = {k: summarize(samples.wall(k)) for k in samples.by_kind if k.startswith("quick/")}
    if medians:
        worst = max(medians, key=lambda k: medians[k].median)
        s = medians[worst]
        out.append(
            Goal(
                f"(e) the slowest --quick experiment ({worst[6:]}), whole-process seconds",
                s.median,
                GOAL_QUICK,
                False,
                spread=f"{s.lo:.1f}-{s.hi:.1f} s, {s.n} rounds",
            )
        )
    return out


def _spread(r: Stats) -> str:
    return f"{r.lo:.2f}-{r.hi:.2f}, {r.n} rounds"


def _cell(values: list[float], unit: str = "s") -> str:
    return summarize(values).fmt(unit=unit)


def build_section(plan: Plan, samples: Samples, trial_rows: list[list[str]]) -> Section:
    """The report's section from the measurements."""
    j = plan.jobs
    labels = {
        "32/jaxstab": "(a) 32-seed job: `jaxstab sweep`",
        "32/torch": "(a) 32-seed job: PyTorch script (the goal's)",
        "32/torch-bmm": "(a) 32-seed job: PyTorch script, seeds batched by hand",
        "default/jaxstab": "(b) default sweep: `jaxstab sweep` (fills a fresh cache)",
        "default/torch": "(b) default sweep: PyTorch script (the goal's)",
        "default/torch-bmm": "(b) default sweep: PyTorch script, seeds batched by hand",
        "second/jaxstab": "(d) second sweep: `jaxstab sweep` (the cache (b) filled)",
        "compile/engine": "(c) one architecture: the engine (`experiment.run_many`)",
        "compile/hand": "(c) one architecture: hand-written JAX (`models.hand_engine_run`)",
    }
    quick = plan.experiments
    labels.update({f"quick/{n}": f"(e) `experiments.{n} --quick`" for n in quick})
    if plan.settings.tiny:
        labels.update({f"quick/{n}": f"(e) `experiments.{n} --help` (tiny)" for n in quick})
    section = Section(
        key="time_to_result",
        title="whole processes, start to exit, compilation included",
        intro=(
            "Each job runs as a fresh process, as a user starts it, timed from start to exit "
            f"(median (min-max) over {plan.settings.time_to_result_repeats} rounds, every "
            "process once per round, round robin). Compile = seconds during which JAX was "
            "tracing, lowering or compiling (the union of `jax.monitoring`'s compile events, "
            "so parallel compilations count once). Every JAX process starts with an empty "
            "persistent compilation cache except (d), which reuses the one (b) filled. "
            f"PyTorch: {plan.threads} thread(s) (the usable cores). The goals compare "
            "against the faster (in the trial below) of a Python loop over seeds and "
            "`torch.func.vmap` over stacked parameters; the seeds batched by hand as "
            "`[seeds, in, out]` weights and `torch.baddbmm` are timed too, as a stronger "
            "reference than the goals ask for (`benchmarks/torch_sweep.py`, "
            f"`--seeds-mode`: {plan.torch_modes or 'torch not installed'}).\n\n"
            f"- (a): {j['32'].describe()}.\n"
            f"- (b): `make run`'s job, {j['default'].describe()}.\n"
            f"- (c): the architecture of (a), {j['32'].seeds} seeds, in its own process each.\n"
            f"- (d): {j['second'].describe()}.\n"
            f"- (e): {len(quick)} experiment(s), each `python -m experiments.NAME --quick`.\n"
            f"- `jaxstab sweep` also gets: {' '.join(plan.extra_sweep_flags()) or 'nothing'}"
            f"{' and --cache-dir' if '--cache-dir' in plan.sweep_options else ''}."
        ),
        columns=["process", "wall", "CPU", "compile (wall)", "compile / wall"],
    )
    for kind, procs in samples.by_kind.items():
        walls = [p.wall for p in procs]
        cpus = [p.cpu for p in procs]
        if procs[0].events is None:
            comp, share = "—", "—"
        else:
            comp = _cell(samples.compile_wall(kind))
            share = ratio(samples.compile_wall(kind), walls).fmt(digits=2)
        section.rows.append([labels.get(kind, kind), _cell(walls), _cell(cpus), comp, share])
    section.goals = goals(plan, samples)
    for kind in ("32/jaxstab", "default/jaxstab", "second/jaxstab", "compile/engine"):
        events = samples.by_kind.get(kind, [Process(0, 0, "")])[0].events
        if events and events.get("top"):
            top = "; ".join(
                f"{name} ({phase}) {sec:.2f} s" for phase, name, sec in events["top"][:6]
            )
            section.notes.append(f"Longest compile steps of {labels[kind]}, round 1: {top}.")
    for job, label in (("32", "(a)"), ("default", "(b)")):
        if f"{job}/torch-bmm" in samples.by_kind:
            r = ratio(samples.wall(f"{job}/torch-bmm"), samples.wall(f"{job}/jaxstab"))
            section.notes.append(
                f"{label} against PyTorch with the seeds batched by hand: PyTorch / jaxstab "
                f"= {r.fmt(digits=3)} (not a goal)."
            )
    if trial_rows:
        section.notes.append(
            "PyTorch trial: training seconds of one evaluation period, per way of training "
            "the seeds (`--seeds-mode` of `benchmarks/torch_sweep.py`; loop = a Python loop "
            "over seeds of `nn.Sequential` + `clip_grad_norm_` + `optim.SGD`, vmap = "
            "`torch.func.vmap(grad_and_value(loss))` over stacked parameters):\n\n"
            + table(["job", *TORCH_MODES], trial_rows)
        )
    return section


def raw(samples: Samples) -> dict[str, Any]:
    """The samples as plain data (the ``--json`` output): per kind, per round."""
    return {
        kind: [
            {"wall": p.wall, "cpu": p.cpu, "compile_wall": p.compile_wall, "events": p.events}
            for p in procs
        ]
        for kind, procs in samples.by_kind.items()
    }


def run(settings: Settings) -> Section:
    """Measures the section."""
    plan, samples, trial_rows = measure(settings)
    section = build_section(plan, samples, trial_rows)
    section.data = raw(samples)
    return section
