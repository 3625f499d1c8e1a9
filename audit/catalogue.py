"""The catalogue of method classes: each concrete class adds itself when its module is imported, and
``discover`` imports every module of a methods package, so a new method is one new file. Live views of
names and classes read it again at each use. Shared by the image and the text engine.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from audit.declarations import Option, merge_declarations

UNKNOWN_METHOD = "unknown {kind} {name!r}; choose from: {valid}"
DUPLICATE_METHOD = "{kind} name {name!r} is used by both {a} and {b}"
NO_METHODS = "methods is empty: name at least one {kind}"


class Catalogue:
    """Method classes by name, filled by the classes themselves when their modules are imported.

    ``discover`` imports every module of ``package`` (and of any folder added to its ``__path__``), so a
    new method is one new file there. Each class declares ``name``, ``options`` and ``listing`` (its
    position in listings; ties keep registration order). ``engine_options`` are the run's own options,
    which a method's declaration must agree with.
    """

    def __init__(self, package: str, *, kind: str, engine_options: Sequence[Option] = ()) -> None:
        self.package = package
        self.kind = kind
        self.engine_options = tuple(engine_options)
        self._classes: dict[str, type] = {}
        self._discovered = False
        self.names: Sequence[str] = LiveNames(self.registered)
        self.classes: Mapping[str, type] = LiveMapping(self.registered)

    def add(self, cls: type) -> None:
        """Add ``cls`` under ``cls.name`` (re-importing the same module replaces its class); a name taken by
        another class, or an option declared with another default elsewhere, is a ValueError."""
        name = cls.name  # type: ignore[attr-defined]
        seen = self._classes.get(name)
        if seen is not None and _where(seen) != _where(cls):
            raise ValueError(DUPLICATE_METHOD.format(kind=self.kind, name=name, a=_where(seen), b=_where(cls)))
        others = [opt for other, k in self._classes.items() if other != name for opt in k.options]  # type: ignore[attr-defined]
        merge_declarations([self.engine_options, others, cls.options])  # type: ignore[attr-defined]
        self._classes[name] = cls

    def remove(self, name: str) -> None:
        self._classes.pop(name, None)

    def discover(self, *, force: bool = False) -> None:
        """Import every module of the methods package, once (again with ``force``)."""
        if self._discovered and not force:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")

    def registered(self) -> dict[str, type]:
        """Name -> class, in listing order."""
        self.discover()
        ordered = sorted(enumerate(self._classes.items()), key=lambda item: (item[1][1].listing, item[0]))
        return {name: cls for _, (name, cls) in ordered}

    def get(self, name: str) -> type:
        self.discover()
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ValueError(UNKNOWN_METHOD.format(kind=self.kind, name=name, valid=", ".join(self.registered()))) \
                from None

    def declared_options(self) -> list[Option]:
        """Every option the registered classes declare (repeats included), without discovering."""
        return [opt for cls in self._classes.values() for opt in cls.options]  # type: ignore[attr-defined]

    def option_table(self) -> dict[str, Option]:
        """Every declared option (the engine's first, then each method's), by name."""
        self.discover()
        return merge_declarations([self.engine_options, self.declared_options()])

    def check_methods(self, methods: object) -> tuple[str, ...]:
        """Normalise a ``methods`` argument (a name or a sequence of names) to known names, in order, once each."""
        if isinstance(methods, str):
            methods = (methods,)
        if not isinstance(methods, Sequence):
            raise TypeError(f"methods must be a method name or a list of names, got {type(methods).__name__}")
        known = self.registered()
        out: list[str] = []
        for name in methods:
            if name not in known:
                raise ValueError(UNKNOWN_METHOD.format(kind=self.kind, name=name, valid=", ".join(known)))
            if name not in out:
                out.append(name)
        if not out:
            raise ValueError(NO_METHODS.format(kind=self.kind))
        return tuple(out)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class LiveNames(Sequence[str]):
    """Live, read-only sequence of names, read again at each use (so a class registered later is in it)."""

    def __init__(self, read: Callable[[], Iterable[str]]) -> None:
        self._read = read

    def _now(self) -> tuple[str, ...]:
        return tuple(self._read())

    def __getitem__(self, index: Any) -> Any:
        return self._now()[index]

    def __len__(self) -> int:
        return len(self._now())

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __contains__(self, name: object) -> bool:
        return name in self._now()

    def __repr__(self) -> str:
        return repr(self._now())

    def __eq__(self, other: object) -> bool:
        return self._now() == (tuple(other) if isinstance(other, (tuple, list, LiveNames)) else other)

    def __hash__(self) -> int:
        return hash(self._now())


class LiveMapping(Mapping[str, Any]):
    """Live, read-only mapping, read again at each use."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def __getitem__(self, name: str) -> Any:
        return self._read()[name]

    def __len__(self) -> int:
        return len(self._read())

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._read()))

    def __repr__(self) -> str:
        return repr(dict(self._read()))


class LiveSet(AbstractSet[str]):
    """Live, read-only set of names, read again at each use; set operations give frozensets."""

    def __init__(self, read: Callable[[], Iterable[str]]) -> None:
        self._read = read

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> frozenset[Any]:
        return frozenset(it)

    def __contains__(self, name: object) -> bool:
        return name in frozenset(self._read())

    def __iter__(self) -> Iterator[str]:
        return iter(frozenset(self._read()))

    def __len__(self) -> int:
        return len(frozenset(self._read()))

    def __repr__(self) -> str:
        return repr(frozenset(self._read()))
