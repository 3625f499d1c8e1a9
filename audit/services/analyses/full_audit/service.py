"""The full audit: every analysis the data allows, each through its own service, then the report.

The steps are those of the registered analyses (``audit.services.analyses.registry``), in their order; each
calls its analysis's use case (explanations, concept tests, bias audits, counterfactuals, drift, ...), so
every stored result is reused and a second run only adds a new report. A step the data
does not allow (no labels, no group columns, a text model, no parent version) is skipped with its
reason; a mistake of the caller (unknown family, version, dataset, concept or class) raises
``FullAuditError`` before anything runs. The whole run is one tracked run of kind ``full_audit``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

from audit.datasets.labels import LabelMismatch, labels_for_model, unknown_labels_message
from audit.models.tasks import input_kind
from audit.services.analyses.full_audit.plan import AuditPlan, StepSkipped, figure_samples
from audit.services.analyses.registry import audit_steps, report_parts
from audit.services.analyses.reports.service import generate_report
from audit.services.core.datasets import DatasetError, pick_reference_set, sample_index
from audit.services.core.predict import NonFiniteOutputs
from audit.services.core.registry import RegistryError, get_version
from audit.services.core.runs import tracked_run
from audit.services.governance.principals import SYSTEM, Principal, require

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]
SectionStatus = Literal["PASS", "FAIL", "INFO", "MISSING"]
KIND = "full_audit"
REPORT = "report"  # the last step, after every analysis's
# Share of the progress bar the report takes (it gathers and renders, so it gets the most); the analyses'
# steps share the rest by their declared weights.
REPORT_WEIGHT = 0.25


class FullAuditError(ValueError):
    """A full audit the caller asked for wrongly (unknown dataset, family, concept or class)."""


@dataclass(frozen=True)
class FullAuditOptions:
    """Budgets of the steps. Defaults match what the report itself would compute, so it reuses them."""

    explain_limit: int = 16  # also bounds the report's explained samples (at most 8: its usual figure)
    explain_methods: Optional[tuple[str, ...]] = None  # None: the report's figure methods
    explain_options: Optional[dict[str, Any]] = None  # None: the report's figure options
    tcav_n_random: int = 10
    tcav_set_size: int = 40
    tcav_n_inputs: int = 60
    bias_n_boot: int = 200
    cf_limit: int = 8
    # 50 steps x 2 trade-off constants: on EfficientNet-Lite0 (8 photographs, 224 px) as valid as 100 x 3 (8 of 8)
    # with a mean L2 of 0.41 against 0.44, at 48% of its cost (DECISIONS 78)
    cf_search: dict[str, Any] = field(default_factory=lambda: {"max_iter": 50, "binary_steps": 2, "restarts": 1})
    drift_limit: Optional[int] = None  # None: the report's drift limit
    drift_methods: Optional[tuple[str, ...]] = None  # None: the drift service's defaults
    drift_options: Optional[dict[str, Any]] = None  # None: the report's drift options
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class FullAudit:
    """What one full audit produced: the stored report, a status per report section and the timings."""

    report_id: int
    report_sha256: str
    sections: dict[str, SectionStatus]
    findings: list[dict[str, Any]]
    steps: dict[str, float]  # step -> seconds
    skipped: dict[str, str]  # step -> reason
    run_id: Optional[int] = None
    # step -> ids of the stored results it produced or reused (explanations: the id of their run)
    results: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"report_id": self.report_id, "report_sha256": self.report_sha256, "sections": dict(self.sections),
                "findings": list(self.findings), "steps": dict(self.steps), "skipped": dict(self.skipped)}


def _area_to_section() -> dict[str, str]:
    """Finding area -> report section, as the analyses declare them (a stored finding names its area)."""
    areas = {area: part.section.key for part in report_parts() for area in part.areas}
    return {**areas, "Performance": "performance"}


def section_statuses(findings: Sequence[dict[str, Any]]) -> dict[str, SectionStatus]:
    """One status per report section from its findings: FAIL if any fails, else MISSING if any is
    missing, else PASS if any passes, else INFO. A finding names its section (``section``) or its area."""
    by_area = _area_to_section()
    grouped: dict[str, set[str]] = {}
    for f in findings:
        name = f.get("section") or by_area.get(f.get("area", ""), str(f.get("area", "")).lower())
        grouped.setdefault(name, set()).add(str(f.get("status", "info")).lower())
    out: dict[str, SectionStatus] = {}
    for name, statuses in grouped.items():
        out[name] = ("FAIL" if "fail" in statuses else "MISSING" if "missing" in statuses
                     else "PASS" if "pass" in statuses else "INFO")
    return out


def _class_index(text: str, labels: list[str]) -> int:
    if text in labels:
        return labels.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(labels):
        return int(text)
    raise FullAuditError(unknown_labels_message([text], labels, what="--targets"))


def _plan(family: str, version: str, dataset: str, concepts: Sequence[str],
          targets: Optional[Sequence[str]]) -> AuditPlan:
    """Check everything the caller named before any work starts (each step checks what it reads)."""
    try:
        info = get_version(family, version)
    except RegistryError as exc:
        raise FullAuditError(str(exc)) from None
    try:
        ds = pick_reference_set(dataset, info["task"], info["labels"])
    except DatasetError as exc:
        raise FullAuditError(str(exc)) from None
    kind = input_kind(info["task"])
    labels = list(info["labels"] or [])
    chosen = [_class_index(t, labels) for t in targets] if targets else None
    index = sample_index(ds["name"])
    try:  # the data's class names as the model's class indices (never the set's own positions)
        model_labels = labels_for_model(index.label_texts, labels, what=f"dataset {ds['name']!r}")
    except LabelMismatch as exc:
        raise FullAuditError(str(exc)) from None
    plan = AuditPlan(family, version, ds["name"], info, kind, model_labels, [dict(g or {}) for g in index.groups],
                     list(dict.fromkeys(concepts)), chosen)
    for step in audit_steps():
        if step.check is not None:
            try:
                step.check(plan)
            except ValueError as exc:
                raise FullAuditError(str(exc)) from None
    return plan


def check_request(family: str, version: str, *, dataset: str, concepts: Sequence[str] = (),
                  targets: Optional[Sequence[str]] = None) -> None:
    """Raise FullAuditError for anything the caller named wrongly, running nothing (a job checks its
    parameters when it is submitted)."""
    _plan(family, version, dataset, concepts, targets)


def run_full_audit(family: str, version: str, *, dataset: str, concepts: Sequence[str] = (),
                   targets: Optional[Sequence[str]] = None, options: Optional[FullAuditOptions] = None,
                   author: Optional[str] = None, actor: Principal = SYSTEM, progress: Progress = None) -> FullAudit:
    """Run every analysis the data allows on ``dataset``, then generate and store the report."""
    require(actor, "run")
    require(actor, "report")
    opts = options or FullAuditOptions()
    plan = _plan(family, version, dataset, concepts, targets)
    tick = progress or (lambda f, msg: None)
    parameters = {"dataset": plan.dataset, "concepts": plan.concepts, "targets": plan.targets,
                  "options": opts.to_dict(), "author": author}
    steps: dict[str, float] = {}
    skipped: dict[str, str] = {}
    results: dict[str, list[int]] = {}
    analysis_steps = audit_steps()
    total = sum(step.weight for step in analysis_steps) or 1.0
    weights = {step.name: (1.0 - REPORT_WEIGHT) * step.weight / total for step in analysis_steps}
    weights[REPORT] = REPORT_WEIGHT
    done = [0.0]

    def sub(name: str) -> Callable[[float, str], None]:
        start, width = done[0], weights[name]
        return lambda f, msg: tick(min(1.0, start + width * max(0.0, min(1.0, float(f)))), f"{name}: {msg}")

    with tracked_run(KIND, family=family, version=version, parameters=parameters, actor=actor, seed=opts.seed) as run:
        for step in analysis_steps:
            name = step.name
            tick(done[0], f"{name}")
            t0 = time.perf_counter()
            with run.phase(name):
                try:
                    results[name] = list(step.run(plan, opts, actor, sub(name)))
                except StepSkipped as exc:
                    skipped[name] = str(exc)
                except NonFiniteOutputs:  # the model itself is broken: no later step can be trusted
                    raise
                except ValueError as exc:  # the services' "cannot run" errors (ConceptError, DriftError, ...)
                    log.info("full audit: %s skipped: %s", name, exc)
                    skipped[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            steps[name] = round(time.perf_counter() - t0, 3)
            done[0] += weights[name]
        tick(done[0], REPORT)
        t0 = time.perf_counter()
        with run.phase(REPORT):
            report = generate_report(family, version, author=author, dataset=plan.dataset, compute_missing=True,
                                     actor=actor, progress=sub(REPORT), figure_samples=figure_samples(opts))
        steps[REPORT] = round(time.perf_counter() - t0, 3)
        tick(1.0, f"report {report['id']} stored")
        run_id = run.run_id
    findings = list(report.get("findings") or [])
    return FullAudit(report_id=int(report["id"]), report_sha256=str(report["sha256"]),
                     sections=section_statuses(findings), findings=findings, steps=steps, skipped=skipped,
                     run_id=run_id, results=results)
