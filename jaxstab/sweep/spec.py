"""The grid of a sweep, derived from the settings of :class:`jaxstab.experiment.Config`.

Every field of ``Config`` becomes one :class:`Setting`: its ``role`` decides
whether the sweep holds a tuple of values for it (``"static"`` and ``"traced"``:
an axis of the grid, named by the field's ``plural``, e.g. ``lrs``) or one value
(``"fixed"`` and ``"seeds"``). The command line's options, the ``results.csv``
run columns and the resume check are all read from :func:`settings`, so a new
setting is one edit in ``Config`` (and its use in the training task).

Example:
  >>> spec = SweepSpec.make(depths=(2, 4), lrs=(0.1, 0.01), seeds=3, steps=10, eval_every=5)
  >>> len(spec.configs()), spec.num_runs
  (24, 72)
  >>> spec["lrs"]
  (0.1, 0.01)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from jaxstab import experiment
from jaxstab.experiment import Config

__all__ = ["AXIS_ROLES", "MAX_INT32", "SWEEP_DEFAULTS", "Setting", "SweepSpec", "settings"]

AXIS_ROLES = ("static", "traced")
MAX_INT32 = 2**31 - 1  # seeds and steps are int32 inside the compiled program

# Where the sweep's default differs from Config's: `make run`'s depth-scaling job.
SWEEP_DEFAULTS: dict[str, Any] = {
    "depth": (2, 8, 16, 32),
    "width": (64,),
    "activation": ("sigmoid", "tanh", "relu"),
    "init": ("xavier_normal", "he_normal"),
    "lr": (0.02,),
    "eval_every": 50,
}


class Setting(NamedTuple):
    """One setting of a sweep, read from a :class:`~jaxstab.experiment.Config` field."""

    field: str  # the Config field ("lr")
    option: str  # its name in a SweepSpec and config.json ("lrs"); the flag is --lrs
    role: str  # "static", "traced", "fixed" or "seeds" (see experiment.fields)
    help: str
    kind: type  # int, float or str
    optional: bool  # None is allowed, written "none"
    choices: tuple[str, ...] | None
    default: Any  # the sweep's default: a tuple for an axis

    @property
    def is_axis(self) -> bool:
        """A grid axis: the sweep holds a tuple of values."""
        return self.role in AXIS_ROLES

    @property
    def flag(self) -> str:
        return "--" + self.option.replace("_", "-")

    def parse(self, text: str) -> Any:
        """One value from its text; ValueError names the text and what was expected."""
        t = text.strip()
        if self.optional and t.lower() == "none":
            return None
        if self.choices is not None and t not in self.choices:
            raise ValueError(f"unknown {self.field} {t!r}; valid: {', '.join(self.choices)}")
        try:
            return self.kind(t)
        except ValueError:
            what = {int: "an integer", float: "a number", str: "a name"}[self.kind]
            if self.optional:
                what += " or none"
            raise ValueError(f"bad {self.field} {t!r}: expected {what}") from None

    def parse_list(self, text: str) -> tuple[Any, ...]:
        """An axis's comma-separated values; duplicates are refused."""
        items = text.split(",")
        if not text.strip() or any(not t.strip() for t in items):
            raise ValueError(
                f"malformed list {text!r} for {self.flag}: expected comma-separated values"
            )
        values = tuple(self.parse(t) for t in items)
        _no_duplicates(self.flag, values, items)
        return values

    def format(self, value: Any) -> str:
        """The value as written on the command line (exact for floats)."""
        if value is None:
            return "none"
        return repr(value) if isinstance(value, float) else str(value)

    def coerce(self, value: Any) -> Any:
        """A JSON or Python value as this setting's type (floats stay exact)."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{self.field} cannot be none")
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def coerce_all(self, values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(self.coerce(v) for v in values)


def _no_duplicates(flag: str, values: Sequence[Any], texts: Sequence[str] | None = None) -> None:
    seen: dict[Any, int] = {}
    for i, v in enumerate(values):
        if v in seen:
            spelled = (
                f" ({texts[seen[v]].strip()!r} and {texts[i].strip()!r} are equal)"
                if texts is not None and texts[seen[v]].strip() != texts[i].strip()
                else ""
            )
            raise ValueError(
                f"{flag} lists the value {v!r} twice{spelled}; each grid value must be distinct"
            )
        seen[v] = i


def _kind(annotation: Any) -> tuple[type, bool]:
    """(base type, None allowed) of a Config field's annotation."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        base = [a for a in args if a is not type(None)]
        return base[0], len(base) < len(args)
    return annotation, False


@functools.cache
def settings() -> tuple[Setting, ...]:
    """Every setting of a sweep, in :class:`~jaxstab.experiment.Config`'s field order."""
    hints = typing.get_type_hints(Config)
    out = []
    for f in experiment.fields():
        kind, optional = _kind(hints[f.name])
        role = f.metadata["role"]
        axis = role in AXIS_ROLES
        default = SWEEP_DEFAULTS.get(f.name, (f.default,) if axis else f.default)
        out.append(
            Setting(
                field=f.name,
                option=f.metadata["plural"] if axis else f.name,
                role=role,
                help=f.metadata["help"],
                kind=kind,
                optional=optional,
                choices=f.metadata.get("choices"),
                default=default,
            )
        )
    return tuple(out)


