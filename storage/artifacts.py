"""Content-addressed artifact store: files under ``AUDIT_HOME/artifacts/<sha256>``.

Reads verify the hash; a mismatch is an error, never ignored.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from storage.db import audit_home

CHUNK = 1 << 20


class ArtifactIntegrityError(RuntimeError):
    """A stored artifact's bytes no longer match the hash it is filed under."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtifactStore:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else audit_home() / "artifacts"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a crash never leaves a partial artifact.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def put_file(self, path: str | Path) -> str:
        return self.put_bytes(Path(path).read_bytes())

    def get_bytes(self, sha256: str) -> bytes:
        target = self.path(sha256)
        if not target.exists():
            raise FileNotFoundError(f"artifact {sha256} is not in the store at {self.root}")
        data = target.read_bytes()
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ArtifactIntegrityError(
                f"artifact {sha256} is corrupt: its content hashes to {actual}"
            )
        return data

    def put_array(self, array: np.ndarray) -> str:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        return self.put_bytes(buf.getvalue())

    def get_array(self, sha256: str) -> np.ndarray:
        return np.load(io.BytesIO(self.get_bytes(sha256)), allow_pickle=False)
