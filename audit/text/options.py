"""The options of one `attribute_text` call: the engine's own, the catalogue of text method classes whose
declarations make up the rest, and the validated option set.

The catalogue lives here, below the registry and the method base, because the option set validates
against every registered method's declarations; ``audit.text.registry`` is its public face.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, get_args

from audit.catalogue import Catalogue
from audit.declarations import (
    NumberRange,
    Option,
    OptionSet,
    callable_or_none,
    one_of,
    positive_int,
)
from audit.text._model import Output

Progress = Callable[[float, str], None]

# ---- the engine's options (every method reads them) --------------------------------------------

BATCH_SIZE = Option("batch_size", 16, "texts padded and run together (padding is masked and cut off)",
                    result=False, check=positive_int)
# Truncation changes the tokens themselves, so it shapes every method's result.
MAX_LENGTH = Option("max_length", None, "tokens kept of each text, special tokens included (None: the "
                    "tokenizer's limit)", check=NumberRange(low=2, integer=True, optional=True), label="max tokens")
PROGRESS = Option("progress", None, "callback(fraction, message) after each method on each batch", result=False,
                  check=callable_or_none)
ENGINE_OPTIONS: tuple[Option, ...] = (BATCH_SIZE, MAX_LENGTH, PROGRESS)

# ---- options several methods declare ----------------------------------------------------------------

# The explained scalar; the attention methods never read it, so they do not declare it.
OUTPUT = Option("output", "logit", "what is explained: the target's logit or its probability",
                check=one_of(*get_args(Output)), label="explains")

CATALOGUE = Catalogue("audit.text.methods", kind="text attribution method", engine_options=ENGINE_OPTIONS)


class TextOptions(OptionSet):
    """Every option of one `attribute_text` call, the declared defaults filled in; read as attributes."""

    __slots__ = ()
    kind = "text attribution"

    @classmethod
    def declared(cls) -> Mapping[str, Option]:
        return CATALOGUE.option_table()

    def check_together(self) -> None:
        for cls in CATALOGUE.registered().values():
            cls.check_options(self)  # type: ignore[attr-defined]
