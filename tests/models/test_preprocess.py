"""A version's declared preprocessing equals the transforms it was declared from: torchvision's
``ImageClassification`` (on PIL images and on tensors) and Hugging Face image processors, on non-square
images of several sizes; regions move with the same geometry."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audit.models.loading import hf_image_input_spec
from audit.models.preprocess import InputSpec, PreprocessError

SIZES = [(251, 173), (141, 300), (97, 96), (256, 255), (640, 427)]  # (width, height): odd and even margins
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _photo(width: int, height: int, seed: int):
    """A smooth image with texture (so resampling filters differ visibly), not a flat one."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xx / (5 + c) + yy / (7 + 2 * c)) for c in range(3)], -1) * 90 + 128
    noise = rng.normal(0, 25, base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _ours(spec: InputSpec, img) -> torch.Tensor:  # noqa: ANN001
    return spec.normalize(spec.prepare(img).unsqueeze(0))[0]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_shorter_side_and_centre_crop_equal_torchvision_on_pil_images(interpolation):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    mode = InterpolationMode.BILINEAR if interpolation == "bilinear" else InterpolationMode.BICUBIC
    theirs = ImageClassification(crop_size=224, resize_size=256, mean=MEAN, std=STD, interpolation=mode)
    spec = InputSpec(3, 224, 224, MEAN, STD, resize_mode="shorter", resize=256, interpolation=interpolation)
    for i, (w, h) in enumerate(SIZES):
        img = _photo(w, h, i)
        ref = theirs(img)
        ours = _ours(spec, img)
        assert ours.shape == ref.shape == (3, 224, 224)
        assert torch.equal(ours, ref), f"{w}x{h}: largest difference {(ours - ref).abs().max():.3g}"
    # not a tautology: the old stretch to 224x224 is far from it
    img = _photo(640, 427, 9)
    stretched = InputSpec(3, 224, 224, MEAN, STD)
    assert (_ours(stretched, img) - theirs(img)).abs().max() > 0.5


def test_the_tensor_backend_equals_torchvision_v2_on_uint8_tensors():
    from torchvision.transforms import v2
    from torchvision.transforms.v2.functional import pil_to_tensor

    theirs = v2.Compose([v2.Resize(112, antialias=True), v2.CenterCrop(95), v2.ToDtype(torch.float32, scale=True),
                         v2.Normalize(MEAN, STD)])
    spec = InputSpec(3, 95, 95, MEAN, STD, resize_mode="shorter", resize=112, backend="tensor")
    for i, (w, h) in enumerate(SIZES):
        img = _photo(w, h, i)
        ref = theirs(pil_to_tensor(img))
        assert torch.allclose(_ours(spec, img), ref, atol=1e-6, rtol=0)


def _hf_dir(tmp_path: Path, name: str, cfg: dict) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "preprocessor_config.json").write_text(json.dumps(cfg))
    return d


HF_CONFIGS = {
    "vit": {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 64, "width": 48},
            "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.4]},
    "deit": {"image_processor_type": "DeiTImageProcessor", "do_resize": True, "size": {"height": 72, "width": 72},
             "resample": 3, "do_center_crop": True, "crop_size": {"height": 64, "width": 64}, "do_rescale": True,
             "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": MEAN, "image_std": STD},
    "convnext": {"image_processor_type": "ConvNextImageProcessor", "do_resize": True, "size": {"shortest_edge": 56},
                 "crop_pct": 0.875, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
                 "do_normalize": True, "image_mean": MEAN, "image_std": STD},
}


@pytest.mark.parametrize("kind", sorted(HF_CONFIGS))
def test_a_hugging_face_processor_config_gives_the_processor_s_tensors(tmp_path, kind):
    from transformers import AutoImageProcessor

    d = _hf_dir(tmp_path, kind, HF_CONFIGS[kind])
    processor = AutoImageProcessor.from_pretrained(str(d), local_files_only=True)
    spec = InputSpec.from_dict(hf_image_input_spec(d))
    for i, (w, h) in enumerate(SIZES):
        img = _photo(w, h, i)
        ref = processor(images=img, return_tensors="pt")["pixel_values"][0]
        ours = _ours(spec, img)
        assert ours.shape == ref.shape
        assert torch.allclose(ours, ref, atol=1e-5, rtol=0), f"{kind} {w}x{h}: {(ours - ref).abs().max():.3g}"


