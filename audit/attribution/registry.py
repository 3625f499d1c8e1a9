"""The method registry, filled by the method classes themselves.

A concrete ``AttributionMethod`` subclass (one that sets ``name``) registers itself when its
module is imported; ``discover`` imports every module of ``audit.attribution.methods``, so a new
method is one new file there. Names, options, result options and costs are read from the classes.
The store is ``options.CATALOGUE`` (below this module, so the option set can read it); the
classes it holds are ``AttributionMethod`` subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .options import CATALOGUE, option_table  # noqa: F401 - option_table is part of this module's API

METHODS: Sequence[str] = CATALOGUE.names
REGISTRY: Mapping[str, type] = CATALOGUE.classes


def register(cls: type) -> None:
    """Add ``cls`` under ``cls.name`` (re-importing the same module replaces its class)."""
    CATALOGUE.add(cls)


def unregister(name: str) -> None:
    CATALOGUE.remove(name)


def discover(*, force: bool = False) -> None:
    """Import every module of the methods package (and of any folder added to its ``__path__``)."""
    CATALOGUE.discover(force=force)


def registered() -> dict[str, type]:
    """Name -> class, in listing order."""
    return CATALOGUE.registered()


def method_class(name: str) -> Any:
    return CATALOGUE.get(name)


def check_methods(methods: object) -> tuple[str, ...]:
    """Normalise the ``methods`` argument to a tuple of known names, preserving order."""
    return CATALOGUE.check_methods(methods)


# ---- public descriptions ----------------------------------------------------------------------

def method_spec(method: str) -> Any:
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
