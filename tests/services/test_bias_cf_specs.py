"""The bias, identity-swap and counterfactual services declare every keyword argument in their spec, and
every declared result option changes the cache key (so no option can be forgotten in the key)."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

from audit.counterfactuals import SearchOptions
from audit.services.analyses.counterfactuals.service import (
    CF_SPEC,
    SEARCH_OPTIONS,
    CounterfactualError,
    counterfactual_options,
    run_reference_counterfactuals,
)
from audit.services.core.runs import analysis_key
from audit.services.analyses.fairness.service import (
    BIAS_SPEC,
    TEXT_PROBE_SPEC,
    bias_options,
    run_bias_audit,
    run_text_probe,
)

SERVICES = [(run_bias_audit, BIAS_SPEC), (run_text_probe, TEXT_PROBE_SPEC),
            (run_reference_counterfactuals, CF_SPEC)]
SUBJECT = ("family", "version")


def _named_keywords(fn) -> set[str]:
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n not in SUBJECT}


def _var_keyword(fn) -> bool:
    return any(p.kind == inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


@pytest.mark.parametrize(("fn", "spec"), SERVICES, ids=lambda v: getattr(v, "__name__", getattr(v, "kind", "")))
def test_every_keyword_parameter_is_declared_and_nothing_else(fn, spec):
    declared = set(spec.result_options) | set(spec.other_arguments)
    named = _named_keywords(fn)
    assert named - declared == set(), f"{fn.__name__}: parameters not in {spec.kind}'s spec"
    assert not set(spec.result_options) & set(spec.other_arguments)
    # Names in the spec that are no parameter must be the engine options **search forwards.
    expected_extra = set(SEARCH_OPTIONS) if _var_keyword(fn) else set()
    assert declared - named == expected_extra, f"{spec.kind}'s spec names arguments {fn.__name__} does not take"


def test_counterfactual_search_options_are_the_engines_own_knobs():
    knobs = {f.name for f in fields(SearchOptions)} - {"distance", "input_range", "levels"}
    assert set(SEARCH_OPTIONS) == knobs
    assert set(SEARCH_OPTIONS) <= set(CF_SPEC.result_options)
    with pytest.raises(CounterfactualError, match="unknown search option"):
        counterfactual_options(dataset="ref", steps=3)
    # the service sets the ranges and the grid itself: a caller cannot pass them
    with pytest.raises(CounterfactualError, match="unknown search option"):
        counterfactual_options(dataset="ref", input_range=(0, 1))


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.1
    raise AssertionError(f"no rule to change {value!r}")


BIAS_BASE = dict(dataset="ref", attributes=["site"], n_boot=200, positive_label=None, csv_bytes=None,
                 explanation_method=None, seed=0)
BIAS_CHANGES = {"dataset": "other", "attributes": ["site", "watermark"], "n_boot": 100, "positive_label": 1,
                "csv_bytes": b"sample_id,site\nref-0000,A\n", "explanation_method": "gradcam", "seed": 1}


def _key(spec, options, model="m" * 64, data="d" * 64):
    return analysis_key(spec, model_sha256=model, dataset_sha256=data, options=options)


@pytest.mark.parametrize("option", BIAS_SPEC.result_options)
def test_each_bias_option_changes_the_key(option):
    assert set(BIAS_CHANGES) == set(BIAS_SPEC.result_options)
    base = _key(BIAS_SPEC, bias_options(**BIAS_BASE))
    assert _key(BIAS_SPEC, bias_options(**{**BIAS_BASE, option: BIAS_CHANGES[option]})) != base


def test_bias_key_ignores_attribute_order_and_reads_csv_content():
    a = _key(BIAS_SPEC, bias_options(**{**BIAS_BASE, "attributes": ["site", "watermark"]}))
    b = _key(BIAS_SPEC, bias_options(**{**BIAS_BASE, "attributes": ["watermark", "site"]}))
    assert a == b
    c1 = _key(BIAS_SPEC, bias_options(**{**BIAS_BASE, "csv_bytes": b"sample_id,g\nx,1\n"}))
    c2 = _key(BIAS_SPEC, bias_options(**{**BIAS_BASE, "csv_bytes": b"sample_id,g\nx,2\n"}))
    assert c1 != c2


def test_model_and_dataset_hashes_change_the_key():
    opts = bias_options(**BIAS_BASE)
    base = _key(BIAS_SPEC, opts)
    assert _key(BIAS_SPEC, opts, model="n" * 64) != base
    assert _key(BIAS_SPEC, opts, data="e" * 64) != base


def test_text_probe_key_changes_with_its_dataset():
    assert _key(TEXT_PROBE_SPEC, {"dataset": "a"}) != _key(TEXT_PROBE_SPEC, {"dataset": "b"})


@pytest.mark.parametrize("option", CF_SPEC.result_options)
def test_each_counterfactual_option_changes_the_key(option):
    base_opts = counterfactual_options(dataset="ref")
    changed = {"dataset": "other", "distance": "l1"}.get(option)
    if changed is None:
        changed = _changed(base_opts[option])
    assert changed != base_opts[option]
    if option in SEARCH_OPTIONS:
        opts = counterfactual_options(dataset="ref", **{option: changed})
    else:
        opts = counterfactual_options(**{"dataset": "ref", option: changed})
    assert _key(CF_SPEC, opts) != _key(CF_SPEC, base_opts)


def test_passing_a_search_default_explicitly_keeps_the_key():
    defaults = SearchOptions()
    explicit = counterfactual_options(dataset="ref", max_iter=defaults.max_iter, restarts=defaults.restarts)
    assert _key(CF_SPEC, explicit) == _key(CF_SPEC, counterfactual_options(dataset="ref"))


def test_the_key_takes_exactly_the_spec_options():
    opts = bias_options(**BIAS_BASE)
    with pytest.raises(ValueError, match=r"missing \['seed'\]"):
        _key(BIAS_SPEC, {k: v for k, v in opts.items() if k != "seed"})
    with pytest.raises(ValueError, match=r"undeclared \['batch_size'\]"):
        _key(BIAS_SPEC, {**opts, "batch_size": 8})
