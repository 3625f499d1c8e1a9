"""Report use cases: gather a version's evidence (stored results, typed; computing the missing
explanations, quality checks and drift when asked), lay it out with the pure section builders of
``audit.report.sections``, render and store the PDF by SHA-256, list, download and sign it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from audit.attribution import method_spec
from audit.images import image_to_tensor
from audit.report import ReportDocument, ReportThresholds, Section, render_pdf
from audit.report import sections as S
from audit.report.checks import KIND as QUALITY_KIND
from audit.report.checks import ExplanationQuality, explanation_quality
from audit.results.base import StoredResult
from audit.results.concepts import ConceptTest
from audit.results.drift import DriftAssessment
from audit.services.auth import SYSTEM, PermissionDenied, Principal, require
from audit.services.core import find_analysis, get_analysis, result_key, store_analysis, stored_analyses, tracked_run
from audit.services.datasets import DatasetError, load_image_samples, pick_reference_set
from audit.services.drift import DriftError, compute_drift
from audit.services.explain import explain_batch, params_key
from audit.services.handles import handle_for
from audit.services.predict import predict_dataset
from audit.services.registry import get_version, list_models
# Stored reports and their sign-off live in report_records; re-exported for the pages and the CLI.
from audit.services.report_records import (DECISIONS, ReportError, get_report, list_reports,  # noqa: F401
                                           report_bytes, sign_report)
from storage import auditlog
from storage.artifacts import ArtifactStore
from storage.db import transaction
from storage.orm import Explanation, Report, utcnow
from storage.repositories import DatasetRepository, ExplanationRepository, ModelRepository, ReportRepository

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]

# The report's choices of methods (figures, sanity check, token attributions); what each needs comes from its class.
FIGURE_METHODS: tuple[str, ...] = ("integrated_gradients", "gradcam", "gradcam_pp", "saliency")
FIGURE_OPTIONS: dict[str, Any] = {"ig_steps": 32, "seed": 0}
SANITY_METHODS: tuple[str, ...] = ("saliency", "gradcam", "integrated_gradients")
N_REPRESENTATIVE = 4
N_MISCLASSIFIED = 4
FIGURE_SAMPLES = N_REPRESENTATIVE + N_MISCLASSIFIED  # the report's explained samples unless a budget says fewer
CURVE_STEPS = 20
SANITY_SAMPLES = 4
SANITY_STEPS = 4
SANITY_IG_STEPS = 16
DRIFT_LIMIT = {"image": 24, "text": 16}
DRIFT_OPTIONS: dict[str, Any] = {"ig_steps": 16, "seed": 0}
TEXT_IG_STEPS = 16
TEXT_METHODS: tuple[str, ...] = ("integrated_gradients", "grad_x_input")
FINDING_ORDER = ("performance", "bias", "concepts", "quality", "counterfactuals", "drift")




@dataclass
class _Gathering:
    """What one document is built from, collected step by step."""

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

    @property
    def dataset(self) -> Optional[str]:
        return self.reference["name"] if self.reference else None


# ------------------------------------------------------------------ gathering

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


def _datasets_used(g: _Gathering) -> tuple[list[S.DatasetFacts], Optional[S.DatasetFacts]]:
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
def _predictions(g: _Gathering) -> S.ReferencePredictions:
    p = predict_dataset(g.model.family, g.model.version, g.dataset)
    return S.ReferencePredictions(g.dataset, list(p.keys), list(p.labels), [dict(x) for x in p.groups],
                                  np.asarray(p.probabilities), texts=p.texts)


def _stored_maps(g: _Gathering, hashes: list[str], methods: list[str]) -> Optional[list[dict[str, tuple]]]:
    layer = g.handle.target_layer
    store, out = ArtifactStore(), []
    with transaction() as s:
        repo = ExplanationRepository(s)
        for sha, target in zip(hashes, g.choice.targets):
            maps = {}
            for m in methods:
                row = repo.find(model_version_id=g.model.info["id"], sample_sha256=sha, method=m, target=target,
                                params_sha256=params_key(m, layer, dict(FIGURE_OPTIONS))[1])
                if row is None:
                    return None
                maps[m] = (store.get_array(row.attribution_sha256), row.id)
            out.append(maps)
    return out


def _with_layer_if_needed(methods: tuple[str, ...], handle: Any) -> list[str]:
    """``methods`` less those whose class reads a layer (``needs_layer``) when the model has no target layer."""
    return [mm for mm in methods if handle.target_layer or not method_spec(mm).needs_layer]


def _explain_images(g: _Gathering) -> tuple[Optional[S.ImageExplanations], Optional[S.Gap]]:
    h, choice, m = g.handle, g.choice, g.model
    samples = load_image_samples(g.dataset, keys=choice.keys, model=h)
    order = [samples.keys.index(k) for k in choice.keys]
    raw = image_to_tensor(samples.images[order], h.input_spec)
    hashes = [samples.hashes[i] for i in order]
    x = h.input_spec.normalize(raw).to(h.device)
    methods = _with_layer_if_needed(FIGURE_METHODS, h)
    if g.compute:
        try:
            maps, _ = explain_batch(h, m.family, m.version, x, hashes, choice.targets, methods, dict(FIGURE_OPTIONS),
                                    sample_ids=[None] * len(hashes), actor=g.actor, progress=None)
        except (ValueError, RuntimeError) as exc:
            # The report still documents everything else; the failure is printed where the figures would be.
            log.warning("report %s %s: explanations failed: %s", m.family, m.version, exc)
            return None, S.Gap(f"Computing the explanation maps failed: {exc}.", m.command(
                "python -m audit explain --family {F} --version {V} --dataset {D} -v for details.", g.dataset))
        per = [{mm: (d[mm].attribution, d[mm].explanation_id) for mm in methods} for d in maps]
    else:
        per = _stored_maps(g, hashes, methods)
        if per is None:
            return None, S.Gap("Explanation maps for the report's samples are not stored.", m.command(
                "python -m audit explain --family {F} --version {V} --dataset {D} --methods " + ",".join(methods)
                + f" --ig-steps {FIGURE_OPTIONS['ig_steps']}, or regenerate the report without --no-compute.",
                g.dataset))
    ids = [p[mm][1] for p in per for mm in methods]
    with transaction() as s:
        refs = [S.ExplanationRef(row.id, row.attribution_sha256, row.method, row.target, row.sample_sha256,
                                 dict(row.engine) if row.engine else None)
                for row in (s.get(Explanation, i) for i in ids)]
    g.x = x
    return S.ImageExplanations(choice, raw.cpu().numpy(), {mm: np.stack([np.asarray(p[mm][0]) for p in per])
                                                           for mm in methods},
                               refs, int(FIGURE_OPTIONS["ig_steps"]), cam_layer=bool(h.target_layer)), None


def _explain_texts(g: _Gathering) -> tuple[Optional[S.TextExplanations], Optional[S.Gap]]:
    from audit.text import attribute_text

    if not g.compute:
        return None, S.Gap("Token attributions are computed at report time and --no-compute was given.",
                           "regenerate the report without --no-compute.")
    texts = [g.preds.texts[g.preds.keys.index(k)] for k in g.choice.keys]
    h = g.handle
    try:
        with h.lock:
            res = attribute_text(h.module, h.tokenizer, texts, g.choice.targets,
                                 list(TEXT_METHODS), ig_steps=TEXT_IG_STEPS)
    except (ValueError, TypeError, RuntimeError) as exc:
        log.warning("report %s %s: token attributions failed: %s", g.model.family, g.model.version, exc)
        return None, S.Gap(f"Computing token attributions failed: {exc}.", "check the model on the Text page.")
    g.computed.append("token attributions")
    return S.TextExplanations(g.choice, res, TEXT_IG_STEPS), None


def _quality(g: _Gathering, ev: S.ImageExplanations) -> tuple[Optional[ExplanationQuality], Optional[StoredResult],
                                                               Optional[S.Gap]]:
    """The stored deletion/insertion and sanity checks of exactly these maps, computed when missing."""
    m, methods = g.model, ev.methods
    sanity = _with_layer_if_needed(SANITY_METHODS, g.handle)
    options = {"samples": ev.choice.keys, "targets": ev.choice.targets, "methods": methods, "options": FIGURE_OPTIONS,
               "steps": CURVE_STEPS, "sanity": {"methods": sanity, "samples": SANITY_SAMPLES,
                                                "max_steps": SANITY_STEPS, "ig_steps": SANITY_IG_STEPS}}
    inputs = sorted({r.id for r in ev.references})
    key = result_key(QUALITY_KIND, model_sha256=m.info["sha256"], dataset_sha256=g.reference["sha256"],
                     options=options, inputs=inputs)
    stored = find_analysis(QUALITY_KIND, m.family, m.version, key)
    if stored is None:
        if not g.compute:
            return None, None, S.Gap("Deletion/insertion and sanity results for these samples are not stored.",
                                     "regenerate the report without --no-compute (they take seconds on the "
                                     "report's samples).", "not stored")
        try:
            with tracked_run(QUALITY_KIND, family=m.family, version=m.version, parameters=options, actor=g.actor,
                             device=str(g.handle.device)) as run, g.handle.lock:
                q = explanation_quality(g.handle.module, g.x, ev.choice.targets, ev.maps, layer=g.handle.target_layer,
                                        steps=CURVE_STEPS, sanity_methods=sanity, sanity_samples=SANITY_SAMPLES,
                                        sanity_max_steps=SANITY_STEPS, ig_steps=SANITY_IG_STEPS)
                stored = store_analysis(QUALITY_KIND, m.family, m.version, key=key, parameters=options,
                                        summary=q.to_summary(), actor=g.actor, dataset=g.dataset,
                                        device=str(g.handle.device), duration_s=run.elapsed, run_id=run.run_id,
                                        inputs=inputs)
        except (ValueError, RuntimeError) as exc:
            log.warning("report %s %s: quality checks failed: %s", m.family, m.version, exc)
            return None, None, S.Gap(f"The deletion/insertion and sanity checks failed: {exc}.",
                                     "check the model on the Explain page (Faithfulness and Sanity tabs).",
                                     "computation failed")
        g.computed.append("explanation quality")
    return ExplanationQuality.from_summary(stored.summary), stored, None


def _text_eraser(g: _Gathering, ev: S.TextExplanations) -> Optional[dict[str, Any]]:
    from audit.text.eraser import eraser_scores

    try:
        with g.handle.lock:
            return eraser_scores(g.handle.module, ev.results, list(TEXT_METHODS),
                                 pad_id=int(g.handle.tokenizer.pad_token_id or 0))
    except (ValueError, RuntimeError) as exc:
        log.warning("report %s %s: ERASER scores failed: %s", g.model.family, g.model.version, exc)
        return None


def _localisation(g: _Gathering, ev: S.ImageExplanations) -> Any:
    """Localisation on the reference samples that declare a region (their maps stored like the figures')."""
    from audit.services.report_localisation import gather_localisation

    if not g.compute:
        return None
    try:
        return gather_localisation(g.handle, g.model.family, g.model.version, g.dataset, g.preds.keys,
                                   [int(p) for p in g.preds.predicted], ev.methods, dict(FIGURE_OPTIONS),
                                   actor=g.actor)
    except (ValueError, RuntimeError) as exc:
        log.warning("report %s %s: localisation failed: %s", g.model.family, g.model.version, exc)
        return None


def _result_id(res: Any) -> Optional[int]:
    if isinstance(res, Mapping):
        return res.get("result_id")
    return getattr(res, "result_id", None)


def _drift(g: _Gathering) -> tuple[Optional[DriftAssessment], Optional[str]]:
    """The newest stored drift result against the parent version (computed when missing and allowed)."""
    m, parent = g.model, g.model.parent
    if not parent:
        return None, None
    stored = max((r for r in stored_analyses(m.family, m.version, "drift") if r.other_version == parent),
                 key=lambda r: r.id, default=None)
    note = None
    if stored is None and g.compute and g.reference is not None:
        try:
            res = compute_drift(m.family, parent, m.version, dataset=g.dataset, limit=DRIFT_LIMIT[m.kind],
                                options=dict(DRIFT_OPTIONS), actor=g.actor)
            rid = _result_id(res)
            stored = get_analysis(int(rid)) if rid is not None else None
            g.computed.append("drift")
        except (DriftError, PermissionDenied) as exc:
            note = str(exc)
    return (DriftAssessment.from_stored(stored) if stored is not None else None), note


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
    g = _Gathering(_model_facts(family, version), {"name": dataset}, True, SYSTEM)
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
    g = _Gathering(model, _reference_set(dataset, model), compute_missing, actor)
    tick(0.02, "loading the model")
    if g.reference is not None:
        g.handle = handle_for(family, version)
        g.preds = _predictions(g)
        g.choice = S.pick_samples(g.preds, model.labels, **_split_samples(figure_samples))
    used, reference = _datasets_used(g)
    tick(0.1, "performance")
    sections = [S.intended_use_section(model), S.data_section(model, used, reference, g.preds),
                S.performance_section(model, g.preds, min_accuracy=thresholds.min_accuracy)]
    tick(0.2, "explanations")
    explained, gap = None, S.Gap("No reference predictions, so no samples to explain.",
                                 "store a reference set for this model (python -m audit demo or "
                                 "audit.services.datasets) and regenerate the report.")
    if g.choice is not None:
        explained, gap = (_explain_texts if model.kind == "text" else _explain_images)(g)
    sections.append(S.explanations_section(model, explained, gap))
    g.n_explained = len(explained.choice.keys) if explained is not None else 0
    tick(0.45, "explanation quality")
    if explained is not None:
        g.cited += list(explained.methods) if isinstance(explained, S.ImageExplanations) else list(TEXT_METHODS)
    if isinstance(explained, S.TextExplanations):
        eraser = _text_eraser(g, explained)
        g.cited += ["eraser"] if eraser else []
        sections.append(S.quality_section(model, text_gaps=[r.delta for r in explained.results], text_eraser=eraser))
    elif isinstance(explained, S.ImageExplanations):
        quality, stored, qgap = _quality(g, explained)
        g.cited += ["deletion_insertion", "sanity"] if quality is not None else []
        loc = _localisation(g, explained) if quality is not None else None
        g.cited += ["relevance_mass", "pointing_game"] if loc is not None else []
        sections.append(S.quality_section(model, quality=quality, stored=stored, gap=qgap, curve_steps=CURVE_STEPS,
                                          localisation=loc))
    else:
        sections.append(S.quality_section(model, curve_steps=CURVE_STEPS))
    tick(0.6, "concepts, bias, counterfactuals")
    tests = [ConceptTest.from_stored(r) for r in stored_analyses(family, version, "tcav")]
    g.cited += ["tcav"] if tests else []
    sections += [S.concepts_section(model, tests),
                 S.bias_section(model, stored_analyses(family, version, "bias"),
                                max_gap=thresholds.max_group_accuracy_gap, dataset=g.dataset),
                 S.counterfactuals_section(model, stored_analyses(family, version, "counterfactual"),
                                           stored_analyses(family, version, "text_probe"),
                                           max_flip_rate=thresholds.max_text_flip_rate, dataset=g.dataset)]
    tick(0.7, "drift against the previous version")
    assessment, note = _drift(g)
    g.cited += list(assessment.methods) if assessment is not None else []
    sections.append(S.drift_section(model, assessment, note=note, dataset=g.dataset))
    return _document(g, sections, author, thresholds)


def _document(g: _Gathering, sections: list[Section], author: Optional[str],
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
    findings = sorted((f for s in sections for f in s.findings),
                      key=lambda f: FINDING_ORDER.index(f.section) if f.section in FINDING_ORDER else len(FINDING_ORDER))
    return ReportDocument(
        family=model.family, version=model.version, task=model.task, model_sha256=model.info["sha256"],
        created_at=utcnow().isoformat(), author=author or g.actor.username, status=model.info["status"],
        findings=findings, sections=sections, manifest=manifest, library_versions=libraries, parameters=params)


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

