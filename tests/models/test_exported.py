"""torch.export archives (.pt2): registered with their module hierarchy, so layer methods and hooks work;
read as plain data first, so no pickle, graph target or shape expression in the file runs code."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from audit.attribution import attribute
from audit.models.exported import load_exported
from audit.models.loading import ModelLoadError
from audit.services.core.registry import ModelSource, RegistryError, load_handle, register_version
from tests.models.model_files import LABELS, SHAPE, SPEC, registry_rows, write_model_files


class Payload:
    """Unpickling this object creates a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_model_files(tmp_path_factory.mktemp("exported"))


def _register(path: Path, version: str = "1"):
    return register_version(family="tiny-export", version=version, task="image-classification",
                            source=ModelSource("exported", path), labels=LABELS, input_spec=SPEC)


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    """A copy of the archive with some members (named relative to its root folder) replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            rel = info.filename[len(root) + 1:]
            zout.writestr(info.filename, replace.get(rel, zin.read(info.filename)))
    return dst


def _member(path: Path, rel: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        root = zf.namelist()[0].split("/", 1)[0]
        return zf.read(f"{root}/{rel}")


def _one_line_refusal(exc: pytest.ExceptionInfo, name: str) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg and name in msg
    return msg


def test_archive_registers_with_its_layers_and_predicts_like_the_module(audit_home, files):
    row = _register(files.exported)
    assert row["format"] == "exported" and row["architecture"] == "TinyResNet (torch.export)"
    assert row["target_layer"] == "stage2"  # found on the unflattened hierarchy, as on the eager module
    assert row["provenance"]["torch_version"] == torch.__version__.split("+")[0]
    handle = load_handle("tiny-export", "1", device="cpu")
    names = {n for n, _ in handle.module.named_modules()}
    assert {"stem", "stage1.conv1", "stage2.bn2", "head"} <= names
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(handle.module(x), files.model(x), atol=1e-5)


def test_gradcam_and_hooks_on_the_archive_equal_the_eager_module(audit_home, files):
    _register(files.exported)
    module = load_handle("tiny-export", "1", device="cpu").module
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([0, 3, 5, 9])
    ours = attribute(module, x, targets, methods=["gradcam", "saliency"])
    eager = attribute(files.model, x, targets, methods=["gradcam", "saliency"])
    assert ours["gradcam"].abs().sum() > 0
    assert torch.allclose(ours["gradcam"], eager["gradcam"], atol=1e-5)
    assert torch.allclose(ours["saliency"], eager["saliency"], atol=1e-5)
    seen = []
    handle = module.stage1.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    try:
        module(x)
    finally:
        handle.remove()
    assert seen == [torch.Size([4, 8, 32, 32])]


def _payload_in_sample_inputs(files, tmp_path: Path, marker: Path) -> Path:
    buf = io.BytesIO()
    torch.save(((Payload(str(marker)),), {}), buf)
    return _rewrite(files.exported, tmp_path / "evil.pt2", {"data/sample_inputs/model.pt": buf.getvalue()})


def _payload_as_pickled_weight(files, tmp_path: Path, marker: Path) -> Path:
    config = json.loads(_member(files.exported, "data/weights/model_weights_config.json"))
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    buf = io.BytesIO()
    torch.save(Payload(str(marker)), buf)
    return _rewrite(files.exported, tmp_path / "evil.pt2", {
        "data/weights/model_weights_config.json": json.dumps(config).encode(),
        f"data/weights/{meta['path_name']}": buf.getvalue()})


def _pickled_full_model(files, tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "full.pt2"
    torch.save({"model": files.model, "evil": Payload(str(marker))}, path)
    return path


@pytest.mark.parametrize("make", [_payload_in_sample_inputs, _payload_as_pickled_weight, _pickled_full_model])
def test_archive_whose_pickle_would_run_code_is_refused_and_nothing_runs(audit_home, files, tmp_path, make):
    marker = tmp_path / "PWNED"
    path = make(files, tmp_path, marker)
    before = registry_rows()
    with pytest.raises(ModelLoadError) as exc:
        _register(path)
    _one_line_refusal(exc, path.name)
    assert not marker.exists(), "the payload ran"
    assert registry_rows() == before
    if make is _payload_in_sample_inputs:  # the payload is live: torch's own loader runs it
        try:
            torch.export.load(str(path))
        except Exception:  # noqa: BLE001 - what it does after running the payload does not matter here
            pass
        assert marker.exists()


@pytest.mark.parametrize("member, edit, needle", [
    ("models/model.json", lambda t: t.replace('"torch.ops.aten.linear.default"', '"torch.serialization.os.system"'),
     "torch.serialization.os.system"),
    ("models/model.json", lambda t: t.replace("Symbol('s", "__import__('os').system('s"), "shape expression"),
])
def test_archive_whose_graph_names_python_code_is_refused(audit_home, files, tmp_path, member, edit, needle):
    text = _member(files.exported, member).decode()
    changed = edit(text)
    assert changed != text
    path = _rewrite(files.exported, tmp_path / "graph.pt2", {member: changed.encode()})
    with pytest.raises(ModelLoadError, match="refused") as exc:
        load_exported(path)
    assert needle in _one_line_refusal(exc, "graph.pt2")


def _random_bytes(files, tmp_path):
    path = tmp_path / "random.pt2"
    path.write_bytes(os.urandom(4096))
    return path


def _safetensors(files, tmp_path):
    path = tmp_path / "weights.pt2"
    path.write_bytes(files.weights.read_bytes())
    return path


def _other_zip(files, tmp_path):
    path = tmp_path / "photos.pt2"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("photos/a.txt", "not a model")
        zf.writestr("photos/b.json", "{}")
    return path


def _state_dict_zip(files, tmp_path):
    path = tmp_path / "state.pt2"
    torch.save(files.model.state_dict(), path)
    return path


def _empty(files, tmp_path):
    path = tmp_path / "empty.pt2"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("make", [_random_bytes, _safetensors, _other_zip, _state_dict_zip, _empty])
def test_pt2_that_is_something_else_is_refused_with_one_line(audit_home, files, tmp_path, make):
    path = make(files, tmp_path)
    before = registry_rows()
    with pytest.raises((ModelLoadError, RegistryError)) as exc:
        _register(path)
    _one_line_refusal(exc, path.name)
    assert registry_rows() == before


def test_archive_fixed_to_one_batch_size_is_refused_with_the_fix(audit_home, files, tmp_path):
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(files.model, (torch.zeros(1, *SHAPE),)), str(path))
    before = registry_rows()
    with pytest.raises(ModelLoadError, match="dynamic batch") as exc:
        _register(path)
    _one_line_refusal(exc, "fixed.pt2")
    assert registry_rows() == before


def test_tcav_on_the_archive_equals_the_eager_module(audit_home, files):
    from audit.concepts import run_tcav

    _register(files.exported)
    module = load_handle("tiny-export", "1", device="cpu").module
    g = torch.Generator().manual_seed(9)
    concept = torch.rand(12, *SHAPE, generator=g) * 0.3 + torch.linspace(0, 0.7, 32).view(1, 1, 1, 32)
    randoms = [torch.rand(12, *SHAPE, generator=g) for _ in range(3)]
    inputs = torch.rand(10, *SHAPE, generator=g)
    ours = run_tcav(module, layers=["stage1", "stage2"], concept=concept, randoms=randoms, inputs=inputs, target=2,
                    seed=0)
    eager = run_tcav(files.model, layers=["stage1", "stage2"], concept=concept, randoms=randoms, inputs=inputs,
                     target=2, seed=0)
    for layer in ("stage1", "stage2"):
        a, b = ours.layers[layer], eager.layers[layer]
        assert a.score == pytest.approx(b.score) and a.cav_accuracy == pytest.approx(b.cav_accuracy)
        assert a.random_scores == pytest.approx(b.random_scores) and a.p_value == pytest.approx(b.p_value)


def test_feature_maps_of_the_archive_are_the_eager_modules(audit_home, files):
    from audit.services.core.datasets import add_image_dataset
    from audit.services.analyses.explanations.service import explain_image
    from audit.services.analyses.explanations.views import feature_maps

    _register(files.exported, "exp")
    register_version(family="tiny-export", version="eager", task="image-classification",
                     source=ModelSource("import_path", files.weights, "tests.models.custom_arch:TinyResNet", {}),
                     labels=LABELS, input_spec=SPEC)
    add_image_dataset("ref", torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(10)), [0], [{}],
                      label_names=LABELS)
    views = {}
    for version in ("exp", "eager"):
        exp = explain_image("tiny-export", version, methods=["saliency"], dataset="ref", sample_key="ref-0000")
        views[version] = feature_maps(exp)
    assert [v["layer"] for v in views["exp"]] == [v["layer"] for v in views["eager"]] == \
        ["stage1.conv1", "stage1.conv2", "down", "stage2.conv1", "stage2.conv2"][-4:]
    for ours, theirs in zip(views["exp"], views["eager"]):
        assert ours["channels"] == theirs["channels"]
        assert torch.allclose(torch.from_numpy(ours["maps"]), torch.from_numpy(theirs["maps"]), atol=1e-5)


class PoolLast(torch.nn.Module):
    """A body of convolutions, then a top-level max-pool before the head: the default layer is the body."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.MaxPool2d(2)
        self.head = torch.nn.Linear(4 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.body(x)), 1))


