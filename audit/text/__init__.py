"""Token attributions for transformers text classifiers (IG, Grad x Input, attention, rollout, flow,
occlusion, SHAP) and measures built on them, such as the attribution share on gendered words.
"""

from audit.text.core import (
    DEFAULT_METHODS,
    TEXT_METHODS,
    TextMethod,
    TokenAttribution,
    attribute_text,
    word_sum,
)
from audit.text.identity_terms import (
    FEMALE_TERMS,
    GENDER_SWAP_PAIRS,
    GENDERED_TERMS,
    MALE_TERMS,
    gender_of_term,
    neutralise_gender,
    swap_gender,
)
from audit.text.methods import (
    ACTS_ONLY_WITH,
    EXECUTION_OPTIONS,
    OPTION_LABELS,
    SHARED_RESULT_OPTIONS,
    TEXT_METHOD_SPECS,
    TextMethodSpec,
    text_method_spec,
    text_option_names,
    text_result_option_defaults,
)
from audit.text.predict import predict_texts
from audit.text.share import (
    TermAttributionShare,
    gendered_attribution_share,
    share_of_results,
    term_attribution_share,
)

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
    "TextMethod",
    "TextMethodSpec",
    "TokenAttribution",
    "attribute_text",
    "gender_of_term",
    "gendered_attribution_share",
    "neutralise_gender",
    "predict_texts",
    "share_of_results",
    "swap_gender",
    "term_attribution_share",
    "text_method_spec",
    "text_option_names",
    "text_result_option_defaults",
    "word_sum",
]
