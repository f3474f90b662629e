"""Every file a sweep reads or writes: atomic writes, the lock, parts, tables, provenance.

Layout of a sweep directory::

    .lock                      held (fcntl.flock) by the one sweep writing here
    config.json                the sweep, its data set, provenance and every resume
    parts/NAME.seedsA-B.npz    one grid point's runs for seeds A..B (atomic: temp + rename)
    results.csv                one row per grid point x seed
    curves.csv                 one row per run x step: the per-step and evaluation metrics
    layer_stats.csv            one row per run x {init, final} x layer
    figures/*.png              drawn by the command line, never by the store

Every write goes to a temporary file beside its target (named
``.jaxstab-tmp-*``) and is renamed onto it, so a reader or a killed sweep
never sees half a file; a resume removes temporaries that a kill left behind.
Errors about a file are :class:`SweepError` with one sentence naming it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import fcntl
import io
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "FORMAT",
    "Lock",
    "Part",
    "SweepError",
    "atomic_path",
    "available_memory",
    "csv_writer",
    "dir_state",
    "free_disk",
    "list_parts",
    "load_part",
    "lock_holder",
    "probe_writable",
    "provenance",
    "read_config",
    "read_csv",
    "remove_stale_temps",
    "save_figure",
    "write_config",
    "write_csv",
    "write_npz",
    "write_part",
    "write_text",
]

FORMAT = "jaxstab-sweep/2"  # config.json's "format"; older sweeps have none
TMP_PREFIX = ".jaxstab-tmp-"
LOCK_NAME = ".lock"
_PART = re.compile(r"^(?P<name>.+)\.seeds(?P<first>\d+)-(?P<last>\d+)\.npz$")


class SweepError(ValueError):
    """A sweep cannot run as asked: a bad request, directory or file (one sentence)."""


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# --- atomic files --------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``, renamed onto it if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes arrays to an ``.npz`` file atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def save_figure(fig: Any, path: Path, *, dpi: int = 110, tight: bool = True) -> None:
    """Writes a matplotlib figure to ``path`` as PNG, atomically (temp file + rename).

    The figure stays open: closing it (``plt.close(fig)``) is the caller's business.

    Args:
      fig: the ``matplotlib.figure.Figure`` to write.
      path: the PNG file; its directory is created if needed.
      dpi: resolution in dots per inch.
      tight: crop to the drawn content (``bbox_inches="tight"``); False keeps the
        figure's own size (the savefig default).
    """
    extra = {"bbox_inches": "tight"} if tight else {}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", **extra)


def remove_stale_temps(out: Path) -> list[Path]:
    """Removes temporaries that a killed sweep left in ``out``; returns their paths.

    Call it only while holding the lock: then no live writer owns them.
    """
    removed = []
    for folder in (out, out / "parts", out / "figures"):
        if folder.is_dir():
            for p in folder.glob(f"{TMP_PREFIX}*"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def probe_writable(folder: Path) -> None:
    """Creates and removes a file in ``folder`` (a real write, which root cannot bypass).

    Raises:
      SweepError: the folder cannot be written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TMP_PREFIX}probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise SweepError(f"cannot write into {folder}: {_reason(e)}") from None


# --- the lock --------------------------------------------------------------------


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info['pid']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


def lock_holder(out: Path) -> str | None:
    """Who holds ``out``'s lock (``"pid 123, started ..."``), or None; writes nothing."""
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder_text(path)
    finally:
        os.close(fd)
    return None


