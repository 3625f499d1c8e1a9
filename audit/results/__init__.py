"""Typed stored results: each kind has one dataclass, written by its service and read by every consumer
(pages, report sections, drift, CLI JSON). Pure data, no database."""

from audit.results.base import AnalysisSpec, StoredResult
from audit.results.concepts import ConceptCell, ConceptTest

__all__ = ["AnalysisSpec", "StoredResult", "ConceptCell", "ConceptTest"]