def test_regions_move_with_the_resize_and_crop():
    spec = InputSpec(3, 32, 32, resize_mode="shorter", resize=32)
    # 48x40 -> 38x32 (the shorter side to 32), then a 32x32 crop starting 3 pixels in
    view = spec.view_of(48, 40)
    assert (view.left, view.top) == (3, 0)
    assert view.box([12, 10, 24, 20]) == [6, 8, 16, 16]
    assert view.box([0, 0, 48, 40]) == [0, 0, 32, 32]
    assert view.box([0, 0, 2, 40]) is None  # cropped away: outside the model's view
    mask = np.zeros((40, 48), dtype=bool)
    mask[10:20, 12:24] = True
    moved = spec.region_in_view(mask, 48, 40)
    ys, xs = np.nonzero(moved)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (6, 8, 16, 16)
    edge = np.zeros((40, 48), dtype=bool)
    edge[:, :2] = True
    assert spec.region_in_view(edge, 48, 40) is None


def test_pixel_range_scales_before_mean_and_std():
    from PIL import Image

    img = Image.fromarray(np.full((8, 8, 3), 255, dtype=np.uint8))
    spec = InputSpec(3, 8, 8, [100.0], [2.0], pixel_range=(0.0, 255.0))
    assert torch.allclose(_ours(spec, img), torch.full((3, 8, 8), (255.0 - 100.0) / 2.0))
    assert torch.allclose(spec.denormalize(spec.normalize(torch.full((1, 3, 2, 2), 0.25))), torch.full((1, 3, 2, 2), 0.25))
    assert spec.value_range() == pytest.approx(((0 - 100) / 2, (255 - 100) / 2))


@pytest.mark.parametrize("bad, message", [
    ({"resize_mode": "shorter"}, "shorter side needs a size"),
    ({"interpolation": "lanczos7"}, "interpolation must be one of"),
    ({"pixel_range": [1, 0]}, "must be increasing"),
    ({"backend": "opencv"}, "backend must be one of"),
    ({"crop_origin": "ceil"}, "crop_origin must be one of"),
])
def test_a_bad_spec_is_refused_with_the_field_named(bad, message):
    with pytest.raises(PreprocessError, match=message):
        InputSpec.from_dict({"channels": 3, "height": 32, "width": 32, **bad})


def test_an_imported_photo_reaches_the_model_as_torchvision_prepares_the_original_file(audit_home, tmp_path):
    """End to end: photos of mixed sizes stored at their own size, then loaded for a model that declares
    "shorter side 64, crop 56", equal torchvision's transform of the original files."""
    from torchvision.transforms._presets import ImageClassification

    from audit.services.core.datasets import import_image_dataset, load_image_samples

    folder = tmp_path / "photos"
    folder.mkdir()
    rows = ["path,label"]
    for i, (w, h) in enumerate(SIZES):
        _photo(w, h, i).save(folder / f"p{i}.png")
        rows.append(f"p{i}.png,{'zebra' if i % 2 else 'apple'}")
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    import_image_dataset("photos", folder, tmp_path / "index.csv")
    model = SimpleNamespace(labels=["zebra", "mango", "apple"],
                            input_spec=InputSpec(3, 56, 56, MEAN, STD, resize_mode="shorter", resize=64))
    s = load_image_samples("photos", model=model)
    theirs = ImageClassification(crop_size=56, resize_size=64, mean=MEAN, std=STD)
    from PIL import Image

    for i in range(len(SIZES)):
        with Image.open(folder / f"p{i}.png") as original:
            assert torch.equal(model.input_spec.normalize(s.images[i:i + 1])[0], theirs(original.convert("RGB")))
    assert s.labels == [2, 0, 2, 0, 2] and s.sizes == SIZES
