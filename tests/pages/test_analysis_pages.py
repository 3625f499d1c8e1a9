"""AppTests of the Text, Bias, Counterfactuals and Concepts pages on tiny registries."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal

ROOT = Path(__file__).resolve().parents[2]


def _page(name: str, role: str = "auditor") -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=300)
    at.session_state["principal"] = Principal("tester", role)
    return at


def test_text_page_highlights_tokens(tiny_text):
    at = _page("text.py").run()
    assert not at.exception
    at.multiselect[0].set_value(["integrated_gradients", "occlusion"])
    at.number_input[0].set_value(8)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any(m.label == "Predicted" for m in at.metric)
    assert len(at.get("plotly_chart")) >= 2  # probabilities and method agreement


def test_bias_page_shows_groups_and_probe(tiny_text):
    at = _page("bias.py").run()
    assert not at.exception
    at.number_input[0].set_value(20)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("By group" in s.value for s in at.subheader)
    probe = [b for b in at.button if b.label == "Run the probe"][0]
    probe.click().run()
    assert not at.exception, at.exception
    assert any(m.label == "Flip rate" for m in at.metric)


def test_viewer_cannot_run_a_bias_audit(tiny_image):
    at = _page("bias.py", role="viewer").run()
    at.button[0].click().run()
    assert any("may view stored results" in e.value for e in at.error)


def test_counterfactual_page_side_by_side(tiny_image):
    at = _page("counterfactuals.py").run()
    assert not at.exception
    at.button[0].click().run()
    assert not at.exception, at.exception
    (shown_for, cf) = at.session_state["cf_result"]
    assert shown_for == ("tiny", "1")
    shown = at.success if cf.valid else at.error
    assert len(shown) == 1 and len(at.error if cf.valid else at.success) == 0
    assert shown[0].value.startswith("Valid" if cf.valid else "No valid") and f"L2 {cf.l2:.3f}" in shown[0].value
    assert len(at.get("imgs")) >= 2 or len(at.get("image")) >= 2 or len(at.get("plotly_chart")) >= 3


def test_a_result_is_not_shown_under_another_version(tiny_image, register_small_cnn):
    """After switching versions, the counterfactual and the bias audit of the previous version are gone
    (their numbers would read as the new version's); switching back shows them again."""
    register_small_cnn(version="2", seed=1)

    def version(at: AppTest):  # noqa: ANN202 - the selectbox element
        return next(sb for sb in at.selectbox if sb.label == "Version")

    for name, shown in (("counterfactuals.py", lambda at: len(at.success) + len(at.error)),
                        ("bias.py", lambda at: sum("By group" in s.value for s in at.subheader))):
        at = _page(name).run()
        version(at).select_index(0).run()  # version 1 (the newest, 2, is preselected)
        at.button[0].click().run()
        assert not at.exception, at.exception
        assert shown(at) == 1, name
        version(at).select_index(1).run()
        assert not at.exception and shown(at) == 0, name
        version(at).select_index(0).run()
        assert shown(at) == 1, name


def test_the_probe_runs_on_the_chosen_reference_set(tiny_text):
    from audit.services.core.datasets import add_text_dataset

    texts = ["mr applicant has no debt .", "she missed payments ."] * 4
    add_text_dataset("notes-b", texts, [i % 2 for i in range(len(texts))], [{"gender": "x"}] * len(texts),
                     label_names=["decline", "approve"])
    at = _page("bias.py").run()
    next(sb for sb in at.selectbox if sb.label == "Reference set").set_value("notes-b").run()
    [b for b in at.button if b.label == "Run the probe"][0].click().run()
    assert not at.exception, at.exception
    assert any(c.value == "Probed on notes-b." for c in at.caption), ([c.value for c in at.caption], [e.value for e in at.error])
    from audit.services.analyses.fairness.service import run_text_probe

    on_b, on_notes = (run_text_probe("tiny-text", "1", dataset=d).n for d in ("notes-b", "notes"))
    assert on_b != on_notes
    assert [m.value for m in at.metric if m.label == "Texts probed"] == [str(on_b)]


def test_concepts_page_renders_form(tiny_image):
    at = _page("concepts.py").run()
    assert not at.exception
    assert at.multiselect[0].value == ["watermark", "random-reference"]


def test_concepts_page_shows_what_the_concept_service_stored(tiny_image):
    import torch

    from audit.services.analyses.concepts.service import run_concept_test
    from audit.services.core.datasets import add_image_dataset

    g = torch.Generator().manual_seed(4)
    add_image_dataset("ref40", torch.rand(40, 1, 32, 32, generator=g), [1 if i < 12 else i % 10 for i in range(40)],
                      [{"site": "A"} for _ in range(40)], label_names=[str(i) for i in range(10)])
    res = run_concept_test("tiny", "1", concepts=["stripes", "random-reference"], target=1, dataset="ref40",
                           n_random=3, set_size=6, n_inputs=8)
    at = _page("concepts.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == len(res.cells) == 2 * len(res.layers)
    for _, row in table.iterrows():
        cell = res.cell(row["concept"], row["layer"])
        assert row["TCAV score"] == cell.score and row["p (corrected)"] == cell.p_value_corrected
        assert row["significant"] == ("✅" if cell.significant else "—")
    across = at.dataframe[1].value
    assert set(across["concept"]) == {"stripes", "random-reference"} and len(across) == len(res.cells)
