"""Report use cases: gather a version's evidence (stored results, typed; computing the missing
explanations, quality checks and drift when asked), lay it out with the pure section builders of
``audit.report.sections``, render and store the PDF by SHA-256, list, download and sign it.

The report's own sections (intended use, data, performance, limitations, sign-off, appendix) are gathered
here; every analysis's sections come from its registered report part (``analyses/<name>/report.py``), in
the analyses' order."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from audit.attribution import method_spec
from audit.report import ReportDocument, ReportThresholds, Section, render_pdf
from audit.report import sections as S
from audit.services.analyses.registry import report_parts
from audit.services.governance.principals import SYSTEM, Principal, require
from audit.services.core.runs import stored_analyses, tracked_run
from audit.services.core.datasets import DatasetError, pick_reference_set
from audit.services.core.handles import handle_for
from audit.services.core.predict import predict_dataset
from audit.services.core.registry import get_version, list_models
# Stored reports and their sign-off live in reports.records; re-exported for the pages and the CLI.
from audit.services.analyses.reports.records import (DECISIONS, ReportError, get_report, list_reports,  # noqa: F401
                                           report_bytes, sign_report)
from storage import auditlog
from storage.artifacts import ArtifactStore
from storage.db import transaction
from storage.orm import Report, utcnow
from storage.repositories import DatasetRepository, ModelRepository, ReportRepository

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]

# The report's choices of methods (figures, sanity check, token attributions); what each needs comes from its class.
FIGURE_METHODS: tuple[str, ...] = ("integrated_gradients", "gradcam", "gradcam_pp", "saliency")
FIGURE_OPTIONS: dict[str, Any] = {"ig_steps": 32, "seed": 0}
SANITY_METHODS: tuple[str, ...] = ("saliency", "gradcam", "integrated_gradients")
N_REPRESENTATIVE = 4
N_MISCLASSIFIED = 4
FIGURE_SAMPLES = N_REPRESENTATIVE + N_MISCLASSIFIED  # the report's explained samples unless a budget says fewer
DRIFT_LIMIT = {"image": 24, "text": 16}
DRIFT_OPTIONS: dict[str, Any] = {"ig_steps": 16, "seed": 0}
TEXT_IG_STEPS = 16
TEXT_METHODS: tuple[str, ...] = ("integrated_gradients", "grad_x_input")


@dataclass
class Gathering:
    """What one document is built from, collected step by step (the analyses' report parts read and add to
    it in their order)."""

    model: S.ModelFacts
    reference: Optional[dict[str, Any]]  # {"name", "id", "sha256"} from the reference-set picker
    compute: bool
    actor: Principal
    handle: Any = None
    preds: Optional[S.ReferencePredictions] = None
    choice: Optional[S.SampleChoice] = None
    x: Optional[torch.Tensor] = None  # model inputs of the explained images
    n_explained: int = 0
    computed: list[str] = field(default_factory=list)
    cited: list[str] = field(default_factory=list)  # methods and analyses used, for the references
    thresholds: ReportThresholds = field(default_factory=ReportThresholds)
    explained: Any = None  # the explanations section's evidence (image maps or token attributions), if any

    @property
    def dataset(self) -> Optional[str]:
        return self.reference["name"] if self.reference else None


# ------------------------------------------------------------------ gathering

def with_layer_if_needed(methods: tuple[str, ...], handle: Any) -> list[str]:
    """``methods`` less those whose class reads a layer (``needs_layer``) when the model has no target layer."""
    return [mm for mm in methods if handle.target_layer or not method_spec(mm).needs_layer]


def _model_facts(family: str, version: str) -> S.ModelFacts:
    info = get_version(family, version)
    with transaction() as s:
        fam = ModelRepository(s).family(family)
        description = fam.description if fam else ""
    lineage = next((f["versions"] for f in list_models() if f["family"] == family), [])
    return S.ModelFacts(family, version, description or "", info, tuple(lineage))


def _reference_set(dataset: Optional[str], model: S.ModelFacts) -> Optional[dict[str, Any]]:
    try:
        return pick_reference_set(dataset, model.task, model.labels)
    except DatasetError:
        if dataset:  # a named set that is missing or of the wrong kind is the caller's mistake
            raise
        return None


def _datasets_used(g: Gathering) -> tuple[list[S.DatasetFacts], Optional[S.DatasetFacts]]:
    names = {g.dataset} if g.dataset else set()
    for r in stored_analyses(g.model.family, g.model.version):
        for name in (r.dataset, r.summary.get("dataset")):
            if isinstance(name, str):
                names.add(name)
    with transaction() as s:
        repo = DatasetRepository(s)
        facts = [S.DatasetFacts(d.id, d.name, d.kind, len(d.samples), d.content_sha256, d.description or "")
                 for d in (repo.get(n) for n in sorted(names)) if d is not None]
    return facts, next((d for d in facts if d.name == g.dataset), None)


@torch.no_grad()
def _predictions(g: Gathering) -> S.ReferencePredictions:
    p = predict_dataset(g.model.family, g.model.version, g.dataset)
    return S.ReferencePredictions(g.dataset, list(p.keys), list(p.labels), [dict(x) for x in p.groups],
                                  np.asarray(p.probabilities), texts=p.texts)


def _prior_signoffs(version_id: int) -> list[S.PriorSignOff]:
    with transaction() as s:
        return [S.PriorSignOff(r.decision, r.signed_by, r.signed_at.isoformat() if r.signed_at else None, r.reason,
                               r.report_id) for r in ReportRepository(s).signoffs_for_version(version_id)]


# ------------------------------------------------------------------ use cases

def _split_samples(n: int) -> dict[str, int]:
    """The report's explained samples: half representative (rounded up), half misclassified."""
    if n < 1:
        raise ValueError(f"the report explains at least one sample, got {n}")
    return {"n_representative": (n + 1) // 2, "n_misclassified": n // 2}


def report_sample_keys(family: str, version: str, dataset: str, *, figure_samples: int = FIGURE_SAMPLES) -> list[str]:
    """The reference samples the report of this version will explain (the same picker on the same
    predictions), so a full audit can explain them first and the report reuses the stored maps."""
    g = Gathering(_model_facts(family, version), {"name": dataset}, True, SYSTEM)
    g.handle = handle_for(family, version)
    g.preds = _predictions(g)
    choice = S.pick_samples(g.preds, g.model.labels, **_split_samples(figure_samples))
    return list(choice.keys) if choice is not None else []


def build_document(family: str, version: str, *, author: Optional[str] = None, dataset: Optional[str] = None,
                   compute_missing: bool = True, thresholds: Optional[ReportThresholds] = None,
                   actor: Principal = SYSTEM, progress: Progress = None,
                   figure_samples: int = FIGURE_SAMPLES) -> ReportDocument:
    """Gather everything the report says into a ReportDocument (no PDF, nothing stored but the
    explanations, quality checks and drift computed on the way when ``compute_missing``)."""
    require(actor, "report")
    tick = progress or (lambda f, msg: None)
    thresholds = thresholds or ReportThresholds()
    model = _model_facts(family, version)
    g = Gathering(model, _reference_set(dataset, model), compute_missing, actor, thresholds=thresholds)
    tick(0.02, "loading the model")
    if g.reference is not None:
        g.handle = handle_for(family, version)
        g.preds = _predictions(g)
        g.choice = S.pick_samples(g.preds, model.labels, **_split_samples(figure_samples))
    used, reference = _datasets_used(g)
    tick(0.1, "performance")
    sections = [S.intended_use_section(model), S.data_section(model, used, reference, g.preds),
                S.performance_section(model, g.preds, min_accuracy=thresholds.min_accuracy)]
    parts = report_parts()
    for i, part in enumerate(parts):
        tick(0.2 + 0.6 * i / len(parts), part.section.title.lower())
        sections += part.gather(g)
    return _document(g, sections, author, thresholds)


def _document(g: Gathering, sections: list[Section], author: Optional[str],
              thresholds: ReportThresholds) -> ReportDocument:
    model = g.model
    missing = [s.title for s in sections if s.missing]
    sections.append(S.limitations_section(model, explained_samples=g.n_explained,
                                          computed=g.computed, missing=missing))
    sections.append(S.signoff_section(_prior_signoffs(model.info["id"])))
    params = {"dataset": g.dataset, "compute_missing": g.compute, "figure_methods": list(FIGURE_METHODS),
              "figure_options": FIGURE_OPTIONS, "drift_options": {**DRIFT_OPTIONS, "limit": DRIFT_LIMIT[model.kind]},
              "thresholds": thresholds.to_dict()}
    manifest = [m for s in sections for m in s.sources]
    libraries = S.report_libraries()
    sections.append(S.appendix_section(manifest, libraries, params, cited=g.cited))
    findings = sorted((f for s in sections for f in s.findings), key=lambda f: _finding_rank().get(f.section, 100))
    return ReportDocument(
        family=model.family, version=model.version, task=model.task, model_sha256=model.info["sha256"],
        created_at=utcnow().isoformat(), author=author or g.actor.username, status=model.info["status"],
        findings=findings, sections=sections, manifest=manifest, library_versions=libraries, parameters=params)


def _finding_rank() -> dict[str, int]:
    """Order of the executive summary: performance first, then each analysis's declared rank."""
    return {"performance": 0, **{part.section.key: part.finding_rank for part in report_parts()}}


def generate_report(family: str, version: str, *, author: Optional[str] = None, dataset: Optional[str] = None,
                    compute_missing: bool = True, thresholds: Optional[ReportThresholds] = None,
                    actor: Principal = SYSTEM, progress: Progress = None,
                    figure_samples: int = FIGURE_SAMPLES) -> dict[str, Any]:
    """Build, render and store the PDF (artifact store, by SHA-256) with a Report row and an audit-log
    entry, inside one tracked run of kind ``report``.

    Missing results never fail the report: their sections say what is missing and how to produce it.
    Returns {"id", "sha256", "filename", "pages", "seconds", "family", "version", "findings", "run_id"}.
    """
    require(actor, "report")
    t0 = time.perf_counter()
    params = {"dataset": dataset, "compute_missing": compute_missing, "author": author,
              "thresholds": (thresholds or ReportThresholds()).to_dict(),
              **({"figure_samples": figure_samples} if figure_samples != FIGURE_SAMPLES else {})}
    with tracked_run("report", family=family, version=version, parameters=params, actor=actor) as run:
        with run.phase("gather"):
            doc = build_document(family, version, author=author, dataset=dataset, compute_missing=compute_missing,
                                 thresholds=thresholds, actor=actor, progress=progress, figure_samples=figure_samples)
        if progress:
            progress(0.9, "rendering the PDF")
        with run.phase("render"):
            rendered = render_pdf(doc)
        sha = ArtifactStore().put_bytes(rendered.pdf)
        seconds = time.perf_counter() - t0
        stamp = doc.created_at[:19].replace("-", "").replace(":", "")
        filename = f"{family}-{version}-report-{stamp}Z.pdf"
        manifest = {"entries": [m.to_dict() for m in doc.manifest],
                    "findings": [{"area": f.area, "check": f.check, "status": f.status, "detail": f.detail}
                                 for f in doc.findings],
                    "parameters": doc.parameters, "library_versions": doc.library_versions, "pages": rendered.pages,
                    "seconds": seconds, "author": doc.author, "created_at": doc.created_at, "run_id": run.run_id}
        with transaction() as s:
            mv = ModelRepository(s).version(family, version)
            row = ReportRepository(s).add(Report(model_version_id=mv.id, sha256=sha, filename=filename,
                                                 manifest=manifest, created_by=actor.username, signed=False))
            entry = auditlog.append(s, actor=actor.username, action="report.generate", subject=f"{family}/{version}",
                                    details={"report_id": row.id, "sha256": sha, "pages": rendered.pages,
                                             "author": doc.author, "run_id": run.run_id}, checkpoint=True)
            # The log head at generation is the report's own event (its hash covers the report's SHA-256).
            row.log_seq, row.log_hash = entry.seq, entry.hash
            report_id = row.id
    if progress:
        progress(1.0, f"report {report_id} stored")
    return {"id": report_id, "sha256": sha, "filename": filename, "pages": rendered.pages, "seconds": seconds,
            "family": family, "version": version, "findings": manifest["findings"], "run_id": run.run_id}

