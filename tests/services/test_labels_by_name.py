"""Labels are read by name, never by position: every consumer gives exactly the numbers of the same data in
the model's own class order when the dataset names its classes in another order (a permutation), and
when it holds five classes of a 1,000-class model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

# The model's class order is deliberately not alphabetical: an import sorts the names it finds, so the
# dataset's own positions differ from the model's indices for every class.
LABELS = ["zebra", "apple", "mango", "kiwi", "fig", "date", "cherry", "banana", "lime", "grape"]
N = 36


def _register(family: str, labels: list[str], tmp_path: Path, *, seed: int = 0, version: str = "1") -> None:
    from safetensors.torch import save_file

    from audit.models.zoo import SmallCNN
    from audit.services.core.registry import ModelSource, register_version

    torch.manual_seed(seed)
    path = tmp_path / f"{family}-{version}.safetensors"
    save_file(SmallCNN(width=8, num_classes=len(labels)).state_dict(), str(path))
    register_version(family=family, version=version, task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8, "num_classes": len(labels)}),
                     labels=labels, input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.25]})


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(N, 1, 32, 32, generator=g)


def _truth(family: str, images: torch.Tensor, names: list[str]) -> list[int]:
    """True labels (model indices): the prediction for two thirds of the samples, another class for the rest,
    so accuracy is exactly 2/3 and per-class numbers are not trivial."""
    from audit.services.core.handles import handle_for

    h = handle_for(family, "1")
    pred = h.predict_proba(h.input_spec.normalize(images)).argmax(1).tolist()
    classes = sorted(set(pred)) if len(names) > 10 else list(range(len(names)))
    return [p if i % 3 else classes[(classes.index(p) + 1) % len(classes)] if len(classes) > 1 else p
            for i, p in enumerate(pred)]


def _write_import(tmp_path: Path, images: torch.Tensor, names: list[str], groups: list[str], name: str) -> None:
    """The same images written as PNG files with a CSV naming each label, imported as a user would."""
    from audit.services.core.datasets import import_image_dataset, png_bytes

    folder = tmp_path / name
    folder.mkdir()
    with open(tmp_path / f"{name}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "site"])
        for i, (img, y, g) in enumerate(zip(images, names, groups)):
            (folder / f"{i:03d}.png").write_bytes(png_bytes(img))
            w.writerow([f"{i:03d}.png", y, g])
    import_image_dataset(name, folder, tmp_path / f"{name}.csv", group_columns=["site"])


@pytest.fixture()
def two_orders(audit_home, tmp_path):
    """Family 'fruit' (ten classes, not alphabetical); 'model-order': the data stored with the model's own
    indices; 'by-name': the same data imported from a CSV of names (its own sorted positions differ)."""
    from audit.services.core.datasets import add_image_dataset, sample_index

    _register("fruit", LABELS, tmp_path)
    images = _images()
    y = _truth("fruit", images, LABELS)
    groups = ["A" if i % 2 else "B" for i in range(N)]
    add_image_dataset("model-order", images, y, [{"site": g} for g in groups], label_names=LABELS)
    _write_import(tmp_path, images, [LABELS[v] for v in y], groups, "by-name")
    own = sample_index("by-name").label_names
    assert own != [n for n in LABELS if n in own], "the import must store the names in another order"
    return y


def test_the_bias_audit_reads_labels_by_name(two_orders):
    from audit.services.analyses.fairness.service import run_bias_audit

    a = run_bias_audit("fruit", "1", dataset="model-order", attributes=["site"], n_boot=0)
    b = run_bias_audit("fruit", "1", dataset="by-name", attributes=["site"], n_boot=0)
    assert a.overall["accuracy"] == pytest.approx(2 / 3)
    assert b.overall == a.overall and b.difference == a.difference and b.worst_group == a.worst_group
    assert [(g.group, g.count, g.rates) for g in b.by_group] == [(g.group, g.count, g.rates) for g in a.by_group]


def test_predictions_and_the_report_s_performance_section_read_labels_by_name(two_orders):
    from audit.report.sections.base import ModelFacts, ReferencePredictions
    from audit.report.sections.performance import performance_section
    from audit.services.core.predict import predict_dataset
    from audit.services.core.registry import get_version

    info = get_version("fruit", "1")
    sections = []
    for ds in ("model-order", "by-name"):
        p = predict_dataset("fruit", "1", ds)
        assert p.labels == two_orders
        preds = ReferencePredictions(ds, p.keys, p.labels, p.groups, p.probabilities)
        sections.append(performance_section(ModelFacts("fruit", "1", "", info), preds, min_accuracy=0.5))
    texts = [[b.text.replace("by-name", "X").replace("model-order", "X") for b in s.blocks if hasattr(b, "text")]
             for s in sections]
    assert texts[0] == texts[1] and any("24 of 36 correct" in t for t in texts[0])
    tables = [[b.rows for b in s.blocks if hasattr(b, "rows")] for s in sections]
    assert tables[0] == tables[1]


def test_explain_counterfactual_and_drift_take_the_true_class_by_name(two_orders, tmp_path):
    from audit.services.analyses.counterfactuals.service import counterfactual_for_sample
    from audit.services.core.datasets import sample_index
    from audit.services.analyses.drift.service import compute_drift
    from audit.services.analyses.explanations.service import explain_image

    key = sample_index("by-name").keys[4]
    exp = explain_image("fruit", "1", methods=["saliency"], dataset="by-name", sample_key=key)
    assert exp.true_label == two_orders[4]
    cf = counterfactual_for_sample("fruit", "1", dataset="by-name", sample_key=key, max_iter=5)
    assert cf.true_label == two_orders[4]
    _register("fruit", LABELS, tmp_path, seed=1, version="2")
    out = {ds: compute_drift("fruit", "1", "2", dataset=ds, methods=["saliency"], target="label", limit=12)
           for ds in ("model-order", "by-name")}
    assert out["by-name"]["methods"] == out["model-order"]["methods"]


def test_a_concept_test_target_is_the_model_s_class(two_orders):
    from audit.services.analyses.concepts.service import run_concept_test

    target = two_orders[0]
    kw = dict(concepts=["stripes"], target=target, layers=["features.block2"], n_random=3, set_size=6, n_inputs=8)
    a = run_concept_test("fruit", "1", dataset="model-order", **kw)
    b = run_concept_test("fruit", "1", dataset="by-name", **kw)
    assert a.target == b.target == target and a.target_label == b.target_label == LABELS[target]
    assert [(c.layer, c.score) for c in a.cells] == [(c.layer, c.score) for c in b.cells]


def test_the_mapping_enters_the_result_key(two_orders):
    """The same names in another class order are another model: its stored results are not reused."""
    from audit.services.core.datasets import dataset_key

    assert dataset_key("by-name", LABELS) != dataset_key("by-name", list(reversed(LABELS)))
    assert dataset_key("by-name", LABELS) == dataset_key("by-name", list(LABELS))


def test_names_the_model_does_not_know_are_refused_with_the_nearest(two_orders, tmp_path):
    from audit.services.core.datasets import sample_index
    from audit.services.analyses.fairness.service import run_bias_audit

    used = sample_index("by-name").label_names[0]
    _register("other", [n + "s" if n == used else n for n in LABELS], tmp_path)
    with pytest.raises(ValueError, match=rf"'{used}' \(nearest: '{used}s'\)"):
        run_bias_audit("other", "1", dataset="by-name", attributes=["site"], n_boot=0)


def test_five_classes_of_a_thousand_class_model(audit_home, tmp_path):
    """The report's per-class table has five rows, the accuracy is the one computed here by name."""
    from audit.report.sections.base import ModelFacts, ReferencePredictions
    from audit.report.sections.performance import performance_section
    from audit.services.analyses.fairness.service import run_bias_audit
    from audit.services.core.predict import predict_dataset
    from audit.services.core.registry import get_version

    rng = np.random.default_rng(0)
    labels = [f"class {i:04d}" for i in rng.permutation(1000)]
    _register("big", labels, tmp_path)
    images = _images()
    y = _truth("big", images, labels)
    present = sorted(set(y))[:5]
    keep = [i for i, v in enumerate(y) if v in present]
    images, y = images[keep], [y[i] for i in keep]
    _write_import(tmp_path, images, [labels[v] for v in y], ["A" if i % 2 else "B" for i in range(len(y))], "five")
    p = predict_dataset("big", "1", "five")
    assert p.labels == y
    expected = float(np.mean(np.asarray(y) == p.predicted))
    bias = run_bias_audit("big", "1", dataset="five", attributes=["site"], n_boot=0)
    assert bias.overall["accuracy"] == pytest.approx(expected)
    sec = performance_section(ModelFacts("big", "1", "", get_version("big", "1")),
                              ReferencePredictions("five", p.keys, p.labels, p.groups, p.probabilities),
                              min_accuracy=0.5)
    per_class = next(b for b in sec.blocks if getattr(b, "columns", None) == ["Class", "Samples", "Recall", "Precision"])
    assert [r[0] for r in per_class.rows] == [labels[c] for c in sorted(set(y))]
