"""Index and text files (CSV, JSON Lines) parsed into rows that remember their line numbers.

Rows are numbered as a spreadsheet shows them: the CSV header is row 1, the first data row is row 2;
a JSON Lines file is numbered by line."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from audit.datasets.problems import ImportLimits, Problems


@dataclass
class Row:
    where: str              # "index.csv row 4", for messages
    values: dict[str, Any]


def _read_text(path: Path, limits: ImportLimits, problems: Problems) -> Optional[str]:
    if not path.is_file():
        problems.add(str(path), "no such file")
        return None
    if path.stat().st_size > limits.max_index_bytes:
        problems.add(path.name, f"is {path.stat().st_size} bytes; the cap is {limits.max_index_bytes}")
        return None
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        problems.add(f"{path.name} line {line}", f"is not valid UTF-8 (byte {exc.start}); save the file as UTF-8")
        return None


def read_csv(path: Path, required: Sequence[str], limits: ImportLimits, problems: Problems) -> list[Row]:
    """Rows of a CSV with a header; every column in ``required`` must be present and every row complete."""
    text = _read_text(path, limits, problems)
    if text is None:
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header is not None and not any(c.strip() for c in header):
            header = next(reader, None)
        if header is None:
            problems.add(path.name, "is empty (a header row and at least one data row are expected)")
            return []
        header = [c.strip() for c in header]
        missing = [c for c in required if c not in header]
        if missing:
            problems.add(f"{path.name} row {reader.line_num}",
                         f"missing column(s) {', '.join(missing)}; the header has {', '.join(header)}")
            return []
        rows: list[Row] = []
        for values in reader:
            if not values or not any(v.strip() for v in values):
                continue
            where = f"{path.name} row {reader.line_num}"
            if len(values) != len(header):
                problems.add(where, f"has {len(values)} fields; the header has {len(header)}")
                continue
            rows.append(Row(where, dict(zip(header, values))))
            if len(rows) > limits.max_rows:
                problems.add(path.name, f"has more than {limits.max_rows} rows (the cap)")
                return []
    except csv.Error as exc:
        problems.add(f"{path.name} row {reader.line_num}", f"is not well-formed CSV ({exc})")
        return []
    if not rows and not problems:
        problems.add(path.name, "has a header but no data rows")
    return rows


def read_jsonl(path: Path, required: Sequence[str], limits: ImportLimits, problems: Problems) -> list[Row]:
    """One JSON object per line; blank lines are skipped; every key in ``required`` must be present."""
    text = _read_text(path, limits, problems)
    if text is None:
        return []
    rows: list[Row] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(where, f"is not valid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            problems.add(where, "is not a JSON object")
            continue
        missing = [c for c in required if c not in obj]
        if missing:
            problems.add(where, f"has no key(s) {', '.join(missing)}")
            continue
        rows.append(Row(where, obj))
        if len(rows) > limits.max_rows:
            problems.add(path.name, f"has more than {limits.max_rows} rows (the cap)")
            return []
    if not rows and not problems:
        problems.add(path.name, "is empty (one JSON object per line expected)")
    return rows


def read_table(path: Path, required: Sequence[str], limits: ImportLimits, problems: Problems) -> list[Row]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return read_jsonl(path, required, limits, problems)
    if path.suffix.lower() in (".csv", ".txt"):
        return read_csv(path, required, limits, problems)
    problems.add(path.name, "is neither CSV (.csv) nor JSON Lines (.jsonl)")
    return []


_FLAG_TEXT = {"true": True, "yes": True, "y": True, "1": True, "false": False, "no": False, "n": False, "0": False}


def flag_value(value: Any) -> Optional[bool]:
    """A group value read as a flag: booleans, and the text a CSV import stores for them ("yes"/"no",
    "true"/"false", "y"/"n", "1"/"0", any case); None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _FLAG_TEXT.get(value.strip().lower())
    return None
