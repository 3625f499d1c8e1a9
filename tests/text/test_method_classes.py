"""Text methods describe themselves: each is a class in its own file, registered on import; its declared
cost is the rows it sends through the model; a bad declaration is refused; and a new method is one new file."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from audit.services.analyses.text.service import text_method_choices, text_methods, text_params_key
from audit.text import (
    DEFAULT_METHODS,
    TEXT_METHOD_SPECS,
    TEXT_METHODS,
    TextAttributionMethod,
    attribute_text,
    option_table,
    registry,
    text_method_costs,
    text_option_names,
    text_result_option_defaults,
)

TEXTS = ["She has stable income and no missed payments.", "Mr Brown has several late payments"]


def test_every_method_is_a_registered_class_in_its_own_module():
    modules = set()
    for name, cls in TEXT_METHOD_SPECS.items():
        assert issubclass(cls, TextAttributionMethod) and cls.name == name
        assert cls.__module__.startswith("audit.text.methods.") and cls.__module__ not in modules
        modules.add(cls.__module__)
        assert cls.label and cls.summary, name
        for opt in cls.options:
            assert opt.doc and opt.check is not None, (name, opt.name)
            if opt.result:
                assert opt.label, f"{name}: {opt.name} changes results but has no words to show it beside a map"
    assert tuple(TEXT_METHODS) == tuple(sorted(TEXT_METHODS, key=lambda n: TEXT_METHOD_SPECS[n].listing))
    # attribute_text's default methods, as the design documents them; attention flow only when asked
    assert DEFAULT_METHODS == ("integrated_gradients", "grad_x_input", "attention", "attention_rollout",
                               "occlusion", "shap")


def test_options_say_their_ranges_and_choices():
    table = option_table()
    assert table["ig_steps"].low == 1 and table["ig_steps"].high is None
    assert table["ig_baseline"].choices == ("pad", "mask", "zero")
    assert table["ig_method"].choices == ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                                          "riemann_trapezoid")
    assert table["occlusion_replacement"].choices == ("remove", "mask", "pad")
    assert table["shap_max_evals"].low == 2 and table["max_length"].low == 2
    # what a page is offered is what the engine accepts
    choices = text_method_choices()
    assert choices["methods"] == text_methods()
    assert set(choices["preselected"]) <= set(TEXT_METHODS) and "integrated_gradients" in choices["preselected"]
    assert set(choices["options"]) == text_option_names() - {"progress"}
    for name, offer in choices["options"].items():
        assert offer["default"] == table[name].default and offer["low"] == table[name].low, name
        assert offer["choices"] == list(table[name].choices), name
    with pytest.raises(ValueError, match="ig_steps"):
        attribute_text(object(), None, ["a text"], ig_steps=table["ig_steps"].low - 1)


def _counted(model):
    """Rows sent through the model: all, and those with gradients on (each is followed by one backward)."""
    rows = {"forward": 0, "backward": 0}

    def hook(_module, _args, kwargs):
        x = kwargs["input_ids"] if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
        rows["forward"] += x.shape[0]
        rows["backward"] += x.shape[0] if torch.is_grad_enabled() else 0

    return rows, model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("method", TEXT_METHODS)
@pytest.mark.parametrize("options", [{}, {"ig_steps": 7, "shap_max_evals": 30}])
def test_declared_costs_are_the_rows_each_method_sends_through_the_model(tiny_bert, tokenizer, method, options):
    rows, handle = _counted(tiny_bert)
    try:
        (res,) = attribute_text(tiny_bert, tokenizer, TEXTS[:1], methods=[method], **options)
    finally:
        handle.remove()
    tokens = sum(not s for s in res.special)
    cost = text_method_costs([method], texts=1, tokens=tokens, words=len(res.words), **options)[method]
    shared_forward = 1  # the batch's one pass (predictions, attentions, gradient x input), never a method's
    if method == "shap":  # the explainer spends its budget in batches: it may end one batch past it
        assert 0 <= rows["forward"] - shared_forward - cost.forward < option_table()["shap_batch_size"].default
        assert rows["backward"] == cost.backward == 0
        return
    assert rows["forward"] - shared_forward == cost.forward
    assert rows["backward"] == cost.backward


def test_costs_scale_with_texts_and_options():
    one = text_method_costs(TEXT_METHODS, texts=1, tokens=10, words=8)
    three = text_method_costs(TEXT_METHODS, texts=3, tokens=10, words=8, ig_steps=10)
    assert one["integrated_gradients"].forward == 52 and three["integrated_gradients"].forward == 36
    assert three["occlusion"].forward == 3 * 18 and three["grad_x_input"].backward == 3
    with pytest.raises(ValueError, match="unknown text attribution method 'lime'"):
        text_method_costs(["lime"], texts=1, tokens=1, words=1)


def test_ig_quadrature_aliases_give_the_named_rule(tiny_bert, tokenizer):
    def ig(**options):
        return [r.scores["integrated_gradients"] for r in
                attribute_text(tiny_bert, tokenizer, TEXTS, methods=["integrated_gradients"], ig_steps=6, **options)]

    for alias, rule in (("gl", "gausslegendre"), ("left", "riemann_left"), ("trapezoid", "riemann_trapezoid")):
        for a, b in zip(ig(ig_method=alias), ig(ig_method=rule)):
            assert torch.equal(a, b), alias
    assert not all(torch.equal(a, b) for a, b in zip(ig(ig_method="left"), ig(ig_method="right")))


def _declare(name: str, **declared):
    """Define a text method class from its declarations (``None`` leaves one out): registers it when valid."""
    from audit.declarations import Evaluations

    body = {"name": name, "label": name, "summary": name,
            "evaluations": classmethod(lambda cls, opts, geometry: Evaluations(0, 0)), **declared}
    return type(name, (TextAttributionMethod,), {k: v for k, v in body.items() if v is not None})


def test_bad_declarations_are_refused_and_not_registered():
    from audit.declarations import Option, positive_int
    from audit.text.options import MAX_LENGTH

    with pytest.raises(TypeError, match="set `label`.*declare its cost"):
        _declare("plugin_no_label", label=None, evaluations=None)
    with pytest.raises(TypeError, match=r"\['max_length'\] are the engine's options"):
        _declare("plugin_shadows", options=(MAX_LENGTH,))
    with pytest.raises(ValueError, match="declared twice with different defaults"):
        _declare("plugin_other_default", options=(Option("ig_steps", 8, "steps", check=positive_int),))
    with pytest.raises(ValueError, match="'occlusion' is used by both"):
        _declare("occlusion")
    assert not {"plugin_no_label", "plugin_shadows", "plugin_other_default"} & set(TEXT_METHODS)
    assert TEXT_METHOD_SPECS["occlusion"].label == "Occlusion (leave one out)"


def test_a_method_reads_only_the_options_it_declares(tiny_bert, tokenizer):
    from audit.text.base import TextScores

    def run(self, batch):
        return TextScores(tokens=[torch.full((len(e),), float(batch.options.ig_steps)) for e in batch.encoded])

    _declare("plugin_reads_steps", run=run)
    try:
        with pytest.raises(AttributeError, match="'plugin_reads_steps' read option 'ig_steps', which it does not declare"):
            attribute_text(tiny_bert, tokenizer, TEXTS, methods=["plugin_reads_steps"])
    finally:
        registry.unregister("plugin_reads_steps")


# ---- a new method is one new file -----------------------------------------------------------------

NEW_METHOD = '''
"""A test-only text method: each token's id times a constant (no model evaluation)."""
import torch

