"""Issue 22: the Explain upload decoder (``audit.images.decode_image``) answers every hostile file with an
ImageError: an image that declares 400 megapixels, and formats the README does not list (never even tried)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from audit.images import ALLOWED_FORMATS, ImageError, decode_image
from tests.datasets.test_import_formats import eps_bytes, ico_bytes, plugin_spy, psd_bytes  # noqa: F401


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width`` x ``height`` pixels and holds no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_a_400_megapixel_header_is_a_clear_image_error():
    data = png_header(20000, 20000)
    assert len(data) < 100
    with pytest.raises(ImageError, match="too many pixels; the limit is 16777216 pixels"):
        decode_image(data)


@pytest.mark.parametrize("action", ["ignore", "error"])
def test_a_header_over_pillows_warning_threshold_is_refused_too(action):
    """100 Mpx: Pillow only warns; refused by our limit whether warnings are ignored or raised."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="pixels"):
            decode_image(png_header(10000, 10000))


def test_the_explain_service_turns_it_into_a_value_error(tiny_image):
    from audit.services.analyses.explanations.service import explain_image

    with pytest.raises(ValueError, match="too many pixels"):
        explain_image("tiny", "1", methods=["saliency"], image_bytes=png_header(20000, 20000))


@pytest.mark.parametrize("make", [eps_bytes, psd_bytes, ico_bytes])
def test_other_formats_are_refused_without_trying_their_plugin(make, plugin_spy):  # noqa: F811
    with pytest.raises(ImageError, match="not an image in an accepted format"):
        decode_image(make())
    assert plugin_spy == []


def test_image_open_is_given_the_allowed_formats(monkeypatch):
    from PIL import Image

    seen = []
    real_open = Image.open

    def spy(fp, mode="r", formats=None):  # noqa: ANN001, ANN202
        seen.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(Image, "open", spy)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(buf, format="PNG")
    decode_image(buf.getvalue())
    assert seen and all(f is not None and set(f) == set(ALLOWED_FORMATS) for f in seen)
