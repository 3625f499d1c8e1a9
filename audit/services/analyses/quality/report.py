"""The report's explanation-quality section: deletion/insertion and sanity checks of exactly the report's maps
(stored as kind ``explanation_quality``, computed when missing and allowed), localisation on declared
regions, and for a text model the IG completeness gaps and ERASER scores."""

from __future__ import annotations

import logging
from typing import Any, Optional

from audit.quality import CURVE_STEPS, ERASER_METRICS, LOCALISATION_METRICS, eraser_scores
from audit.report import sections as S
from audit.report.checks import KIND as QUALITY_KIND
from audit.report.checks import ExplanationQuality, explanation_quality, report_metrics
from audit.report.compliance import SECTION_BY_KEY
from audit.report.content import Section
from audit.report.sections.quality import AREA
from audit.results.base import StoredResult
from audit.services.analyses.quality.localisation import gather_localisation
from audit.services.analyses.registry import ReportPart
from audit.services.analyses.reports.service import (FIGURE_OPTIONS, SANITY_METHODS, TEXT_METHODS, Gathering,
                                                     with_layer_if_needed)
from audit.services.core.runs import find_analysis, result_key, store_analysis, tracked_run

log = logging.getLogger(__name__)

SANITY_SAMPLES = 4
SANITY_STEPS = 4
SANITY_IG_STEPS = 16


def _quality(g: Gathering, ev: S.ImageExplanations) -> tuple[Optional[ExplanationQuality], Optional[StoredResult],
                                                               Optional[S.Gap]]:
    """The stored deletion/insertion and sanity checks of exactly these maps, computed when missing."""
    m, methods = g.model, ev.methods
    sanity = with_layer_if_needed(SANITY_METHODS, g.handle)
    options = {"samples": ev.choice.keys, "targets": ev.choice.targets, "methods": methods, "options": FIGURE_OPTIONS,
               "steps": CURVE_STEPS, "sanity": {"methods": sanity, "samples": SANITY_SAMPLES,
                                                "max_steps": SANITY_STEPS, "ig_steps": SANITY_IG_STEPS},
               "metrics": {mm.name: mm.config for mm in report_metrics(CURVE_STEPS)}}
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


def _text_eraser(g: Gathering, ev: S.TextExplanations) -> Optional[dict[str, Any]]:
    try:
        with g.handle.lock:
            return eraser_scores(g.handle.module, ev.results, list(TEXT_METHODS),
                                 pad_id=int(g.handle.tokenizer.pad_token_id or 0))
    except (ValueError, RuntimeError) as exc:
        log.warning("report %s %s: ERASER scores failed: %s", g.model.family, g.model.version, exc)
        return None


def _localisation(g: Gathering, ev: S.ImageExplanations) -> Any:
    """Localisation on the reference samples that declare a region (their maps stored like the figures')."""
    if not g.compute:
        return None
    try:
        return gather_localisation(g.handle, g.model.family, g.model.version, g.dataset, g.preds.keys,
                                   [int(p) for p in g.preds.predicted], ev.methods, dict(FIGURE_OPTIONS),
                                   actor=g.actor)
    except (ValueError, RuntimeError) as exc:
        log.warning("report %s %s: localisation failed: %s", g.model.family, g.model.version, exc)
        return None


def gather(g: Gathering) -> list[Section]:
    """The quality section of the evidence the explanations section gathered (``g.explained``)."""
    model, explained = g.model, g.explained
    if isinstance(explained, S.TextExplanations):
        eraser = _text_eraser(g, explained)
        g.cited += list(ERASER_METRICS) if eraser else []
        return [S.quality_section(model, text_gaps=[r.delta for r in explained.results], text_eraser=eraser)]
    if isinstance(explained, S.ImageExplanations):
        quality, stored, qgap = _quality(g, explained)
        g.cited += quality.cited if quality is not None else []
        loc = _localisation(g, explained) if quality is not None else None
        g.cited += list(LOCALISATION_METRICS) if loc is not None else []
        return [S.quality_section(model, quality=quality, stored=stored, gap=qgap, curve_steps=CURVE_STEPS,
                                  localisation=loc)]
    return [S.quality_section(model, curve_steps=CURVE_STEPS)]


REPORT = ReportPart(SECTION_BY_KEY["quality"], gather, areas=(AREA,), finding_rank=3)
