"""Model loading refuses unsafe or broken input with a one-line reason and never runs a pickle payload."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from audit.models.handle import build_handle
from audit.models.loading import ModelLoadError, find_default_target_layer, load_state_dict_file
from audit.models.zoo import SmallCNN

SPEC = {"channels": 1, "height": 32, "width": 32, "mean": [0.0], "std": [1.0]}
LABELS = [str(i) for i in range(10)]


class Payload:
    """Unpickling this object would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_file(SmallCNN().state_dict(), str(path))
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_safetensors_loads_into_a_handle(tmp_path):
    h = build_handle(task="image-classification", fmt="state_dict", labels=LABELS, sha256="x",
                     path=_weights(tmp_path), architecture="small_cnn", input_spec=SPEC, device="cpu")
    assert not h.module.training
    assert h.target_layer == "features"  # the last block's output, as Grad-CAM uses it
    assert h.preprocess(torch.rand(1, 32, 32)).shape == (1, 1, 32, 32)
    assert h.device.type == "cpu"


def test_state_dict_pt_loads_weights_only(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(SmallCNN().state_dict(), path)
    assert set(load_state_dict_file(path)) == set(SmallCNN().state_dict())


@pytest.mark.parametrize("via", ["torch.save", "pickle.dump"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, via):
    marker = tmp_path / "PWNED"
    path = tmp_path / "model.pt"
    obj = {"weight": torch.zeros(2), "evil": Payload(str(marker))}
    if via == "torch.save":
        torch.save(obj, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
    with pytest.raises(ModelLoadError) as exc:
        load_state_dict_file(path)
    msg = _one_line(exc)
    assert "refused" in msg and "safetensors" in msg
    assert not marker.exists(), "the pickle payload ran"


def test_pickled_full_model_is_refused(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(SmallCNN(), path)
    with pytest.raises(ModelLoadError, match="needs code to unpickle"):
        load_state_dict_file(path)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_corrupt_files_get_one_line(tmp_path, damage):
    good = _weights(tmp_path).read_bytes()
    path = tmp_path / "bad.safetensors"
    path.write_bytes({"empty": b"", "truncated": good[: len(good) // 2], "garbage": os.urandom(256)}[damage])
    with pytest.raises(ModelLoadError) as exc:
        load_state_dict_file(path)
    _one_line(exc)


def test_truncated_torch_zip(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(SmallCNN().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError) as exc:
        load_state_dict_file(path)
    _one_line(exc)


def test_wrong_architecture_for_weights(tmp_path):
    with pytest.raises(ModelLoadError, match="do not fit architecture 'resnet18'") as exc:
        build_handle(task="image-classification", fmt="state_dict", labels=LABELS, sha256="x",
                     path=_weights(tmp_path), architecture="resnet18", arch_kwargs={"num_classes": 10},
                     input_spec=SPEC, device="cpu")
    _one_line(exc)


@pytest.mark.parametrize("labels, match", [([], "labels are missing"), (["a", "b"], "10 outputs but 2 labels"),
                                           (["a"] * 10, "duplicates")])
def test_label_problems(tmp_path, labels, match):
    with pytest.raises(ModelLoadError, match=match):
        build_handle(task="image-classification", fmt="state_dict", labels=labels, sha256="x",
                     path=_weights(tmp_path), architecture="small_cnn", input_spec=SPEC, device="cpu")


def test_input_spec_that_does_not_fit(tmp_path):
    spec = dict(SPEC, channels=3)
    with pytest.raises(ModelLoadError, match="does not fit the model"):
        build_handle(task="image-classification", fmt="state_dict", labels=LABELS, sha256="x",
                     path=_weights(tmp_path), architecture="small_cnn", input_spec=spec, device="cpu")


def test_torchscript_round_trip_and_misuse(tmp_path):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(SmallCNN().eval()), str(path))
    h = build_handle(task="image-classification", fmt="torchscript", labels=LABELS, sha256="x", path=path,
                     input_spec=SPEC, device="cpu")
    assert h.module(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(ModelLoadError, match="TorchScript archive"):
        load_state_dict_file(path)


def test_nan_outputs_are_refused(tmp_path):
    state = SmallCNN().state_dict()
    state["fc.bias"] = torch.full_like(state["fc.bias"], float("nan"))
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelLoadError, match="NaN"):
        build_handle(task="image-classification", fmt="state_dict", labels=LABELS, sha256="x", path=path,
                     architecture="small_cnn", input_spec=SPEC, device="cpu")


def test_hf_dir_without_safetensors_or_with_remote_code(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=2)
    d = tmp_path / "hf"
    BertForSequenceClassification(cfg).save_pretrained(d, safe_serialization=False)
    for f in d.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelLoadError, match="no .safetensors"):
        build_handle(task="text-classification", fmt="hf", labels=["a", "b"], sha256="x", path=d)


def test_default_target_layer_for_torchvision_cnn():
    import torchvision

    assert find_default_target_layer(torchvision.models.resnet18(num_classes=3)) == "layer4"  # after the residual add
