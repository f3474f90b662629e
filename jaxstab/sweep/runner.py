"""Running a sweep: what is left, whether it fits, computing it, assembling its tables.

A run's numbers depend only on its grid point and seed index (the engine's
guarantee), so a resume computes exactly the missing ``(point, seed)`` runs, in
parts of contiguous seeds, and the assembled tables equal those of an
uninterrupted sweep bit for bit, whatever the device count or the grouping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shlex
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxstab import experiment
from jaxstab.engine import BLOCK_SIZE
from jaxstab.experiment import Config, Result
from jaxstab.sweep import report, store
from jaxstab.sweep.spec import SweepSpec

__all__ = [
    "Plan",
    "Prepared",
    "Summary",
    "assemble",
    "check_resources",
    "dataset_digest",
    "execute",
    "plan",
    "prepare",
    "run_sweep",
]

GB = 1e9


class Plan(NamedTuple):
    """What a sweep directory still needs."""

    spec: SweepSpec
    todo: list[Config]  # one Config per missing contiguous seed range of a grid point
    done_runs: int  # runs already in valid parts
    corrupt: list[str]  # one sentence per part that failed to load (it was removed)

    @property
    def todo_runs(self) -> int:
        return sum(c.seeds for c in self.todo)


def dataset_digest(data: Any) -> str:
    """sha256 of a data set's arrays (shapes, dtypes, bytes) and class count."""
    h = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a = np.ascontiguousarray(getattr(data, name))
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    h.update(f"classes:{data.num_classes}".encode())
    return h.hexdigest()


