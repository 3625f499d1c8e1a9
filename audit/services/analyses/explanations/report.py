"""The report's explanations section: heat maps of the report's samples (stored maps, computed when missing and
allowed) or, for a text model, token attributions computed at report time."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from audit.images import image_to_tensor
from audit.report import sections as S
from audit.report.compliance import SECTION_BY_KEY
from audit.report.content import Section
from audit.services.analyses.explanations.service import explain_batch, params_key
from audit.services.analyses.registry import ReportPart
from audit.services.analyses.reports.service import (FIGURE_METHODS, FIGURE_OPTIONS, TEXT_IG_STEPS, TEXT_METHODS,
                                                     Gathering, with_layer_if_needed)
from audit.services.core.datasets import load_image_samples
from audit.text import attribute_text
from storage.artifacts import ArtifactStore
from storage.db import transaction
from storage.orm import Explanation
from storage.repositories import ExplanationRepository

log = logging.getLogger(__name__)


def _stored_maps(g: Gathering, hashes: list[str], methods: list[str]) -> Optional[list[dict[str, tuple]]]:
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


def _explain_images(g: Gathering) -> tuple[Optional[S.ImageExplanations], Optional[S.Gap]]:
    h, choice, m = g.handle, g.choice, g.model
    samples = load_image_samples(g.dataset, keys=choice.keys, model=h)
    order = [samples.keys.index(k) for k in choice.keys]
    raw = image_to_tensor(samples.images[order], h.input_spec)
    hashes = [samples.hashes[i] for i in order]
    x = h.input_spec.normalize(raw).to(h.device)
    methods = with_layer_if_needed(FIGURE_METHODS, h)
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


def _explain_texts(g: Gathering) -> tuple[Optional[S.TextExplanations], Optional[S.Gap]]:
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


def gather(g: Gathering) -> list[Section]:
    """The explanations section; ``g.explained`` keeps the evidence for the quality checks that follow."""
    explained, gap = None, S.Gap("No reference predictions, so no samples to explain.",
                                 "store a reference set for this model (python -m audit demo or "
                                 "audit.services.core.datasets) and regenerate the report.")
    if g.choice is not None:
        explained, gap = (_explain_texts if g.model.kind == "text" else _explain_images)(g)
    g.explained = explained
    g.n_explained = len(explained.choice.keys) if explained is not None else 0
    if explained is not None:
        g.cited += (list(explained.methods) if isinstance(explained, S.ImageExplanations)
                    else list(TEXT_METHODS))
    return [S.explanations_section(g.model, explained, gap)]


REPORT = ReportPart(SECTION_BY_KEY["explanations"], gather)
