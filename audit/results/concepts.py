"""The stored result of a concept test (TCAV with significance): one writer (``to_summary``) and one
reader (``ConceptTest.from_stored``) for the concept service, its page, the CLI, drift and the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

from audit.jsonsafe import finite_or_none, json_safe
from audit.results.base import StoredResult


@dataclass(frozen=True)
class ConceptCell:
    """One concept at one layer: the TCAV score against random concept directions."""

    concept: str
    layer: str
    score: Optional[float]
    magnitude: Optional[float]
    p_value: Optional[float]
    p_value_corrected: Optional[float]
    significant: bool
    cav_accuracy: Optional[float]
    random_mean: Optional[float]
    random_std: Optional[float]
    low_cav_accuracy: bool = False
    scores: tuple[float, ...] = ()
    random_scores: tuple[float, ...] = ()

    @property
    def lowers_class(self) -> bool:
        """True when the score is below the random directions' mean: moving along the concept lowers the
        class's logit more often than a random direction does (a significant cell is then evidence against
        the concept, not reliance on it)."""
        return self.score is not None and self.random_mean is not None and self.score < self.random_mean

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scores"], d["random_scores"] = list(self.scores), list(self.random_scores)
        return json_safe(d)


@dataclass(frozen=True)
class ConceptTest:
    """All concepts x layers of one test for one class, with the settings the significance rests on."""

    target: int
    target_label: str
    alpha: float
    correction: str
    test: str
    n_random: int
    layers: tuple[str, ...]
    cells: tuple[ConceptCell, ...]
    concept_hashes: dict[str, list[str]] = field(default_factory=dict)
    random_hashes: tuple[str, ...] = ()
    inputs_hash: str = ""
    random_pool_size: int = 0
    concept_resampled_per_run: bool = True
    stored: Optional[StoredResult] = None

    @property
    def concepts(self) -> list[str]:
        return list(dict.fromkeys(c.concept for c in self.cells))

    @property
    def n_tests(self) -> int:
        return len(self.cells)

    def cell(self, concept: str, layer: str) -> ConceptCell:
        for c in self.cells:
            if c.concept == concept and c.layer == layer:
                return c
        raise KeyError(f"no cell for concept {concept!r} at layer {layer!r}")

    def significant_cells(self) -> list[ConceptCell]:
        return [c for c in self.cells if c.significant]

    def to_summary(self) -> dict[str, Any]:
        """The JSON stored in ``analysis_results.summary`` (the only writer of that shape)."""
        concepts: dict[str, Any] = {}
        for c in self.cells:
            entry = concepts.setdefault(c.concept, {"concept_hashes": list(self.concept_hashes.get(c.concept, [])),
                                                    "layers": {}})
            d = c.to_dict()
            del d["concept"], d["layer"]
            entry["layers"][c.layer] = d
        return json_safe({
            "target": self.target, "target_label": self.target_label, "alpha": self.alpha,
            "correction": self.correction, "test": self.test, "n_random": self.n_random,
            "n_tests": self.n_tests, "layers": list(self.layers), "concepts": concepts,
            "random_hashes": list(self.random_hashes), "inputs_hash": self.inputs_hash,
            "random_pool_size": self.random_pool_size,
            "concept_resampled_per_run": self.concept_resampled_per_run,
        })

    @classmethod
    def from_summary(cls, s: Mapping[str, Any], stored: Optional[StoredResult] = None) -> "ConceptTest":
        cells = []
        hashes = {}
        for concept, entry in (s.get("concepts") or {}).items():
            hashes[concept] = list(entry.get("concept_hashes") or [])
            for layer, d in (entry.get("layers") or {}).items():
                cells.append(ConceptCell(
                    concept=concept, layer=layer, score=finite_or_none(d.get("score")),
                    magnitude=finite_or_none(d.get("magnitude")), p_value=finite_or_none(d.get("p_value")),
                    p_value_corrected=finite_or_none(d.get("p_value_corrected")),
                    significant=bool(d.get("significant")), cav_accuracy=finite_or_none(d.get("cav_accuracy")),
                    random_mean=finite_or_none(d.get("random_mean")), random_std=finite_or_none(d.get("random_std")),
                    low_cav_accuracy=bool(d.get("low_cav_accuracy")),
                    scores=tuple(float(v) for v in d.get("scores") or () if v is not None),
                    random_scores=tuple(float(v) for v in d.get("random_scores") or () if v is not None)))
        return cls(target=int(s["target"]), target_label=str(s.get("target_label", s["target"])),
                   alpha=float(s["alpha"]), correction=str(s["correction"]), test=str(s.get("test", "ttest")),
                   n_random=int(s["n_random"]), layers=tuple(s.get("layers") or ()), cells=tuple(cells),
                   concept_hashes=hashes, random_hashes=tuple(s.get("random_hashes") or ()),
                   inputs_hash=str(s.get("inputs_hash", "")), random_pool_size=int(s.get("random_pool_size", 0)),
                   concept_resampled_per_run=bool(s.get("concept_resampled_per_run", False)), stored=stored)

    @classmethod
    def from_stored(cls, stored: StoredResult) -> "ConceptTest":
        if stored.kind != "tcav":
            raise ValueError(f"result {stored.id} is a {stored.kind} result, not a concept test")
        return cls.from_summary(stored.summary, stored)
