"""Option declarations and the validated option set of one attribution run.

Each method declares its own options (``Option`` objects) in its module; the engine declares the
few options that belong to the run (batch sizes, precision, progress). ``AttributionOptions``
holds one value per declared name, so unknown names fail loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Union, get_args

import torch

# Method names are whatever the registered classes call themselves (see registry.METHODS); a
# Literal here would be a second list to keep in step with the method files.
MethodName = str

BaselineName = Literal["zeros", "ones", "blur", "uniform"]
BASELINE_NAMES: tuple[str, ...] = get_args(BaselineName)
# None means zeros; a tensor is a dataset mean (or any reference) broadcast to the inputs.
BaselineSpec = Union[None, str, float, torch.Tensor]

ProgressFn = Callable[[float, str], None]

UNKNOWN_OPTION = "unknown attribution option(s) {names}; valid options are: {valid}"
UNDECLARED_OPTION = (
    "method {method!r} read option {name!r}, which it does not declare; add it to the method's "
    "`options` (and say whether it changes the result)"
)
CONFLICTING_OPTION = "option {name!r} is declared twice with different defaults ({a!r} and {b!r})"


@dataclass(frozen=True)
class Option:
    """One tunable: its name, default and what it does.

    ``result`` says whether the value can change a method's output (declared by a method, it
    always should). Engine options with ``result=False`` never change a map bitwise, except those
    with ``exact=False``, which may change it at float rounding only (``optimize``).
    ``check`` raises ValueError/TypeError with an actionable message for a bad value.
    """

    name: str
    default: Any
    doc: str
    result: bool = True
    exact: bool = True
    check: Callable[[str, Any], None] | None = None


# ---- value checks (each raises with a message naming the option) ------------------------------

def positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"option {name} must be a positive integer, got {value!r}")


def optional_positive_int(name: str, value: Any) -> None:
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"option {name} must be a positive integer or None, got {value!r}")


def non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"option {name} must be a number >= 0, got {value!r}")


def positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"option {name} must be a number > 0, got {value!r}")


def optional_positive(name: str, value: Any) -> None:
    if value is not None:
        positive(name, value)


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"option {name} must be True or False, got {value!r}")


def optional_boolean(name: str, value: Any) -> None:
    if value is not None:
        boolean(name, value)


def integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"option {name} must be an integer, got {value!r}")


def one_of(*choices: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"option {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")

    return check


def in_closed(lo: float, hi: float) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"option {name} must lie in [{lo}, {hi}], got {value!r}")

    return check


def in_open(lo: float, hi: float) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < value < hi:
            raise ValueError(f"option {name} must lie in ({lo}, {hi}), got {value!r}")

    return check


def callable_or_none(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"option {name} must be a callable (fraction, message) or None")


# ---- options shared by several methods ---------------------------------------------------------

SEED = Option("seed", 0, "seed of the method's random draws (per sample: mixed with a hash of the sample)",
              check=integer)
BLUR_SIGMA = Option("blur_sigma", None, "Gaussian sigma of 'blur' references (None: 1/16 of the shorter side)",
                    check=optional_positive)
# The engine applies these to the evaluations a method makes on its inference path; a method lists
# them when it evaluates there (perturbed inputs, path points, noisy copies), since they change its numbers.
FAST = Option("fast", False, "bf16 autocast + channels-last for the many-evaluation methods, if a fidelity "
              "guard passes", check=boolean)
FAST_MIN_RANK_CORR = Option("fast_min_rank_corr", 0.9, "saliency rank correlation bf16 vs float32 that the "
                            "fast path must reach to be used", check=in_closed(-1.0, 1.0))
INFERENCE_PATH: tuple[Option, ...] = (FAST, FAST_MIN_RANK_CORR)

# ---- options of the run itself (never part of a method's result) -------------------------------

BATCH_SIZE = Option("batch_size", None, "samples per model evaluation (None: sized from the memory budget)",
                    result=False, check=optional_positive_int)
MEMORY_BUDGET_BYTES = Option("memory_budget_bytes", None, "activation memory per evaluation (None: half the "
                             "free CUDA memory; on CPU AUDIT_MEMORY_MB, else a quarter of free RAM up to 1 GiB)",
                             result=False, check=optional_positive_int)
OPTIMIZE = Option("optimize", None, "evaluate the many-evaluation methods on a BatchNorm-folded, channels-last "
                  "copy (None: when at least 64 evaluations are planned on a conv model); the copy is checked "
                  "to compute the same logits, so maps change at float rounding only",
                  result=False, exact=False, check=optional_boolean)
INCREMENTAL = Option("incremental", None, "on the optimised copy, re-evaluate only the region a local change "
                     "(an occlusion window) reaches, layer by layer, when the copy is a traced graph (None: on CPU; "
                     "True: also on a GPU; False: full forwards); the same sums in crops, so maps change at float rounding at most",
                     result=False, exact=False, check=optional_boolean)
PROGRESS = Option("progress", None, "callback(fraction, method name) after each method", result=False,
                  check=callable_or_none)
ENGINE_OPTIONS: tuple[Option, ...] = (
    BATCH_SIZE, MEMORY_BUDGET_BYTES, OPTIMIZE, INCREMENTAL, PROGRESS, FAST, FAST_MIN_RANK_CORR,
)


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


class AttributionOptions:
    """Every option of one run, with the declared defaults filled in; read as attributes.

    Build it with :meth:`from_kwargs` (validated against the declarations of the registered
    methods and the engine). Immutable: :meth:`replace` returns a new, validated set.
    """

    __slots__ = ("_values", "_table")

    def __init__(self, values: Mapping[str, Any], table: Mapping[str, Option]) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_table", dict(table))

    @classmethod
    def from_kwargs(cls, **options: Any) -> "AttributionOptions":
        from .registry import option_table

        table = option_table()
        unknown = sorted(set(options) - set(table))
        if unknown:
            raise TypeError(UNKNOWN_OPTION.format(names=unknown, valid=", ".join(sorted(table))))
        values = {name: opt.default for name, opt in table.items()}
        values.update(options)
        opts = cls(values, table)
        opts.validate()
        return opts

    def replace(self, **changes: Any) -> "AttributionOptions":
        unknown = sorted(set(changes) - set(self._table))
        if unknown:
            raise TypeError(UNKNOWN_OPTION.format(names=unknown, valid=", ".join(sorted(self._table))))
        opts = AttributionOptions({**self._values, **changes}, self._table)
        opts.validate()
        return opts

    def validate(self) -> None:
        from .registry import registered

        for name, opt in self._table.items():
            if opt.check is not None:
                opt.check(name, self._values[name])
        for cls in registered().values():
            cls.check_options(self)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no attribution option {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"attribution options are immutable; use replace({name}=...)")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttributionOptions):
            return NotImplemented
        return self.as_record() == other.as_record()

    def __repr__(self) -> str:
        return f"AttributionOptions({', '.join(f'{k}={v!r}' for k, v in sorted(self.as_record().items()))})"

    def get(self, name: str) -> Any:
        return getattr(self, name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._values)

    def as_record(self) -> dict[str, object]:
        """Plain-data view for storage and parameter hashing (tensors summarised by shape and sum)."""
        out: dict[str, object] = {}
        for name, value in self._values.items():
            if name == PROGRESS.name:
                continue
            if isinstance(value, torch.Tensor):
                value = {"tensor_shape": list(value.shape), "sum": float(value.double().sum())}
            out[name] = value
        return out


class OptionsView:
    """The options one method may read: its declared ones and the engine's.

    Reading anything else raises, so an option a method uses but does not declare (and that would
    therefore be missing from its result key) is caught the first time the method runs.
    """

    __slots__ = ("_options", "_allowed", "_method")

    def __init__(self, options: AttributionOptions, allowed: Iterable[str], method: str) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_allowed", frozenset(allowed))
        object.__setattr__(self, "_method", method)

    def __getattr__(self, name: str) -> Any:
        if name not in self._allowed:
            raise AttributeError(UNDECLARED_OPTION.format(method=self._method, name=name))
        return getattr(self._options, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError("attribution options are immutable")

    def get(self, name: str) -> Any:
        return getattr(self, name)
