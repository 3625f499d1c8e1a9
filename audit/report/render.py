"""Lay a ReportDocument out as a PDF with reportlab: cover, executive summary with the regulatory
mapping, one numbered section per topic, sign-off block and appendix; page footer on every page.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import (
    CondPageBreak,
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from audit.report import content as c
from audit.report.compliance import SECTION_BY_KEY, mapping_rows

STATUS_COLOURS = {"pass": colors.HexColor("#2ca02c"), "fail": colors.HexColor("#d62728"),
                  "info": colors.HexColor("#7f7f7f"), "missing": colors.HexColor("#ff7f0e")}
# The standard PDF fonts cover Latin-1 only; these stand-ins keep other symbols legible.
ASCII_STAND_INS = {"→": "->", "←": "<-", "≥": ">=", "≤": "<=", "ρ": "rho", "–": "-", "—": "-", "…": "...",
                   "≈": "~", "“": '"', "”": '"', "‘": "'", "’": "'", "✓": "yes", "✗": "no", "∩": "&", "∪": "|"}


KEEP_TOGETHER_ROWS = 15


@dataclass
class RenderedReport:
    pdf: bytes
    pages: int


def safe_text(value: Any) -> str:
    """Text the standard fonts can draw: known symbols spelled out, other non-Latin-1 characters as '?'."""
    s = str(value)
    for k, v in ASCII_STAND_INS.items():
        s = s.replace(k, v)
    return s.encode("latin-1", "replace").decode("latin-1")


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontName="Helvetica", fontSize=9.5, leading=12.5,
                          alignment=TA_LEFT, spaceAfter=5)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontSize=22, leading=27, spaceAfter=14),
        "subtitle": ParagraphStyle("subtitle", parent=body, fontSize=13, leading=17, spaceAfter=8),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], fontSize=15, leading=19, spaceBefore=6, spaceAfter=8),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontSize=11.5, leading=15, spaceBefore=6, spaceAfter=5),
        "body": body,
        "note": ParagraphStyle("note", parent=body, fontSize=8, leading=10.5, textColor=colors.HexColor("#555555")),
        "missing": ParagraphStyle("missing", parent=body, fontSize=9, leading=12, borderColor=STATUS_COLOURS["missing"],
                                  borderWidth=0.8, borderPadding=5, backColor=colors.HexColor("#fff4e5"),
                                  spaceBefore=6, spaceAfter=10),
        "mono": ParagraphStyle("mono", parent=body, fontName="Courier", fontSize=8.5, leading=11),
        "cell": ParagraphStyle("cell", parent=body, fontSize=7.5, leading=9.2, spaceAfter=0),
        "cell_head": ParagraphStyle("cell_head", parent=body, fontName="Helvetica-Bold", fontSize=7.5, leading=9.2,
                                    spaceAfter=0),
        "cell_mono": ParagraphStyle("cell_mono", parent=body, fontName="Courier", fontSize=6.3, leading=8,
                                    spaceAfter=0),
        "caption": ParagraphStyle("caption", parent=body, fontSize=8, leading=10, textColor=colors.HexColor("#444444"),
                                  spaceBefore=2, spaceAfter=8),
    }


def _p(text: Any, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(safe_text(text)), style)


def _cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


def _table(t: c.Table, width: float, st: dict[str, ParagraphStyle]) -> list[Any]:
    n = len(t.columns)
    rel = t.widths or [1.0] * n
    total = float(sum(rel))
    widths = [width * r / total for r in rel]
    data = [[_p(h, st["cell_head"]) for h in t.columns]]
    for row in t.rows:
        data.append([_p(_cell_text(v), st["cell_mono"] if j in t.mono_columns else st["cell"])
                     for j, v in enumerate(row)])
    table = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
    style = [("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
             ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
             ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
    for i in range(1, len(data)):
        if i % 2 == 0:
            style.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor("#f7f7f7")))
    table.setStyle(TableStyle(style))
    tail = _p(t.caption, st["caption"]) if t.caption else Spacer(1, 6)
    # Short tables stay on one page with their caption; long ones split and repeat their header row.
    if len(t.rows) <= KEEP_TOGETHER_ROWS:
        return [KeepTogether([table, tail])]
    return [table, tail]


def _figure(f: c.Figure, width: float, st: dict[str, ParagraphStyle]) -> list[Any]:
    from reportlab.lib.utils import ImageReader

    reader = ImageReader(io.BytesIO(f.png))
    iw, ih = reader.getSize()
    w = min(width, f.width_cm * cm)
    h = w * ih / iw
    max_h = 20 * cm
    if h > max_h:
        w, h = w * max_h / h, max_h
    img = Image(io.BytesIO(f.png), width=w, height=h)
    img.hAlign = "LEFT"
    return [KeepTogether([img, _p(f.caption, st["caption"])])]


def _blocks(blocks: Sequence[c.Block], width: float, st: dict[str, ParagraphStyle]) -> list[Any]:
    out: list[Any] = []
    for b in blocks:
        if isinstance(b, c.Paragraph):
            style = st.get(b.style, st["body"])
            if b.style == "missing":
                out.append(Paragraph("<b>MISSING:</b> " + escape(safe_text(b.text)), style))
            else:
                out.append(_p(b.text, style))
        elif isinstance(b, c.Table):
            out.extend(_table(b, width, st))
        elif isinstance(b, c.Figure):
            out.extend(_figure(b, width, st))
        else:
            raise TypeError(f"cannot render a {type(b).__name__} block")
    return out


def _cover(doc: c.ReportDocument, st: dict[str, ParagraphStyle], width: float) -> list[Any]:
    rows = [["Model family", doc.family], ["Version", doc.version], ["Task", doc.task],
            ["Model SHA-256", doc.model_sha256], ["Status at generation", doc.status],
            ["Generated (UTC)", doc.created_at], ["Author", doc.author]]
    data = [[_p(k, st["cell_head"]), _p(v, st["mono"] if k == "Model SHA-256" else st["body"])] for k, v in rows]
    table = Table(data, colWidths=[4.2 * cm, width - 4.2 * cm], hAlign="LEFT")
    table.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cccccc")),
                               ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
    counts = {s: sum(1 for f in doc.findings if f.status == s) for s in c.STATUSES}
    return [Spacer(1, 3 * cm), _p(doc.title, st["title"]), _p(f"{doc.family} version {doc.version}", st["subtitle"]),
            Spacer(1, 0.8 * cm), table, Spacer(1, 1.0 * cm),
            _p(f"Findings: {counts['pass']} pass, {counts['fail']} fail, {counts['info']} for information, "
               f"{counts['missing']} missing.", st["body"]),
            _p("This report records evidence produced by the model audit workbench. Every number is traceable "
               "to a stored result listed in the appendix. The approval decision is recorded by a person at "
               "sign-off, against this file's SHA-256.", st["note"]),
            PageBreak()]


def _summary(doc: c.ReportDocument, st: dict[str, ParagraphStyle], width: float, number: int) -> list[Any]:
    out: list[Any] = [_p(f"{number}. Executive summary", st["h1"])]
    section_no = {s.key: i for i, s in enumerate(doc.sections, start=number + 1)}
    data = [[_p(h, st["cell_head"]) for h in ("Area", "Check", "Result", "Detail", "See")]]
    status_rows = []
    for f in doc.findings:
        data.append([_p(f.area, st["cell"]), _p(f.check, st["cell"]), _p(f.status.upper(), st["cell_head"]),
                     _p(f.detail, st["cell"]), _p(f"section {section_no.get(f.section, '-')}", st["cell"])])
        status_rows.append(f.status)
    table = Table(data, colWidths=[w * width for w in (0.14, 0.25, 0.1, 0.39, 0.12)], repeatRows=1, hAlign="LEFT")
    style = [("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
             ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")), ("VALIGN", (0, 0), (-1, -1), "TOP")]
    for i, s in enumerate(status_rows, start=1):
        style.append(("BACKGROUND", (2, i), (2, i), STATUS_COLOURS[s].clone(alpha=0.25)))
    table.setStyle(TableStyle(style))
    out += [table, Spacer(1, 8)]
    out.append(_p("PASS and FAIL compare a measured value with the threshold named in the detail; INFO records "
                  "evidence without a threshold; MISSING names a result that was not available when the report was "
                  "generated (its section says how to produce it).", st["note"]))
    out.append(_p("Mapping to the EU AI Act (Annex IV) and SR 11-7", st["h2"]))
    rows = mapping_rows()
    # Number the mapping like the report: the summary is section `number`, the others follow in order.
    keys = ["summary", *[s.key for s in doc.sections]]
    numbered = []
    for key in keys:
        spec = SECTION_BY_KEY.get(key)
        row = next((r for r in rows if spec and r[1] == spec.title), None)
        if row is not None:
            numbered.append([str(number + keys.index(key)), *row[1:]])
    out += _table(c.Table(["#", "Report section", "EU AI Act Annex IV", "SR 11-7 expectation"], numbered,
                          caption="Headings are paraphrased for orientation; they are not legal text.",
                          widths=[0.05, 0.25, 0.36, 0.34]), width, st)
    return out


def render_pdf(doc: c.ReportDocument) -> RenderedReport:
    """The report as PDF bytes and its page count."""
    st = _styles()
    buf = io.BytesIO()
    pages = {"n": 0}
    footer = safe_text(f"{doc.family} {doc.version}  |  model {doc.model_sha256[:16]}  |  generated {doc.created_at[:19]} UTC")

    def on_page(canvas, d) -> None:  # noqa: ANN001
        pages["n"] = max(pages["n"], canvas.getPageNumber())
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.drawString(d.leftMargin, 1.1 * cm, footer)
        canvas.drawRightString(d.leftMargin + d.width, 1.1 * cm, f"Page {canvas.getPageNumber()}")
        canvas.restoreState()

    template = SimpleDocTemplate(buf, pagesize=A4, leftMargin=2 * cm, rightMargin=2 * cm, topMargin=1.8 * cm,
                                 bottomMargin=2 * cm, title=safe_text(f"{doc.title}: {doc.family} {doc.version}"),
                                 author=safe_text(doc.author), subject="Model audit and compliance report",
                                 creator="model audit workbench", invariant=1)
    width = template.width
    story: list[Any] = _cover(doc, st, width) + _summary(doc, st, width, 1)
    for i, section in enumerate(doc.sections, start=2):
        story.append(CondPageBreak(6 * cm))
        story.append(_p(f"{i}. {section.title}", st["h1"]))
        story.extend(_blocks(section.blocks, width, st))
        for m in section.missing:
            story.append(Paragraph("<b>MISSING:</b> " + escape(safe_text(m)), st["missing"]))
    template.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return RenderedReport(buf.getvalue(), pages["n"])
