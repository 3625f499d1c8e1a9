"""What one method's map was computed on: the precision and the model copy its evaluations used, and
whether occlusion windows ran as crops. Stored with every explanation, so an auditor can tell a
float32 map of the model as loaded from one computed under bf16 autocast."""

from __future__ import annotations

from typing import Any, Mapping, Optional

BF16 = "bf16"  # a heavy evaluation ran under bf16 autocast
COPY = "copy"  # a heavy evaluation ran on the BatchNorm-folded, channels-last copy
CROPS = "crops"  # occlusion windows were re-evaluated as crops of the clean activations

BF16_PRECISION = "bfloat16 autocast"
MODEL = {True: "optimised copy (BatchNorm folded, channels-last)", False: "as loaded"}


def model_precision(model: Any) -> str:
    """The dtype of the model's first floating parameter ("float32" for one without parameters)."""
    for p in getattr(model, "parameters", lambda: iter(()))():
        if p.is_floating_point():
            return str(p.dtype).removeprefix("torch.")
    return "float32"


def engine_record(seen: set[str], fast_path: Optional[Mapping[str, Any]] = None, *,
                  precision: str = "float32") -> dict[str, Any]:
    """The record of one method: ``seen`` is what its evaluations used (BF16, COPY, CROPS); ``fast_path``
    the bf16 guard's outcome for the whole call, when the call asked for it; ``precision`` the model's own
    (:func:`model_precision`), which evaluations outside bf16 autocast ran in."""
    record: dict[str, Any] = {"precision": BF16_PRECISION if BF16 in seen else precision,
                              "model": MODEL[COPY in seen or CROPS in seen], "crops": CROPS in seen}
    if fast_path is not None:
        record["fast_path"] = dict(fast_path)
    return record


def describe_engine(record: Optional[Mapping[str, Any]]) -> str:
    """One line for people: "float32 · model as loaded", "bfloat16 autocast · model optimised copy (...) ·
    occlusion windows as crops", plus why a requested fast path was not used. Rows stored before the record existed say so."""
    if not record:
        return "not recorded (computed before the engine path was stored)"
    parts = [str(record.get("precision", "?")), f"model {record.get('model', '?')}"]
    if record.get("crops"):
        parts.append("occlusion windows as crops")
    fast = record.get("fast_path")
    if fast and not fast.get("used") and record.get("precision") != BF16_PRECISION:
        parts.append(f"fast path requested, not used: {fast.get('reason', 'no reason recorded')}")
    return " · ".join(parts)
