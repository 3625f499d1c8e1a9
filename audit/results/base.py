"""The provenance header every stored analysis carries, and the declaration of what keys an analysis.

Pure data: no database, no torch. Services fill these from rows; pages, report sections, drift and the
CLI read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class StoredResult:
    """One stored analysis as the services core read it back: who, when, with what, from what."""

    id: int
    kind: str
    family: str
    version: str
    summary: dict[str, Any]
    parameters: dict[str, Any]
    key: str
    other_version: Optional[str] = None
    dataset: Optional[str] = None
    artifact_sha256: Optional[str] = None
    seed: int = 0
    device: str = "cpu"
    duration_s: float = 0.0
    run_id: Optional[int] = None
    created_by: str = "system"
    created_at: Optional[str] = None
    library_versions: dict[str, str] = field(default_factory=dict)
    cached: bool = False

    @property
    def inputs(self) -> list[int]:
        """Ids of the stored results this one was computed from (part of its key)."""
        return [int(i) for i in self.parameters.get("inputs", [])]

    @property
    def pin(self) -> str:
        """What a report manifest records to pin this result: its artifact hash, else its key."""
        return self.artifact_sha256 or self.key

    def as_dict(self) -> dict[str, Any]:
        """The plain form pages and the CLI's JSON have always shown (``summary`` nested)."""
        return {"id": self.id, "kind": self.kind, "family": self.family, "version": self.version,
                "other_version": self.other_version, "dataset": self.dataset, "parameters": dict(self.parameters),
                "summary": dict(self.summary), "params_sha256": self.key, "seed": self.seed, "device": self.device,
                "duration_s": self.duration_s, "run_id": self.run_id, "created_by": self.created_by,
                "created_at": self.created_at, "library_versions": dict(self.library_versions),
                "cached": self.cached}


@dataclass(frozen=True)
class AnalysisSpec:
    """What an analysis declares about itself, read by the cache key and by the tests.

    ``result_options``: the service arguments that change the stored result (they enter the key).
    ``other_arguments``: arguments that do not (who asks, progress, batch sizes, recompute flags).
    ``reads``: kinds of stored results the analysis is computed from; their ids enter the key, so the
    analysis is recomputed when one of them changes or a newer one is stored."""

    kind: str
    result_options: tuple[str, ...]
    other_arguments: tuple[str, ...] = ("actor", "progress")
    reads: tuple[str, ...] = ()
