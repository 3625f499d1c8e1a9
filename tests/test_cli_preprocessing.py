"""`register` records the model's own preprocessing: --resize/--crop/--interpolation/--pixel-range, and
torchvision's declared transform and class names with --torchvision-weights; bad combinations exit with one
line and store nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from audit.cli import main


def _weights(tmp_path: Path, arch: str = "small_cnn", **kwargs) -> Path:
    from audit.models.zoo import build_architecture

    torch.manual_seed(0)
    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in build_architecture(arch, **kwargs).state_dict().items()}, str(path))
    return path


def _versions(capsys) -> list[dict]:  # noqa: ANN001
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    return [v for f in json.loads(capsys.readouterr().out) for v in f["versions"]]


def test_resize_and_crop_are_stored_and_printed_in_the_model_section(audit_home, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in range(10)))
    assert main(["register", "--family", "f", "--version", "1", "--task", "image-classification",
                 "--arch", "small_cnn", "--arch-kwargs", '{"width": 8, "in_channels": 3}',
                 "--weights", str(_weights(tmp_path, width=8, in_channels=3)), "--labels", str(labels),
                 "--resize", "40", "--crop", "32,32", "--interpolation", "bicubic",
                 "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]) == 0
    spec = _versions(capsys)[0]["input_spec"]
    assert spec == {"channels": 3, "height": 32, "width": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
                    "resize_mode": "shorter", "resize": 40, "interpolation": "bicubic"}
    from audit.report.sections.base import ModelFacts
    from audit.report.sections.intended_use import intended_use_section
    from audit.services.core.registry import get_version

    sec = intended_use_section(ModelFacts("f", "1", "", get_version("f", "1")))
    rows = dict(r for b in sec.blocks if hasattr(b, "rows") for r in b.rows if len(r) == 2)
    assert rows["Preprocessing"].startswith("resize shorter side to 40, centre-crop 32x32, bicubic")


def test_torchvision_weights_give_the_declared_transform_and_class_names(audit_home, tmp_path, capsys):
    assert main(["register", "--family", "r", "--version", "1", "--task", "image-classification",
                 "--arch", "resnet18", "--weights", str(_weights(tmp_path, "resnet18")),
                 "--torchvision-weights", "ResNet18_Weights.IMAGENET1K_V1"]) == 0
    v = _versions(capsys)[0]
    assert v["input_spec"]["resize"] == 256 and (v["input_spec"]["height"], v["input_spec"]["width"]) == (224, 224)
    assert v["input_spec"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert len(v["labels"]) == 1000 and v["labels"][0] == "tench"


@pytest.mark.parametrize("extra, needle", [
    (["--crop", "32,32"], "--crop H,W needs --resize"),
    (["--resize", "40", "--crop", "32"], "--crop must be H,W"),
    (["--input-size", "3,30,30", "--resize", "40", "--crop", "32,32"], "disagrees with --input-size"),
    (["--resize", "40", "--crop", "32,32", "--pixel-range", "0"], "--pixel-range must be LOW,HIGH"),
    (["--torchvision-weights", "NoSuch_Weights.X"], "is not a torchvision weight set"),
])
def test_bad_preprocessing_flags_exit_with_one_line_and_store_nothing(audit_home, tmp_path, capsys, extra, needle):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in range(10)))
    rc = main(["register", "--family", "f", "--version", "1", "--task", "image-classification",
               "--arch", "small_cnn", "--arch-kwargs", '{"width": 8, "in_channels": 3}',
               "--weights", str(_weights(tmp_path, width=8, in_channels=3)), "--labels", str(labels), *extra])
    err = capsys.readouterr().err
    assert rc != 0 and needle in err and len(err.strip().splitlines()) == 1
    assert _versions(capsys) == []
