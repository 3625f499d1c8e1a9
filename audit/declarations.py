"""What an attribution method declares about itself, shared by the image and the text engine.

Options (default, what it does, whether it changes a result, the check of a value and the range a form
may offer), the model evaluations a method costs, and the validated option set of one run. The classes
themselves are kept in a ``audit.catalogue.Catalogue``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch

CONFLICTING_OPTION = "option {name!r} is declared twice with different defaults ({a!r} and {b!r})"
UNKNOWN_OPTION = "unknown {kind} option(s) {names}; valid options are: {valid}"
UNDECLARED_OPTION = (
    "method {method!r} read option {name!r}, which it does not declare; add it to the method's "
    "`options` (and say whether it changes the result)"
)


@dataclass(frozen=True)
class Option:
    """One tunable: its name, default and what it does.

    ``result`` says whether the value can change a method's output. Options with ``result=False``
    never change a map bitwise, except those with ``exact=False``, which may change it at float
    rounding only. ``check`` raises ValueError/TypeError with an actionable message for a bad value;
    where it is a :class:`NumberRange` or :class:`Choice` its range or choices are readable
    (``low``, ``high``, ``choices``), so a form offers what the engine accepts. ``label`` is how the
    option reads beside a result ("steps 32"); ``acts_only_with`` names the option without which
    this one has no effect (so it is shown only beside it).
    """

    name: str
    default: Any
    doc: str
    result: bool = True
    exact: bool = True
    check: Callable[[str, Any], None] | None = None
    label: str = ""
    acts_only_with: str | None = None

    @property
    def low(self) -> float | None:
        return getattr(self.check, "low", None)

    @property
    def high(self) -> float | None:
        return getattr(self.check, "high", None)

    @property
    def choices(self) -> tuple[Any, ...]:
        return tuple(getattr(self.check, "choices", ()))


# ---- value checks (each raises with a message naming the option) ------------------------------

@dataclass(frozen=True)
class NumberRange:
    """A number (an integer with ``integer``) in [low, high]; an open end excludes its bound; None
    passes with ``optional``. Booleans are refused: True is not a step count."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    optional: bool = False
    open_low: bool = False
    open_high: bool = False

    def __call__(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        kinds = (int,) if self.integer else (int, float)
        ok = not isinstance(value, bool) and isinstance(value, kinds)
        if ok and self.low is not None:
            ok = value > self.low if self.open_low else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.open_high else value <= self.high
        if not ok:
            raise ValueError(f"option {name} must be {self.describe()}, got {value!r}")

    def describe(self) -> str:
        what = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            what += f" in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"
        elif self.low is not None:
            what += f" {'>' if self.open_low else '>='} {self.low}"
        elif self.high is not None:
            what += f" {'<' if self.open_high else '<='} {self.high}"
        return what + (" or None" if self.optional else "")


@dataclass(frozen=True)
class Choice:
    """One of ``choices`` (what a form offers); ``aliases`` are other accepted spellings, and with
    ``or_integer`` any integer passes too (``or_integer`` says what it means, e.g. "a token id")."""

    choices: tuple[Any, ...]
    aliases: tuple[Any, ...] = ()
    or_integer: str = ""

    def __call__(self, name: str, value: Any) -> None:
        if not isinstance(value, bool) and (value in self.choices or value in self.aliases):
            return
        if self.or_integer and isinstance(value, int) and not isinstance(value, bool):
            return
        valid = ", ".join(map(repr, self.choices + self.aliases)) + (f" or {self.or_integer}" if self.or_integer else "")
        raise ValueError(f"option {name} must be one of {valid}, got {value!r}")


positive_int = NumberRange(low=1, integer=True)
optional_positive_int = NumberRange(low=1, integer=True, optional=True)
non_negative = NumberRange(low=0)
positive = NumberRange(low=0, open_low=True)
optional_positive = NumberRange(low=0, open_low=True, optional=True)


def in_closed(lo: float, hi: float) -> NumberRange:
    return NumberRange(low=lo, high=hi)


def in_open(lo: float, hi: float) -> NumberRange:
    return NumberRange(low=lo, high=hi, open_low=True, open_high=True)


def one_of(*choices: str) -> Choice:
    return Choice(tuple(choices))


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"option {name} must be True or False, got {value!r}")


