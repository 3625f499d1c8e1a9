"""The report's sections, in order, each mapped to the EU AI Act Annex IV headings and to the
documentation expectations of SR 11-7 (US supervisory guidance on model risk management).

Headings are paraphrased references for orientation, not legal text; the mapping is printed in every
report so a reviewer can check it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Annex IV of Regulation (EU) 2024/1689: technical documentation of high-risk AI systems (paraphrased).
ANNEX_IV: dict[str, str] = {
    "IV.1": "General description: intended purpose, provider, version",
    "IV.2(a)": "Development methods and steps",
    "IV.2(b)": "Design specifications: general logic, key design choices",
    "IV.2(d)": "Data requirements: data sets, provenance, datasheets",
    "IV.2(e)": "Human oversight measures",
    "IV.2(g)": "Validation and testing: data, metrics (incl. discriminatory impact), dated and signed test reports",
    "IV.3": "Monitoring, functioning and control: capabilities, limitations, accuracy for groups, foreseeable risks",
    "IV.4": "Appropriateness of the performance metrics",
    "IV.5": "Risk management system (Article 9)",
    "IV.6": "Relevant changes through the lifecycle",
    "IV.9": "Post-market performance evaluation",
}

# SR 11-7 (Federal Reserve / OCC, 2011), documentation expectations by area (paraphrased).
SR_11_7: dict[str, str] = {
    "DEV-PURPOSE": "Development: purpose, design and theory of the model",
    "DEV-DATA": "Development: data relevance, quality and representativeness",
    "DEV-TEST": "Development: testing of accuracy, robustness and stability",
    "DEV-LIMITS": "Development: limitations and assumptions",
    "VAL-SOUND": "Validation: evaluation of conceptual soundness",
    "VAL-MONITOR": "Validation: ongoing monitoring, process verification, benchmarking",
    "VAL-OUTCOME": "Validation: outcomes analysis",
    "GOV-APPROVAL": "Governance: roles, approval and effective challenge",
    "GOV-DOCS": "Governance: documentation and inventory",
}


@dataclass(frozen=True)
class SectionSpec:
    key: str
    title: str
    annex_iv: tuple[str, ...]
    sr_11_7: tuple[str, ...]


SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec("summary", "Executive summary", ("IV.2(g)", "IV.3"), ("GOV-APPROVAL",)),
    SectionSpec("intended_use", "Intended use and model description", ("IV.1", "IV.2(a)", "IV.2(b)"), ("DEV-PURPOSE",)),
    SectionSpec("data", "Data", ("IV.2(d)", "IV.2(g)"), ("DEV-DATA",)),
    SectionSpec("performance", "Performance", ("IV.2(g)", "IV.3", "IV.4"), ("DEV-TEST", "VAL-OUTCOME")),
    SectionSpec("explanations", "Explanations", ("IV.2(b)", "IV.3"), ("VAL-SOUND",)),
    SectionSpec("quality", "Explanation quality", ("IV.2(g)",), ("VAL-SOUND", "VAL-MONITOR")),
    SectionSpec("concepts", "Concept tests (TCAV)", ("IV.2(b)", "IV.3"), ("VAL-SOUND",)),
    SectionSpec("bias", "Bias audit", ("IV.2(g)", "IV.3"), ("VAL-OUTCOME", "DEV-DATA")),
    SectionSpec("counterfactuals", "Counterfactuals and probes", ("IV.3",), ("VAL-SOUND", "DEV-TEST")),
    SectionSpec("drift", "Drift against the previous version", ("IV.6", "IV.9"), ("VAL-MONITOR",)),
    SectionSpec("limitations", "Limitations", ("IV.3", "IV.5"), ("DEV-LIMITS",)),
    SectionSpec("signoff", "Sign-off", ("IV.2(e)", "IV.2(g)"), ("GOV-APPROVAL",)),
    SectionSpec("appendix", "Appendix: manifest and library versions", ("IV.2(g)",), ("GOV-DOCS", "VAL-MONITOR")),
)
SECTION_BY_KEY = {s.key: s for s in SECTIONS}
BUILT_IN_SECTIONS = frozenset(SECTION_BY_KEY)
SECTION_CONFLICT = "report section {key!r} is already declared with another title or mapping"
UNKNOWN_REFERENCE = "report section {key!r} cites {refs}, which are not Annex IV or SR 11-7 headings of this table"


def declare_section(spec: SectionSpec, *, before: str = "limitations") -> bool:
    """Add a section that an analysis declares (``audit.services.analyses``), placed before ``before``; True
    when it was new. Declaring a known key again with the same spec does nothing; with another spec it is an
    error."""
    global SECTIONS
    known = SECTION_BY_KEY.get(spec.key)
    if known is not None:
        if known != spec:
            raise ValueError(SECTION_CONFLICT.format(key=spec.key))
        return False
    unknown = [r for r in spec.annex_iv if r not in ANNEX_IV] + [r for r in spec.sr_11_7 if r not in SR_11_7]
    if unknown:
        raise ValueError(UNKNOWN_REFERENCE.format(key=spec.key, refs=", ".join(unknown)))
    at = [s.key for s in SECTIONS].index(before)
    SECTIONS = SECTIONS[:at] + (spec,) + SECTIONS[at:]
    SECTION_BY_KEY[spec.key] = spec
    return True


def withdraw_section(key: str) -> None:
    """Remove a declared section again (the built-in ones stay)."""
    global SECTIONS
    if key in BUILT_IN_SECTIONS:
        raise ValueError(f"report section {key!r} is built in")
    SECTIONS = tuple(s for s in SECTIONS if s.key != key)
    SECTION_BY_KEY.pop(key, None)


def mapping_rows() -> list[list[str]]:
    """One row per section: number, title, Annex IV references, SR 11-7 references."""
    rows = []
    for i, s in enumerate(SECTIONS, start=1):
        rows.append([str(i), s.title, "; ".join(f"{r} {ANNEX_IV[r].split(':')[0]}" for r in s.annex_iv),
                     "; ".join(SR_11_7[r] for r in s.sr_11_7)])
    return rows


@dataclass(frozen=True)
class ReportThresholds:
    """Pass/fail lines of the executive summary (all absolute fractions)."""

    min_accuracy: float = 0.90
    max_group_accuracy_gap: float = 0.10
    max_text_flip_rate: float = 0.05
    min_counterfactual_valid_rate: float = 0.5

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
