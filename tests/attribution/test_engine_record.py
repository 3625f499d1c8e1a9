"""The engine record of each method: what its evaluations really ran on (precision, model copy, crops),
and the bf16 guard's outcome when the call asked for the fast path."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from audit.attribution import explain
from audit.attribution.engine_record import describe_engine, engine_record, model_precision

AS_LOADED, COPY = "as loaded", "optimised copy (BatchNorm folded, channels-last)"


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))  # BatchNorm statistics that are not the identity
    return model.eval()


def _engines(result) -> dict[str, tuple[str, str, bool]]:  # noqa: ANN001
    return {m: (i.engine["precision"], i.engine["model"], i.engine["crops"]) for m, i in result.info.items()}


def test_each_method_records_the_copy_and_crops_it_used():
    x = torch.randn(2, 3, 32, 32)
    opts = dict(ig_steps=8, occlusion_window=8, occlusion_stride=8)
    got = explain(_resnet(), x, None, ["saliency", "integrated_gradients", "occlusion"], optimize=True, **opts)
    assert _engines(got) == {"saliency": ("float32", AS_LOADED, False),  # the shared pass: hooks on the model
                             "integrated_gradients": ("float32", COPY, False),
                             "occlusion": ("float32", COPY, True)}
    assert all("fast_path" not in i.engine for i in got.info.values())  # not requested
    off = explain(_resnet(), x, None, ["integrated_gradients", "occlusion"], optimize=True, incremental=False, **opts)
    assert _engines(off)["occlusion"] == ("float32", COPY, False)
    plain = explain(_resnet(), x, None, ["integrated_gradients", "occlusion"], optimize=False, **opts)
    assert set(_engines(plain).values()) == {("float32", AS_LOADED, False)}


def test_the_fast_path_is_recorded_where_it_ran_and_why_it_did_not():
    x = torch.randn(2, 3, 32, 32)
    methods = ["saliency", "smoothgrad"]
    used = explain(_resnet(), x, None, methods, sg_samples=4, optimize=False, fast=True, fast_min_rank_corr=-1.0)
    assert _engines(used) == {"saliency": ("float32", AS_LOADED, False),
                              "smoothgrad": ("bfloat16 autocast", AS_LOADED, False)}
    fast = used.info["smoothgrad"].engine["fast_path"]
    assert fast["requested"] and fast["used"] and fast["threshold"] == -1.0
    assert describe_engine(used.info["smoothgrad"].engine) == "bfloat16 autocast · model as loaded"
    # a guard bf16 cannot pass (identical ranks): every evaluation stays in float32, and the record says why
    refused = explain(_resnet(), x, None, methods, sg_samples=4, optimize=False, fast=True, fast_min_rank_corr=1.0)
    assert set(_engines(refused).values()) == {("float32", AS_LOADED, False)}
    line = describe_engine(refused.info["smoothgrad"].engine)
    assert line.startswith("float32 · model as loaded · fast path requested, not used: fell back to float32"), line


def test_precision_follows_the_model_and_old_rows_say_not_recorded():
    assert model_precision(nn.Linear(2, 2).double()) == "float64"
    assert model_precision(nn.ReLU()) == "float32"  # no parameters: the inputs' float32
    record = engine_record({"crops"}, precision="float64")
    assert record == {"precision": "float64", "model": COPY, "crops": True}
    assert describe_engine(record) == f"float64 · model {COPY} · occlusion windows as crops"
    assert describe_engine(None).startswith("not recorded")
