"""Issue 22: a full disk during an explanation run or a dataset import. The run row ends "failed" saying the
disk is full, the error says so, and no artifact file written by the failed attempt is left without a row
(files of batches already committed stay, with their rows)."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from tests.datasets.conftest import write_csv, write_image


def _files(home: Path) -> set[Path]:
    root = home / "artifacts"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _referenced() -> set[str]:
    from storage.db import transaction
    from storage.orm import AnalysisResult, Explanation, ModelVersion, Report, Sample

    with transaction() as s:
        refs = {v for (v,) in s.query(Explanation.attribution_sha256)}
        refs |= {v for (v,) in s.query(Sample.content_sha256)} | {v for (v,) in s.query(Sample.region_mask)}
        refs |= {v for (v,) in s.query(ModelVersion.artifact_sha256)} | {v for (v,) in s.query(Report.sha256)}
        refs |= {v for (v,) in s.query(AnalysisResult.artifact_sha256)}
    return {r for r in refs if r}


@pytest.fixture()
def disk_fills_after(monkeypatch):
    """``disk_fills_after(n)``: the artifact store writes n new files, then every write fails with ENOSPC."""
    from storage.artifacts import ArtifactStore

    written: list[Path] = []

    def arm(n: int) -> list[Path]:
        if not hasattr(ArtifactStore, "_write_new"):  # the store before issue 22: fail its whole put instead
            real_put = ArtifactStore.put_bytes

            def put(self, data: bytes) -> str:  # noqa: ANN001
                from storage.artifacts import sha256_bytes

                target = self.path(sha256_bytes(data))
                if not target.exists() and len(written) >= n:
                    raise OSError(errno.ENOSPC, "No space left on device", str(target))
                if not target.exists():
                    written.append(target)
                return real_put(self, data)

            monkeypatch.setattr(ArtifactStore, "put_bytes", put)
            return written
        real = ArtifactStore._write_new

        def write(target: Path, data: bytes) -> None:
            if len(written) >= n:
                raise OSError(errno.ENOSPC, "No space left on device", str(target))
            real(target, data)
            written.append(target)

        monkeypatch.setattr(ArtifactStore, "_write_new", staticmethod(write))
        return written

    return arm


def test_an_explanation_run_on_a_full_disk_fails_and_leaves_no_orphan(tiny_image, disk_fills_after):
    from audit.services.analyses.explanations.service import explain_reference_set
    from storage.db import transaction
    from storage.orm import Explanation, Run

    before = _files(tiny_image)
    written = disk_fills_after(6)  # batch 1 (4 maps) commits; batch 2 fails after 2 of its 4 maps
    with pytest.raises(OSError, match="the disk is full") as err:
        explain_reference_set("tiny", "1", "ref", methods=["saliency"], batch_size=4, limit=8)
    assert err.value.errno == errno.ENOSPC
    with transaction() as s:
        run = s.query(Run).filter(Run.kind == "explain").one()
        assert run.status == "failed" and "disk is full" in run.error, run.error
        assert s.query(Explanation).count() == 4
    after = _files(tiny_image)
    assert len(written) == 6 and sum(p.exists() for p in written) == 4
    assert {p.name for p in after - before} <= _referenced()
    assert not [p for p in after if p.name.startswith(".tmp-")]


def test_a_dataset_import_on_a_full_disk_stores_nothing(audit_home, tmp_path, disk_fills_after):
    from audit.services.core.datasets import import_image_dataset, list_datasets

    folder = tmp_path / "imgs"
    for i in range(6):
        write_image(folder / f"{i}.png", (16, 16), seed=i)
    index = write_csv(tmp_path / "index.csv", ["path", "label"], [[f"{i}.png", "ab"[i % 2]] for i in range(6)])
    before = _files(audit_home)
    written = disk_fills_after(3)
    with pytest.raises(OSError, match="the disk is full"):
        import_image_dataset("full", folder, index)
    assert len(written) == 3 and not any(p.exists() for p in written)
    assert _files(audit_home) == before and list_datasets() == []


def test_tracked_runs_say_the_disk_is_full_for_a_raw_enospc(audit_home):
    from audit.services.governance.principals import SYSTEM
    from audit.services.core.runs import tracked_run
    from storage.db import transaction
    from storage.orm import Run

    with pytest.raises(OSError):
        with tracked_run("bias", family=None, version=None, parameters={}, actor=SYSTEM):
            raise OSError(errno.ENOSPC, "No space left on device")
    with transaction() as s:
        run = s.query(Run).one()
    assert run.status == "failed" and run.error.startswith("StorageFullError: the disk is full")


def test_a_run_is_closed_when_the_first_close_hits_the_full_disk(audit_home, monkeypatch):
    import audit.services.core.runs as core
    from audit.services.governance.principals import SYSTEM
    from storage.db import transaction
    from storage.orm import Run

    real, calls = core._close, []

    def close(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[1])
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(core, "_close", close)
    with pytest.raises(OSError, match="No space left"):
        with core.tracked_run("bias", family=None, version=None, parameters={}, actor=SYSTEM):
            raise OSError(errno.ENOSPC, "No space left on device")
    with transaction() as s:
        assert s.query(Run).one().status == "failed" and calls == ["failed", "failed"]


def test_a_file_another_writer_also_put_is_kept(audit_home):
    """Two writers store the same bytes; the one that created the file fails before its commit. The other
    may have committed a row for it, so the file stays."""
    from storage.artifacts import ArtifactStore, discard_on_failure

    store = ArtifactStore()
    with pytest.raises(RuntimeError):
        with discard_on_failure():
            sha = store.put_bytes(b"shared bytes")
            other = threading.Thread(target=store.put_bytes, args=(b"shared bytes",))  # its own context
            other.start()
            other.join()
            raise RuntimeError("this attempt fails")
    assert store.exists(sha)
    with pytest.raises(RuntimeError):
        with discard_on_failure():
            alone = store.put_bytes(b"only mine")
            store.put_bytes(b"only mine")  # the same attempt again: still only this attempt's file
            raise RuntimeError("this attempt fails")
    assert not store.exists(alone)


def test_a_committed_transaction_keeps_its_files(audit_home):
    from storage.artifacts import ArtifactStore, discard_on_failure
    from storage.db import transaction

    store = ArtifactStore()
    with pytest.raises(RuntimeError):
        with discard_on_failure():
            with transaction():
                kept = store.put_bytes(b"committed")
            with transaction():
                gone = store.put_bytes(b"rolled back")
                raise RuntimeError("rollback")
    assert store.exists(kept) and not store.exists(gone)
