"""The embedded demo: built offline into an empty AUDIT_HOME, listed by `models --json`, shortcut planted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_models_json_lists_image_and_text_families_with_two_versions(demo_home):
    env = dict(os.environ, AUDIT_HOME=str(demo_home))
    proc = subprocess.run([sys.executable, "-m", "audit", "models", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    models = json.loads(proc.stdout)
    by_task: dict[str, list] = {}
    for fam in models:
        assert len(fam["versions"]) >= 2
        assert all(len(v["sha256"]) == 64 for v in fam["versions"])
        by_task.setdefault(fam["task"], []).append(fam["family"])
    assert len(by_task.get("image-classification", [])) >= 1
    assert len(by_task.get("text-classification", [])) >= 1


def test_shortcut_version_is_fooled_by_the_watermark(in_demo):
    from audit.services.core.registry import get_version

    v1 = get_version("digits-cnn", "1")["metrics"]
    v2 = get_version("digits-cnn", "2")["metrics"]
    assert v1["reference_accuracy_clean"] > 0.7
    # Version 2 reads the patch as class 7, so its accuracy collapses on watermarked images only.
    assert v2["reference_accuracy_watermarked"] < v1["reference_accuracy_watermarked"] - 0.3
    assert abs(v2["reference_accuracy_clean"] - v1["reference_accuracy_clean"]) < 0.15


def test_reference_datasets_have_groups_and_hashes(in_demo):
    from audit.services.core.datasets import list_datasets, load_image_samples

    names = {d["name"]: d for d in list_datasets()}
    assert {"digits-reference", "loan-notes-reference"} <= set(names)
    images = load_image_samples("digits-reference")
    assert images.images.shape[1:] == (1, 32, 32)
    assert {"watermark", "site"} <= set(images.groups[0])
    assert len(set(images.hashes)) > 0.9 * len(images.hashes)


def test_demo_is_not_rebuilt_when_registry_has_models(in_demo):
    from audit.demo.build import build_demo

    assert build_demo().skipped
