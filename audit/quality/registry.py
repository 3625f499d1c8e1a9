"""The quality-metric registry, filled by the metric classes themselves when their modules are imported.

Importing ``audit.quality`` imports every module of the package (:func:`discover`), which registers the
built-in metrics, a new file there included; a metric defined in any other module registers the same way when
that module is imported. Names and aliases resolve here; everything else is read from the class.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .base import QualityMetric

UNKNOWN_METRIC = "unknown quality metric {name!r}; choose from: {valid}"
DUPLICATE_METRIC = "quality metric name {name!r} is used by both {a} and {b}"

_CLASSES: dict[str, type["QualityMetric"]] = {}


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type["QualityMetric"]) -> None:
    """Add ``cls`` under its name (re-importing the same module replaces it); a name or alias that another
    metric already answers to is a ValueError."""
    for name in (cls.name, *cls.aliases):
        seen = _lookup(name)
        if seen is not None and _where(seen) != _where(cls):
            raise ValueError(DUPLICATE_METRIC.format(name=name, a=_where(seen), b=_where(cls)))
    _CLASSES[cls.name] = cls


def discover() -> None:
    """Import every module of ``audit.quality``, so a metric in a new file there registers without an import line."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{info.name}")


def unregister(name: str) -> None:
    _CLASSES.pop(name, None)


def _lookup(name: str) -> Optional[type["QualityMetric"]]:
    cls = _CLASSES.get(name)
    if cls is None:
        cls = next((c for c in _CLASSES.values() if name in c.aliases), None)
    return cls


def registered(modality: Optional[str] = None) -> dict[str, type["QualityMetric"]]:
    """Name -> class in listing order; with ``modality`` ("image" or "text") only the metrics for it."""
    ordered = sorted(enumerate(_CLASSES.items()), key=lambda item: (item[1][1].listing, item[0]))
    return {n: c for _, (n, c) in ordered if modality is None or modality in c.modalities}


def metric_class(name: str) -> type["QualityMetric"]:
    """The class registered under ``name`` or one of its aliases."""
    cls = _lookup(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(UNKNOWN_METRIC.format(name=name, valid=", ".join(registered())))
    return cls


def find_metric(name: str) -> Optional[type["QualityMetric"]]:
    """Like :func:`metric_class`, None for a name no metric answers to."""
    return _lookup(name) if isinstance(name, str) else None


def default_metrics(modality: str = "image", **settings: object) -> list["QualityMetric"]:
    """An instance of every ``by_default`` metric for ``modality``, given those of ``settings`` it declares."""
    return [cls.configured(settings) for cls in registered(modality).values() if cls.by_default]


class _Metrics(Mapping[str, type["QualityMetric"]]):
    """Live, read-only view name -> metric class (a metric registered later is in it)."""

    def __getitem__(self, name: str) -> type["QualityMetric"]:
        return _CLASSES[name]

    def __len__(self) -> int:
        return len(_CLASSES)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_CLASSES))

    def __repr__(self) -> str:
        return repr(dict(_CLASSES))


METRICS: Mapping[str, type["QualityMetric"]] = _Metrics()
