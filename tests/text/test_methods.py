"""Method specs: every option attribute_text takes is classified, and the classification is what the
methods really do (a declared option changes the scores, an undeclared one leaves them alone)."""

from __future__ import annotations

import pytest
import torch

from audit.text import (
    EXECUTION_OPTIONS,
    OPTION_LABELS,
    TEXT_METHOD_SPECS,
    TEXT_METHODS,
    attribute_text,
    text_method_spec,
    text_option_names,
    text_result_option_defaults,
)

# One value per option that differs from its default and is valid for every method on TEXTS.
ALTERNATIVES = {
    "ig_steps": 1,  # Gauss-Legendre converges fast: a one-point rule is visibly coarser
    "ig_method": "riemann_left",
    "ig_baseline": "mask",
    "ig_tolerance": 1e-3,
    "ig_max_steps": 4,
    "internal_batch_size": 5,
    "batch_size": 1,
    "max_length": 5,
    "occlusion_replacement": "mask",
    "shap_max_evals": 12,
    "shap_batch_size": 3,
    "flow_max_tokens": 64,
    "output": "probability",
    "progress": lambda fraction, message: None,
}
# Options that only act beside others are tried in that company (the same company on both sides).
CONTEXT = {
    "ig_tolerance": {"ig_steps": 2},  # two points are too coarse: the tolerance refines them
    "ig_max_steps": {"ig_steps": 2, "ig_tolerance": 1e-9},  # the cap stops the refinement early
}
TEXTS = ["She has stable income and no missed payments.", "Mr Brown has several late payments"]
TARGETS = [1, 0]
SHAP_EVALS = 40  # a small budget keeps the grid quick; max_evals itself is checked through ALTERNATIVES


def test_every_method_has_a_spec_with_a_label():
    assert set(TEXT_METHOD_SPECS) == set(TEXT_METHODS)
    labels = [s.label for s in TEXT_METHOD_SPECS.values()]
    assert len(set(labels)) == len(labels) and all(labels)
    assert text_method_spec("grad_x_input").label == "Gradient × Input"
    with pytest.raises(ValueError, match="unknown text attribution method 'lime'"):
        text_result_option_defaults("lime")


def test_every_option_of_attribute_text_is_classified():
    declared = set().union(*(s.result_options for s in TEXT_METHOD_SPECS.values()))
    assert not declared & EXECUTION_OPTIONS
    assert declared | EXECUTION_OPTIONS == set(text_option_names())
    assert set(ALTERNATIVES) == set(text_option_names())  # a new option needs a value in this grid
    assert declared <= set(OPTION_LABELS)  # and words to show it beside a map


def test_defaults_are_those_of_the_engine():
    assert text_result_option_defaults("integrated_gradients") == {
        "ig_steps": 50, "ig_method": "gausslegendre", "ig_baseline": "pad", "ig_tolerance": None, "ig_max_steps": 512,
        "output": "logit", "max_length": None}
    assert text_result_option_defaults("attention_rollout") == {"max_length": None}
    assert text_result_option_defaults("occlusion")["occlusion_replacement"] == "remove"
    defaults = text_result_option_defaults("shap")
    defaults["shap_max_evals"] = 1  # a fresh dict: callers may change it
    assert text_result_option_defaults("shap")["shap_max_evals"] == 100


def _scores(model, tokenizer, method, **options):
    if method == "shap":
        options.setdefault("shap_max_evals", SHAP_EVALS)
    res = attribute_text(model, tokenizer, TEXTS, TARGETS, [method], **options)
    return [r.scores[method] for r in res]


def _changes(model, tokenizer, method, base, option, value) -> bool:
    context = CONTEXT.get(option, {})
    if context:
        base = _scores(model, tokenizer, method, **context)
    try:
        other = _scores(model, tokenizer, method, **{**context, option: value})
    except ValueError:  # the method reads the option and refuses the value (shap cannot truncate)
        return True
    return not _same(base, other)


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.allclose(x, y, atol=1e-5, rtol=1e-4)
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_an_option_changes_the_scores_exactly_when_it_is_declared(tiny_bert, tokenizer, method):
    declared = set(TEXT_METHOD_SPECS[method].result_options)
    base = _scores(tiny_bert, tokenizer, method)
    wrong = []
    for option, value in ALTERNATIVES.items():
        changed = _changes(tiny_bert, tokenizer, method, base, option, value)
        if changed != (option in declared):
            wrong.append(f"{option}: {'changes' if changed else 'does not change'} the scores")
    assert not wrong, f"{method}: the spec does not match the method: {wrong}"
