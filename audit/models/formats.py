"""The model formats beyond weights + zoo name, TorchScript and Hugging Face: ``exported`` (a
``torch.export`` archive), ``import_path`` (an installed package's architecture + weights) and
``onnx``; one entry point for the handle, and the record the registry keeps of where a model came from.

The registry's ``arch_kwargs`` JSON of a version in one of these formats holds
``{"kwargs": {...}, "provenance": {...}}``: the architecture's keyword arguments (import path only)
and what was recorded at registration (import path, distribution, source hash; the ONNX check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from audit.models.loading import ModelLoadError, _one_line

RECORDED_FORMATS = ("exported", "import_path", "onnx")


def load_other_format(fmt: str, path: Path, *, architecture: str | None, arch_kwargs: dict[str, Any],
                      provenance: dict[str, Any]) -> nn.Module:
    """Build the module of a version in ``fmt`` from its file (checked as each loader says)."""
    if fmt == "exported":
        from audit.models.exported import load_exported

        return load_exported(path)
    if fmt == "onnx":
        from audit.models.onnx_import import convert_onnx

        return convert_onnx(path)
    if fmt == "import_path":
        from audit.models.imported import build_from_import_path, check_same_source
        from audit.models.loading import fit_state_dict, load_state_dict_file

        if not architecture:
            raise ModelLoadError("an architecture import path 'package.module:Callable' is required")
        if provenance:
            check_same_source(architecture, provenance)
        state = load_state_dict_file(path)
        return fit_state_dict(build_from_import_path(architecture, arch_kwargs), state, architecture)
    raise ModelLoadError(f"unknown model format {fmt!r}")


def check_batches(module: nn.Module, shape: tuple[int, ...], path_name: str) -> None:
    """The engine evaluates batches of many sizes: a graph fixed to one batch size is refused."""
    try:
        with torch.no_grad():
            out = module(torch.zeros(3, *shape))
        ok = isinstance(out, torch.Tensor) and out.shape[0] == 3
    except Exception as exc:  # noqa: BLE001 - a shape guard or a reshape fixed to the example's batch
        ok, why = False, _one_line(exc)
    else:
        why = "its output is not one row per input"
    if not ok:
        raise ModelLoadError(
            f"{path_name} does not take a batch of 3 ({why}); export it with a dynamic batch dimension "
            "(torch.export: dynamic_shapes with torch.export.Dim('batch') and an example batch of 2 or more; "
            "ONNX: dynamic_axes={'x': {0: 'batch'}})")


def pack_arch_kwargs(fmt: str, kwargs: dict[str, Any] | None, provenance: dict[str, Any] | None) -> dict[str, Any]:
    """What the registry stores in ``arch_kwargs`` for a version in ``fmt``."""
    if fmt not in RECORDED_FORMATS:
        return dict(kwargs or {})
    return {"kwargs": dict(kwargs or {}), "provenance": dict(provenance or {})}


def unpack_arch_kwargs(fmt: str, stored: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture keyword arguments, provenance) from a stored ``arch_kwargs``."""
    stored = dict(stored or {})
    if fmt not in RECORDED_FORMATS:
        return stored, {}
    return dict(stored.get("kwargs") or {}), dict(stored.get("provenance") or {})


def architecture_name(fmt: str, module: nn.Module, architecture: str | None) -> str:
    """The registry's ``architecture`` column for a version in ``fmt`` (at most 120 characters)."""
    if fmt == "import_path" and architecture:
        return architecture
    if fmt == "exported":
        return f"{getattr(module, 'exported_root_type', 'ExportedProgram')} (torch.export)"[:120]
    if fmt == "onnx":
        return "ONNX graph (onnx2torch)"
    return architecture or type(module).__name__