def _ranges(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices as ``(first, count)`` runs of consecutive values."""
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][0] + out[-1][1] == i:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out


def plan(spec: SweepSpec, out: Path) -> Plan:
    """The runs of ``spec`` that ``out`` lacks; parts that fail to load are removed.

    Call it holding the lock.
    """
    configs = spec.configs()
    names = {c.name for c in configs}
    covered: dict[str, set[int]] = {n: set() for n in names}
    corrupt = []
    for part in store.list_parts(out):
        if part.name not in names:
            continue  # a point of another grid: left alone
        try:
            store.load_part(part)
        except store.SweepError as e:
            corrupt.append(f"{e}: removed, its runs are recomputed")
            part.path.unlink(missing_ok=True)
            continue
        covered[part.name].update(range(part.first, part.last + 1))
    todo, done = [], 0
    for c in configs:
        missing = [s for s in spec.seed_indices if s not in covered[c.name]]
        done += len(spec.seed_indices) - len(missing)
        todo += [
            Config(**{**c.to_dict(), "first_seed": a, "seeds": n}) for a, n in _ranges(missing)
        ]
    return Plan(spec, todo, done, corrupt)


# --- will it fit? ---------------------------------------------------------------------

_OPT_STATE = {"sgd": 0, "momentum": 1, "adam": 2}  # parameter-sized buffers per optimizer
_N_STATS = 9  # per-layer statistics of diagnostics.layer_stats, at init and at the end


def _param_count(sizes: Sequence[int]) -> int:
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def _run_bytes(c: Config, data: Any) -> tuple[int, int]:
    """(working set of one training run, its outputs), in bytes, float32.

    Working set: parameters, gradients, the new parameters and two optimizer
    states (the old ones are kept to freeze a diverged run), and the
    activations of the largest pass (a training step's forward and backward,
    an evaluation, or the per-layer statistics, which keep every layer).
    Outputs: the per-step metrics, evaluations and per-layer statistics.
    """
    sizes = (data.d_in, *([c.width] * c.depth), data.d_out)
    p = _param_count(sizes)
    state = p * (4 + 2 * _OPT_STATE[c.optimizer])
    hidden = c.depth * c.width
    train = c.batch_size * (data.d_in + 4 * hidden + 3 * data.d_out)
    n_eval = min(experiment.EVAL_LIMIT, max(data.n_train, data.n_test))
    evaluate = n_eval * (data.d_in + 3 * c.width + 2 * data.d_out)
    inspect = min(experiment.DIAGNOSTIC_BATCH, data.n_train) * (data.d_in + 6 * hidden)
    work = 4 * (state + max(train, evaluate, inspect))
    evals = c.steps // c.eval_every + 1
    outputs = c.steps * 9 + evals * 12 + 2 * _N_STATS * c.depth * 4
    return work, outputs


def _fmt_bytes(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 1e6:.0f} MB"


def check_resources(
    spec: SweepSpec, data: Any, out: Path, *, devices: Sequence[Any], platform: str
) -> dict[str, int]:
    """Refuses a sweep that cannot fit in memory or on disk, before anything runs.

    The estimate is a floor (XLA adds temporaries): the largest program group's
    blocks of :data:`~jaxstab.engine.BLOCK_SIZE` runs in flight on every device
    at once, their outputs on the devices and on the host, against the memory
    available (``MemAvailable`` of /proc/meminfo; on an accelerator, also its
    ``bytes_limit``); and the parts and tables against the free disk.

    Returns:
      ``{"memory": bytes, "disk": bytes}`` estimated.

    Raises:
      ValueError: the estimate exceeds a limit (the message names both).
    """
    groups = experiment.group_configs(spec.configs())
    data_bytes = sum(getattr(data, k).nbytes for k in ("x_train", "y_train", "x_test", "y_test"))
    host: list[tuple[float, str]] = []
    device: list[tuple[float, str]] = []
    for group in groups:
        c = group[0]
        runs = len(group) * spec["seeds"]
        blocks = math.ceil(runs / BLOCK_SIZE)
        used = min(blocks, len(devices))
        work, outputs = _run_bytes(c, data)
        # Blocks in flight and the outputs of every block a device is given.
        per_device = BLOCK_SIZE * (work + math.ceil(blocks / used) * outputs) + data_bytes
        fetched = 3 * runs * outputs  # on the host: fetched, stacked, sliced per Config
        label = (
            f"depth {c.depth}, width {c.width}, {c.optimizer}: {runs} runs in blocks of "
            f"{BLOCK_SIZE} on {used} device(s)"
        )
        # CPU devices share the host's memory; an accelerator has its own.
        host.append((fetched + (used * per_device if platform == "cpu" else 0), label))
        device.append((per_device, label))
    host_need, label = max(host)
    limit = store.available_memory()
    if limit is not None and host_need > limit:
        raise ValueError(
            f"this sweep needs about {_fmt_bytes(host_need)} of memory for its largest "
            f"program ({label}), more than the {_fmt_bytes(limit)} available "
            "(MemAvailable in /proc/meminfo); ask for fewer or smaller networks, "
            "fewer seeds or steps"
        )
    if platform != "cpu":
        device_need, label = max(device)
        stats = getattr(devices[0], "memory_stats", lambda: None)() or {}
        device_limit = stats.get("bytes_limit")
        if device_limit and device_need > device_limit:
            raise ValueError(
                f"this sweep needs about {_fmt_bytes(device_need)} of {platform} memory per "
                f"device for its largest program ({label}), more than the "
                f"{_fmt_bytes(device_limit)} of {devices[0].device_kind}"
            )
    configs = spec.configs()
    runs = len(configs) * spec["seeds"]
    prefix = 120 + len(configs[0].name)  # the run columns of one CSV row, roughly
    steps, depth = spec["steps"], max(spec["depths"])
    disk = runs * (
        _run_bytes(configs[0], data)[1]  # the part
        + (steps + 1) * (prefix + 70)  # curves.csv
        + 2 * depth * (prefix + 12 * _N_STATS)  # layer_stats.csv
        + prefix
        + 120  # results.csv
    )
    free = store.free_disk(out)
    if free is not None and disk > free:
        raise ValueError(
            f"this sweep writes about {_fmt_bytes(disk)} (parts, curves.csv, layer_stats.csv), "
            f"more than the {_fmt_bytes(free)} free on the disk of {out}; "
            "ask for fewer seeds, steps or grid points"
        )
    return {"memory": int(host_need), "disk": int(disk)}


# --- computing ----------------------------------------------------------------------


def part_payload(result: Result) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A result as a part: its Config (with ``name``) and arrays."""
    config = {**result.config.to_dict(), "name": result.config.name}
    arrays = {
        k: np.asarray(getattr(result, k))
        for k in Result._fields
        if k not in ("config", "layer_stats")
    }
    arrays.update({f"stats/{k}": np.asarray(v) for k, v in result.layer_stats.items()})
    return config, arrays


def execute(
    todo: Sequence[Config],
    data: Any,
    *,
    out: Path | None,
    devices: Sequence[Any] | None = None,
    on_group_start: Callable[[list[Config]], None] | None = None,
    on_group_done: Callable[[list[Config], Mapping[str, float]], None] | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Trains ``todo`` one program group at a time; each group's parts are written at once.

    Args:
      todo: the Configs to train (see :func:`plan`).
      data: their data set.
      out: the sweep directory, or None on a process that does not write (the
        other hosts of a multi-host sweep).
      devices: this process's devices; default all local ones.
      on_group_start, on_group_done: progress callbacks; ``on_group_done`` gets
        the group's seconds (``lower``, ``compile``, ``run``, ``write``).
      check_interrupt: called between groups; raises to stop (KeyboardInterrupt).

    Returns:
      Seconds and counts summed over groups: ``check``, ``lower``, ``compile``,
      ``run``, ``write`` and ``executables``.
    """
    totals: dict[str, float] = {}
    for group in experiment.group_configs(todo):
        if check_interrupt is not None:
            check_interrupt()
        if on_group_start is not None:
            on_group_start(group)
        clock: dict[str, float] = {}
        results, _ = experiment.run_many(group, data, devices=devices, timings=clock)
        t0 = time.perf_counter()
        if out is not None:
            for r in results:
                store.write_part(out, *part_payload(r))
        clock["write"] = time.perf_counter() - t0
        for k, v in clock.items():
            totals[k] = totals.get(k, 0.0) + v
        if on_group_done is not None:
            on_group_done(group, clock)
        if check_interrupt is not None:
            check_interrupt()
    return totals


def assemble(out: Path, spec: SweepSpec) -> None:
    """Writes results.csv, curves.csv and layer_stats.csv of ``spec`` from the parts.

    Raises:
      SweepError: a run of ``spec`` has no part, or a part fails to load.
    """
    by_name: dict[str, list[store.Part]] = {}
    for part in store.list_parts(out):
        by_name.setdefault(part.name, []).append(part)
    seeds = list(spec.seed_indices)
    sources = []  # (part, the seeds it contributes) in row order
    for c in spec.configs():
        taken: set[int] = set()
        for part in sorted(by_name.get(c.name, []), key=lambda p: p.first):
            mine = [s for s in seeds if part.first <= s <= part.last and s not in taken]
            if mine:
                sources.append((part, mine))
                taken.update(mine)
        if len(taken) != len(seeds):
            missing = sorted(set(seeds) - taken)
            raise store.SweepError(
                f"{out} has no part for seed {missing[0]} of {c.name}; "
                "rerun the sweep with --resume to compute it"
            )
    if not sources:
        return
    first_config, first_arrays = store.load_part(sources[0][0])
    names = report.stats_names(first_arrays)
    run_cols = report.run_columns()
    results: list[list[str]] = []
    with (
        store.csv_writer(out / "curves.csv", [*run_cols, "step", *report.CURVE_METRICS]) as curves,
        store.csv_writer(out / "layer_stats.csv", [*run_cols, "when", "layer", *names]) as stats,
    ):
        for i, (part, mine) in enumerate(sources):
            config, arrays = (first_config, first_arrays) if i == 0 else store.load_part(part)
            results += report.result_rows(config, arrays, mine)
            curves(report.curve_rows(config, arrays, mine))
            stats(report.stats_rows(config, arrays, mine, names))
    store.write_csv(out / "results.csv", report.result_columns(), results)


# --- several processes (jax.distributed) ------------------------------------------------


def share(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """Process 0's JSON payload, on every process (a no-op with one process).

    Also the first collective of a multi-host sweep: it sets up the CPU
    collectives while the processes are in step (gloo waits only 30 s for a
    late peer when it first connects).
    """
    import jax

    if jax.process_count() == 1:
        assert payload is not None
        return dict(payload)
    from jax.experimental import multihost_utils

    raw = json.dumps(payload).encode() if jax.process_index() == 0 else b""
    n = int(multihost_utils.broadcast_one_to_all(np.asarray([len(raw)], np.int32))[0])
    buf = np.zeros(n, np.uint8)
    if jax.process_index() == 0:
        buf[:] = np.frombuffer(raw, np.uint8)
    got = np.asarray(multihost_utils.broadcast_one_to_all(buf), np.uint8)
    return dict(json.loads(got.tobytes().decode()))


def all_processes_agree(ok: bool) -> bool:
    """True when ``ok`` holds on every process."""
    import jax

    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([int(ok)], np.int32))
    return bool(np.all(np.asarray(flags)))


# --- a whole sweep ----------------------------------------------------------------------


class Prepared(NamedTuple):
    """A checked request: what to run, on what data, into which directory state."""

    spec: SweepSpec
    data: Any
    source: str  # the data set as given (a name, or an absolute .npz path)
    digest: str
    state: str  # dir_state of out before anything was written
    stored: dict[str, Any] | None  # the existing config.json record on a resume
    added: dict[str, Any]


def _load_data(source: str, loaded: dict[str, Any]) -> Any:
    from jaxstab.data import get_dataset

    if source not in loaded:
        try:
            loaded[source] = get_dataset(source)
        except (ValueError, OSError, ImportError) as e:
            raise ValueError(f"--dataset {source}: {e}") from None
        except (EOFError, KeyError, zipfile.BadZipFile) as e:  # a truncated or foreign file
            raise ValueError(f"--dataset {source} is not a readable .npz file ({e!r})") from None
    return loaded[source]


def _source(text: str) -> str:
    """A data set as recorded: a name as is, an ``.npz`` path made absolute."""
    return str(Path(text).resolve()) if text.lower().endswith(".npz") else text


def prepare(
    out: Path,
    given: Mapping[str, Any],
    *,
    resume: bool,
    devices: Sequence[Any],
    platform: str,
    loaded: dict[str, Any] | None = None,
    locked: bool = False,
) -> Prepared:
    """Checks a request against ``out`` and the machine; reads, never writes.

    Args:
      out: the sweep directory.
      given: the options the user gave (``dataset`` is a name or a path).
      resume: continue (and possibly extend) the sweep in ``out``.
      devices, platform: where it will run (for the memory estimate).
      loaded: a cache of loaded data sets by source.
      locked: this process holds ``out``'s lock (skip the check for another holder).

    Raises:
      SweepError: ``out`` cannot be used (in use, not a sweep, corrupt).
      ValueError: a bad setting, a resume that changes a fixed setting or the
        data, or a request that cannot fit.
    """
    loaded = {} if loaded is None else loaded
    state = store.dir_state(out)
    if state != "missing" and not locked:
        holder = store.lock_holder(out)
        if holder is not None:
            raise store.SweepError(
                f"{out} is in use by another jaxstab sweep ({holder}); "
                "wait for it to finish or choose another --out"
            )
    if state == "foreign":
        if resume:
            raise store.SweepError(
                f"{out} is not a jaxstab sweep directory (it holds files but no config.json); "
                "refusing to write into it"
            )
        raise store.SweepError(f"--out {out} already holds files; choose a new --out")
    if state == "sweep" and not resume:
        raise store.SweepError(
            f"--out {out} already holds a sweep; pass --resume to continue or extend it, "
            "or choose a new --out"
        )
    stored = store.read_config(out) if state == "sweep" else None
    given = dict(given)
    source: str
    if "dataset" in given:
        source = _source(given["dataset"])
    elif stored is not None:
        recorded = stored["dataset"]
        if not isinstance(recorded, dict) or not isinstance(recorded.get("source"), str):
            raise store.SweepError(f"{out / 'config.json'} is corrupt (no dataset source)")
        source = recorded["source"]
    else:
        source = SweepSpec.make()["dataset"]
    data = _load_data(source, loaded)
    digest = dataset_digest(data)
    given["dataset"] = data.name
    added: dict[str, Any] = {}
    if stored is None:
        spec = SweepSpec.make(**given)
    else:
        old = stored["dataset"] if isinstance(stored["dataset"], dict) else {}
        if old.get("sha256") != digest:
            raise ValueError(
                f"cannot resume {out}: the data set {source} (sha256 {digest[:12]}) is not the "
                f"sweep's {old.get('name')!r} from {old.get('source')} "
                f"(sha256 {str(old.get('sha256'))[:12]})"
            )
        try:
            spec, added = SweepSpec.from_json(stored["sweep"]).merge(given)
        except (TypeError, KeyError) as e:
            raise store.SweepError(f"{out / 'config.json'} is corrupt ({e!r})") from None
        except ValueError as e:
            raise ValueError(f"cannot resume {out}: {e}") from None
    check_resources(spec, data, out, devices=devices, platform=platform)
    return Prepared(spec, data, source, digest, state, stored, added)


def _dataset_record(p: Prepared) -> dict[str, Any]:
    d = p.data
    return {
        "name": d.name,
        "source": p.source,
        "sha256": p.digest,
        "n_train": d.n_train,
        "n_test": d.n_test,
        "d_in": d.d_in,
        "classes": d.num_classes,
    }


def _record(p: Prepared, argv: Sequence[str] | None) -> dict[str, Any]:
    """config.json after this start: the spec now, and one more history entry."""
    entry = store.provenance(argv)
    if p.stored is None:
        entry["action"] = "created"
        history = [entry]
    else:
        entry["action"] = "resumed"
        entry["added"] = p.added
        history = [*p.stored["history"], entry]
    return {"sweep": p.spec.to_json(), "dataset": _dataset_record(p), "history": history}


def _cleanup_fresh(out: Path, state: str) -> None:
    """Removes what taking the lock created in a directory that was missing or empty."""
    if state in ("missing", "empty"):
        for name in (store.LOCK_NAME, "parts"):
            path = out / name
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)
        if state == "missing":
            with contextlib.suppress(OSError):
                out.rmdir()


class Summary(NamedTuple):
    spec: SweepSpec
    runs: int  # runs in the sweep
    resumed: int  # runs found finished
    computed: int  # runs trained now
    timings: dict[str, float]  # check, lower, compile, run, write (parts and tables), executables
    added: dict[str, Any]
    notes: list[str]  # corrupt parts recomputed, temporaries removed


def run_sweep(
    out: Path,
    given: Mapping[str, Any],
    *,
    resume: bool = False,
    argv: Sequence[str] | None = None,
    devices: Sequence[Any] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_group_start: Callable[[list[Config]], None] | None = None,
    on_group_done: Callable[[list[Config], Mapping[str, float]], None] | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> Summary | None:
    """Runs, resumes or extends the sweep in ``out``: check, lock, plan, train, write.

    Nothing is written until every check has passed (:func:`prepare`); then the
    directory is locked, ``config.json`` records the sweep and this start, the
    missing runs are trained one program group at a time (each group's parts
    written as it finishes), and the tables are assembled from the parts.
    With several processes (``jax.distributed``), process 0 checks, plans and
    writes; every process trains its share of each group's blocks.

    Args:
      out: the sweep directory.
      given: options given by the user, by :class:`SweepSpec` option name
        (``depths=(2, 4)``, ``dataset="mixture"``); the rest are the defaults,
        or on a resume the stored sweep's values.
      resume: continue (and possibly extend) an existing sweep.
      argv: the command line to record (default ``sys.argv``).
      devices: this process's devices; default all local ones.
      on_plan, on_group_start, on_group_done: progress callbacks (process 0).
      check_interrupt: called between groups; raises to stop.

    Returns:
      A :class:`Summary` on process 0, None on the others.

    Raises:
      SweepError: the request is refused (as :func:`prepare`), before anything
        is written. Errors while training are not caught.
    """
    import jax

    devices = list(jax.local_devices() if devices is None else devices)
    writer = jax.process_index() == 0
    loaded: dict[str, Any] = {}
    lock = store.Lock(out)
    started: tuple[Prepared, Plan, list[str]] | None = None
    if writer:
        try:
            started = _start(out, given, resume, argv, devices, loaded, lock)
        except ValueError as e:  # a refused request (SweepError is one too)
            if jax.process_count() > 1:
                share({"ok": False, "error": str(e)})
            if isinstance(e, store.SweepError):
                raise
            raise store.SweepError(str(e)) from None
    try:
        if started is not None:
            prepared, the_plan, notes = started
            payload = {
                "ok": True,
                "source": prepared.source,
                "digest": prepared.digest,
                "todo": [c.to_dict() for c in the_plan.todo],
            }
        shared = share(payload if writer else None)
        if not shared["ok"]:
            raise store.SweepError(f"process 0 refused the sweep: {shared['error']}")
        problem = ""
        if writer:
            data = prepared.data
        else:
            try:
                data = _load_data(shared["source"], loaded)
                if dataset_digest(data) != shared["digest"]:
                    problem = f"the data set {shared['source']} here is not process 0's (sha256)"
            except ValueError as e:
                problem = str(e)
        if not all_processes_agree(not problem):  # every process stops, not only this one
            raise store.SweepError(
                problem or f"the data set {shared['source']} differs on another process"
            )
        if writer and on_plan is not None:
            on_plan(the_plan)
        timings = execute(
            [Config(**c) for c in shared["todo"]],
            data,
            out=out if writer else None,
            devices=devices,
            on_group_start=on_group_start if writer else None,
            on_group_done=on_group_done if writer else None,
            check_interrupt=check_interrupt,
        )
        if not writer:
            return None
        t0 = time.perf_counter()
        assemble(out, prepared.spec)
        timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
    finally:
        lock.release()
    return Summary(
        spec=prepared.spec,
        runs=prepared.spec.num_runs,
        resumed=the_plan.done_runs,
        computed=the_plan.todo_runs,
        timings=timings,
        added=prepared.added,
        notes=notes,
    )


def _start(
    out: Path,
    given: Mapping[str, Any],
    resume: bool,
    argv: Sequence[str] | None,
    devices: Sequence[Any],
    loaded: dict[str, Any],
    lock: store.Lock,
) -> tuple[Prepared, Plan, list[str]]:
    """Checks, locks, checks again, and records the start in config.json (process 0).

    On any failure before config.json is written, the lock is released and
    whatever taking it created is removed, so a refused sweep leaves nothing.
    """
    check = lambda locked: prepare(
        out, given, resume=resume, devices=devices, platform=devices[0].platform,
        loaded=loaded, locked=locked,
    )  # fmt: skip
    first = check(False)
    recorded = False
    try:
        lock.acquire(command=shlex.join(argv or sys.argv))
        # Checked again under the lock: another sweep may have written meanwhile.
        prepared = check(True)
        store.probe_writable(out / "parts")
        notes = []
        removed = store.remove_stale_temps(out)
        if removed:
            notes.append(f"removed {len(removed)} temporary file(s) left by a killed sweep")
        the_plan = plan(prepared.spec, out)
        notes += the_plan.corrupt
        store.write_config(out, _record(prepared, argv))
        recorded = True
    except BaseException:
        if lock.held:  # never clean up after another sweep's lock
            if not recorded and first.state in ("missing", "empty"):
                # Under the lock, ours: e.g. the write probe that an interrupt cut short,
                # which would keep parts/ from being removed.
                store.remove_stale_temps(out)
            lock.release()
            if not recorded:
                _cleanup_fresh(out, first.state)
        raise
    return prepared, the_plan, notes
