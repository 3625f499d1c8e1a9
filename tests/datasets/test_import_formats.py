"""Issue 22: an import decodes only the formats the README lists. An EPS inside a zip once made Pillow look for
Ghostscript; PSD, ICO and every other plugin must not even be tried, and the file is named in a clear message."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from audit.services.core.datasets import import_concept_set, import_image_dataset
from tests.datasets.test_import_validation import _expect_nothing_stored, _index, _png

ACCEPTED = "is not an image in an accepted format (PNG, JPEG, BMP, GIF, TIFF or WebP)"


def eps_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(buf, format="EPS")
    return buf.getvalue()


def ico_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(buf, format="ICO")
    return buf.getvalue()


def psd_bytes() -> bytes:
    """A minimal Photoshop file (8x8, one grey channel, raw): header, empty mode data, resources and layers."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, 8, 8, 8, 1)
    return header + struct.pack(">I", 0) * 3 + struct.pack(">H", 0) + bytes(64)


@pytest.fixture()
def plugin_spy(monkeypatch):
    """Records every call of the EPS, PSD and ICO plugins' open step (the code an attacker's file reaches)."""
    from PIL import EpsImagePlugin, IcoImagePlugin, PsdImagePlugin

    calls: list[str] = []
    for name, cls in (("EPS", EpsImagePlugin.EpsImageFile), ("PSD", PsdImagePlugin.PsdImageFile),
                      ("ICO", IcoImagePlugin.IcoImageFile)):
        original = cls._open

        def spy(self, _original=original, _name=name):  # noqa: ANN001, ANN202
            calls.append(_name)
            return _original(self)

        monkeypatch.setattr(cls, "_open", spy)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: calls.append("ghostscript") or False)
    return calls


def test_the_spy_sees_plugins_that_pillow_tries():
    """The test below means something: without ``formats=`` Pillow does open these files with those plugins."""
    from PIL import EpsImagePlugin, Image

    assert Image.open(io.BytesIO(eps_bytes())).format == "EPS"
    assert Image.open(io.BytesIO(ico_bytes())).format == "ICO"
    assert Image.open(io.BytesIO(psd_bytes())).format == "PSD"
    assert EpsImagePlugin.EpsImageFile._open is not None


def test_eps_psd_and_ico_in_a_zip_are_named_and_never_decoded(audit_home, stored_counts, tmp_path, plugin_spy):
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", _png(tmp_path))
        zf.writestr("page.eps", eps_bytes())
        zf.writestr("layers.psd", psd_bytes())
        zf.writestr("icon.ico", ico_bytes())
    index = _index(tmp_path, [["ok.png", "a"], ["page.eps", "b"], ["layers.psd", "a"], ["icon.ico", "b"]])
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_image_dataset("bad", archive, index),
                           f"index.csv row 3: page.eps {ACCEPTED}", f"index.csv row 4: layers.psd {ACCEPTED}",
                           f"index.csv row 5: icon.ico {ACCEPTED}")
    assert plugin_spy == []


def test_a_concept_zip_with_an_eps_is_refused_without_ghostscript(audit_home, stored_counts, tmp_path, plugin_spy):
    archive = tmp_path / "concept.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", _png(tmp_path, 1))
        zf.writestr("b.eps", eps_bytes())
    _expect_nothing_stored(audit_home, stored_counts, lambda: import_concept_set("stripes", archive),
                           f"file b.eps: b.eps {ACCEPTED}")
    assert plugin_spy == []


def test_a_mask_in_another_format_is_named_and_never_decoded(audit_home, stored_counts, tmp_path, plugin_spy):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png(tmp_path, 2))
    (folder / "m.ico").write_bytes(ico_bytes())
    index = _index(tmp_path, [["a.png", "x", "m.ico"]], header=("path", "label", "mask"))
    _expect_nothing_stored(audit_home, stored_counts,
                           lambda: import_image_dataset("bad", folder, index, mask_column="mask"),
                           f"index.csv row 2: mask m.ico {ACCEPTED}")
    assert plugin_spy == []


def test_every_accepted_format_still_imports(audit_home, tmp_path):
    from PIL import Image

    folder: Path = tmp_path / "imgs"
    folder.mkdir()
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    names = []
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif"),
                     ("WEBP", "webp")):
        Image.fromarray(arr).save(folder / f"x.{ext}", format=fmt)
        names.append([f"x.{ext}", "a"])
    out = import_image_dataset("ok", folder, _index(tmp_path, names))
    assert out["samples"] == 6
