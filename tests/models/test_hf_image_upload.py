"""Uploading a Hugging Face image classifier as a zip of its directory (the Registry page's path)."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest

from audit.services.governance.principals import Principal
from audit.services.core.registry import RegistryError, list_models, register_upload

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attribution"))
from test_hf_vit import LABELS, MEAN, STD, make_vit_dir  # noqa: E402

ADMIN = Principal("admin", "admin")


def zip_dir(path: Path, prefix: str = "vit/") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(path.iterdir()):
            zf.write(f, prefix + f.name)
    return buf.getvalue()


def test_hf_zip_upload_registers_with_spec_and_labels_from_the_directory(audit_home, tmp_path):
    data = zip_dir(make_vit_dir(tmp_path / "vit"))
    row = register_upload(filename="vit.zip", data=data, fmt="hf", actor=ADMIN, family="vit", version="1",
                          task="image-classification", labels=None, input_spec=None)
    assert row["labels"] == LABELS and row["architecture"] == "ViTForImageClassification"
    # the processor's own resampler (torchvision's tensor kernels) and crop rule are declared with it
    assert row["input_spec"] == {"channels": 3, "height": 32, "width": 32, "mean": MEAN, "std": STD,
                                 "backend": "tensor", "crop_origin": "floor"}


def test_hf_zip_upload_refuses_unsafe_paths_and_non_zips(audit_home, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil/config.json", "{}")
    with pytest.raises(RegistryError, match="unsafe path"):
        register_upload(filename="x.zip", data=buf.getvalue(), fmt="hf", actor=ADMIN, family="vit", version="1",
                        task="image-classification", labels=None)
    with pytest.raises(RegistryError, match="not a zip"):
        register_upload(filename="x.bin", data=b"not a zip", fmt="hf", actor=ADMIN, family="vit", version="1",
                        task="image-classification", labels=None)
    assert not (tmp_path / "evil").exists() and list_models() == []
