"""Text explanations: token attributions for registered text classifiers, stored like image ones
(same cache key and provenance), plus attention maps and method agreement for the Text page."""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np

from audit.env import library_versions
from audit.services.auth import SYSTEM, Principal, require
from audit.services.explain import ExplainError, handle_for, params_key
from storage import auditlog
from storage.artifacts import ArtifactStore, sha256_bytes
from storage.db import transaction
from storage.orm import Explanation
from storage.repositories import ExplanationRepository, ModelRepository

TEXT_RESULT_OPTIONS = ("ig_steps", "ig_method", "ig_baseline", "occlusion_replacement", "shap_max_evals")
MAX_TEXT_CHARS = 2000


def explain_texts(family: str, version: str, texts: Sequence[str], *, methods: Sequence[str],
                  target: Optional[int] = None, options: Optional[dict[str, Any]] = None,
                  actor: Principal = SYSTEM, progress=None) -> list[dict[str, Any]]:  # noqa: ANN001
    """One dict per text: tokens, words, scores[method] (per token), word_scores, probabilities, target,
    delta, explanation_ids, cached[method]. Stored maps are returned instead of recomputed."""
    from audit.text import attribute_text

    require(actor, "run")
    if not methods:
        raise ExplainError("choose at least one method")
    texts = [t.strip() for t in texts]
    if not texts or any(not t for t in texts):
        raise ExplainError("enter a non-empty text")
    if any(len(t) > MAX_TEXT_CHARS for t in texts):
        raise ExplainError(f"texts are limited to {MAX_TEXT_CHARS} characters")
    handle = handle_for(family, version)
    if handle.task != "text-classification":
        raise ExplainError("this model takes images; use the Explain page")
    if target is not None and not 0 <= target < len(handle.labels):
        raise ExplainError(f"target {target} is not a class of this model")
    opts = {k: v for k, v in (options or {}).items() if k in TEXT_RESULT_OPTIONS}
    store = ArtifactStore()
    start = time.perf_counter()
    results = attribute_text(handle.module, handle.tokenizer, list(texts), targets=target, methods=list(methods),
                             progress=progress, **opts)
    seconds = (time.perf_counter() - start) / max(1, len(texts))
    out = []
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        repo = ExplanationRepository(s)
        for res in results:
            sha = sha256_bytes(res.text.encode("utf-8"))
            entry: dict[str, Any] = {
                "text": res.text, "tokens": list(res.tokens), "words": list(res.words), "special": list(res.special),
                "word_ids": list(res.word_ids), "target": int(res.target), "prediction": int(res.prediction),
                "probabilities": res.probabilities.float().cpu().numpy().tolist(), "delta": res.delta,
                "scores": {}, "word_scores": {}, "explanation_ids": {}, "cached": {}, "sample_sha256": sha,
            }
            for m in methods:
                params, phash = params_key(m, None, opts)
                scores = res.scores[m].detach().float().cpu().numpy()
                if not np.isfinite(scores).all():
                    raise ExplainError(f"{m} produced NaN attributions; nothing was stored")
                row = repo.find(model_version_id=mv.id, sample_sha256=sha, method=m, target=int(res.target),
                                params_sha256=phash)
                cached = row is not None
                if row is None:
                    row = repo.add(Explanation(
                        model_version_id=mv.id, sample_sha256=sha, method=m, target=int(res.target),
                        params_sha256=phash, parameters=params, attribution_sha256=store.put_array(scores),
                        attribution_shape=list(scores.shape), model_output=entry["probabilities"],
                        metrics={"tokens": entry["tokens"], "words": entry["words"],
                                 "word_scores": res.word_scores[m].float().cpu().tolist() if m in res.word_scores else None,
                                 **({"completeness_delta": res.delta} if m == "integrated_gradients" and res.delta is not None else {})},
                        seed=0, device=str(handle.device), library_versions=library_versions(), duration_s=seconds,
                    ))
                else:
                    scores = store.get_array(row.attribution_sha256)
                entry["scores"][m] = scores.tolist()
                entry["word_scores"][m] = (res.word_scores[m].float().cpu().tolist() if m in res.word_scores else None)
                entry["explanation_ids"][m] = row.id
                entry["cached"][m] = cached
            out.append(entry)
        auditlog.append(s, actor=actor.username, action="explanation.create", subject=f"{family}/{version}",
                        details={"texts": len(texts), "methods": list(methods)})
    return out


def attention_maps(family: str, version: str, text: str) -> dict[str, Any]:
    """Attention weights [layers, heads, T, T] and the rollout [T] for one text."""
    from audit.text import attribute_text

    handle = handle_for(family, version)
    res = attribute_text(handle.module, handle.tokenizer, [text], methods=["attention", "attention_rollout"])[0]
    return {"tokens": list(res.tokens), "attentions": res.attentions.float().cpu().numpy(),
            "rollout": res.scores["attention_rollout"].float().cpu().numpy()}


def method_agreement(entry: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """Spearman rank correlation between every pair of methods over the non-special tokens."""
    from scipy.stats import spearmanr

    methods = list(entry["scores"])
    keep = [i for i, sp in enumerate(entry["special"]) if not sp]
    m = np.eye(len(methods))
    for i, a in enumerate(methods):
        for j, b in enumerate(methods):
            if i < j:
                va = np.asarray(entry["scores"][a])[keep]
                vb = np.asarray(entry["scores"][b])[keep]
                rho = spearmanr(va, vb).statistic if len(keep) > 2 and va.std() > 0 and vb.std() > 0 else np.nan
                m[i, j] = m[j, i] = rho
    return methods, m
