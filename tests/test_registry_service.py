"""Registry service: validation before writing, immutability, audit log entries, hash-checked loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from audit.services.governance.principals import PermissionDenied, Principal
from audit.services.core.registry import (ModelSource, RegistryError, list_models, load_handle, register_upload,
                                     register_version)
from audit.services.governance.audit_trail import recent_entries
from audit.models.zoo import SmallCNN
from storage.artifacts import ArtifactIntegrityError, ArtifactStore

LABELS = [str(i) for i in range(10)]
SPEC = {"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]}


def _register(tmp_path, version="1", actor=None):
    path = tmp_path / f"w{version}.safetensors"
    torch.manual_seed(int(version))
    save_file(SmallCNN().state_dict(), str(path))
    kwargs = {"actor": actor} if actor else {}
    return register_version(family="fam", version=version, task="image-classification",
                            source=ModelSource("state_dict", path, "small_cnn", {}), labels=LABELS,
                            input_spec=SPEC, **kwargs)


def test_register_and_load_back_identical(audit_home, tmp_path):
    row = _register(tmp_path)
    h = load_handle("fam", "1", device="cpu")
    assert h.sha256 == row["sha256"]
    torch.manual_seed(1)
    ref = SmallCNN().eval()
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(h.module(x), ref(x))
    entries = recent_entries()
    assert entries[0]["action"] == "model.register" and entries[0]["subject"] == "fam/1"


def test_lineage_defaults_to_previous_version(audit_home, tmp_path):
    _register(tmp_path, "1")
    row = _register(tmp_path, "2")
    assert row["parent"] == "1"
    assert [v["version"] for v in list_models()[0]["versions"]] == ["1", "2"]


def test_tampered_artifact_is_refused_on_load(audit_home, tmp_path):
    row = _register(tmp_path)
    path = ArtifactStore().path(row["sha256"])
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError):
        load_handle("fam", "1")


def test_viewer_cannot_register_even_directly(audit_home, tmp_path):
    with pytest.raises(PermissionDenied):
        _register(tmp_path, actor=Principal("vic", "viewer"))
    assert list_models() == []


def test_upload_validation_writes_nothing_on_failure(audit_home):
    with pytest.raises(RegistryError, match="empty"):
        register_upload(filename="w.safetensors", data=b"", fmt="state_dict", actor=Principal("a", "admin"),
                        family="f", version="1", task="image-classification", labels=LABELS, input_spec=SPEC,
                        architecture="small_cnn")
    with pytest.raises(ValueError):
        register_upload(filename="w.safetensors", data=b"\x00" * 64, fmt="state_dict",
                        actor=Principal("a", "admin"), family="f", version="1", task="image-classification",
                        labels=LABELS, input_spec=SPEC, architecture="small_cnn")
    assert list_models() == []
    assert not list((audit_home / "artifacts").rglob("*.*")) if (audit_home / "artifacts").exists() else True


@pytest.mark.parametrize("name", ["", "a b", "../x", "x" * 81])
def test_bad_names(audit_home, tmp_path, name):
    path = tmp_path / "w.safetensors"
    save_file(SmallCNN().state_dict(), str(path))
    with pytest.raises(RegistryError, match="must be 1-80"):
        register_version(family=name, version="1", task="image-classification",
                         source=ModelSource("state_dict", path, "small_cnn", {}), labels=LABELS, input_spec=SPEC)
