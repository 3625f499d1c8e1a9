"""Property-based fuzzing: every malformed model file or image gets a clear error of the documented
type, and nothing already stored changes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from audit.images import ImageError, decode_image
from audit.models.loading import ModelLoadError, load_state_dict_file
from audit.models.zoo import SmallCNN

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TRIED = {"model": 0, "image": 0, "upload": 0}


def _valid_weights() -> bytes:
    return save(SmallCNN(width=4).state_dict())


def _valid_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


WEIGHTS = _valid_weights()
PNG = _valid_png()


def _mutations(base: bytes):
    return st.one_of(
        st.binary(max_size=2048),
        st.integers(0, len(base)).map(lambda n: base[:n]),  # truncations
        st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
            lambda edits: _patch(base, edits)),
    )


def _patch(base: bytes, edits) -> bytes:
    data = bytearray(base)
    for pos, val in edits:
        data[pos] = val
    return bytes(data)


@FUZZ
@given(data=_mutations(WEIGHTS))
def test_weight_files_fail_only_with_model_load_error(tmp_path_factory, data):
    path = Path(tmp_path_factory.mktemp("fuzz")) / "w.safetensors"
    path.write_bytes(data)
    TRIED["model"] += 1
    try:
        state = load_state_dict_file(path)
    except ModelLoadError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


@FUZZ
@given(data=_mutations(PNG))
def test_images_fail_only_with_image_error(data):
    TRIED["image"] += 1
    try:
        img = decode_image(data)
    except ImageError as exc:
        assert str(exc)
        return
    assert img.size[0] > 0


def test_fuzzed_uploads_store_nothing_when_refused(audit_home, tmp_path):
    """A refused upload writes no artifact and no row; an accepted one (a mutation that only changed
    weight values) becomes a new version; the version stored first never changes."""
    from hypothesis import given as given_

    from audit.services.governance.principals import Principal
    from audit.services.core.registry import ModelSource, list_models, register_upload, register_version

    path = tmp_path / "w.safetensors"
    path.write_bytes(WEIGHTS)
    spec = {"channels": 1, "height": 32, "width": 32, "mean": [0.0], "std": [1.0]}
    labels = [str(i) for i in range(10)]
    first = register_version(family="f", version="1", task="image-classification",
                             source=ModelSource("state_dict", path, "small_cnn", {"width": 4}), labels=labels,
                             input_spec=spec)

    def artifacts() -> set[str]:
        return {p.name for p in (audit_home / "artifacts").rglob("*") if p.is_file()}

    outcome = {"refused": 0, "accepted": 0}

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given_(data=_mutations(WEIGHTS))
    def attempt(data):
        TRIED["upload"] += 1
        before_models, before_files = list_models(), artifacts()
        try:
            register_upload(filename="w.safetensors", data=data, fmt="state_dict", actor=Principal("a", "admin"),
                            family="f", version=f"u{TRIED['upload']}", task="image-classification", labels=labels,
                            input_spec=spec, architecture="small_cnn", arch_kwargs={"width": 4})
        except ValueError as exc:
            assert str(exc)
            outcome["refused"] += 1
            assert list_models() == before_models
            assert artifacts() == before_files
            return
        outcome["accepted"] += 1

    attempt()
    assert outcome["refused"] > 0
    assert list_models()[0]["versions"][0] == first
    print(f"fuzz cases tried: {TRIED}; uploads refused/accepted: {outcome}")


def test_a_png_with_a_broken_chunk_is_an_image_error():
    """Found by the fuzzer: Pillow reports an empty chunk after IDAT as SyntaxError, not OSError."""
    data = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x00\x00\x00\x00:\x98\xa0\xbd"
            b"\x00\x00\x00\x00IDAT\x00\x00\x00\x00\x00\x00\x00\x00")
    with pytest.raises(ImageError, match="corrupt or truncated|could not be read"):
        decode_image(data)
