"""The services core: one tracked run, one result-cache key and one way to store and read an analysis.

Every service that stores a result goes through here, so a result has one key (kind, model version,
dataset hash, result-affecting options, ids of the stored results it read) and one lifecycle (a run
row with status, timings, error and library versions, and audit-log events)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence

from audit.env import library_versions
from audit.jsonsafe import json_safe
from audit.results.base import AnalysisSpec, StoredResult
from audit.services.governance.principals import Principal
from storage import auditlog
from storage.artifacts import discard_on_failure, disk_full_message, sha256_bytes
from storage.db import transaction
from storage.orm import AnalysisResult, Run, utcnow
from storage.repositories import DatasetRepository, ModelRepository, ResultRepository, RunRepository

log = logging.getLogger(__name__)


def stable_value(value: Any) -> Any:
    """An option value as it enters a key: tensors and arrays by content hash, the rest as JSON."""
    import numpy as np

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of the engine
        torch = None  # type: ignore[assignment]
    if torch is not None and isinstance(value, torch.Tensor):
        arr = value.detach().cpu().contiguous().numpy()
        return f"tensor:{list(arr.shape)}:{arr.dtype}:{sha256_bytes(arr.tobytes())}"
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return f"array:{list(arr.shape)}:{arr.dtype}:{sha256_bytes(arr.tobytes())}"
    if isinstance(value, Mapping):
        return {str(k): stable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stable_value(v) for v in value]
    return json_safe(value)


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(stable_value(data), sort_keys=True, default=str).encode()).hexdigest()


def result_key(kind: str, *, model_sha256: str, options: Mapping[str, Any], dataset_sha256: Optional[str] = None,
               inputs: Sequence[Any] = (), other_model_sha256: Optional[str] = None) -> str:
    """The cache key of a stored result. ``options`` must hold every result-affecting option (each
    analysis or method declares which); ``inputs`` the ids or hashes of the stored results read."""
    return digest({"kind": kind, "model": model_sha256, "other_model": other_model_sha256,
                   "dataset": dataset_sha256, "options": dict(options), "inputs": list(inputs)})


def analysis_key(spec: AnalysisSpec, *, model_sha256: str, dataset_sha256: Optional[str], options: Mapping[str, Any],
                 inputs: Sequence[Any] = ()) -> str:
    """The cache key of an analysis: exactly the spec's result options, no more, no fewer."""
    missing = sorted(set(spec.result_options) - set(options))
    extra = sorted(set(options) - set(spec.result_options))
    if missing or extra:
        raise ValueError(f"{spec.kind} key options do not match the spec: missing {missing}, undeclared {extra}")
    return result_key(spec.kind, model_sha256=model_sha256, dataset_sha256=dataset_sha256, options=dict(options),
                      inputs=inputs)


def one_line(exc: BaseException) -> str:
    full = disk_full_message(exc)
    if full is not None:
        return f"StorageFullError: {full}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


@dataclass
class TrackedRun:
    """The handle a service holds while its run is open: the run id, and timings by phase."""

    run_id: int
    kind: str
    subject: str
    started: float
    timings: dict[str, float] = field(default_factory=dict)
    device: Optional[str] = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# The queued job whose service call is running in this context (set by the worker around the call).
CURRENT_JOB: ContextVar[Optional[int]] = ContextVar("audit_current_job", default=None)


@contextmanager
def running_job(job_id: int) -> Iterator[None]:
    """Runs opened inside record ``job_id`` (so a run its lost worker left open can be closed later)."""
    token = CURRENT_JOB.set(job_id)
    try:
        yield
    finally:
        CURRENT_JOB.reset(token)


def close_lost_runs(session: Any, job_id: int, *, reason: str, actor: str) -> list[int]:
    """Close as ``interrupted`` the runs a job's earlier attempt left open; their ids."""
    closed = []
    for run in RunRepository(session).open_for_job(job_id):
        run.status, run.finished_at, run.error = "interrupted", utcnow(), reason
        auditlog.append(session, actor=actor, action="run.interrupted", subject=f"job/{job_id}",
                        details={"run_id": run.id, "kind": run.kind, "error": reason})
        closed.append(run.id)
    return closed


@contextmanager
def tracked_run(kind: str, *, family: Optional[str], version: Optional[str], parameters: Mapping[str, Any],
                actor: Principal, seed: int = 0, device: str = "cpu") -> Iterator[TrackedRun]:
    """Open a run row (status ``running``), yield, and close it as ``succeeded``, ``failed`` (with the
    error in one line) or ``interrupted``; the start and the end are both in the audit log."""
    subject = f"{family}/{version}" if family else kind
    with transaction() as s:
        mv = ModelRepository(s).version(family, version) if family and version else None
        run = RunRepository(s).add(Run(kind=kind, model_version_id=mv.id if mv else None, status="running",
                                       parameters=stable_value(dict(parameters)), seed=int(seed), device=device,
                                       library_versions=library_versions(), created_by=actor.username,
                                       job_id=CURRENT_JOB.get()))
        run_id = run.id
        auditlog.append(s, actor=actor.username, action="run.start", subject=subject,
                        details={"run_id": run_id, "kind": kind})
    tr = TrackedRun(run_id, kind, subject, time.perf_counter())
    try:
        with discard_on_failure():  # before the run is closed: closing it commits, which would claim them
            yield tr
    except BaseException as exc:
        status = "failed" if isinstance(exc, Exception) else "interrupted"
        _close_after_error(tr, status, one_line(exc), actor)
        raise
    _close(tr, "succeeded", None, actor)


