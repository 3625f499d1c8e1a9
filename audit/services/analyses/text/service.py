"""Text explanations: token attributions for registered text classifiers, stored like image ones (one
row per text, method and target, keyed by the options each method declares), plus attention maps and
method agreement for the Text page.

The model handle is shared by every session: every engine call runs under ``handle.lock``, because the
attention methods switch the shared model to eager attention for the duration of the call."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from audit.env import library_versions
from audit.services.governance.principals import SYSTEM, Principal, require
from audit.services.core.runs import digest, stable_value
from audit.services.analyses.explanations.service import ExplainError
from audit.services.core.handles import handle_for
from storage import auditlog
from storage.artifacts import ArtifactStore, sha256_bytes
from storage.db import transaction
from storage.orm import Explanation
from storage.repositories import ExplanationRepository, ModelRepository

MAX_TEXT_CHARS = 2000
KEY_KIND = "text-explanation"  # keeps text keys apart from image keys of a method with the same name
ERR_UNKNOWN_OPTIONS = "unknown text option(s) {names}; choose from {choices}"
ERR_UNKNOWN_METHOD = "unknown text method {name!r}; choose from {choices}"


def text_methods() -> dict[str, str]:
    """Method name -> the label people use, in the engine's order."""
    from audit.text import TEXT_METHOD_SPECS

    return {name: spec.label for name, spec in TEXT_METHOD_SPECS.items()}


def text_method_choices() -> dict[str, Any]:
    """What a page offers, read from the methods' declarations: ``methods`` (name -> label, in the engine's
    order), ``preselected`` (the names ticked at first) and ``options`` (name -> label, default, low, high,
    choices and doc, for every option a person may set; ``low``/``high`` None where unbounded)."""
    from audit.text import TEXT_METHOD_SPECS, option_table
    from audit.text.options import PROGRESS

    options = {name: {"label": opt.label or name, "default": opt.default, "low": opt.low, "high": opt.high,
                      "choices": list(opt.choices), "doc": opt.doc}
               for name, opt in option_table().items() if name != PROGRESS.name}
    return {"methods": text_methods(), "preselected": [n for n, c in TEXT_METHOD_SPECS.items() if c.preselected],
            "options": options}


