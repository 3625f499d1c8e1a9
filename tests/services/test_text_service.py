"""Text explanation service: keys built from the methods' own declarations, the store is the cache, and
every engine call runs under the shared handle's lock."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import audit.text
from audit.services.analyses.explanations.service import ExplainError
from audit.services.core.handles import handle_for
from audit.services.analyses.text.service import (
    describe_parameters,
    explain_texts,
    text_methods,
    text_params_key,
)
from audit.text import TEXT_METHOD_SPECS, attribute_text, text_result_option_defaults
from storage.db import transaction
from storage.orm import Explanation

TEXT = "she has a stable income ."
# A value different from the default for every result option any text method declares.
OTHER_VALUE = {"ig_steps": 7, "ig_method": "riemann_middle", "ig_baseline": "mask", "ig_tolerance": 0.01,
               "ig_max_steps": 64, "occlusion_replacement": "pad",
               "shap_max_evals": 20, "shap_batch_size": 4, "output": "probability", "max_length": 8}


def _count_rows() -> int:
    with transaction() as s:
        return s.query(Explanation).count()


@pytest.mark.parametrize("method", list(TEXT_METHOD_SPECS))
def test_every_declared_option_changes_the_key(method):
    defaults = text_result_option_defaults(method)
    assert defaults, method  # max_length at least
    _, base = text_params_key(method, {})
    assert text_params_key(method, dict(defaults))[1] == base  # spelling a default out is the same request
    assert text_params_key(method, {"batch_size": 1, "internal_batch_size": 3})[1] == base  # batching is not
    for option in defaults:
        params, key = text_params_key(method, {option: OTHER_VALUE[option]})
        assert key != base, f"{method}: {option} does not enter the key"
        assert params[option] == OTHER_VALUE[option]
    others = {m for m in TEXT_METHOD_SPECS if m != method}
    assert base not in {text_params_key(m, {})[1] for m in others}


def test_each_baseline_has_its_own_key():
    keys = {b: text_params_key("integrated_gradients", {"ig_baseline": b})[1] for b in ("pad", "mask", "zero", 4)}
    assert len(set(keys.values())) == 4


def test_each_baseline_gets_its_own_stored_map(tiny_text):
    handle = handle_for("tiny-text", "1")
    # BERT initialises the [PAD] embedding to zeros, which would make "pad" and "zero" the same baseline;
    # this test's own copy of the model gets a distinct one so all three maps differ.
    with torch.no_grad():
        emb = handle.module.get_input_embeddings().weight
        emb[handle.tokenizer.pad_token_id] = emb[handle.tokenizer.mask_token_id] * -0.7
    direct = {b: attribute_text(handle.module, handle.tokenizer, [TEXT], targets=[1], methods=["integrated_gradients"],
                                ig_steps=8, ig_baseline=b)[0].scores["integrated_gradients"].numpy()
              for b in ("pad", "mask", "zero")}
    for a, b in (("pad", "mask"), ("pad", "zero"), ("mask", "zero")):  # the tiny model's scores are ~1e-5
        assert np.linalg.norm(direct[a] - direct[b]) > 0.05 * np.linalg.norm(direct[a]), (a, b)
    seen = {}
    for b in ("pad", "mask", "zero"):
        entry = explain_texts("tiny-text", "1", [TEXT], methods=["integrated_gradients"], target=1,
                              options={"ig_steps": 8, "ig_baseline": b})[0]
        assert entry["cached"]["integrated_gradients"] is False, f"{b} was served another baseline's map"
        assert entry["parameters"]["integrated_gradients"]["ig_baseline"] == b
        np.testing.assert_allclose(entry["scores"]["integrated_gradients"], direct[b], rtol=1e-4, atol=1e-10)
        seen[b] = entry["explanation_ids"]["integrated_gradients"]
    assert len(set(seen.values())) == 3 and _count_rows() == 3
    again = explain_texts("tiny-text", "1", [TEXT], methods=["integrated_gradients"], target=1,
                          options={"ig_steps": 8, "ig_baseline": "mask"})[0]
    assert again["cached"]["integrated_gradients"] and again["explanation_ids"]["integrated_gradients"] == seen["mask"]
    np.testing.assert_allclose(again["scores"]["integrated_gradients"], direct["mask"], rtol=1e-4, atol=1e-10)
    assert "baseline mask" in describe_parameters("integrated_gradients", again["parameters"]["integrated_gradients"])


class _CountingEngine:
    """attribute_text, counting calls and recording the methods each call computed."""

    def __init__(self, handle=None):
        self.calls: list[list[str]] = []
        self.lock_held: list[bool] = []
        self.handle = handle

    def __call__(self, model, tokenizer, texts, targets=None, methods=(), **options):
        self.calls.append(list(methods))
        if self.handle is not None:
            self.lock_held.append(_held_elsewhere(self.handle.lock))
        return attribute_text(model, tokenizer, texts, targets, methods, **options)


def _held_elsewhere(lock) -> bool:
    """True when another thread cannot take ``lock`` now, i.e. the caller holds it."""
    got = []

    def probe() -> None:
        got.append(lock.acquire(blocking=False))
        if got[0]:
            lock.release()  # an RLock is released by the thread that took it

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return not got[0]


def test_asking_twice_returns_the_stored_maps_without_computing(tiny_text, monkeypatch):
    engine = _CountingEngine()
    monkeypatch.setattr(audit.text, "attribute_text", engine)
    methods = ["integrated_gradients", "occlusion"]
    first = explain_texts("tiny-text", "1", [TEXT], methods=methods, options={"ig_steps": 8})[0]
    assert engine.calls == [methods] and not any(first["cached"].values())
    again = explain_texts("tiny-text", "1", [TEXT], methods=methods, options={"ig_steps": 8})[0]
    assert engine.calls == [methods], "the stored maps were recomputed"
    assert all(again["cached"].values()) and again["explanation_ids"] == first["explanation_ids"]
    assert again["scores"] == first["scores"] and again["word_scores"] == first["word_scores"]
    assert again["delta"] == pytest.approx(first["delta"]) and again["tokens"] == first["tokens"]
    # The predicted class named explicitly is the same request; only the missing method is computed.
    more = explain_texts("tiny-text", "1", [TEXT], methods=[*methods, "grad_x_input"], target=first["target"],
                         options={"ig_steps": 8})[0]
    assert engine.calls == [methods, ["grad_x_input"]]
    assert more["cached"] == {"integrated_gradients": True, "occlusion": True, "grad_x_input": False}
    assert _count_rows() == 3
    # Each row says what it was computed on: the text engine evaluates the model as loaded.
    with transaction() as s:
        engines = [r.engine for r in s.query(Explanation)]
    assert engines == [{"precision": "float32", "model": "as loaded", "crops": False}] * 3


def test_only_missing_texts_are_computed(tiny_text, monkeypatch):
    engine = _CountingEngine()
    monkeypatch.setattr(audit.text, "attribute_text", engine)
    explain_texts("tiny-text", "1", [TEXT], methods=["grad_x_input"])
    both = explain_texts("tiny-text", "1", [TEXT, "he has no debt ."], methods=["grad_x_input"])
    assert [e["cached"]["grad_x_input"] for e in both] == [True, False]
    assert len(engine.calls) == 2 and _count_rows() == 2


def test_engine_runs_under_the_handle_lock(tiny_text, monkeypatch):
    handle = handle_for("tiny-text", "1")
    engine = _CountingEngine(handle)
    monkeypatch.setattr(audit.text, "attribute_text", engine)
    explain_texts("tiny-text", "1", [TEXT], methods=["attention", "grad_x_input"])
    assert engine.lock_held == [True]
    assert not _held_elsewhere(handle.lock)  # released afterwards


def test_unknown_options_and_methods_are_refused(tiny_text):
    with pytest.raises(ExplainError, match="unknown text option"):
        explain_texts("tiny-text", "1", [TEXT], methods=["occlusion"], options={"ig_stpes": 8})
    with pytest.raises(ExplainError, match="unknown text method 'lime'"):
        explain_texts("tiny-text", "1", [TEXT], methods=["lime"])
    assert _count_rows() == 0


def test_method_labels_come_from_the_specs():
    labels = text_methods()
    assert list(labels) == list(TEXT_METHOD_SPECS)
    assert labels["integrated_gradients"] == "Integrated Gradients"
    assert describe_parameters("occlusion", {"occlusion_replacement": "mask", "output": "logit", "max_length": None}) \
        == "replacement mask · explains logit"
    fixed, _ = text_params_key("integrated_gradients", {"ig_steps": 32})
    assert describe_parameters("integrated_gradients", fixed) == \
        "baseline pad · steps 32 · quadrature gausslegendre · explains logit"  # no step cap beside fixed steps
    adaptive, _ = text_params_key("integrated_gradients", {"ig_steps": 8, "ig_tolerance": 0.01})
    assert "steps 8 · quadrature gausslegendre · completeness tolerance 0.01 · max steps 512" in \
        describe_parameters("integrated_gradients", adaptive)


def test_text_faithfulness_of_a_stored_entry_matches_the_engine(tiny_text):
    from audit.services.analyses.text.service import text_faithfulness
    from audit.quality import eraser_scores

    entry = explain_texts("tiny-text", "1", [TEXT], methods=["integrated_gradients", "grad_x_input"], target=1,
                          options={"ig_steps": 8})[0]
    got = text_faithfulness("tiny-text", "1", entry)
    handle = handle_for("tiny-text", "1")
    direct = attribute_text(handle.module, handle.tokenizer, [TEXT], targets=[1],
                            methods=["integrated_gradients", "grad_x_input"], ig_steps=8)
    want = eraser_scores(handle.module, direct, ["integrated_gradients", "grad_x_input"],
                         pad_id=handle.tokenizer.pad_token_id)
    for m in ("integrated_gradients", "grad_x_input"):
        assert abs(got[m]["comprehensiveness"] - want[m].comprehensiveness) < 1e-5
        assert abs(got[m]["sufficiency"] - want[m].sufficiency) < 1e-5
