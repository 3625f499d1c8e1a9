"""Architectures named by import path ('package.module:Callable') with safetensors or state-dict weights:
the registry records where the code came from, the model predicts and explains as the module does, and
every bad input is refused with one line and nothing written."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import tests.models.custom_arch as custom_arch
from audit.attribution import attribute
from audit.models.loading import ModelLoadError
from audit.services.governance.principals import Principal
from audit.services.core.registry import ModelSource, RegistryError, load_handle, register_upload, register_version
from audit.services.governance.settings import IMPORT_PATH_UPLOADS, set_setting
from tests.models.model_files import IMPORT_PATH, LABELS, SHAPE, SPEC, registry_rows

ADMIN = Principal("admin", "admin")


@pytest.fixture()
def weights(tmp_path):
    model = custom_arch.trained(1)
    path = tmp_path / "tiny.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


def _register(path: Path, arch: str = IMPORT_PATH, kwargs=None, version: str = "1", spec=SPEC, labels=LABELS):
    return register_version(family="tiny-import", version=version, task="image-classification",
                            source=ModelSource("import_path", path, arch, kwargs or {}), labels=labels, input_spec=spec)


def test_import_path_registers_its_provenance_and_predicts_like_the_module(audit_home, weights):
    model, path = weights
    row = _register(path)
    assert row["format"] == "import_path" and row["architecture"] == IMPORT_PATH
    source = Path(custom_arch.__file__).read_bytes()
    assert row["provenance"] == {"import_path": IMPORT_PATH, "distribution": None, "distribution_version": None,
                                 "source_file": "custom_arch.py", "source_sha256": hashlib.sha256(source).hexdigest()}
    assert row["target_layer"] == "stage2"
    handle = load_handle("tiny-import", "1", device="cpu")
    assert type(handle.module) is custom_arch.TinyResNet
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(handle.module(x).argmax(1), model(x).argmax(1))
        assert torch.allclose(handle.module(x), model(x), atol=1e-6)
    targets = torch.tensor([1, 2, 3, 4, 5])
    ours = attribute(handle.module, x, targets, methods=["gradcam"])["gradcam"]
    eager = attribute(model, x, targets, methods=["gradcam"])["gradcam"]
    assert ours.abs().sum() > 0 and torch.allclose(ours, eager, atol=1e-6)


def test_a_factory_with_keyword_arguments_from_a_state_dict_file(audit_home, tmp_path):
    model = custom_arch.trained(2, width=4)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    row = _register(path, "tests.models.custom_arch:tiny_resnet", {"width": 4})
    assert row["architecture"] == "tests.models.custom_arch:tiny_resnet"
    handle = load_handle("tiny-import", "1", device="cpu")
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(handle.module(x), model(x), atol=1e-6)


def test_an_installed_distribution_is_named_with_its_version(audit_home, tmp_path):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "squeeze.safetensors"
    save_file(torchvision.models.squeezenet1_1(num_classes=3).state_dict(), str(path))
    spec = {"channels": 3, "height": 64, "width": 64, "mean": [0.5], "std": [0.25]}
    row = _register(path, "torchvision.models.squeezenet:squeezenet1_1", {"num_classes": 3}, spec=spec,
                    labels=["a", "b", "c"])
    assert row["provenance"]["distribution"] == "torchvision"
    assert row["provenance"]["distribution_version"] == importlib.metadata.version("torchvision")
    assert row["provenance"]["source_file"] == "squeezenet.py"


@pytest.mark.parametrize("arch, kwargs, missing_file, needle", [
    (IMPORT_PATH, {}, True, "not found"),
    ("no_such_package.models:Net", {}, False, "'no_such_package' is not installed"),
    ("tests.models.custom_arch:Nope", {}, False, "has no attribute 'Nope'"),
    ("tests.models.custom_arch:NOT_A_CALLABLE", {}, False, "not a callable"),
    ("tests.models.custom_arch:not_a_module", {}, False, "not a torch.nn.Module"),
    ("tests.models.custom_arch", {}, False, "package.module:Callable"),
    (IMPORT_PATH, {"width": 4}, False, "do not fit"),
    (IMPORT_PATH, {"depth": 3}, False, "unexpected keyword argument"),
])
def test_bad_import_paths_and_weights_are_refused_with_nothing_written(audit_home, weights, tmp_path, arch, kwargs,
                                                                        missing_file, needle):
    _, path = weights
    if missing_file:
        path = tmp_path / "absent.safetensors"
    before = registry_rows()
    with pytest.raises((ModelLoadError, RegistryError)) as exc:
        _register(path, arch, kwargs)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg
    assert registry_rows() == before


def test_a_version_whose_architecture_source_changed_is_not_loaded(audit_home, tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    module_file = package / "edited_arch_for_test.py"
    module_file.write_text(Path(custom_arch.__file__).read_text())
    monkeypatch.syspath_prepend(str(package))
    model = custom_arch.trained(3)
    weights = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(weights))
    _register(weights, "edited_arch_for_test:TinyResNet")
    load_handle("tiny-import", "1", device="cpu")  # unchanged source: loads
    module_file.write_text(module_file.read_text() + "\n# a later release\n")
    with pytest.raises(ModelLoadError, match="changed since this version was registered"):
        load_handle("tiny-import", "1", device="cpu")


def test_browser_uploads_by_import_path_need_an_administrators_setting(audit_home, weights):
    _, path = weights
    kwargs = dict(filename=path.name, data=path.read_bytes(), fmt="import_path", actor=ADMIN, family="tiny-import",
                  version="1", task="image-classification", labels=LABELS, input_spec=SPEC, architecture=IMPORT_PATH,
                  arch_kwargs={})
    before = registry_rows()
    with pytest.raises(RegistryError, match="disabled"):
        register_upload(**kwargs)
    assert registry_rows() == before
    set_setting(IMPORT_PATH_UPLOADS, True, actor=ADMIN)
    assert register_upload(**kwargs)["provenance"]["import_path"] == IMPORT_PATH


def test_the_report_model_section_names_the_architectures_source(audit_home, weights):
    from audit.report.content import Table
    from audit.report.sections.base import ModelFacts
    from audit.report.sections.intended_use import intended_use_section
    from audit.services.core.registry import get_version

    _register(weights[1])
    info = get_version("tiny-import", "1")
    section = intended_use_section(ModelFacts("tiny-import", "1", "", info))
    rows = {r[0]: r[1] for b in section.blocks if isinstance(b, Table) for r in b.rows}
    assert rows["Architecture source"].startswith(f"{IMPORT_PATH} from no installed distribution")
    assert info["provenance"]["source_sha256"] in rows["Architecture source"]


def test_the_pages_weights_upload_with_an_import_path_is_gated_too(audit_home, weights):
    _, path = weights
    with pytest.raises(RegistryError, match="import path are disabled"):
        register_upload(filename=path.name, data=path.read_bytes(), fmt="state_dict", actor=ADMIN,
                        family="tiny-import", version="1", task="image-classification", labels=LABELS,
                        input_spec=SPEC, architecture=IMPORT_PATH, arch_kwargs={})
    assert registry_rows()[0] == 0