def text_params_key(method: str, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """(stored parameters, key) of one method's result: every option the method declares as changing its
    result, given or defaulted, so an option left out and the same option at its default share a key."""
    from audit.text import TEXT_METHOD_SPECS, text_result_option_defaults

    if method not in TEXT_METHOD_SPECS:
        raise ExplainError(ERR_UNKNOWN_METHOD.format(name=method, choices=tuple(TEXT_METHOD_SPECS)))
    given = options or {}
    chosen = {k: given.get(k, default) for k, default in text_result_option_defaults(method).items()}
    params = stable_value({"method": method, **chosen})
    return params, digest({"kind": KEY_KIND, "method": method, "options": chosen})


def describe_parameters(method: str, parameters: dict[str, Any]) -> str:
    """The stored options of a map in words, e.g. 'baseline mask · steps 32 · explains logit'."""
    from audit.text import ACTS_ONLY_WITH, OPTION_LABELS, text_result_option_defaults

    names = text_result_option_defaults(method) if method in text_methods() else {}
    shown = [k for k in names if parameters.get(k) is not None
             and (k not in ACTS_ONLY_WITH or parameters.get(ACTS_ONLY_WITH[k]) is not None)]
    return " · ".join(f"{OPTION_LABELS.get(k, k)} {parameters[k]}" for k in shown)


def explain_texts(family: str, version: str, texts: Sequence[str], *, methods: Sequence[str],
                  target: int | None = None, options: dict[str, Any] | None = None,
                  actor: Principal = SYSTEM, progress=None) -> list[dict[str, Any]]:
    """One dict per text: text, tokens, words, special, word_ids, probabilities, prediction, target,
    delta (IG completeness gap), scores[method] (per token), word_scores[method], parameters[method] (the
    options the map was computed with), explanation_ids[method] and cached[method].

    Stored maps are returned, marked cached, instead of recomputed; only the missing (text, method) pairs
    go to the engine, in one call. ``target`` None explains each text's predicted class."""
    from audit.text import predict_texts

    require(actor, "run")
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ExplainError("choose at least one method")
    texts = [t.strip() for t in texts]
    if not texts or any(not t for t in texts):
        raise ExplainError("enter a non-empty text")
    if any(len(t) > MAX_TEXT_CHARS for t in texts):
        raise ExplainError(f"texts are limited to {MAX_TEXT_CHARS} characters")
    opts = _engine_options(options)
    keys = {m: text_params_key(m, opts) for m in methods}
    handle = handle_for(family, version)
    if handle.task != "text-classification":
        raise ExplainError("this model takes images; use the Explain page")
    if target is not None and not 0 <= target < len(handle.labels):
        raise ExplainError(f"target {target} is not a class of this model")
    try:
        with handle.lock:
            preds = predict_texts(handle.module, handle.tokenizer, texts, max_length=opts.get("max_length"),
                                  batch_size=opts.get("batch_size", 16))
    except (ValueError, TypeError) as exc:
        raise ExplainError(str(exc)) from exc
    from audit.services.core.predict import require_finite, text_keys

    require_finite(np.stack([np.asarray(p.probabilities, dtype=np.float64) for p in preds]), text_keys(texts))
    targets = [int(p.prediction) if target is None else int(target) for p in preds]
    shas = [sha256_bytes(t.encode("utf-8")) for t in texts]
    store = ArtifactStore()
    found: list[dict[str, dict[str, Any]]] = [{} for _ in texts]
    with transaction() as s:
        version_id = ModelRepository(s).version(family, version).id
        repo = ExplanationRepository(s)
        for i, (sha, tgt) in enumerate(zip(shas, targets)):
            for m in methods:
                row = repo.find(model_version_id=version_id, sample_sha256=sha, method=m, target=tgt,
                                params_sha256=keys[m][1])
                if row is not None:
                    found[i][m] = _stored(row, store, cached=True)
    todo_methods = [m for m in methods if any(m not in f for f in found)]
    if todo_methods:
        todo = [i for i, f in enumerate(found) if any(m not in f for m in todo_methods)]
        _compute(handle, family, version, [texts[i] for i in todo], [targets[i] for i in todo],
                 [shas[i] for i in todo], [preds[i] for i in todo], todo_methods, keys, opts, actor, progress,
                 into=[found[i] for i in todo])
    return [_entry(p, tgt, sha, f, methods) for p, tgt, sha, f in zip(preds, targets, shas, found)]


def _engine_options(options: dict[str, Any] | None) -> dict[str, Any]:
    from audit.text import text_option_names

    allowed = text_option_names() - {"progress"}
    opts = dict(options or {})
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ExplainError(ERR_UNKNOWN_OPTIONS.format(names=", ".join(unknown), choices=", ".join(sorted(allowed))))
    return opts


def _compute(handle, family: str, version: str, texts: list[str], targets: list[int], shas: list[str],
             preds: list[Any], methods: list[str], keys: dict[str, tuple[dict[str, Any], str]],
             opts: dict[str, Any], actor: Principal, progress, *, into: list[dict[str, dict[str, Any]]]) -> None:
    """Attribute the texts with the missing methods in one engine call and store each new map."""
    from audit.text import attribute_text

    start = time.perf_counter()
    try:
        with handle.lock:
            results = attribute_text(handle.module, handle.tokenizer, texts, targets=targets, methods=methods,
                                     progress=progress, **opts)
    except (ValueError, TypeError) as exc:
        raise ExplainError(str(exc)) from exc
    seconds = (time.perf_counter() - start) / max(1, len(texts))
    for res in results:
        for m in methods:
            if not np.isfinite(res.scores[m].detach().float().cpu().numpy()).all():
                raise ExplainError(f"{m} produced NaN attributions; nothing was stored")
    from audit.attribution.engine_record import engine_record, model_precision

    engine = engine_record(set(), precision=model_precision(handle.module))  # the text engine: the model as loaded
    store = ArtifactStore()
    stored = 0
    with transaction() as s:
        mv = ModelRepository(s).version(family, version)
        repo = ExplanationRepository(s)
        for res, tgt, sha, pred, out in zip(results, targets, shas, preds, into):
            probabilities = pred.probabilities.float().tolist()
            for m in methods:
                if m in out:
                    continue
                params, phash = keys[m]
                # Another session (or a repeated text) may have stored this key meanwhile: keep that one.
                row = repo.find(model_version_id=mv.id, sample_sha256=sha, method=m, target=tgt, params_sha256=phash)
                if row is not None:
                    out[m] = _stored(row, store, cached=True)
                    continue
                scores = res.scores[m].detach().float().cpu().numpy()
                word_scores = res.word_scores[m].float().cpu().tolist() if m in res.word_scores else None
                metrics: dict[str, Any] = {"tokens": list(res.tokens), "words": list(res.words),
                                           "word_scores": word_scores}
                if m == "integrated_gradients" and res.delta is not None:
                    metrics["completeness_delta"] = float(res.delta)
                row = repo.add(Explanation(
                    model_version_id=mv.id, sample_sha256=sha, method=m, target=tgt, params_sha256=phash,
                    parameters=params, attribution_sha256=store.put_array(scores),
                    attribution_shape=list(scores.shape), model_output=probabilities, metrics=metrics, seed=0,
                    device=str(handle.device), library_versions=library_versions(), duration_s=seconds,
                    engine=engine,
                ))
                stored += 1
                out[m] = {"id": row.id, "scores": scores, "metrics": metrics, "parameters": dict(params),
                          "cached": False, "engine": dict(engine)}
        if stored:
            auditlog.append(s, actor=actor.username, action="explanation.create", subject=f"{family}/{version}",
                            details={"texts": len(texts), "methods": list(methods), "stored": stored})


def _stored(row: Explanation, store: ArtifactStore, *, cached: bool) -> dict[str, Any]:
    return {"id": row.id, "scores": store.get_array(row.attribution_sha256), "metrics": dict(row.metrics or {}),
            "parameters": dict(row.parameters or {}), "cached": cached,
            "engine": dict(row.engine) if row.engine else None}


def _entry(pred: Any, target: int, sha: str, found: dict[str, dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    ig = found.get("integrated_gradients")
    return {
        "text": pred.text, "tokens": list(pred.tokens), "words": list(pred.words), "special": list(pred.special),
        "word_ids": list(pred.word_ids), "target": int(target), "prediction": int(pred.prediction),
        "probabilities": pred.probabilities.float().tolist(), "sample_sha256": sha,
        "delta": ig["metrics"].get("completeness_delta") if ig else None,
        "scores": {m: np.asarray(found[m]["scores"]).tolist() for m in methods},
        "word_scores": {m: found[m]["metrics"].get("word_scores") for m in methods},
        "parameters": {m: found[m]["parameters"] for m in methods},
        "explanation_ids": {m: found[m]["id"] for m in methods},
        "cached": {m: found[m]["cached"] for m in methods},
    }


def text_faithfulness(family: str, version: str, entry: dict[str, Any]) -> dict[str, dict[str, float]]:
    """ERASER comprehensiveness and sufficiency (AOPC over top-k% tokens) of each map of one
    ``explain_texts`` entry, for the class it explains: {method: {metric name: value}} for the ERASER metrics
    ("comprehensiveness", "sufficiency")."""
    from types import SimpleNamespace

    import torch

    from audit.quality import ERASER_METRICS, eraser_scores

    handle = handle_for(family, version)
    ids = handle.tokenizer.convert_tokens_to_ids(list(entry["tokens"]))
    one = SimpleNamespace(token_ids=list(ids), special=list(entry["special"]), target=int(entry["target"]),
                          scores={m: torch.tensor(v, dtype=torch.float64) for m, v in entry["scores"].items()})
    with handle.lock:
        res = eraser_scores(handle.module, [one], list(entry["scores"]),
                            pad_id=int(handle.tokenizer.pad_token_id or 0))
    return {m: {name: getattr(r, name) for name in ERASER_METRICS} for m, r in res.items()}


def attention_maps(family: str, version: str, text: str) -> dict[str, Any]:
    """Attention weights [layers, heads, T, T] and the rollout [T] for one text."""
    from audit.text import attribute_text

    handle = handle_for(family, version)
    if handle.task != "text-classification":
        raise ExplainError("this model takes images; use the Explain page")
    with handle.lock:
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