def test_the_default_layer_skips_pooling_on_the_archive_as_on_the_module(tmp_path):
    from audit.models.loading import find_default_target_layer

    model = PoolLast().eval()
    path = tmp_path / "pool.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(2, *SHAPE),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), str(path))
    assert find_default_target_layer(model, SHAPE) == "body"
    assert find_default_target_layer(load_exported(path), SHAPE) == "body"


def test_archive_and_onnx_uploads_from_the_browser_take_the_same_checks(audit_home, files):
    from audit.services.governance.principals import Principal
    from audit.services.core.registry import register_upload

    admin = Principal("admin", "admin")
    common = dict(actor=admin, family="uploaded", task="image-classification", labels=LABELS, input_spec=SPEC)
    row = register_upload(filename="model.pt2", data=files.exported.read_bytes(), fmt="exported", version="1", **common)
    assert row["format"] == "exported" and row["target_layer"] == "stage2"
    row = register_upload(filename="model.onnx", data=files.onnx.read_bytes(), fmt="onnx", version="2", **common)
    assert row["provenance"]["onnx_check"]["max_abs_diff"] <= 1e-4
    before = registry_rows()
    with pytest.raises(ModelLoadError, match="not a torch.export archive"):
        register_upload(filename="model.pt2", data=files.weights.read_bytes(), fmt="exported", version="3", **common)
    assert registry_rows() == before
