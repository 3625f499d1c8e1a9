"""Fixtures for dataset imports: real image files on disk and a counter of stored rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest


def write_image(path: Path, size: tuple[int, int], *, seed: int, mode: str = "RGB") -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w) if mode == "L" else (h, w, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture()
def image_folder(tmp_path: Path) -> tuple[Path, Path]:
    """Four PNG and two JPEG files of two sizes (32x32 and 48x40), and an index with two group columns and
    regions (one row without a region)."""
    folder = tmp_path / "imgs"
    write_image(folder / "a.png", (32, 32), seed=1)
    write_image(folder / "b.png", (32, 32), seed=2, mode="L")
    write_image(folder / "sub" / "c.png", (32, 32), seed=3)
    write_image(folder / "d.png", (32, 32), seed=4)
    write_image(folder / "e.jpg", (48, 40), seed=5)
    write_image(folder / "f.jpeg", (48, 40), seed=6)
    index = write_csv(tmp_path / "index.csv", ["path", "label", "site", "sex", "x0", "y0", "x1", "y1"], [
        ["a.png", "cat", "A", "f", 0, 0, 8, 8],
        ["b.png", "dog", "A", "m", 4, 4, 32, 32],
        ["sub/c.png", "cat", "B", "f", "", "", "", ""],
        ["d.png", "dog", "B", "m", 10, 12, 20, 30],
        ["e.jpg", "cat", "A", "m", 0, 0, 48, 40],
        ["f.jpeg", "dog", "B", "f", 12, 10, 24, 20],
    ])
    return folder, index


@pytest.fixture()
def stored_counts():
    """(datasets, samples, audit-log entries) now; compare before and after a failed import."""
    from sqlalchemy import func, select

    from storage.db import transaction
    from storage.orm import AuditLogEntry, Dataset, Sample

    def count() -> tuple[int, int, int]:
        with transaction() as s:
            return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Dataset, Sample, AuditLogEntry))

    return count
