"""Validation problems of a dataset import: collected in full, then raised together as one error."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LISTED = 10


class InvalidDataset(ValueError):
    """Input that cannot be imported; ``problems`` holds one line per problem (where: what)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:MAX_LISTED]
        more = len(self.problems) - len(shown)
        lines = shown + ([f"... and {more} more problem(s)"] if more > 0 else [])
        super().__init__("\n".join(lines))

    def one_line(self) -> str:
        shown = "; ".join(self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        return f"{len(self.problems)} problem(s), nothing stored: {shown}" + (f"; ... and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class ImportLimits:
    """Caps on what one import may read (zip bombs, runaway folders, oversized files)."""

    max_files: int = 5_000                      # image files in the folder or archive
    max_total_bytes: int = 1 << 30              # 1 GiB uncompressed, all files together
    max_file_bytes: int = 10 * 1024 * 1024      # one image file (the app's upload limit)
    max_compression_ratio: float = 100.0        # per zip entry, uncompressed / compressed
    ratio_min_bytes: int = 1 << 20              # the ratio check applies from 1 MiB uncompressed
    max_index_bytes: int = 64 * 1024 * 1024     # the CSV / JSONL index or text file
    max_rows: int = 100_000                     # rows of the index or text file
    max_side: int = 2048                        # a longer side beyond this is scaled down (aspect kept)


class Problems:
    """Collects problems; ``raise_if_any`` raises them all at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidDataset(self.items)