def optional_boolean(name: str, value: Any) -> None:
    if value is not None:
        boolean(name, value)


def integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"option {name} must be an integer, got {value!r}")


def callable_or_none(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"option {name} must be a callable (fraction, message) or None")


def merge_declarations(groups: Iterable[Iterable[Option]]) -> dict[str, Option]:
    """One table name -> Option; the same name declared twice must agree on its default."""
    table: dict[str, Option] = {}
    for group in groups:
        for opt in group:
            seen = table.get(opt.name)
            if seen is None:
                table[opt.name] = opt
            elif seen is not opt and not _same_default(seen.default, opt.default):
                raise ValueError(CONFLICTING_OPTION.format(name=opt.name, a=seen.default, b=opt.default))
    return table


def _same_default(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return a is b
    return type(a) is type(b) and a == b


# ---- cost -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluations:
    """Samples a method sends through the model: forward, backward, and of the forwards those on
    the inference path (``expanded``: perturbed inputs, path points, noisy copies)."""

    forward: int
    backward: int
    expanded: int = 0


# ---- the option set of one run ---------------------------------------------------------------------

class Declares(Protocol):
    """What a method class says about its options (enough to scope what it may read)."""

    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...]]


class OptionSet:
    """Every option of one run, with the declared defaults filled in; read as attributes.

    Build it with :meth:`from_kwargs` (validated against the declared table). Immutable:
    :meth:`replace` returns a new, validated set. Subclasses say where the table comes from
    (:meth:`declared`) and which checks span several options (:meth:`check_together`).
    """

    __slots__ = ("_values", "_table")
    kind: ClassVar[str] = "method"  # names the engine in messages ("unknown attribution option")

    def __init__(self, values: Mapping[str, Any], table: Mapping[str, Option]) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_table", dict(table))

    @classmethod
    def declared(cls) -> Mapping[str, Option]:
        raise NotImplementedError

    @classmethod
    def from_kwargs(cls, **options: Any) -> Any:
        table = cls.declared()
        unknown = sorted(set(options) - set(table))
        if unknown:
            raise TypeError(UNKNOWN_OPTION.format(kind=cls.kind, names=unknown, valid=", ".join(sorted(table))))
        values = {name: opt.default for name, opt in table.items()}
        values.update(options)
        opts = cls(values, table)
        opts.validate()
        return opts

    def replace(self, **changes: Any) -> Any:
        unknown = sorted(set(changes) - set(self._table))
        if unknown:
            raise TypeError(UNKNOWN_OPTION.format(kind=self.kind, names=unknown, valid=", ".join(sorted(self._table))))
        opts = type(self)({**self._values, **changes}, self._table)
        opts.validate()
        return opts

    def validate(self) -> None:
        for name, opt in self._table.items():
            if opt.check is not None:
                opt.check(name, self._values[name])
        self.check_together()

    def check_together(self) -> None:
        """Checks across several options (single values are checked by their ``Option``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no {self.kind} option {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"{self.kind} options are immutable; use replace({name}=...)")

    def get(self, name: str) -> Any:
        return getattr(self, name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._values)


class OptionsView:
    """The options one method may read: its declared ones and the engine's.

    Reading anything else raises, so an option a method uses but does not declare (and that would
    therefore be missing from its result key) is caught the first time the method runs.
    """

    __slots__ = ("_options", "_allowed", "_method")

    def __init__(self, options: OptionSet, allowed: Iterable[str], method: str) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_allowed", frozenset(allowed))
        object.__setattr__(self, "_method", method)

    @classmethod
    def scoped(cls, options: OptionSet, method: Declares, engine: Iterable[Option]) -> "OptionsView":
        return cls(options, {o.name for o in method.options} | {o.name for o in engine}, method.name)

    def __getattr__(self, name: str) -> Any:
        if name not in self._allowed:
            raise AttributeError(UNDECLARED_OPTION.format(method=self._method, name=name))
        return getattr(self._options, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError("options are immutable")

    def get(self, name: str) -> Any:
        return getattr(self, name)
