"""One module per text attribution method; each class declares itself and registers on import.

``audit.text.registry.discover`` imports every module here, so a new method is a new file. What the
methods are (names, labels, options, result options) is read from the registry, re-exported here.
"""

from audit.text.registry import (
    ACTS_ONLY_WITH,
    EXECUTION_OPTIONS,
    OPTION_LABELS,
    SHARED_RESULT_OPTIONS,
    TEXT_METHOD_SPECS,
    text_method_spec,
    text_option_names,
    text_result_option_defaults,
)

__all__ = [
    "ACTS_ONLY_WITH",
    "EXECUTION_OPTIONS",
    "OPTION_LABELS",
    "SHARED_RESULT_OPTIONS",
    "TEXT_METHOD_SPECS",
    "text_method_spec",
    "text_option_names",
    "text_result_option_defaults",
]