from audit.declarations import Evaluations, Option, positive
from audit.text.base import TextAttributionMethod, TextScores

SCALE = Option("plugin_scale", 2.0, "the constant", check=positive, label="scale")


class TokenIdsTimesConstant(TextAttributionMethod):
    name = "plugin_token_ids"
    label = "Token ids times a constant"
    summary = "each token's vocabulary id, scaled"
    options = (SCALE,)

    @classmethod
    def evaluations(cls, opts, geometry):
        return Evaluations(forward=0, backward=0)

    def run(self, batch):
        return TextScores(tokens=[torch.tensor(e.input_ids, dtype=torch.float32) * batch.options.plugin_scale
                                  for e in batch.encoded])
'''


@pytest.fixture
def methods_folder(tmp_path, monkeypatch):
    """A folder added to the methods package's search path for one test; what it registered is removed after."""
    package = sys.modules["audit.text.methods"]
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    before = set(TEXT_METHODS)
    yield tmp_path
    for name in set(registry.registered()) - before:
        registry.unregister(name)
    for module in [m for m in sys.modules if m.startswith("audit.text.methods.plugin_")]:
        del sys.modules[module]


def test_a_new_method_is_one_new_file_in_the_methods_package(methods_folder, tiny_bert, tokenizer):
    (methods_folder / "plugin_token_ids.py").write_text(textwrap.dedent(NEW_METHOD))
    registry.discover(force=True)
    assert "plugin_token_ids" in TEXT_METHODS and TEXT_METHODS[-1] == "plugin_token_ids"
    assert "plugin_token_ids" not in DEFAULT_METHODS
    assert TEXT_METHOD_SPECS["plugin_token_ids"].label == "Token ids times a constant"
    assert text_result_option_defaults("plugin_token_ids") == {"plugin_scale": 2.0, "max_length": None}
    assert "plugin_scale" in text_option_names()
    cost = text_method_costs(["plugin_token_ids"], texts=4, tokens=10, words=8)["plugin_token_ids"]
    assert (cost.forward, cost.backward) == (0, 0)
    # the services see it: its label, its key (the scale enters it) and the page's offer
    assert text_methods()["plugin_token_ids"] == "Token ids times a constant"
    assert text_params_key("plugin_token_ids", {"plugin_scale": 3.0})[1] != text_params_key("plugin_token_ids")[1]
    assert text_method_choices()["options"]["plugin_scale"]["low"] == 0

    out = attribute_text(tiny_bert, tokenizer, TEXTS, methods=["plugin_token_ids", "grad_x_input"], plugin_scale=3.0)
    for r in out:
        torch.testing.assert_close(r.scores["plugin_token_ids"], 3.0 * torch.tensor(r.token_ids, dtype=torch.float32))
        assert r.word_scores["plugin_token_ids"].shape == (len(r.words),)
        assert "grad_x_input" in r.scores  # the built-in methods run beside it
    with pytest.raises(ValueError, match="plugin_scale"):
        attribute_text(tiny_bert, tokenizer, TEXTS, methods=["plugin_token_ids"], plugin_scale=-1.0)

    registry.unregister("plugin_token_ids")  # gone from the listing, and its option with it
    assert "plugin_token_ids" not in TEXT_METHODS
    with pytest.raises(TypeError, match="unknown text attribution option"):
        attribute_text(tiny_bert, tokenizer, TEXTS, methods=["grad_x_input"], plugin_scale=3.0)
