"""Issue 22, hole 8: a model whose outputs are finite on a blank input but overflow on real images registers;
every analysis that turns its outputs into classes or metrics must stop and name the samples, storing nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import TINY_LABELS


@pytest.fixture()
def overflowing(audit_home, tmp_path):
    """Family 'boom' version '1': a SmallCNN whose first convolution has no bias and a weight near the float32
    maximum, so a zero image gives finite logits (registration's check passes) and any real image gives NaN.
    Plus a 12-image labelled reference set 'ref' with one group column."""
    from safetensors.torch import save_file

    from audit.models.zoo import SmallCNN
    from audit.services.datasets import add_image_dataset
    from audit.services.registry import ModelSource, register_version

    torch.manual_seed(0)
    model = SmallCNN(width=8)
    with torch.no_grad():
        model.features.block1.conv.weight.fill_(3e38)
        model.features.block1.conv.bias.zero_()
    path = tmp_path / "boom.safetensors"
    save_file(model.state_dict(), str(path))
    register_version(family="boom", version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=TINY_LABELS,
                     input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.0], "std": [1.0]})
    g = torch.Generator().manual_seed(1)
    add_image_dataset("ref", torch.rand(12, 1, 32, 32, generator=g) * 0.9 + 0.1, [i % 10 for i in range(12)],
                      [{"site": "A" if i % 2 else "B"} for i in range(12)], label_names=TINY_LABELS)
    return audit_home


def _rows(kind: str):  # noqa: ANN202
    from storage.db import transaction
    from storage.orm import AnalysisResult, Explanation, Report, Run

    with transaction() as s:
        runs = [(r.status, r.error) for r in s.query(Run).filter(Run.kind == kind).all()]
        return {"runs": runs, "results": s.query(AnalysisResult).count(), "reports": s.query(Report).count(),
                "explanations": s.query(Explanation).count()}


def test_require_finite_names_the_samples():
    from audit.services.predict import NonFiniteOutputs, require_finite

    require_finite(np.ones((3, 2)), ["a", "b", "c"])
    out = np.ones((4, 2))
    out[1, 0], out[3, 1] = np.nan, np.inf
    with pytest.raises(NonFiniteOutputs, match=r"model outputs are not finite for 2 sample\(s\): b, d \(of 4 evaluated\)") as err:
        require_finite(torch.from_numpy(out), ["a", "b", "c", "d"])
    assert isinstance(err.value, ValueError) and err.value.keys == ["b", "d"]
    many = np.full((15, 2), np.nan)
    with pytest.raises(NonFiniteOutputs, match=r"k9, \.\.\. \(5 more\)"):
        require_finite(many, [f"k{i}" for i in range(15)])


def test_the_model_is_finite_on_a_blank_input_only(overflowing):
    from audit.services.handles import handle_for

    h = handle_for("boom", "1")
    assert torch.isfinite(h.predict_proba(torch.zeros(1, 1, 32, 32))).all()
    assert not torch.isfinite(h.predict_proba(torch.full((1, 1, 32, 32), 0.5))).all()


def test_bias_audit_stops_naming_the_samples_and_stores_nothing(overflowing):
    from audit.services.fairness import run_bias_audit
    from audit.services.predict import predict_dataset

    with pytest.raises(ValueError, match=r"model outputs are not finite for 12 sample\(s\): ref-0000, ref-0001"):
        predict_dataset("boom", "1", "ref")
    with pytest.raises(ValueError, match=r"model outputs are not finite.*ref-0000"):
        run_bias_audit("boom", "1", dataset="ref", attributes=["site"], n_boot=5)
    rows = _rows("bias")
    assert rows["results"] == 0
    assert len(rows["runs"]) == 1 and rows["runs"][0][0] == "failed"
    assert "not finite" in rows["runs"][0][1] and "ref-0000" in rows["runs"][0][1]


def test_report_generation_stops_and_stores_nothing(overflowing):
    from audit.services.reports import generate_report

    with pytest.raises(ValueError, match=r"model outputs are not finite.*ref-0000"):
        generate_report("boom", "1", dataset="ref")
    rows = _rows("report")
    assert rows["reports"] == 0 and rows["explanations"] == 0 and rows["results"] == 0
    assert [s for s, _ in rows["runs"]] == ["failed"] and "not finite" in rows["runs"][0][1]


def test_explanations_and_counterfactuals_stop_too(overflowing):
    from audit.services.counterfactuals import counterfactual_for_sample, run_reference_counterfactuals
    from audit.services.explain import explain_image, explain_reference_set

    with pytest.raises(ValueError, match=r"model outputs are not finite.*for 1 sample\(s\): ref-0003 \(of 1 evaluated\)"):
        explain_image("boom", "1", methods=["saliency"], dataset="ref", sample_key="ref-0003")
    with pytest.raises(ValueError, match=r"model outputs are not finite.*ref-0000"):
        explain_reference_set("boom", "1", "ref", methods=["saliency"], limit=4)
    with pytest.raises(ValueError, match=r"model outputs are not finite.*ref-0002"):
        counterfactual_for_sample("boom", "1", dataset="ref", sample_key="ref-0002")
    with pytest.raises(ValueError, match=r"model outputs are not finite.*ref-0000"):
        run_reference_counterfactuals("boom", "1", dataset="ref", limit=3)
    rows = _rows("explain")
    assert rows["explanations"] == 0 and rows["results"] == 0 and [s for s, _ in rows["runs"]] == ["failed"]
    assert [s for s, _ in _rows("counterfactual")["runs"]] == ["failed"]


def test_an_uploaded_image_is_named_on_the_explain_path(overflowing):
    import io

    from PIL import Image

    from audit.services.explain import explain_image

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32), 200, dtype=np.uint8)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="model outputs are not finite.*the uploaded image"):
        explain_image("boom", "1", methods=["saliency"], image_bytes=buf.getvalue())


def test_full_audit_stops_at_the_first_step(overflowing):
    from audit.services.full_audit import run_full_audit

    with pytest.raises(ValueError, match="model outputs are not finite.*ref-0000"):
        run_full_audit("boom", "1", dataset="ref")
    rows = _rows("full_audit")
    assert [s for s, _ in rows["runs"]] == ["failed"] and rows["results"] == 0 and rows["reports"] == 0


def test_concept_test_stops_naming_the_class_inputs(overflowing, tmp_path):
    from PIL import Image

    from audit.services.concepts import run_concept_test
    from audit.services.datasets import add_image_dataset, import_concept_set

    folder = tmp_path / "blob"
    folder.mkdir()
    for i in range(6):
        img = np.zeros((32, 32), dtype=np.uint8)
        img[4 + i:14 + i, 4:14] = 255
        Image.fromarray(img).save(folder / f"b{i}.png")
    import_concept_set("blob", folder)
    g = torch.Generator().manual_seed(2)
    add_image_dataset("threes", torch.rand(10, 1, 32, 32, generator=g) * 0.9 + 0.1, [3] * 6 + [4] * 4,
                      [{} for _ in range(10)], label_names=TINY_LABELS)
    with pytest.raises(ValueError, match=r"model outputs are not finite for 6 sample\(s\): threes-0000, threes-0001"):
        run_concept_test("boom", "1", concepts=["blob"], target=3, dataset="threes", n_random=4, set_size=4)
    rows = _rows("tcav")
    assert rows["results"] == 0 and [s for s, _ in rows["runs"]] == ["failed"]


@pytest.fixture()
def overflowing_text(audit_home, tmp_path):
    """Family 'boom-text': a tiny BERT whose embedding of the word "debt" is near the float32 maximum, so a text
    without "debt" (the registration check's) is finite and any text with it gives NaN. Dataset 'notes'."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from audit.services.datasets import add_text_dataset
    from audit.services.registry import ModelSource, register_version
    from tests.conftest import TINY_VOCAB

    d = tmp_path / "boom-bert"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, num_labels=2, max_position_embeddings=64,
                     id2label={0: "decline", 1: "approve"}, label2id={"decline": 0, "approve": 1})
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[TINY_VOCAB.index("debt")] = 3e38
    model.save_pretrained(str(d), safe_serialization=True)
    register_version(family="boom-text", version="1", task="text-classification", source=ModelSource("hf", d),
                     labels=["decline", "approve"])
    texts = ["she has a stable income .", "he has no debt .", "ms applicant missed payments ."] * 2
    add_text_dataset("notes", texts, [i % 2 for i in range(6)], [{"gender": "fm"[i % 2]} for i in range(6)],
                     label_names=["decline", "approve"])
    return audit_home


def test_text_models_stop_naming_the_texts(overflowing_text):
    from audit.services.fairness import run_bias_audit, run_text_probe
    from audit.services.predict import predict_dataset
    from audit.services.text import explain_texts

    with pytest.raises(ValueError, match=r"model outputs are not finite for 2 sample\(s\): notes-0001, notes-0004 "):
        predict_dataset("boom-text", "1", "notes")
    with pytest.raises(ValueError, match=r"not finite for 2 sample\(s\): notes-0001, notes-0004 "):
        run_bias_audit("boom-text", "1", dataset="notes", attributes=["gender"], n_boot=0)
    with pytest.raises(ValueError, match=r"not finite for 1 sample\(s\): text 1 \('he has no debt \.'\)"):
        explain_texts("boom-text", "1", ["she has a stable income .", "he has no debt ."], methods=["grad_x_input"])
    with pytest.raises(ValueError, match=r"not finite"):
        run_text_probe("boom-text", "1", dataset="notes")
    assert _rows("bias")["results"] == 0 and _rows("bias")["explanations"] == 0
