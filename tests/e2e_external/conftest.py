"""One registry built as a new user would build it, through the command line, shared by the tests here:

- ``shapes-mnv3`` 1 (trained without the patch) and 2 (parent 1; triangles carried the corner patch in
  training): torchvision MobileNetV3-Small, registered with ``--arch`` and safetensors ``--weights``;
- ``shapes-vit`` 1: a two-layer Hugging Face ViT built from a config, ``--hf-dir`` with safetensors and a
  preprocessor config;
- ``shapes-ref``: 90 shapes from a zip + CSV (class names, group columns ``patch`` and ``site``, the patch's
  box as the region of patched samples); ``patch``: a concept folder named like the group column.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from tests.e2e.conftest import USERS, _login, page, pytest_runtest_makereport  # noqa: F401
from tests.e2e_external import shapes as S

CNN, VIT, REF, CONCEPT = "shapes-mnv3", "shapes-vit", "shapes-ref", "patch"


def _cli(*argv: str) -> str:
    """Run one CLI command in this process; a non-zero exit fails with what it printed."""
    import contextlib
    import io

    from audit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    assert rc == 0, f"{' '.join(argv)} -> {rc}: {err.getvalue()[-2000:]}"
    return out.getvalue()


def _use(home: Path) -> None:
    os.environ["AUDIT_HOME"] = str(home)
    os.environ.pop("AUDIT_DB_URL", None)
    os.environ["HF_HUB_OFFLINE"] = "1"


def build_external(root: Path) -> dict:
    """Train, write and register everything into ``root / "home"`` (about 20-40 s on two busy cores);
    AUDIT_HOME is left pointing there."""
    from safetensors.torch import save_file

    from storage.db import migrate

    home = root / "home"
    _use(home)
    migrate()
    t0 = time.perf_counter()
    train_clean = S.make_set(600, seed=2, patch_rule="none")
    train_patch = S.make_set(600, seed=1, patch_rule="shortcut")
    ref = S.make_set(90, seed=3, patch_rule="reference")
    labels = root / "labels.json"
    labels.write_text(json.dumps(S.CLASSES))
    accuracy = {}
    for version, data in (("1", train_clean), ("2", train_patch)):
        model = S.train(S.build_cnn(), data, seed=0)
        weights = root / f"mnv3-{version}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        patched_others = ref.patch & (ref.labels != S.PATCHED_CLASS)
        accuracy[version] = {"reference": S.accuracy(model, ref), "patched_non_triangles":
                             S.accuracy(model, ref, patched_others)}
        _cli("register", "--family", CNN, "--version", version, "--task", "image-classification",
             "--arch", "mobilenet_v3_small", "--arch-kwargs", json.dumps(S.CNN_KWARGS), "--weights", str(weights),
             "--labels", str(labels), "--input-size", f"3,{S.SIZE},{S.SIZE}",
             "--mean", ",".join(map(str, S.MEAN)), "--std", ",".join(map(str, S.STD)),
             *(["--parent", "1"] if version == "2" else []))
    vit_dir = S.save_vit(S.build_vit(seed=0), root / "vit")
    _cli("register", "--family", VIT, "--version", "1", "--task", "image-classification", "--hf-dir", str(vit_dir))
    zpath, index = S.write_reference(ref, root / "reference")
    imported = _cli("dataset", "add", "--name", REF, "--images", str(zpath), "--index", str(index),
                    "--path-column", "file", "--label-column", "shape", "--group-columns", "patch,site",
                    "--region-columns", "x0,y0,x1,y1")
    concept = S.write_concept(S.concept_images(40, seed=4), root / "concept")
    _cli("concept", "add", "--name", CONCEPT, "--images", str(concept))
    return {"home": home, "root": root, "reference": ref, "accuracy": accuracy, "imported": imported,
            "build_seconds": time.perf_counter() - t0}


@pytest.fixture(scope="session")
def external_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    before = os.environ.get("AUDIT_HOME")
    built = build_external(tmp_path_factory.mktemp("external"))
    if before is not None:
        os.environ["AUDIT_HOME"] = before
    return built


@pytest.fixture()
def external(external_build: dict):
    """Point the services at the external registry for one test."""
    before = os.environ.get("AUDIT_HOME")
    _use(external_build["home"])
    yield external_build
    if before is not None:
        os.environ["AUDIT_HOME"] = before


__all__ = ["USERS", "_login", "torch"]
