"""Shared plumbing for stored analyses (concept tests, bias audits, counterfactuals, probes):
parameter hashing, the cache lookup, and storing a result with its provenance and an audit-log entry."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from audit.env import library_versions
from audit.services.auth import Principal
from storage import auditlog
from storage.db import transaction
from storage.orm import AnalysisResult
from storage.repositories import DatasetRepository, ModelRepository, ResultRepository


def params_hash(kind: str, params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([kind, params], sort_keys=True, default=str).encode()).hexdigest()


def find_result(kind: str, family: str, version: str, params: dict[str, Any]) -> Optional[dict[str, Any]]:
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        if mv is None:
            return None
        row = ResultRepository(s).find(kind=kind, model_version_id=mv.id, params_sha256=params_hash(kind, params))
        return _as_dict(row) if row else None


def store_result(kind: str, family: str, version: str, params: dict[str, Any], summary: dict[str, Any], *,
                 actor: Principal, dataset: Optional[str] = None, seed: int = 0, device: str = "cpu",
                 duration_s: float = 0.0, artifact_sha256: Optional[str] = None,
                 other_version: Optional[str] = None) -> dict[str, Any]:
    with transaction() as s:
        repo = ModelRepository(s)
        mv = repo.version(family, version)
        other = repo.version(family, other_version) if other_version else None
        ds = DatasetRepository(s).get(dataset) if dataset else None
        row = ResultRepository(s).add(AnalysisResult(
            kind=kind, model_version_id=mv.id, other_version_id=other.id if other else None,
            dataset_id=ds.id if ds else None, params_sha256=params_hash(kind, params), parameters=params,
            summary=summary, artifact_sha256=artifact_sha256, seed=seed, device=device,
            library_versions=library_versions(), duration_s=duration_s, created_by=actor.username,
        ))
        auditlog.append(s, actor=actor.username, action=f"{kind}.create", subject=f"{family}/{version}",
                        details={"result_id": row.id, "params_sha256": row.params_sha256})
        return _as_dict(row)


def results_for(family: str, version: str, kind: Optional[str] = None) -> list[dict[str, Any]]:
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        if mv is None:
            return []
        return [_as_dict(r) for r in ResultRepository(s).for_version(mv.id, kind)]


def _as_dict(row: AnalysisResult) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "parameters": dict(row.parameters), "summary": dict(row.summary),
            "params_sha256": row.params_sha256, "seed": row.seed, "device": row.device,
            "duration_s": row.duration_s, "created_by": row.created_by,
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "library_versions": dict(row.library_versions or {})}
