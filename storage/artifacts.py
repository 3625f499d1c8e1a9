"""Content-addressed artifact store: files under ``AUDIT_HOME/artifacts/<sha256>``.

Reads verify the hash; a mismatch is an error, never ignored. A file this attempt created is removed again
when the work that would have referenced it fails before a commit (``discard_on_failure``), so a failed run
or import (a full disk, say) leaves no artifact without a row.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from storage.db import audit_home

CHUNK = 1 << 20
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger(__name__)


class ArtifactIntegrityError(RuntimeError):
    """A stored artifact's bytes no longer match the hash it is filed under."""


class StorageFullError(OSError):
    """The artifact store could not write because the disk (or the user's quota) is full."""


def disk_full_message(exc: BaseException) -> Optional[str]:
    """A one-line message for an error that means the disk is full, or None for any other error."""
    if isinstance(exc, StorageFullError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return (f"the disk is full ({exc.strerror or os.strerror(exc.errno)}): nothing of this attempt was kept; "
                "free some space and run it again")
    return None


# Files created by put_bytes in this context and not yet claimed by a commit: one dict (path -> mtime_ns at
# creation) per open ``discard_on_failure`` block, innermost last.
_UNCLAIMED: ContextVar[tuple[dict[Path, int], ...]] = ContextVar("audit_unclaimed_artifacts", default=())


@contextmanager
def discard_on_failure() -> Iterator[None]:
    """Remove, when the block raises, the artifact files it created that no commit has claimed since.

    ``storage.db.transaction`` opens one of these and claims (``claim_written``) on commit; services that
    write artifacts before the transaction that references them (imports, registration, tracked runs)
    open one around both. A file another writer asked for meanwhile (``put_bytes`` of the same bytes bumps
    its mtime) is kept: its row may be committed elsewhere."""
    mine: dict[Path, int] = {}
    token = _UNCLAIMED.set(_UNCLAIMED.get() + (mine,))
    try:
        yield
    except BaseException:
        for path, mtime_ns in list(mine.items()):
            try:
                if path.stat().st_mtime_ns == mtime_ns:
                    path.unlink()
                    log.info("removed artifact %s written by a failed attempt", path.name)
            except FileNotFoundError:
                pass
            except OSError as exc:  # the original error matters more; say what is left behind
                log.warning("could not remove artifact %s of a failed attempt: %s", path, exc)
        raise
    finally:
        _UNCLAIMED.reset(token)


def claim_written() -> None:
    """Every artifact created so far in this context is referenced by committed rows: keep it."""
    for pending in _UNCLAIMED.get():
        pending.clear()


def _note_created(path: Path) -> None:
    scopes = _UNCLAIMED.get()
    if scopes:
        mtime = path.stat().st_mtime_ns
        for pending in scopes:
            pending[path] = mtime


def _note_reused(path: Path) -> None:
    """Another put of existing bytes: bump the mtime (strictly), so an attempt that created the file and then
    fails does not remove it from under this writer; this context's own record follows the new time."""
    try:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, max(time.time_ns(), st.st_mtime_ns + 1_000)))
        mtime = path.stat().st_mtime_ns
    except OSError:  # a read-only store: nothing will be removed from it either
        return
    for pending in _UNCLAIMED.get():
        if path in pending:
            pending[path] = mtime


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
            _note_reused(target)
            return digest
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._write_new(target, data)
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise StorageFullError(exc.errno, f"the disk is full: no space left to store a {len(data)}-byte "
                                                  f"artifact in {self.root}; nothing of this attempt was kept, "
                                                  "free some space and run it again") from exc
            raise
        _note_created(target)
        return digest

    @staticmethod
    def _write_new(target: Path, data: bytes) -> None:
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
