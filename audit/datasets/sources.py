"""Image files from a folder or a zip archive, read under caps: no entry may escape the root (``..``,
absolute paths, symlinks), and an archive may not expand beyond the limits (zip bombs)."""

from __future__ import annotations

import os
import posixpath
import stat
import zipfile
from pathlib import Path
from typing import Optional, Sequence

from audit.datasets.problems import ImportLimits, Problems

# Files that archivers and desktops add beside the data; they are not samples.
_IGNORED_PARTS = ("__MACOSX",)


def _ignored(rel: str) -> bool:
    parts = rel.split("/")
    return any(p.startswith(".") or p in _IGNORED_PARTS for p in parts)


def normalise_member(name: str) -> Optional[str]:
    """A relative path with forward slashes, or None when it is absolute or climbs out with ``..``."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../") or norm.startswith("/"):
        return None
    return "" if norm == "." else norm


def check_expansion(infos: Sequence[zipfile.ZipInfo], limits: ImportLimits, problems: Problems,
                    label: str) -> list[zipfile.ZipInfo]:
    """The zip-bomb guard of every archive the app unpacks (dataset and concept imports, Hugging Face model
    uploads), applied to the declared sizes before any entry is read: an entry that expands more than
    ``limits.max_compression_ratio``-fold (from ``limits.ratio_min_bytes`` up) is a problem, and so is a total
    beyond ``limits.max_total_bytes``. Returns the entries that pass. Reading stays bounded by the declared
    sizes, since zipfile stops at an entry's declared size and rejects a mismatch by its CRC."""
    passed, total = [], 0
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_min_bytes and ratio > limits.max_compression_ratio:
            problems.add(f"{label} entry {info.filename!r}", f"expands {ratio:.0f}-fold; the cap is "
                                                             f"{limits.max_compression_ratio:.0f} (zip bomb?)")
            continue
        total += info.file_size
        passed.append(info)
    if total > limits.max_total_bytes:
        problems.add(label, f"expands to {total} bytes; the cap is {limits.max_total_bytes}")
    return passed


class ImageSource:
    """The files under one folder or inside one zip, by relative path; ``read`` enforces the byte caps."""

    def __init__(self, location: str | Path, limits: ImportLimits, problems: Problems) -> None:
        self.location = Path(location)
        self.label = self.location.name
        self.limits = limits
        self._zip: Optional[zipfile.ZipFile] = None
        self._files: dict[str, object] = {}  # rel path -> Path (folder) or ZipInfo (zip)
        self._prefix = ""
        self._total = 0
        if self.location.is_dir():
            self._scan_folder(problems)
        elif self.location.is_file():
            self._scan_zip(problems)
        else:
            problems.add(str(location), "no such folder or zip file")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ scanning

    def _scan_folder(self, problems: Problems) -> None:
        root = self.location.resolve()
        count = 0
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for d in list(dirnames):
                full = Path(dirpath) / d
                if full.is_symlink():
                    problems.add(str(full.relative_to(root)), "is a symbolic link; links are not followed")
                    dirnames.remove(d)
            for f in filenames:
                full = Path(dirpath) / f
                rel = full.relative_to(root).as_posix()
                if _ignored(rel):
                    continue
                if full.is_symlink():
                    problems.add(rel, "is a symbolic link; links are not followed")
                    continue
                count += 1
                if count > self.limits.max_files:
                    problems.add(self.label, f"holds more than {self.limits.max_files} files (the cap)")
                    return
                self._total += full.stat().st_size
                self._files[rel] = full
        if self._total > self.limits.max_total_bytes:
            problems.add(self.label, f"holds {self._total} bytes; the cap is {self.limits.max_total_bytes}")

    def _scan_zip(self, problems: Problems) -> None:
        try:
            self._zip = zipfile.ZipFile(self.location)
        except (zipfile.BadZipFile, OSError) as exc:
            problems.add(self.label, f"is neither a folder nor a readable zip archive ({exc})")
            return
        infos = [i for i in self._zip.infolist() if not i.is_dir()]
        if len(infos) > self.limits.max_files:
            problems.add(self.label, f"holds {len(infos)} files; the cap is {self.limits.max_files}")
            return
        kept: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            where = f"{self.label} entry {info.filename!r}"
            rel = normalise_member(info.filename)
            if rel is None or rel == "":
                problems.add(where, "escapes the archive's folder (absolute path or '..')")
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                problems.add(where, "is a symbolic link; links are not allowed in an archive")
                continue
            if _ignored(rel):
                continue
            kept[rel] = info
        passed = set(map(id, check_expansion(list(kept.values()), self.limits, problems, self.label)))
        self._files = {rel: info for rel, info in kept.items() if id(info) in passed}
        self._total = sum(info.file_size for info in self._files.values())
        # An archive of one top folder ("imgs/a.png") may be indexed without that folder ("a.png").
        tops = {r.split("/", 1)[0] for r in self._files if "/" in r}
        if len(tops) == 1 and all("/" in r for r in self._files):
            self._prefix = tops.pop() + "/"

    # ------------------------------------------------------------ access

    def names(self) -> list[str]:
        return sorted(self._files)

    def resolve(self, path: str) -> Optional[str]:
        """The stored name of ``path`` as the index writes it, or None when there is no such file."""
        rel = normalise_member(path)
        if rel is None:
            return None
        if rel in self._files:
            return rel
        if self._prefix and self._prefix + rel in self._files:
            return self._prefix + rel
        return None

    def read(self, rel: str) -> bytes:
        """The bytes of one file; never more than the per-file cap (OSError / ValueError otherwise)."""
        cap = self.limits.max_file_bytes
        entry = self._files[rel]
        if isinstance(entry, zipfile.ZipInfo):
            with self._zip.open(entry) as fh:  # type: ignore[union-attr]  # the declared size may lie: read at most cap + 1 bytes
                data = fh.read(cap + 1)
        else:
            with open(entry, "rb") as fh:  # type: ignore[arg-type]
                data = fh.read(cap + 1)
        if len(data) > cap:
            raise ValueError(f"is larger than {cap} bytes (the per-file cap)")
        return data
