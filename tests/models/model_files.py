"""Model files of one seeded TinyResNet (tests.models.custom_arch) in every format the registry takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.models.custom_arch import TinyResNet, trained

SHAPE = (1, 32, 32)
LABELS = [f"c{i}" for i in range(10)]
SPEC = {"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.25]}
IMPORT_PATH = "tests.models.custom_arch:TinyResNet"


@dataclass
class ModelFiles:
    model: TinyResNet
    weights: Path
    exported: Path
    onnx: Path
    torchscript: Path


def write_model_files(folder: Path, seed: int = 0) -> ModelFiles:
    folder.mkdir(parents=True, exist_ok=True)
    model = trained(seed)
    weights = folder / "tiny.safetensors"
    save_file(model.state_dict(), str(weights))
    example = torch.zeros(2, *SHAPE)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    exported = folder / "tiny.pt2"
    torch.export.save(program, str(exported))
    onnx = folder / "tiny.onnx"
    torch.onnx.export(model, (example,), str(onnx), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    torchscript = folder / "tiny.ts.pt"
    torch.jit.save(torch.jit.script(model), str(torchscript))
    return ModelFiles(model, weights, exported, onnx, torchscript)


def registry_rows() -> tuple[int, int]:
    """(model versions, audit-log entries): what a refused registration must leave unchanged."""
    from sqlalchemy import func, select

    from storage.db import transaction
    from storage.orm import AuditLogEntry, ModelVersion

    with transaction() as s:
        return (s.scalar(select(func.count()).select_from(ModelVersion)),
                s.scalar(select(func.count()).select_from(AuditLogEntry)))
