"""Two processes writing at once against SQLite: no lost rows, no 'database is locked', chain intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from audit.models.zoo import SmallCNN
from audit.services.datasets import add_image_dataset
from audit.services.registry import ModelSource, register_version
from storage import auditlog
from storage.db import transaction
from storage.orm import AuditLogEntry, Explanation

ROOT = Path(__file__).resolve().parents[2]
LABELS = [str(i) for i in range(10)]
EVENTS = 60


@pytest.fixture()
def tiny(audit_home, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(SmallCNN(width=8).state_dict(), str(path))
    register_version(family="tiny", version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=LABELS,
                     input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]})
    add_image_dataset("ref", torch.rand(12, 1, 32, 32), [0] * 12, [{}] * 12, label_names=LABELS)
    return audit_home


def test_two_writers_lose_nothing(tiny):
    env = dict(os.environ, AUDIT_HOME=str(tiny), PYTHONPATH=str(ROOT))
    with transaction() as s:
        before = s.query(AuditLogEntry).count()
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests/reliability/writer.py"), m, str(EVENTS)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in ("saliency", "gradcam")]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "database is locked" not in err
    with transaction() as s:
        assert s.query(Explanation).filter_by(method="saliency").count() == 12
        assert s.query(Explanation).filter_by(method="gradcam").count() == 12
        events = s.query(AuditLogEntry).filter_by(action="test.event").count()
        assert events == 2 * EVENTS
        assert s.query(AuditLogEntry).count() > before + 2 * EVENTS
        report = auditlog.verify(s)
    assert report.ok, report.problems
