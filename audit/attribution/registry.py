"""The method registry, filled by the method classes themselves.

A concrete ``AttributionMethod`` subclass (one that sets ``name``) registers itself when its
module is imported; ``discover`` imports every module of ``audit.attribution.methods``, so a new
method is one new file there. Names, options, result options and costs are read from the classes.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .options import ENGINE_OPTIONS, Option, merge_declarations

if TYPE_CHECKING:
    from .base import AttributionMethod

UNKNOWN_METHOD = "unknown attribution method {name!r}; choose from: {valid}"
DUPLICATE_METHOD = "attribution method name {name!r} is used by both {a} and {b}"

_CLASSES: dict[str, type["AttributionMethod"]] = {}
_discovered = False


def register(cls: type["AttributionMethod"]) -> None:
    """Add ``cls`` under ``cls.name`` (re-importing the same module replaces its class)."""
    seen = _CLASSES.get(cls.name)
    if seen is not None and (seen.__module__, seen.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(DUPLICATE_METHOD.format(name=cls.name, a=_where(seen), b=_where(cls)))
    merge_declarations([ENGINE_OPTIONS, option_table_of_classes(), cls.options])  # a conflicting default fails here
    _CLASSES[cls.name] = cls


def unregister(name: str) -> None:
    _CLASSES.pop(name, None)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def discover(*, force: bool = False) -> None:
    """Import every module of the methods package (and of any folder added to its ``__path__``)."""
    global _discovered
    if _discovered and not force:
        return
    _discovered = True
    package = importlib.import_module(f"{__package__}.methods")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def registered() -> dict[str, type["AttributionMethod"]]:
    """Name -> class, in listing order."""
    discover()
    ordered = sorted(enumerate(_CLASSES.items()), key=lambda item: (item[1][1].listing, item[0]))
    return {name: cls for _, (name, cls) in ordered}


def method_class(name: str) -> type["AttributionMethod"]:
    discover()
    try:
        return _CLASSES[name]
    except (KeyError, TypeError):
        raise ValueError(UNKNOWN_METHOD.format(name=name, valid=", ".join(_CLASSES))) from None


def option_table_of_classes() -> list[Option]:
    return [opt for cls in _CLASSES.values() for opt in cls.options]


def option_table() -> dict[str, Option]:
    """Every declared option (engine first, then each method's), by name."""
    discover()
    return merge_declarations([ENGINE_OPTIONS, option_table_of_classes()])


class _MethodNames(Sequence[str]):
    """Live, read-only view of the registered method names (in registration order)."""

    def __getitem__(self, index: Any) -> Any:
        return tuple(registered())[index]

    def __len__(self) -> int:
        return len(registered())

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(registered()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in registered()

    def __repr__(self) -> str:
        return repr(tuple(self))

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (tuple, list, _MethodNames)) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))


class _MethodClasses(Mapping[str, type["AttributionMethod"]]):
    """Live, read-only view name -> method class."""

    def __getitem__(self, name: str) -> type["AttributionMethod"]:
        return registered()[name]

    def __len__(self) -> int:
        return len(registered())

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(registered()))

    def __repr__(self) -> str:
        return repr(registered())


METHODS: Sequence[str] = _MethodNames()
REGISTRY: Mapping[str, type["AttributionMethod"]] = _MethodClasses()


def check_methods(methods: object) -> tuple[str, ...]:
    """Normalise the ``methods`` argument to a tuple of known names, preserving order."""
    if isinstance(methods, str):
        methods = (methods,)
    if not isinstance(methods, (list, tuple)):
        raise TypeError(f"methods must be a method name or a list of names, got {type(methods).__name__}")
    known = registered()
    out: list[str] = []
    for name in methods:
        if name not in known:
            raise ValueError(UNKNOWN_METHOD.format(name=name, valid=", ".join(known)))
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("methods is empty: name at least one attribution method")
    return tuple(out)


# ---- public descriptions ----------------------------------------------------------------------

def method_spec(method: str) -> type["AttributionMethod"]:
    """The class of ``method``: ``.name``, ``.label``, ``.stochastic``, ``.result_options``,
    ``.options`` (declarations with defaults) and ``.evaluations(...)`` (its cost)."""
    return method_class(method)


def result_option_defaults(method: str) -> dict[str, Any]:
    """Every option that can change ``method``'s result, mapped to its default (None: not set).

    The layer of layer-based methods is the caller's to add; ``seed`` is included wherever the
    method draws random numbers (all stochastic methods, and random reference inputs).
    """
    cls = method_class(method)
    return {opt.name: opt.default for opt in cls.options if opt.result}


def stochastic_methods() -> tuple[str, ...]:
    return tuple(name for name, cls in registered().items() if cls.stochastic)
