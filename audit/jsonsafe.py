"""Turning results into JSON that the database and reports can store: numpy scalars to Python,
NaN and infinities to None (JSON has no NaN)."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np


def finite_or_none(value: Any) -> Optional[float]:
    """A finite float, or None for NaN, infinities and values that are not numbers."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def json_safe(value: Any) -> Any:
    """Recursively convert dicts, lists, tuples and numpy scalars; non-finite floats become None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return finite_or_none(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