class Lock:
    """An exclusive ``fcntl.flock`` on ``out/.lock``, released on exit or process death.

    The file records the holder's pid and start time, which a second sweep
    names when it is refused. The file is never removed (another process may be
    waiting on its inode); a lock left by a killed process is free.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, command: str = "") -> None:
        """Takes the lock, creating ``out`` if needed.

        Raises:
          SweepError: another process holds it (the message names its pid and
            start time), or ``out`` cannot be created.
        """
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SweepError(f"cannot create {self.path}: {_reason(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fd = fd
        except BaseException as e:
            self._fd = None
            os.close(fd)
            if not isinstance(e, OSError):
                raise
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SweepError(f"cannot lock {self.path}: {_reason(e)}") from None
            raise SweepError(
                f"{self.out} is in use by another jaxstab sweep ({_holder_text(self.path)}); "
                "wait for it to finish or choose another --out"
            ) from None
        info = {"pid": os.getpid(), "started": _now(), "host": platform.node()}
        if command:
            info["command"] = command
        # Written in place: the lock lives on this inode, so no rename.
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- the directory and config.json -----------------------------------------------


def dir_state(out: Path) -> str:
    """``"missing"``, ``"empty"`` (nothing but a lock), ``"sweep"`` or ``"foreign"``.

    Raises:
      SweepError: ``out`` exists but is not a directory, or cannot be created
        because an ancestor is a file.
    """
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a directory")
    if not out.exists():
        for parent in out.absolute().parents:
            if parent.exists():
                if not parent.is_dir():
                    raise SweepError(f"--out {out} cannot be created: {parent} is not a directory")
                break
        return "missing"
    try:
        names = {p.name for p in out.iterdir()}
    except OSError as e:
        raise SweepError(f"cannot read {out}: {_reason(e)}") from None
    names = {n for n in names if n != LOCK_NAME and not n.startswith(TMP_PREFIX)}
    if not names:
        return "empty"
    return "sweep" if "config.json" in names else "foreign"


def read_config(out: Path) -> dict[str, Any]:
    """The record of ``out/config.json``.

    Raises:
      SweepError: the file is missing, unreadable, corrupt, or not a jaxstab sweep
        of this format.
    """
    path = out / "config.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"{out} is not a jaxstab sweep directory (no config.json)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"cannot read {path}: {_reason(e)}") from None
    except ValueError as e:
        raise SweepError(f"{path} is corrupt (not valid JSON: {e})") from None
    if not isinstance(record, dict):
        raise SweepError(f"{path} is corrupt (a JSON {type(record).__name__}, not an object)")
    fmt = record.get("format")
    if fmt is None and "sweep" in record:
        raise SweepError(
            f"{path} was written by an older jaxstab whose results are not comparable "
            "(another engine and file layout); use a new --out"
        )
    if fmt != FORMAT:
        raise SweepError(f"{path} is not a jaxstab sweep record (format {fmt!r}, not {FORMAT!r})")
    for key in ("sweep", "dataset", "history"):
        if key not in record:
            raise SweepError(f"{path} is corrupt (no {key!r} entry)")
    return record


def write_config(out: Path, record: Mapping[str, Any]) -> None:
    """Writes ``out/config.json`` atomically."""
    write_text(out / "config.json", json.dumps({"format": FORMAT, **record}, indent=1) + "\n")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> dict[str, Any] | None:
    """The commit of the checkout jaxstab runs from (None when installed from a wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        run = lambda *a: subprocess.run(
            ["git", "-C", str(root), *a], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", "jaxstab"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "jaxstab_modified": dirty}


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Where and how a sweep (or a resume of it) ran.

    Returns:
      ``when``, ``command`` (the exact command line, shell-quoted), the
      versions of jaxstab, jax, jaxlib, optax, numpy and Python, the git commit
      when run from a checkout, the host, and the devices.
    """
    import jax
    import jaxlib
    import optax

    import jaxstab

    argv = list(sys.argv if argv is None else argv)
    devices = jax.devices()
    return {
        "when": _now(),
        "command": shlex.join(argv),
        "versions": {
            "jaxstab": jaxstab.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "git": _git_commit(),
        "host": platform.node(),
        "processes": jax.process_count(),
        "devices": {
            "platform": devices[0].platform,
            "kind": devices[0].device_kind,
            "count": len(devices),
            "local": jax.local_device_count(),
        },
    }


# --- parts: one grid point's runs for a range of seeds ----------------------------


class Part(NamedTuple):
    path: Path
    name: str  # the Config's name
    first: int  # first seed index
    last: int  # last seed index (inclusive)


def part_path(out: Path, name: str, first: int, count: int) -> Path:
    return out / "parts" / f"{name}.seeds{first}-{first + count - 1}.npz"


def write_part(out: Path, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Writes one finished part: its arrays and its Config (as JSON) in one atomic file."""
    path = part_path(out, config["name"], config["first_seed"], config["seeds"])
    payload = {"config": np.asarray(json.dumps(dict(config))), **arrays}
    write_npz(path, payload)
    return path


def list_parts(out: Path) -> list[Part]:
    """The finished parts in ``out/parts`` (by file name; not yet loaded)."""
    folder = out / "parts"
    if not folder.is_dir():
        return []
    parts = []
    for p in sorted(folder.iterdir()):
        m = _PART.match(p.name)
        if m:
            parts.append(Part(p, m["name"], int(m["first"]), int(m["last"])))
    return parts


def load_part(part: Part) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A part's Config dict and arrays.

    Raises:
      SweepError: the file is truncated or corrupt, or does not hold what its
        name says.
    """
    try:
        with open(part.path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        config = json.loads(str(arrays.pop("config")))
        if not isinstance(config, dict):
            raise ValueError("its config is not a JSON object")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise SweepError(f"{part.path} is corrupt ({_reason(e)})") from None
    if (
        config.get("name") != part.name
        or config.get("first_seed") != part.first
        or config.get("seeds") != part.last - part.first + 1
    ):
        raise SweepError(f"{part.path} is corrupt (its contents do not match its name)")
    return config, arrays


# --- tables -----------------------------------------------------------------------


@contextlib.contextmanager
def csv_writer(
    path: Path, columns: Sequence[str]
) -> Iterator[Callable[[Iterable[Sequence[str]]], None]]:
    """Yields ``writerows`` of a CSV with ``columns``, renamed onto ``path`` at the end."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        yield writer.writerows


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Writes a CSV atomically, streaming ``rows`` (each a sequence of strings)."""
    with csv_writer(path, columns) as write:
        write(rows)


def read_csv(
    path: Path,
    types: Mapping[str, Callable[[str], Any]],
    default: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """A CSV's rows, each cell parsed by ``types[column]`` (other columns by ``default``,
    or left as strings).

    Raises:
      SweepError: the file is missing, lacks a column of ``types``, or a row is
        short or holds a value its column's type rejects (the message names the
        file and line).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SweepError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"cannot read {path}: {_reason(e)}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise SweepError(f"{path} is corrupt (empty, no header)")
    missing = [c for c in types if c not in header]
    if missing:
        raise SweepError(f"{path} is corrupt or of another version (no column {missing[0]!r})")
    rows = []
    for line, cells in enumerate(reader, start=2):
        if len(cells) != len(header):
            raise SweepError(
                f"{path} is corrupt (line {line} has {len(cells)} fields, not {len(header)})"
            )
        row: dict[str, Any] = {}
        for column, cell in zip(header, cells):
            parse = types.get(column, default)
            try:
                row[column] = parse(cell) if parse is not None else cell
            except (TypeError, ValueError):
                raise SweepError(
                    f"{path} is corrupt (line {line}: {column} = {cell!r} is not valid)"
                ) from None
        rows.append(row)
    return rows


# --- resources --------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of memory available to new work (``MemAvailable`` of /proc/meminfo)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(path: Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize
