"""Issue 22: a Hugging Face model uploaded as a zip goes through the dataset imports' zip-bomb guard before any
entry is read (a 300 KB upload once became 300 MB on disk), and nothing is left behind on refusal."""

from __future__ import annotations

import io
import random
import json
import tempfile
import zipfile
from pathlib import Path

import pytest

from audit.services.governance.principals import Principal
from audit.services.core.registry import RegistryError, list_models, register_upload

ADMIN = Principal("a", "admin")


def _bomb(megabytes: int = 8) -> bytes:
    """A zip of a small config.json and ``megabytes`` MB of zeros as model.safetensors (about 1000-fold)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/config.json", json.dumps({"model_type": "bert", "id2label": {"0": "a", "1": "b"}}))
        with zf.open("model/model.safetensors", "w") as fh:
            chunk = bytes(1 << 20)
            for _ in range(megabytes):
                fh.write(chunk)
    return buf.getvalue()


@pytest.fixture()
def watched(monkeypatch):
    """The temporary folders the upload creates, and every zip entry anybody opens for reading."""
    import audit.services.core.registry as registry

    made: list[Path] = []
    opened: list[str] = []
    real_mkdtemp, real_open = tempfile.mkdtemp, zipfile.ZipFile.open

    def mkdtemp(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        path = real_mkdtemp(*args, **kwargs)
        made.append(Path(path))
        return path

    def open_entry(self, name, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if mode == "r":
            opened.append(getattr(name, "filename", name))
        return real_open(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(registry.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(zipfile.ZipFile, "open", open_entry)
    return made, opened


def _artifacts(home: Path) -> list[Path]:
    return sorted(p for p in (home / "artifacts").rglob("*") if p.is_file()) if (home / "artifacts").exists() else []


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(audit_home, watched):
    made, opened = watched
    data = _bomb()
    assert len(data) < 100_000
    with pytest.raises(RegistryError, match=r"'model/model.safetensors': expands \d+-fold; the cap is 100 \(zip bomb"):
        register_upload(filename="m.zip", data=data, fmt="hf", actor=ADMIN, family="bert", version="1",
                        task="text-classification", labels=None)
    assert opened == []  # no entry was read, so nothing was inflated
    assert made and not any(p.exists() for p in made)  # the upload's temporary folder is gone
    assert _artifacts(audit_home) == [] and list_models() == []


def test_the_total_cap_is_the_same_guard(audit_home, watched, monkeypatch):
    import audit.services.core.registry as registry
    from audit.datasets.problems import ImportLimits

    monkeypatch.setattr(registry, "HF_ZIP_LIMITS", ImportLimits(max_total_bytes=1 << 20, max_compression_ratio=1e9))
    made, opened = watched
    with pytest.raises(RegistryError, match=r"the zip: expands to \d+ bytes; the cap is 1048576"):
        register_upload(filename="m.zip", data=_bomb(2), fmt="hf", actor=ADMIN, family="bert", version="1",
                        task="text-classification", labels=None)
    assert opened == [] and not any(p.exists() for p in made)


def test_an_honest_zip_is_still_unpacked(tmp_path):
    from audit.services.core.registry import _extract_hf_zip

    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/config.json", "{}")
        zf.writestr("m/weights.bin", random.Random(0).randbytes(2 << 20))  # 2 MiB that does not compress
    dest = tmp_path / "out"
    dest.mkdir()
    root = _extract_hf_zip(archive, dest)
    assert root == dest / "m" and (root / "weights.bin").stat().st_size == 2 << 20
