"""PDF compliance reports: content model, regulatory mapping, matplotlib figures and reportlab layout.

Pure rendering: the reports service gathers stored results into a ReportDocument; nothing here reads the database.
"""

from audit.report.compliance import ANNEX_IV, SECTIONS, SR_11_7, ReportThresholds, SectionSpec, mapping_rows
from audit.report.content import (
    STATUSES,
    Figure,
    Finding,
    ManifestEntry,
    Paragraph,
    ReportDocument,
    Section,
    Table,
)
from audit.report.render import RenderedReport, render_pdf, safe_text

__all__ = [
    "ANNEX_IV",
    "SECTIONS",
    "SR_11_7",
    "STATUSES",
    "Figure",
    "Finding",
    "ManifestEntry",
    "Paragraph",
    "RenderedReport",
    "ReportDocument",
    "ReportThresholds",
    "Section",
    "SectionSpec",
    "Table",
    "mapping_rows",
    "render_pdf",
    "safe_text",
]
