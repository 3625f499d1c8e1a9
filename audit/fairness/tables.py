"""Group tables uploaded as CSV: which reference sample belongs to which group, validated strictly.

A `GroupTable` feeds `group_metrics` (labels, groups) and the explanation-disparity functions.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from audit.fairness import errors
from audit.fairness.metrics import DEFAULT_MIN_GROUP_SIZE

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 1024 * 1024


@dataclass
class GroupTable:
    """A validated group table: one row per sample id, in file order.

    `groups` is the sensitive-feature frame (one column per group column) ready for `group_metrics`;
    `small_groups[column]` lists the values of that column with fewer than `min_group_size` rows.
    """

    frame: pd.DataFrame
    id_column: str
    text_column: str | None
    label_column: str | None
    group_columns: list[str]
    min_group_size: int
    small_groups: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return self.frame[self.id_column].tolist()

    @property
    def texts(self) -> list[str] | None:
        return None if self.text_column is None else self.frame[self.text_column].tolist()

    @property
    def labels(self) -> np.ndarray | None:
        return None if self.label_column is None else self.frame[self.label_column].to_numpy()

    @property
    def groups(self) -> pd.DataFrame:
        return self.frame[self.group_columns].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.frame)

    def group_sizes(self) -> dict[str, dict[str, int]]:
        return {c: {str(k): int(v) for k, v in self.frame[c].value_counts(sort=False).items()}
                for c in self.group_columns}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no rows): columns, sizes, flags."""
        return {
            "n_rows": len(self.frame),
            "id_column": self.id_column,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "group_columns": list(self.group_columns),
            "group_sizes": self.group_sizes(),
            "min_group_size": self.min_group_size,
            "small_groups": {k: list(v) for k, v in self.small_groups.items()},
            "warnings": list(self.warnings),
        }


def load_group_csv(
    file_or_bytes: bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO,
    *,
    known_sample_ids: set[str] | None = None,
    id_column: str = "sample_id",
    text_column: str | None = "text",
    label_column: str | None = "label",
    group_columns: list[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> GroupTable:
    """Read and validate a group CSV (UTF-8, header row).

    Args:
        file_or_bytes: the raw bytes, a path, or a binary file object (e.g. an upload widget's file).
        known_sample_ids: ids of the reference set; any other id in the file is an error.
        id_column, text_column, label_column: column names; pass None for a column the data lacks
            (image sets have no text column).
        group_columns: the sensitive attributes; default: every other column.
        max_bytes: larger files are refused before parsing.
        min_group_size: values of a group column with fewer rows are flagged in `small_groups`.

    Labels are kept as integers when every label is an integer literal, else as text.
    Raises ValueError (message from `audit.fairness.errors`) for an empty, oversized, non-UTF-8 or
    unparsable file, missing columns, unknown / duplicate / empty ids, empty labels or group values.
    """
    raw = _read_bytes(file_or_bytes, max_bytes)
    if len(raw) > max_bytes:
        raise ValueError(f"{errors.CSV_TOO_LARGE} ({len(raw):,} > {max_bytes:,} bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{errors.CSV_NOT_UTF8} (invalid byte at position {exc.start})") from exc
    if not text.strip():
        raise ValueError(errors.CSV_EMPTY)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(errors.CSV_EMPTY) from exc
    except pd.errors.ParserError as exc:
        raise ValueError(f"{errors.CSV_UNPARSABLE}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise ValueError(errors.CSV_EMPTY)

    required = [c for c in (id_column, text_column, label_column) if c is not None]
    if group_columns is not None:
        required += [c for c in group_columns if c not in required]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{errors.CSV_MISSING_COLUMNS}: {', '.join(missing)} (found: {', '.join(frame.columns)})"
        )
    if group_columns is None:
        group_columns = [c for c in frame.columns if c not in required]
    if not group_columns:
        raise ValueError(f"{errors.CSV_NO_GROUP_COLUMNS} (found: {', '.join(frame.columns)})")
    keep = [id_column] + [c for c in (text_column, label_column) if c is not None] + list(group_columns)
    frame = frame[keep].copy()

    ids = frame[id_column].str.strip()
    frame[id_column] = ids
    _reject_blank(ids, errors.CSV_EMPTY_ID, id_column)
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"{errors.CSV_DUPLICATE_IDS}: {_preview(duplicated)}")
    if known_sample_ids is not None:
        known = {str(s) for s in known_sample_ids}
        unknown = [s for s in ids if s not in known]
        if unknown:
            raise ValueError(f"{errors.CSV_UNKNOWN_IDS}: {len(unknown)} unknown, e.g. {_preview(unknown)}")

    if label_column is not None:
        labels = frame[label_column].str.strip()
        _reject_blank(labels, errors.NAN_LABELS, label_column)
        frame[label_column] = _maybe_int(labels)
    for col in group_columns:
        values = frame[col].str.strip()
        _reject_blank(values, errors.CSV_EMPTY_GROUP_VALUE, col)
        frame[col] = values

    notes: list[str] = []
    small: dict[str, list[str]] = {}
    for col in group_columns:
        sizes = frame[col].value_counts(sort=False)
        too_small = [str(v) for v, n in sizes.items() if n < min_group_size]
        if too_small:
            small[col] = too_small
            notes.append(
                f"group column {col!r}: {len(too_small)} value(s) have fewer than {min_group_size} rows: "
                + _preview(too_small)
            )
    if known_sample_ids is not None and len(known_sample_ids) > len(frame):
        notes.append(f"{len(known_sample_ids) - len(frame)} reference samples have no row in the CSV")
    for note in notes:
        logger.warning(note)
    return GroupTable(
        frame=frame.reset_index(drop=True),
        id_column=id_column,
        text_column=text_column,
        label_column=label_column,
        group_columns=list(group_columns),
        min_group_size=min_group_size,
        small_groups=small,
        warnings=notes,
    )


def _read_bytes(source: Any, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        size = os.path.getsize(source)
        if size > max_bytes:
            raise ValueError(f"{errors.CSV_TOO_LARGE} ({size:,} > {max_bytes:,} bytes)")
        with open(source, "rb") as fh:
            return fh.read()
    if hasattr(source, "read"):
        # Read one byte past the limit so an oversized stream is detected without reading it all.
        data = source.read(max_bytes + 1)
        if isinstance(data, str):
            raise ValueError(f"{errors.CSV_BAD_INPUT}: open the file in binary mode ('rb')")
        return bytes(data)
    raise ValueError(f"{errors.CSV_BAD_INPUT}, got {type(source).__name__}")


def _reject_blank(values: pd.Series, message: str, column: str) -> None:
    blank = values == ""
    if blank.any():
        rows = (np.flatnonzero(blank.to_numpy()) + 2)[:5].tolist()  # +2: header line, 1-based
        raise ValueError(f"{message} (column {column!r}, file lines {rows})")


def _maybe_int(values: pd.Series) -> pd.Series:
    try:
        return values.astype(np.int64)
    except (ValueError, TypeError):
        return values


def _preview(items: list[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
