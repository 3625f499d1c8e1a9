"""Input normalisation shared by the bias-audit functions: labels, groups and per-sample values.

Everything becomes plain numpy / pandas here, so the metric code can assume clean 1-D inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from audit.fairness import errors

GROUP_SEPARATOR = " | "


def to_1d(values: Any, name: str) -> np.ndarray:
    """A 1-D numpy array from a list, Series, numpy array or torch tensor (moved to CPU)."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().numpy()
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one entry per sample), got shape {arr.shape}")
    return arr


def check_no_missing(arr: np.ndarray, message: str, name: str) -> None:
    missing = pd.isna(arr)
    if missing.any():
        where = np.flatnonzero(missing)[:5].tolist()
        raise ValueError(f"{message} ({name}: {int(missing.sum())} missing, first at positions {where})")


def to_group_frame(sensitive_features: Any) -> pd.DataFrame:
    """Sensitive features as a DataFrame with string column names (one column per attribute)."""
    if hasattr(sensitive_features, "detach") and hasattr(sensitive_features, "cpu"):
        sensitive_features = sensitive_features.detach().cpu().numpy()
    if isinstance(sensitive_features, pd.DataFrame):
        frame = sensitive_features.copy()
        frame.columns = [str(c) for c in frame.columns]
    elif isinstance(sensitive_features, pd.Series):
        name = sensitive_features.name if sensitive_features.name is not None else "group"
        frame = sensitive_features.to_frame(name=str(name))
    elif isinstance(sensitive_features, dict):
        frame = pd.DataFrame({str(k): to_1d(v, f"sensitive_features[{k!r}]") for k, v in sensitive_features.items()})
    else:
        arr = np.asarray(sensitive_features, dtype=object)
        if arr.ndim == 0:
            raise ValueError("sensitive_features must hold one group label per sample, got a scalar")
        if arr.ndim == 1:
            frame = pd.DataFrame({"group": arr})
        elif arr.ndim == 2:
            frame = pd.DataFrame({f"feature_{i}": arr[:, i] for i in range(arr.shape[1])})
        else:
            raise ValueError(f"sensitive_features must be 1-D or 2-D, got shape {arr.shape}")
    if frame.shape[1] == 0:
        raise ValueError("sensitive_features has no columns")
    return frame.reset_index(drop=True)


def check_groups(frame: pd.DataFrame) -> None:
    """Reject missing group values and declared categories that have no member."""
    for col in frame.columns:
        check_no_missing(frame[col].to_numpy(dtype=object), errors.NAN_GROUPS, f"column {col!r}")
        series = frame[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            present = set(series.dropna().unique().tolist())
            empty = [c for c in series.cat.categories if c not in present]
            if empty:
                raise ValueError(f"{errors.EMPTY_GROUP}: {col!r} = {empty[:5]} (remove unused categories)")


def group_codes(frame: pd.DataFrame) -> tuple[np.ndarray, list[Any]]:
    """Integer group code per sample and the sorted group labels (tuples for several columns)."""
    if frame.shape[1] == 1:
        col = frame.iloc[:, 0]
        labels = sorted(pd.unique(col.to_numpy(dtype=object)).tolist(), key=sort_key)
        index = {lab: i for i, lab in enumerate(labels)}
        return np.array([index[v] for v in col.to_numpy(dtype=object)], dtype=np.int64), labels
    rows = [tuple(r) for r in frame.itertuples(index=False, name=None)]
    labels = sorted(set(rows), key=lambda t: tuple(sort_key(v) for v in t))
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index[r] for r in rows], dtype=np.int64), labels


def label_text(label: Any) -> str:
    """A display / JSON key for a group label (intersections joined with ' | ')."""
    if isinstance(label, tuple):
        return GROUP_SEPARATOR.join(str(v) for v in label)
    return str(label)


def sort_key(value: Any) -> tuple[int, Any]:
    # Mixed label types (1, "a") must still sort deterministically.
    if isinstance(value, (bool, np.bool_)):
        return (0, int(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value))
    return (1, str(value))
