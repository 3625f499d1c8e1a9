"""The text method registry, filled by the method classes themselves, and what it says about them.

A concrete ``TextAttributionMethod`` subclass registers itself when its module is imported; ``discover``
imports every module of ``audit.text.methods``, so a new method is one new file there. Method names,
labels, options (defaults, ranges, how each reads beside a map), result options and costs are read from
the classes: cache keys, pages and reports ask here and keep no list of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.catalogue import LiveMapping, LiveNames, LiveSet
from audit.declarations import Evaluations, Option

from .options import CATALOGUE, ENGINE_OPTIONS, TextOptions

# Method names are whatever the registered classes call themselves (see TEXT_METHODS); a Literal
# here would be a second list to keep in step with the method files.
TextMethod = str

# The engine's options that change every method's result (truncation changes the tokens themselves).
SHARED_RESULT_OPTIONS: tuple[str, ...] = tuple(o.name for o in ENGINE_OPTIONS if o.result)

TEXT_METHODS: Sequence[str] = CATALOGUE.names
# name -> method class: .name, .label, .summary, .paper, .options, .result_options, .evaluations(...)
TEXT_METHOD_SPECS: Mapping[str, Any] = CATALOGUE.classes
# The methods attribute_text runs when none are named (each class says whether it is one).
DEFAULT_METHODS: Sequence[str] = LiveNames(lambda: (n for n, c in registered().items() if c.default))


# The catalogue's own operations: add a class (its module calls this), remove one, import every module of
# the methods package (and of any folder added to its ``__path__``), list name -> class in listing order,
# and normalise a ``methods`` argument to known names (ValueError names the valid ones).
register = CATALOGUE.add
unregister = CATALOGUE.remove
discover = CATALOGUE.discover
registered = CATALOGUE.registered
check_methods = CATALOGUE.check_methods


def text_method_spec(method: str) -> Any:
    """The class of ``method`` (ValueError for a name no method has)."""
    return CATALOGUE.get(method)


def option_table() -> dict[str, Option]:
    """Every option attribute_text takes: the engine's, then each registered method's."""
    return CATALOGUE.option_table()


def text_option_names() -> frozenset[str]:
    """Every keyword option `attribute_text` takes."""
    return frozenset(option_table())


def text_result_option_defaults(method: str) -> dict[str, Any]:
    """The options that change ``method``'s scores, each with its default (a fresh dict)."""
    table = option_table()
    return {name: table[name].default for name in text_method_spec(method).result_options}


@dataclass(frozen=True)
class TextGeometry:
    """What a text method's cost depends on besides its options: how many texts, and per text its tokens
    (special tokens left out: the units a perturbation method varies) and its words."""

    texts: int
    tokens: int
    words: int


def text_method_costs(methods: Sequence[str], *, texts: int, tokens: int, words: int,
                      **options: Any) -> dict[str, Evaluations]:
    """Model evaluations (rows forward and backward) each method makes for ``texts`` texts of ``tokens``
    tokens (special tokens left out) and ``words`` words each, beyond the batch's one shared forward."""
    opts = TextOptions.from_kwargs(**options)
    geometry = TextGeometry(texts=texts, tokens=tokens, words=words)
    return {name: text_method_spec(name).evaluations(opts, geometry) for name in check_methods(methods)}


# How each option reads beside a map ("baseline mask · steps 32"), read from the declarations.
OPTION_LABELS: Mapping[str, str] = LiveMapping(lambda: {n: o.label for n, o in option_table().items() if o.label})
# Options that only act while another is set: beside a map they are shown only with it.
ACTS_ONLY_WITH: Mapping[str, str] = LiveMapping(
    lambda: {n: o.acts_only_with for n, o in option_table().items() if o.acts_only_with})
# Options that change how a result is computed but never what it is (batching is exact: padding is masked
# and cut off; flow_max_tokens only refuses long texts; progress only reports).
EXECUTION_OPTIONS: LiveSet = LiveSet(lambda: (n for n, o in option_table().items() if not o.result))
