"""What a compliance report says, as plain data: findings, sections of paragraphs, tables and figures,
and the manifest of stored results it used. The service fills it; the renderer lays it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

Status = Literal["pass", "fail", "info", "missing"]
STATUSES: tuple[str, ...] = ("pass", "fail", "info", "missing")


@dataclass
class Finding:
    """One checked statement of the executive summary, e.g. accuracy against its threshold."""

    area: str
    check: str
    status: Status
    detail: str
    section: str  # key of the section that holds the evidence

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"finding status must be one of {', '.join(STATUSES)}, got {self.status!r}")


@dataclass
class Paragraph:
    text: str
    style: Literal["body", "note", "missing", "mono"] = "body"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""
    widths: Optional[list[float]] = None  # relative column widths
    mono_columns: tuple[int, ...] = ()  # columns set in a fixed-width font (hashes)


@dataclass
class Figure:
    png: bytes
    caption: str
    width_cm: float = 16.0


Block = Union[Paragraph, Table, Figure]


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what is missing and how to produce it
    findings: list["Finding"] = field(default_factory=list)  # its lines of the executive summary
    sources: list["ManifestEntry"] = field(default_factory=list)  # the results its evidence rests on

    def add(self, block: Block) -> "Section":
        self.blocks.append(block)
        return self

    def text(self, text: str, style: Literal["body", "note", "missing", "mono"] = "body") -> "Section":
        return self.add(Paragraph(text, style))

    def lack(self, what: str, how: str) -> "Section":
        """Record a missing result: the section says what is missing and the command that produces it."""
        self.missing.append(f"{what} To produce it: {how}")
        return self

    def find(self, area: str, check: str, status: Status, detail: str) -> "Section":
        """Add a checked statement to the executive summary, pointing at this section."""
        self.findings.append(Finding(area, check, status, detail, self.key))
        return self

    def cite(self, kind: str, id: Optional[int], sha256: str, description: str) -> "Section":
        """Record a result this section rests on; the appendix lists every section's sources."""
        self.sources.append(ManifestEntry(kind, id, sha256, description))
        return self


@dataclass
class ManifestEntry:
    """A stored (or report-time) result the report used, with the hash that pins it."""

    kind: str
    id: Optional[int]
    sha256: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "sha256": self.sha256, "description": self.description}


@dataclass
class ReportDocument:
    family: str
    version: str
    task: str
    model_sha256: str
    created_at: str  # ISO timestamp (UTC)
    author: str
    status: str
    findings: list[Finding]
    sections: list[Section]
    manifest: list[ManifestEntry]
    library_versions: dict[str, str]
    title: str = "Model audit and compliance report"
    parameters: dict[str, Any] = field(default_factory=dict)

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(f"no section {key!r}")
