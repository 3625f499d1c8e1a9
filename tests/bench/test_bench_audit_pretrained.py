"""``python -m audit.bench audit --case pretrained`` (issue 21): its building blocks, run cheaply (register by
import path, import the photographs, the predictions the report's accuracy comes from), and the whole case
once, marked slow. Both compare the project's accuracy with the one computed independently of the
project's code (``tests/e2e_pretrained/model.py``: torchvision transforms, the packages' model)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from audit.bench import audit as bench_audit
from audit.bench import audit_pretrained as case
from audit.bench import pretrained as P
from audit.bench.photos import build_photos
from tests.e2e_pretrained import model as M


def test_the_pretrained_case_refuses_a_demo_home():
    with pytest.raises(SystemExit):
        bench_audit._parse(["--case", "pretrained", "--home", "/nowhere"])
    assert bench_audit._parse([]).case == "demo"  # the default case is unchanged


def test_performance_is_read_from_the_report_s_single_performance_finding():
    found = [{"area": "Quality", "detail": "accuracy 0.1000 on x"},
             {"area": "Performance", "status": "pass", "detail": "accuracy 0.7500 on photos"}]
    assert case.performance(found)["accuracy"] == 0.75 and case.performance(found)["dataset"] == "photos"
    assert case.performance(found[:1])["accuracy"] is None  # no Performance finding: no accuracy
    assert case.performance([{"area": "Performance", "detail": "no labelled reference set"}])["accuracy"] is None


def test_building_blocks_register_import_and_predict_as_the_report_does(audit_home, tmp_path):
    """The model registered by import path with its declared preprocessing, the photographs imported with
    their class names and groups, and the predictions the report's accuracy is computed from: the same
    accuracy as the independent oracle (about 20 s: two model loads and 2 x 60 forwards at 224 px)."""
    from audit.services.core.datasets import list_datasets
    from audit.services.core.predict import predict_dataset
    from audit.services.core.registry import get_version

    photos = build_photos(tmp_path / "photos", P.class_names())
    P.register()
    info = get_version(P.FAMILY, P.VERSION)
    assert info["format"] == "import_path" and info["labels"] == P.class_names()
    spec = info["input_spec"]
    assert (spec["resize_mode"], spec["resize"], spec["height"], spec["width"]) == ("shorter", 256, 224, 224)
    assert spec["mean"] == pytest.approx(list(M.MEAN)) and spec["std"] == pytest.approx(list(M.STD))

    assert P.import_photos(photos)["samples"] == 60
    listed = {d["name"]: d for d in list_datasets()}[P.DATASET]
    assert sorted(listed["groups"]) == sorted(P.GROUPS)

    pred = predict_dataset(P.FAMILY, P.VERSION, P.DATASET)
    names = P.class_names()
    assert sorted({names[y] for y in pred.labels}) == sorted(set(photos.labels))  # labels by name, not position
    ours = float(np.mean(np.argmax(pred.probabilities, axis=1) == np.asarray(pred.labels)))
    oracle = M.predict(photos.paths, photos.labels)
    assert ours == oracle.accuracy, (ours, oracle.accuracy)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AUDIT_BENCH_FULL"),
                    reason="the whole case runs the default budgets (about 20 minutes on two busy cores): run "
                           "`python -m audit.bench audit --case pretrained`, or set AUDIT_BENCH_FULL=1; the "
                           "same path at small budgets is tests/e2e_pretrained/test_pretrained_audit.py")
def test_the_whole_case_from_an_empty_store(monkeypatch, capsys):
    """One full audit with the default options (minutes on two busy cores): every step is timed, the
    register and import steps come first, and the report's accuracy is the independent one."""
    monkeypatch.setenv("AUDIT_HOME", "unset")  # the case points AUDIT_HOME at its own store; restored after
    monkeypatch.delenv("AUDIT_DB_URL", raising=False)
    assert bench_audit.main(["--case", "pretrained", "--json", "--keep"]) == 0
    res = json.loads(capsys.readouterr().out)
    kept = Path(res["home"])
    try:
        steps = res["steps"]
        assert list(steps)[:2] == ["register", "import"]
        assert all(steps[s] > 0 for s in ("register", "import", "explanations", "report")), steps
        assert "explanations" not in res["skipped"] and "report" not in res["skipped"]
        assert res["samples"] == 60 and res["target_s"] == case.TARGET_S
        assert sum(steps.values()) == pytest.approx(res["wall_s"], rel=0.1)  # the steps are the wall time
        root = kept / "photos"  # the photographs the case audited, and their index
        with (root / "photos.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        oracle = M.predict([root / "photos" / r["file"] for r in rows], [r["label"] for r in rows])
        assert len(rows) == 60 and res["performance"]["accuracy"] == pytest.approx(oracle.accuracy, abs=5e-5), (
            res["performance"], oracle.accuracy)
    finally:
        shutil.rmtree(kept, ignore_errors=True)