def _by_option() -> dict[str, Setting]:
    return {s.option: s for s in settings()}


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A sweep: every combination of the axes' values, each for the same seeds.

    ``values`` maps each setting's ``option`` (:func:`settings`) to a tuple of
    values (axes) or one value (fixed settings, ``seeds``, ``first_seed``).
    Construction validates every value through :class:`~jaxstab.experiment.Config`,
    so a bad one raises ValueError naming its option, before anything runs.
    """

    values: Mapping[str, Any]

    def __post_init__(self) -> None:
        known = _by_option()
        unknown = sorted(set(self.values) - set(known))
        missing = sorted(set(known) - set(self.values))
        if unknown or missing:
            raise ValueError(
                f"SweepSpec needs exactly the options {', '.join(known)}; "
                f"unknown: {unknown}, missing: {missing}"
            )
        values: dict[str, Any] = {}
        for s in settings():
            v = self.values[s.option]
            if s.is_axis:
                if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not v:
                    raise ValueError(f"{s.flag} must be a non-empty list of values, got {v!r}")
                v = s.coerce_all(v)
                _no_duplicates(s.flag, v)
            else:
                v = s.coerce(v)
            values[s.option] = v
        object.__setattr__(self, "values", values)
        self._validate()

    def _validate(self) -> None:
        for name in ("steps", "seeds"):
            v = self.values[name]
            if isinstance(v, int) and not isinstance(v, bool) and v > MAX_INT32:
                raise ValueError(f"--{name} {v} is too large: at most {MAX_INT32} (int32)")
        first, n = self.values["first_seed"], self.values["seeds"]
        if isinstance(first, int) and isinstance(n, int) and first + n - 1 > MAX_INT32:
            raise ValueError(
                f"--first-seed {first} with --seeds {n} runs past seed index {MAX_INT32} (int32)"
            )
        # The per-sweep values with Config's own (valid) axis defaults, then each axis
        # value on its own, so an error names the option that holds the bad value.
        base = Config(**{s.field: self.values[s.option] for s in settings() if not s.is_axis})
        for s in settings():
            if s.is_axis:
                for v in self.values[s.option]:
                    try:
                        dataclasses.replace(base, **{s.field: v})
                    except (TypeError, ValueError) as e:
                        raise ValueError(f"{s.flag}: {e}") from None

    def _config(self, point: Mapping[str, Any]) -> Config:
        kw = {s.field: self.values[s.option] for s in settings() if not s.is_axis}
        return Config(**kw, **point)

    @classmethod
    def make(cls, **given: Any) -> SweepSpec:
        """A spec from options (``depths=(2, 4)``, ``steps=100``); the rest take defaults."""
        return cls({s.option: given.get(s.option, s.default) for s in settings()})

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SweepSpec:
        """The spec of :meth:`to_json` (as stored in ``config.json``)."""
        return cls(dict(record))

    def to_json(self) -> dict[str, Any]:
        """Options to JSON values: tuples become lists, floats stay exact."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.values.items()}

    def __getitem__(self, option: str) -> Any:
        return self.values[option]

    def replace(self, **given: Any) -> SweepSpec:
        return SweepSpec({**self.values, **given})

    @property
    def seed_indices(self) -> range:
        first = self.values["first_seed"]
        return range(first, first + self.values["seeds"])

    @property
    def num_runs(self) -> int:
        return len(self.configs()) * self.values["seeds"]

    def axes(self) -> dict[str, tuple[Any, ...]]:
        """The grid's axes by Config field name."""
        return {s.field: self.values[s.option] for s in settings() if s.is_axis}

    def configs(self) -> list[Config]:
        """One Config per grid point (with this spec's seeds), the last axis fastest."""
        axes = self.axes()
        names = list(axes)
        return [
            self._config(dict(zip(names, point))) for point in itertools.product(*axes.values())
        ]

    def merge(self, given: Mapping[str, Any]) -> tuple[SweepSpec, dict[str, Any]]:
        """This stored sweep grown by the options given to a resume.

        An axis gains the given values it lacks (a resume only adds); seeds are
        the union of both seed ranges, which must overlap or touch; a fixed
        setting given with another value is refused (its runs would not compare).

        Returns:
          ``(merged spec, added)``, ``added`` mapping each grown option to its new
          values (``"seeds"`` to the new seed indices as ``[first, last]``).

        Raises:
          ValueError: a fixed setting differs, or the seed ranges leave a gap.
        """
        values = dict(self.values)
        added: dict[str, Any] = {}
        differ = []
        for s in settings():
            if s.option not in given or s.role == "seeds":
                continue
            v = given[s.option]
            if s.is_axis:
                extra = tuple(x for x in s.coerce_all(v) if x not in values[s.option])
                if extra:
                    values[s.option] = values[s.option] + extra
                    added[s.option] = list(extra)
            elif s.coerce(v) != values[s.option]:
                differ.append(f"{s.flag} {s.format(values[s.option])} before, {s.format(v)} now")
        if differ:
            raise ValueError(
                f"its fixed settings differ ({'; '.join(differ)}); a resume may add grid "
                "values and seeds, but not change these: use a new --out or the same values"
            )
        old = self.seed_indices
        new = range(given.get("first_seed", old.start), 0)
        new = range(new.start, new.start + given.get("seeds", len(old)))
        if new.start > old.stop or old.start > new.stop:
            raise ValueError(
                f"seeds {new.start}..{new.stop - 1} leave a gap after the sweep's seeds "
                f"{old.start}..{old.stop - 1}; a resume may only extend the seed range"
            )
        lo, hi = min(old.start, new.start), max(old.stop, new.stop)
        values["first_seed"], values["seeds"] = lo, hi - lo
        if (lo, hi) != (old.start, old.stop):
            added["seeds"] = [lo, hi - 1]
        return SweepSpec(values), added