def _close_after_error(tr: TrackedRun, status: str, error: str, actor: Principal) -> None:
    """Close a run that raised. On a full disk the database write can fail too: the failed attempt's
    artifacts are removed by then, so try once more; if that fails as well, log it and let the original
    error (the one the caller must see) propagate, leaving the row for an administrator."""
    for attempt in (1, 2):
        try:
            _close(tr, status, error, actor)
            return
        except Exception as close_exc:  # noqa: BLE001 - reported below, the original error follows
            if attempt == 2:
                log.error("run %s (%s) could not be closed as %s: %s", tr.run_id, tr.kind, status,
                          one_line(close_exc))
            else:
                time.sleep(0.2)


def _close(tr: TrackedRun, status: str, error: Optional[str], actor: Principal) -> None:
    with transaction() as s:
        run = RunRepository(s).get(tr.run_id)
        run.status = status
        run.finished_at = utcnow()
        run.timings = {**tr.timings, "total_s": tr.elapsed}
        run.error = error
        if tr.device:
            run.device = tr.device
        auditlog.append(s, actor=actor.username, action=f"run.{status}", subject=tr.subject,
                        details={"run_id": tr.run_id, "kind": tr.kind, "seconds": round(tr.elapsed, 3),
                                 **({"error": error} if error else {})})


def _utc_iso(when: Any) -> Optional[str]:
    """One spelling of a stored time, whether the driver returns it naive (SQLite) or aware."""
    if when is None:
        return None
    from datetime import timezone

    return (when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)).isoformat()


def _as_stored(row: AnalysisResult, session: Any, cached: bool = False) -> StoredResult:
    repo = ModelRepository(session)
    mv = repo.version_by_id(row.model_version_id) if row.model_version_id else None
    other = repo.version_by_id(row.other_version_id) if row.other_version_id else None
    ds = None
    if row.dataset_id is not None:
        from storage.orm import Dataset

        d = session.get(Dataset, row.dataset_id)
        ds = d.name if d is not None else None
    return StoredResult(
        id=row.id, kind=row.kind, family=mv.family.name if mv else "", version=mv.version if mv else "",
        summary=dict(row.summary or {}), parameters=dict(row.parameters or {}), key=row.params_sha256,
        other_version=other.version if other else None, dataset=ds, artifact_sha256=row.artifact_sha256,
        seed=row.seed, device=row.device, duration_s=row.duration_s, run_id=row.run_id,
        created_by=row.created_by, created_at=_utc_iso(row.created_at),
        library_versions=dict(row.library_versions or {}), cached=cached)


def find_analysis(kind: str, family: str, version: str, key: str) -> Optional[StoredResult]:
    """The stored result with this key, or None."""
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        if mv is None:
            return None
        row = ResultRepository(s).find(kind=kind, model_version_id=mv.id, params_sha256=key)
        return _as_stored(row, s, cached=True) if row else None


def store_analysis(kind: str, family: str, version: str, *, key: str, parameters: Mapping[str, Any],
                   summary: Mapping[str, Any], actor: Principal, dataset: Optional[str] = None, seed: int = 0,
                   device: str = "cpu", duration_s: float = 0.0, artifact_sha256: Optional[str] = None,
                   other_version: Optional[str] = None, run_id: Optional[int] = None,
                   inputs: Sequence[int] = ()) -> StoredResult:
    """Store one analysis result and its audit-log event in one transaction."""
    with transaction() as s:
        repo = ModelRepository(s)
        mv = repo.version(family, version)
        if mv is None:
            raise ValueError(f"{family} {version} is not registered")
        other = repo.version(family, other_version) if other_version else None
        ds = DatasetRepository(s).get(dataset) if dataset else None
        params = stable_value({**dict(parameters), "inputs": [int(i) for i in inputs]})
        row = ResultRepository(s).add(AnalysisResult(
            kind=kind, model_version_id=mv.id, other_version_id=other.id if other else None,
            dataset_id=ds.id if ds else None, params_sha256=key, parameters=params, summary=json_safe(dict(summary)),
            artifact_sha256=artifact_sha256, seed=int(seed), device=device, library_versions=library_versions(),
            duration_s=float(duration_s), run_id=run_id, created_by=actor.username,
        ))
        auditlog.append(s, actor=actor.username, action=f"{kind}.create",
                        subject=f"{family}/{other_version}->{version}" if other_version else f"{family}/{version}",
                        details={"result_id": row.id, "params_sha256": key, "run_id": run_id,
                                 **({"inputs": list(inputs)} if inputs else {})})
        return _as_stored(row, s)


def stored_analyses(family: str, version: str, kind: Optional[str] = None) -> list[StoredResult]:
    """Every stored result of a version (optionally of one kind), oldest first."""
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        if mv is None:
            return []
        return [_as_stored(r, s) for r in ResultRepository(s).for_version(mv.id, kind)]


def get_analysis(result_id: int) -> StoredResult:
    with transaction() as s:
        row = s.get(AnalysisResult, result_id)
        if row is None:
            raise ValueError(f"no stored result with id {result_id}")
        return _as_stored(row, s)
