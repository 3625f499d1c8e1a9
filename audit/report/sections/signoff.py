"""Section "Sign-off": decisions already recorded for the version, how this report is signed, and the
form a reviewer fills in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from audit.report.content import Section, Table
from audit.report.sections.base import new_section


@dataclass(frozen=True)
class PriorSignOff:
    decision: str
    signed_by: str
    signed_at: Optional[str]  # ISO timestamp (UTC)
    reason: str
    report_id: int


def signoff_section(prior: Sequence[PriorSignOff]) -> Section:
    sec = new_section("signoff")
    if prior:
        sec.add(Table(["Decision", "By", "At (UTC)", "Reason", "On report"],
                      [[p.decision, p.signed_by, (p.signed_at or "-")[:19], p.reason, p.report_id] for p in prior],
                      widths=[0.14, 0.18, 0.2, 0.36, 0.12], caption="Sign-offs already recorded for this version."))
    sec.text("The decision on this version is recorded in the workbench (Reports page, or python -m audit "
             "report-sign) against this file's SHA-256, with the signer, time and reason, in the hash-chained audit "
             "log. The PDF is never modified after generation; a report can be signed once.")
    sec.add(Table(["Field", "Entry"], [["Decision", "[ ] approved      [ ] rejected"], ["Name and role", ""],
                                       ["Date", ""], ["Reason", ""], ["Signature", ""]], widths=[0.25, 0.75]))
    return sec
