"""ONNX models: converted with onnx2torch and checked against onnxruntime before anything is stored; the
largest logit difference is kept with the version, and a model that deviates or does not convert is
refused with the operators concerned."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from audit.models.loading import ModelLoadError
from audit.services.core.registry import ModelSource, RegistryError, load_handle, register_version
from tests.models.model_files import LABELS, SHAPE, SPEC, registry_rows, write_model_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_model_files(tmp_path_factory.mktemp("onnx"))


def _register(path: Path, version: str = "1", **source):
    return register_version(family="tiny-onnx", version=version, task="image-classification",
                            source=ModelSource("onnx", path, **source), labels=LABELS, input_spec=SPEC)


def _runtime_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_onnx_registers_with_its_check_and_predicts_like_the_module(audit_home, files):
    row = _register(files.onnx)
    check = row["provenance"]["onnx_check"]
    assert check["inputs"].startswith("8 seeded random inputs") and check["samples"] == 8
    assert 0 <= check["max_abs_diff"] <= check["tolerance"] * check["logit_scale"]
    assert check["tolerance"] == 1e-4 and check["converter"].startswith("onnx2torch")
    handle = load_handle("tiny-onnx", "1", device="cpu")
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = handle.module(x)
        assert torch.allclose(ours, files.model(x), atol=1e-5)
    assert np.abs(ours.numpy() - _runtime_logits(files.onnx, x)).max() <= 1e-4
    assert handle.target_layer in dict(handle.module.named_modules())


def test_the_check_runs_on_the_reference_set_when_one_is_named(audit_home, files):
    from audit.services.core.datasets import add_image_dataset

    images = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(6))
    add_image_dataset("ref", images, [0, 1, 2, 3, 4], [{} for _ in range(5)], label_names=LABELS)
    check = _register(files.onnx, check_dataset="ref")["provenance"]["onnx_check"]
    assert check["inputs"] == "reference set ref (5 images)" and check["samples"] == 5
    handle = load_handle("tiny-onnx", "1", device="cpu")
    x = torch.cat([handle.preprocess(img) for img in images])
    with torch.no_grad():
        expected = np.abs(handle.module(x).numpy() - _runtime_logits(files.onnx, x)).max()
    assert check["max_abs_diff"] == pytest.approx(float(expected), abs=1e-7)


def test_a_conversion_that_deviates_is_refused_with_the_operator_that_differs(audit_home, files, monkeypatch):
    import audit.models.onnx_import as onnx_import

    real = onnx_import.convert_onnx

    def perturbed(path):
        module = real(path)
        conv = dict(module.named_modules())["stage1/conv2/Conv"]
        with torch.no_grad():
            conv.weight.add_(0.05)
        return module

    monkeypatch.setattr(onnx_import, "convert_onnx", perturbed)
    before = registry_rows()
    with pytest.raises(ModelLoadError) as exc:
        _register(files.onnx)
    msg = str(exc.value)
    assert "deviates from onnxruntime" in msg and "\n" not in msg
    assert msg.split("outputs first differ at ")[1].startswith("Conv (/stage1/conv2/Conv)")
    assert registry_rows() == before


def test_an_operator_without_converter_is_named(audit_home, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *SHAPE])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example", name="frob")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    before = registry_rows()
    with pytest.raises(ModelLoadError, match=r"no converter for operator\(s\) Frobnicate \(com.example\)"):
        _register(path)
    assert registry_rows() == before


def _random(files, tmp_path):
    path = tmp_path / "random.onnx"
    path.write_bytes(os.urandom(2048))
    return path


def _safetensors(files, tmp_path):
    path = tmp_path / "weights.onnx"
    path.write_bytes(files.weights.read_bytes())
    return path


def _pt2(files, tmp_path):
    path = tmp_path / "archive.onnx"
    path.write_bytes(files.exported.read_bytes())
    return path


def _text(files, tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 20)
    return path


def _external_data(files, tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(onnx.load(str(files.onnx)), str(path), save_as_external_data=True, location="external.bin",
              size_threshold=0)
    return path


@pytest.mark.parametrize("make", [_random, _safetensors, _pt2, _text, _external_data])
def test_onnx_file_that_is_something_else_is_refused_with_one_line(audit_home, files, tmp_path, make):
    path = make(files, tmp_path)
    before = registry_rows()
    with pytest.raises((ModelLoadError, RegistryError)) as exc:
        _register(path)
    msg = str(exc.value)
    assert path.name in msg and "\n" not in msg
    assert registry_rows() == before


def test_the_report_model_section_prints_the_stored_difference(audit_home, files):
    from audit.report.content import Table
    from audit.report.sections.base import ModelFacts
    from audit.report.sections.intended_use import intended_use_section
    from audit.services.core.registry import get_version

    _register(files.onnx)
    info = get_version("tiny-onnx", "1")
    section = intended_use_section(ModelFacts("tiny-onnx", "1", "", info))
    rows = {r[0]: r[1] for b in section.blocks if isinstance(b, Table) for r in b.rows}
    stored = info["provenance"]["onnx_check"]["max_abs_diff"]
    assert f"largest logit difference {stored:.3g} against onnxruntime" in rows["ONNX conversion check"]
    assert "8 seeded random inputs" in rows["ONNX conversion check"]
