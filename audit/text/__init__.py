"""Token attributions for transformers text classifiers (IG, Grad x Input, attention, rollout, flow,
occlusion, SHAP) and measures built on them, such as the attribution share on gendered words.

Each method is one class in ``methods/`` that declares its options, result options and cost;
``TEXT_METHODS``, ``TEXT_METHOD_SPECS`` and ``text_result_option_defaults`` read those declarations.
"""

from audit.text import registry as _registry
from audit.text.base import TextAttributionMethod, TextBatch, TextScores
from audit.text.core import TokenAttribution, attribute_text, word_sum
from audit.text.identity_terms import (
    FEMALE_TERMS,
    GENDER_SWAP_PAIRS,
    GENDERED_TERMS,
    MALE_TERMS,
    gender_of_term,
    neutralise_gender,
    swap_gender,
)
from audit.text.predict import predict_texts
from audit.text.registry import (
    ACTS_ONLY_WITH,
    DEFAULT_METHODS,
    EXECUTION_OPTIONS,
    OPTION_LABELS,
    SHARED_RESULT_OPTIONS,
    TEXT_METHOD_SPECS,
    TEXT_METHODS,
    TextGeometry,
    TextMethod,
    option_table,
    text_method_costs,
    text_method_spec,
    text_option_names,
    text_result_option_defaults,
)
from audit.text.share import (
    TermAttributionShare,
    gendered_attribution_share,
    share_of_results,
    term_attribution_share,
)

_registry.discover()

__all__ = [
    "ACTS_ONLY_WITH",
    "DEFAULT_METHODS",
    "EXECUTION_OPTIONS",
    "FEMALE_TERMS",
    "GENDERED_TERMS",
    "GENDER_SWAP_PAIRS",
    "MALE_TERMS",
    "OPTION_LABELS",
    "SHARED_RESULT_OPTIONS",
    "TEXT_METHODS",
    "TEXT_METHOD_SPECS",
    "TermAttributionShare",
    "TextAttributionMethod",
    "TextBatch",
    "TextGeometry",
    "TextMethod",
    "TextScores",
    "TokenAttribution",
    "attribute_text",
    "gender_of_term",
    "gendered_attribution_share",
    "neutralise_gender",
    "option_table",
    "predict_texts",
    "share_of_results",
    "swap_gender",
    "term_attribution_share",
    "text_method_costs",
    "text_method_spec",
    "text_option_names",
    "text_result_option_defaults",
    "word_sum",
]
