"""What each text attribution method is, as data: its name, the label people use, the options of
`attribute_text` that change its result (defaults read from that signature) and whether it is stochastic.

Cache keys, pages and reports read these specs; nobody keeps a second list of result-affecting options.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

ERR_UNKNOWN_METHOD = "unknown text attribution method {name!r}; choose from {choices}"

# Truncation changes the tokens themselves, so it shapes every method's result.
SHARED_RESULT_OPTIONS: tuple[str, ...] = ("max_length",)

# Options of `attribute_text` that change how a result is computed but never what it is. Batching is
# exact (padding is masked and cut off; shap's batch size is the exception, see its spec); flow_max_tokens
# only refuses long texts; progress only reports.
EXECUTION_OPTIONS: frozenset[str] = frozenset(
    {"internal_batch_size", "batch_size", "flow_max_tokens", "progress"}
)


# How each option reads beside a map ("baseline mask · steps 32").
OPTION_LABELS: dict[str, str] = {
    "ig_baseline": "baseline",
    "ig_steps": "steps",
    "ig_method": "quadrature",
    "ig_tolerance": "completeness tolerance",
    "ig_max_steps": "max steps",
    "occlusion_replacement": "replacement",
    "shap_max_evals": "evaluations",
    "shap_batch_size": "evaluations per batch",
    "output": "explains",
    "max_length": "max tokens",
}


# Options that only act while another is set: beside a map they are shown only with it.
ACTS_ONLY_WITH: dict[str, str] = {"ig_max_steps": "ig_tolerance"}


@dataclass(frozen=True)
class TextMethodSpec:
    """One text attribution method, self-described."""

    name: str
    label: str  # as an auditor would say it
    # Result-affecting options of attribute_text beyond SHARED_RESULT_OPTIONS. "output" (logit or
    # probability) is the explained scalar: the attention methods never read it.
    options: tuple[str, ...]
    summary: str
    stochastic: bool = False  # True when a seed would change the scores (none of today's methods)
    paper: str = ""  # the publication that defines the method, cited once in reports

    @property
    def result_options(self) -> tuple[str, ...]:
        return self.options + SHARED_RESULT_OPTIONS

    def result_option_defaults(self) -> dict[str, Any]:
        """Every result-affecting option with the default `attribute_text` gives it."""
        defaults = _signature_defaults()
        return {name: defaults[name] for name in self.result_options}


_SPECS = (
    TextMethodSpec("integrated_gradients", "Integrated Gradients", ("ig_baseline", "ig_steps", "ig_method", "ig_tolerance",
                                                                     "ig_max_steps", "output"),
                   "path integral of gradients from a baseline text to the input, over the word embeddings",
                   paper='Sundararajan, Taly & Yan (2017). Axiomatic Attribution for Deep Networks. ICML.'),
    TextMethodSpec("grad_x_input", "Gradient × Input", ("output",),
                   "gradient of the output times the word embedding",
                   paper='Shrikumar, Greenside, Shcherbina & Kundaje (2016). Not Just a Black Box: Learning Important Features Through Propagating Activation Differences. arXiv:1605.01713.'),
    TextMethodSpec("attention", "Attention ([CLS], last layer)", (),
                   "attention paid by [CLS] to each token in the last layer, heads averaged"),
    TextMethodSpec("attention_rollout", "Attention rollout", (),
                   "attention multiplied through the layers with the residual path (Abnar & Zuidema 2020)",
                   paper='Abnar & Zuidema (2020). Quantifying Attention Flow in Transformers. ACL.'),
    TextMethodSpec("attention_flow", "Attention flow", (),
                   "max-flow from each token to [CLS] through the attention graph (short texts only)",
                   paper='Abnar & Zuidema (2020). Quantifying Attention Flow in Transformers. ACL.'),
    TextMethodSpec("occlusion", "Occlusion (leave one out)", ("occlusion_replacement", "output"),
                   "change of the output when a token or word is removed or replaced",
                   paper='Zeiler & Fergus (2014). Visualizing and Understanding Convolutional Networks. ECCV.'),
    # The Partition explainer walks a fixed token hierarchy: no sampling, so no seed. It expands that
    # hierarchy shap_batch_size nodes at a time until max_evals is spent, so the batch size is a result option.
    TextMethodSpec("shap", "SHAP (Partition)", ("shap_max_evals", "shap_batch_size", "output"),
                   "Owen values over the text masker's token hierarchy, from the shap library",
                   paper='Lundberg & Lee (2017). A Unified Approach to Interpreting Model Predictions. NeurIPS.'),
)
TEXT_METHOD_SPECS: dict[str, TextMethodSpec] = {s.name: s for s in _SPECS}


def text_method_spec(method: str) -> TextMethodSpec:
    try:
        return TEXT_METHOD_SPECS[method]
    except KeyError:
        raise ValueError(ERR_UNKNOWN_METHOD.format(name=method, choices=tuple(TEXT_METHOD_SPECS))) from None


def text_result_option_defaults(method: str) -> dict[str, Any]:
    """The options that change ``method``'s scores, each with its default (a fresh dict)."""
    return text_method_spec(method).result_option_defaults()


def text_option_names() -> frozenset[str]:
    """Every keyword option `attribute_text` takes."""
    return frozenset(_signature_defaults())


def _signature_defaults() -> dict[str, Any]:
    # The defaults live once, in attribute_text's signature; imported here to keep the import graph one-way.
    from audit.text.core import attribute_text

    return {
        name: p.default
        for name, p in inspect.signature(attribute_text).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
