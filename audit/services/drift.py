"""Drift use cases: compare two versions' explanations of one reference set (same sample, same target),
store the assessment as an AnalysisResult(kind="drift"), follow a family's trend, and pick a gallery.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

import numpy as np

from audit.drift import SIMILARITY_METRICS, DriftResult, DriftThresholds, assess_drift
from audit.env import library_versions
from audit.images import image_to_tensor
from audit.services.auth import SYSTEM, Principal, require
from audit.services.datasets import load_image_samples, load_text_samples
from audit.services.explain import ExplainError, explain_batch, handle_for
from audit.services.registry import RegistryError, get_version
from storage import auditlog
from storage.artifacts import ArtifactStore
from storage.db import transaction
from storage.orm import AnalysisResult, Run, utcnow
from storage.repositories import DatasetRepository, ModelRepository, ResultRepository, RunRepository

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]
TargetMode = Literal["base_prediction", "label"]
TARGET_MODES: tuple[str, ...] = ("base_prediction", "label")

DEFAULT_IMAGE_METHODS: tuple[str, ...] = ("saliency", "gradcam", "integrated_gradients")
DEFAULT_TEXT_METHODS: tuple[str, ...] = ("grad_x_input", "integrated_gradients")
DEFAULT_OPTIONS: dict[str, Any] = {"ig_steps": 32, "seed": 0}
GALLERY_SIZE = 8
KIND = "drift"


class DriftError(ValueError):
    """A drift request that cannot be served; the message says why."""


def _task_kind(task: str) -> str:
    return "text" if task == "text-classification" else "image"


def pick_reference_set(name: Optional[str], task: str, labels: Sequence[str]) -> dict[str, Any]:
    """The named reference set, or the first stored set of the model's kind whose class labels match.
    Returns {"name", "id", "sha256"}."""
    kind = _task_kind(task)
    with transaction() as s:
        repo = DatasetRepository(s)
        if name:
            ds = repo.get(name)
            if ds is None:
                raise DriftError(f"dataset {name!r} does not exist")
            if ds.kind != kind:
                raise DriftError(f"dataset {name!r} holds {ds.kind} samples but the family takes {kind}")
            return {"name": ds.name, "id": ds.id, "sha256": ds.content_sha256}
        same_kind = [d for d in repo.all() if d.kind == kind]
        if not same_kind:
            raise DriftError(f"no {kind} reference set is stored; add one, then pass --dataset")
        matching = [d for d in same_kind if list(d.labels or []) == list(labels)] or same_kind
        ds = matching[0]
        return {"name": ds.name, "id": ds.id, "sha256": ds.content_sha256}


def _check_methods(methods: Optional[Sequence[str]], task: str) -> list[str]:
    if _task_kind(task) == "text":
        from audit.text import TEXT_METHODS as valid

        default = DEFAULT_TEXT_METHODS
    else:
        from audit.attribution import METHODS as valid

        default = DEFAULT_IMAGE_METHODS
    chosen = list(dict.fromkeys(methods)) if methods else list(default)
    unknown = [m for m in chosen if m not in valid]
    if unknown:
        raise DriftError(f"unknown method(s) {', '.join(unknown)} for {task}; choose from {', '.join(valid)}")
    return chosen


def as_thresholds(thresholds: DriftThresholds | Mapping[str, Any] | None) -> DriftThresholds:
    """Thresholds from a DriftThresholds, a plain mapping of its fields (pages, JSON), or the defaults."""
    if thresholds is None:
        return DriftThresholds()
    if isinstance(thresholds, DriftThresholds):
        return thresholds
    try:
        return DriftThresholds.from_dict(thresholds)
    except (TypeError, ValueError) as exc:
        raise DriftError(str(exc)) from exc


def available_methods(task: str) -> dict[str, Any]:
    """Attribution methods a drift check can use for a task, and the defaults (for pages and the CLI)."""
    if _task_kind(task) == "text":
        from audit.text import TEXT_METHODS

        return {"methods": list(TEXT_METHODS), "default": list(DEFAULT_TEXT_METHODS)}
    from audit.attribution import METHODS

    return {"methods": [m for m in METHODS if m != "attention_rollout"], "default": list(DEFAULT_IMAGE_METHODS)}


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _PairMaps:
    keys: list[str]
    targets: list[int]
    labels: list[Optional[int]]
    base_pred: list[int]
    new_pred: list[int]
    base_maps: dict[str, list[np.ndarray]]
    new_maps: dict[str, list[np.ndarray]]
    explanation_ids: dict[str, list[int]]


def _targets_for(mode: str, base_pred: list[int], labels: Sequence[Optional[int]], dataset: str) -> list[int]:
    if mode == "base_prediction":
        return list(base_pred)
    if any(y is None for y in labels):
        raise DriftError(f"dataset {dataset} has unlabelled samples; use target='base_prediction'")
    return [int(y) for y in labels]  # type: ignore[arg-type]


def _image_pair_maps(family: str, base: str, new: str, dataset: str, *, methods: list[str], limit: Optional[int],
                     target_mode: str, options: dict[str, Any], batch_size: int, actor: Principal,
                     run_id: int, progress: Progress) -> _PairMaps:
    hb, hn = handle_for(family, base), handle_for(family, new)
    samples = load_image_samples(dataset)
    n = len(samples.keys) if limit is None else min(limit, len(samples.keys))
    if n == 0:
        raise DriftError(f"dataset {dataset} has no samples")
    out = _PairMaps(samples.keys[:n], [], samples.labels[:n], [], [], {m: [] for m in methods},
                    {m: [] for m in methods}, {m: [] for m in methods})
    for b0 in range(0, n, batch_size):
        b1 = min(n, b0 + batch_size)
        xb = hb.input_spec.normalize(image_to_tensor(samples.images[b0:b1], hb.input_spec)).to(hb.device)
        xn = hn.input_spec.normalize(image_to_tensor(samples.images[b0:b1], hn.input_spec)).to(hn.device)
        pb = hb.predict_proba(xb).argmax(1).tolist()
        pn = hn.predict_proba(xn).argmax(1).tolist()
        targets = _targets_for(target_mode, pb, samples.labels[b0:b1], dataset)
        hashes = samples.hashes[b0:b1]
        # Both versions explain the SAME target per sample, otherwise the maps answer different questions.
        maps_b, _ = explain_batch(hb, family, base, xb, hashes, targets, methods, dict(options),
                                   sample_ids=[None] * (b1 - b0), actor=actor, progress=None, run_id=run_id)
        maps_n, _ = explain_batch(hn, family, new, xn, hashes, targets, methods, dict(options),
                                   sample_ids=[None] * (b1 - b0), actor=actor, progress=None, run_id=run_id)
        for mb, mn in zip(maps_b, maps_n):
            for m in methods:
                out.base_maps[m].append(mb[m].attribution)
                out.new_maps[m].append(mn[m].attribution)
                out.explanation_ids[m].extend([mb[m].explanation_id, mn[m].explanation_id])
        out.targets += targets
        out.base_pred += pb
        out.new_pred += pn
        if progress:
            progress(0.1 + 0.8 * b1 / n, f"explained {b1}/{n} samples with both versions")
    return out


def _text_scores(results: list[Any], other: list[Any], method: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Token scores where both versions tokenise alike, else word scores (same words), else an error."""
    base, new = [], []
    for i, (rb, rn) in enumerate(zip(results, other)):
        if rb.tokens == rn.tokens:
            base.append(rb.scores[method].numpy())
            new.append(rn.scores[method].numpy())
        elif rb.words == rn.words:
            base.append(rb.word_scores[method].numpy())
            new.append(rn.word_scores[method].numpy())
        else:
            raise DriftError(f"text {i}: the two versions split it into different words; their token "
                             "attributions cannot be compared")
    return base, new


def _text_pair_maps(family: str, base: str, new: str, dataset: str, *, methods: list[str], limit: Optional[int],
                    target_mode: str, options: dict[str, Any], batch_size: int, progress: Progress) -> _PairMaps:
    from audit.text import attribute_text

    hb, hn = handle_for(family, base), handle_for(family, new)
    samples = load_text_samples(dataset)
    n = len(samples.texts) if limit is None else min(limit, len(samples.texts))
    if n == 0:
        raise DriftError(f"dataset {dataset} has no samples")
    texts, labels = samples.texts[:n], samples.labels[:n]
    opts = {"ig_steps": int(options.get("ig_steps", DEFAULT_OPTIONS["ig_steps"])), "batch_size": batch_size}
    if target_mode == "label":
        targets = _targets_for("label", [], labels, dataset)
        rb = attribute_text(hb.module, hb.tokenizer, texts, targets, methods, **opts)
    else:
        rb = attribute_text(hb.module, hb.tokenizer, texts, None, methods, **opts)
        targets = [r.target for r in rb]
    if progress:
        progress(0.5, f"explained {n} texts with version {base}")
    rn = attribute_text(hn.module, hn.tokenizer, texts, targets, methods, **opts)
    out = _PairMaps(samples.keys[:n], targets, labels, [r.prediction for r in rb], [r.prediction for r in rn],
                    {}, {}, {m: [] for m in methods})
    for m in methods:
        out.base_maps[m], out.new_maps[m] = _text_scores(rb, rn, m)
    return out


def _summaries(session: Any, version_id: int, kind: str) -> list[dict[str, Any]]:
    return [dict(r.summary or {}) for r in ResultRepository(session).for_version(version_id, kind)]


def compute_drift(
    family: str, base: str, new: str, *, dataset: Optional[str] = None, methods: Optional[Sequence[str]] = None,
    limit: Optional[int] = None, target: TargetMode = "base_prediction", options: Optional[dict[str, Any]] = None,
    thresholds: DriftThresholds | Mapping[str, Any] | None = None, top_k: float = 0.1, batch_size: int = 16,
    recompute: bool = False, actor: Principal = SYSTEM, progress: Progress = None,
) -> dict[str, Any]:
    """Compare version ``new`` with ``base`` on a reference set; store and return the drift summary.

    Targets: each sample is explained for the SAME class in both versions: the base version's predicted
    class (default, works on unlabelled sets) or the true label (``target="label"``). Maps already in
    the explanation store are reused. An identical earlier request (same versions, data, methods,
    options and thresholds) returns its stored result unless ``recompute``.
    Returns the summary: {"flagged", "flags", "methods": {method: {...}}, "metrics", "concepts", ...,
    "result_id", "cached"}.
    """
    require(actor, "run")
    if target not in TARGET_MODES:
        raise DriftError(f"target must be one of {', '.join(TARGET_MODES)}, got {target!r}")
    if limit is not None and limit < 1:
        raise DriftError(f"limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise DriftError(f"batch_size must be at least 1, got {batch_size}")
    thresholds = as_thresholds(thresholds)
    if not 0.0 < top_k <= 1.0:
        raise DriftError(f"top_k must be a fraction in (0, 1], got {top_k}")
    if base == new:
        raise DriftError("choose two different versions to compare")
    info_b, info_n = get_version(family, base), get_version(family, new)
    if list(info_b["labels"]) != list(info_n["labels"]):
        raise DriftError(f"{family} {base} and {new} have different class labels; their maps for a class "
                         "cannot be compared")
    task = info_b["task"]
    methods_l = _check_methods(methods, task)
    ds = pick_reference_set(dataset, task, info_b["labels"])
    opts = {**DEFAULT_OPTIONS, **(options or {})}
    params = {"family": family, "base": base, "new": new, "base_sha256": info_b["sha256"],
              "new_sha256": info_n["sha256"], "dataset": ds["name"], "dataset_sha256": ds["sha256"],
              "methods": methods_l, "options": opts, "limit": limit, "target": target, "top_k": top_k,
              "thresholds": thresholds.to_dict()}
    phash = _digest(params)
    if not recompute:
        with transaction() as s:
            row = ResultRepository(s).find(kind=KIND, model_version_id=info_n["id"], params_sha256=phash)
            if row is not None:
                return {**dict(row.summary), "result_id": row.id, "cached": True}
    start = time.perf_counter()
    with transaction() as s:
        run = RunRepository(s).add(Run(kind=KIND, model_version_id=info_n["id"], status="running", parameters=params,
                                       seed=int(opts.get("seed", 0)), library_versions=library_versions(),
                                       created_by=actor.username))
        run_id = run.id
    try:
        if progress:
            progress(0.05, "loading both versions")
        if _task_kind(task) == "image":
            pair = _image_pair_maps(family, base, new, ds["name"], methods=methods_l, limit=limit, target_mode=target,
                                    options=opts, batch_size=batch_size, actor=actor, run_id=run_id, progress=progress)
        else:
            pair = _text_pair_maps(family, base, new, ds["name"], methods=methods_l, limit=limit, target_mode=target,
                                   options=opts, batch_size=batch_size, progress=progress)
        with transaction() as s:
            tcav_b, tcav_n = _summaries(s, info_b["id"], "tcav"), _summaries(s, info_n["id"], "tcav")
            bias_b, bias_n = _summaries(s, info_b["id"], "bias"), _summaries(s, info_n["id"], "bias")
        result = assess_drift(
            pair.base_maps, pair.new_maps, thresholds=thresholds, top_k=top_k,
            base_metrics=info_b["metrics"], new_metrics=info_n["metrics"], base_tcav=tcav_b, new_tcav=tcav_n,
            base_bias=bias_b, new_bias=bias_n, base_predictions=pair.base_pred, new_predictions=pair.new_pred,
            labels=pair.labels,
        )
    except BaseException as exc:
        _finish_run(run_id, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", start, str(exc))
        if isinstance(exc, ExplainError):
            raise DriftError(str(exc)) from exc
        raise
    summary = _summary(result, pair, info_b, info_n, ds, task, target, methods_l)
    per_sample = np.stack([np.stack([getattr(result.methods[m].similarity, k) for k in SIMILARITY_METRICS])
                           for m in methods_l])  # [methods, measures, samples]
    sha = ArtifactStore().put_array(per_sample.astype(np.float64))
    seconds = time.perf_counter() - start
    with transaction() as s:
        row = ResultRepository(s).add(AnalysisResult(
            kind=KIND, model_version_id=info_n["id"], other_version_id=info_b["id"], dataset_id=ds["id"],
            params_sha256=phash, parameters=params, summary=summary, artifact_sha256=sha,
            seed=int(opts.get("seed", 0)), device=_device_of(family, new, task), library_versions=library_versions(),
            duration_s=seconds, run_id=run_id, created_by=actor.username,
        ))
        auditlog.append(s, actor=actor.username, action="analysis.drift", subject=f"{family}/{base}->{new}",
                        details={"result_id": row.id, "flagged": summary["flagged"], "dataset": ds["name"],
                                 "methods": methods_l, "samples": summary["samples"]})
        result_id = row.id
    _finish_run(run_id, "succeeded", start, None)
    if progress:
        progress(1.0, "drift stored")
    return {**summary, "result_id": result_id, "cached": False}


def _device_of(family: str, version: str, task: str) -> str:
    return str(handle_for(family, version).device)


def _summary(result: DriftResult, pair: _PairMaps, info_b: dict[str, Any], info_n: dict[str, Any],
             ds: dict[str, Any], task: str, target: str, methods: list[str]) -> dict[str, Any]:
    summary = result.to_summary()
    most_changed = {}
    for m in methods:
        sim = result.methods[m].similarity
        most_changed[m] = [{
            "key": pair.keys[i], "index": i, "target": pair.targets[i], "label": pair.labels[i],
            "base_prediction": pair.base_pred[i], "new_prediction": pair.new_pred[i],
            **{k: (None if not np.isfinite(getattr(sim, k)[i]) else float(getattr(sim, k)[i]))
               for k in SIMILARITY_METRICS},
        } for i in result.most_changed(m, GALLERY_SIZE)]
    summary.update({
        "family": info_n["family"], "task": task, "base": info_b["version"], "new": info_n["version"],
        "base_sha256": info_b["sha256"], "new_sha256": info_n["sha256"], "dataset": ds["name"],
        "dataset_sha256": ds["sha256"], "samples": len(pair.keys), "target": target,
        "target_rule": ("each sample is explained for the base version's predicted class in both versions"
                        if target == "base_prediction" else "each sample is explained for its true label in both versions"),
        "most_changed": most_changed,
        "explanation_ids": {m: sorted(set(v)) for m, v in pair.explanation_ids.items() if v},
    })
    return summary


def _finish_run(run_id: int, status: str, start: float, error: Optional[str]) -> None:
    with transaction() as s:
        run = RunRepository(s).get(run_id)
        run.status = status
        run.finished_at = utcnow()
        run.timings = {"total_s": time.perf_counter() - start}
        run.error = error


def _row_dict(row: AnalysisResult, base: str, new: str) -> dict[str, Any]:
    return {**dict(row.summary or {}), "result_id": row.id, "base": base, "new": new,
            "created_at": row.created_at.isoformat() if row.created_at else None, "created_by": row.created_by,
            "parameters": dict(row.parameters or {})}


def stored_drift(family: str, *, new: Optional[str] = None, base: Optional[str] = None) -> list[dict[str, Any]]:
    """Stored drift results of a family (optionally for one new/base version), newest first."""
    with transaction() as s:
        repo = ModelRepository(s)
        versions = {v.id: v.version for v in repo.versions(family)}
        if not versions:
            raise RegistryError(f"family {family} is not registered")
        out = []
        for vid, vname in versions.items():
            if new is not None and vname != new:
                continue
            for row in ResultRepository(s).for_version(vid, KIND):
                bname = versions.get(row.other_version_id or -1, "?")
                if base is not None and bname != base:
                    continue
                out.append(_row_dict(row, bname, vname))
        return sorted(out, key=lambda d: d["result_id"], reverse=True)


def get_drift(result_id: int) -> dict[str, Any]:
    with transaction() as s:
        row = s.get(AnalysisResult, result_id)
        if row is None or row.kind != KIND:
            raise DriftError(f"no stored drift result with id {result_id}")
        repo = ModelRepository(s)
        b, n = repo.version_by_id(row.other_version_id), repo.version_by_id(row.model_version_id)
        return _row_dict(row, b.version if b else "?", n.version if n else "?")


def drift_trend(
    family: str, *, compute_missing: bool = True, dataset: Optional[str] = None,
    methods: Optional[Sequence[str]] = None, limit: Optional[int] = None, target: TargetMode = "base_prediction",
    options: Optional[dict[str, Any]] = None, thresholds: DriftThresholds | Mapping[str, Any] | None = None,
    top_k: float = 0.1, actor: Principal = SYSTEM, progress: Progress = None,
) -> dict[str, Any]:
    """Drift between each consecutive pair of a family's versions (registration order).

    With ``compute_missing`` every pair is computed (stored results are reused); without it the newest
    stored result of each pair is shown and pairs never compared stay empty.
    Returns {"family", "versions", "pairs": [{"base", "new", "result_id", "flagged", "methods": {...}}]}.
    """
    require(actor, "run" if compute_missing else "read")
    with transaction() as s:
        names = [v.version for v in ModelRepository(s).versions(family)]
    if not names:
        raise RegistryError(f"family {family} is not registered")
    pairs = []
    steps = list(zip(names[:-1], names[1:]))
    for i, (b, n) in enumerate(steps):
        if compute_missing:
            sub = None
            if progress:
                sub = (lambda lo, hi: (lambda f, m: progress(lo + (hi - lo) * f, f"{b}→{n}: {m}")))(
                    i / len(steps), (i + 1) / len(steps))
            res: Optional[dict[str, Any]] = compute_drift(
                family, b, n, dataset=dataset, methods=methods, limit=limit, target=target, options=options,
                thresholds=thresholds, top_k=top_k, actor=actor, progress=sub)
        else:
            stored = stored_drift(family, new=n, base=b)
            res = stored[0] if stored else None
        pairs.append({"base": b, "new": n, "result_id": res.get("result_id") if res else None,
                      "flagged": res.get("flagged") if res else None,
                      "flags": res.get("flags", []) if res else [],
                      "samples": res.get("samples") if res else None,
                      "methods": {m: {"flagged": d.get("flagged"),
                                      **{f"{k}_mean": (d.get(k) or {}).get("mean") for k in SIMILARITY_METRICS}}
                                  for m, d in (res.get("methods") or {}).items()} if res else {}})
    return {"family": family, "versions": names, "pairs": pairs}


@dataclass
class GalleryItem:
    """One of the samples whose explanation changed most: its input and both versions' maps."""

    key: str
    target: int
    target_label: str
    label: Optional[int]
    base_prediction: int
    new_prediction: int
    measures: dict[str, Optional[float]]
    image: Optional[np.ndarray] = None  # [C, H, W] in [0, 1] (image families)
    base_map: Optional[np.ndarray] = None
    new_map: Optional[np.ndarray] = None
    tokens: Optional[list[str]] = None  # text families
    base_scores: Optional[np.ndarray] = None
    new_scores: Optional[np.ndarray] = None


def drift_gallery(result_id: int, *, method: str, n: int = 6, actor: Principal = SYSTEM) -> list[GalleryItem]:
    """The ``n`` samples whose ``method`` maps changed most in a stored drift result, with both maps
    (read back from the explanation store; text maps are recomputed for these few texts)."""
    require(actor, "read")
    res = get_drift(result_id)
    params = res["parameters"]
    picks = (res.get("most_changed") or {}).get(method)
    if picks is None:
        raise DriftError(f"drift result {result_id} did not compare {method}")
    picks = picks[:n]
    if not picks:
        return []
    family, base, new = params["family"], params["base"], params["new"]
    labels = get_version(family, new)["labels"]
    items = [GalleryItem(p["key"], int(p["target"]), labels[int(p["target"])], p.get("label"),
                         int(p["base_prediction"]), int(p["new_prediction"]),
                         {k: p.get(k) for k in SIMILARITY_METRICS}) for p in picks]
    targets = [it.target for it in items]
    if res.get("task") == "text-classification":
        from audit.text import attribute_text

        samples = load_text_samples(params["dataset"])
        texts = [samples.texts[samples.keys.index(it.key)] for it in items]
        ig = {"ig_steps": int(params["options"].get("ig_steps", DEFAULT_OPTIONS["ig_steps"]))}
        hb, hn = handle_for(family, base), handle_for(family, new)
        rb = attribute_text(hb.module, hb.tokenizer, texts, targets, [method], **ig)
        rn = attribute_text(hn.module, hn.tokenizer, texts, targets, [method], **ig)
        for it, a, b in zip(items, rb, rn):
            it.tokens, it.base_scores, it.new_scores = a.tokens, a.scores[method].numpy(), b.scores[method].numpy()
        return items
    samples = load_image_samples(params["dataset"], keys=[it.key for it in items])
    order = [samples.keys.index(it.key) for it in items]
    images = samples.images[order]
    hashes = [samples.hashes[i] for i in order]
    for version, attr in ((base, "base_map"), (new, "new_map")):
        h = handle_for(family, version)
        raw = image_to_tensor(images, h.input_spec)
        x = h.input_spec.normalize(raw).to(h.device)
        maps, _ = explain_batch(h, family, version, x, hashes, targets, [method], dict(params["options"]),
                                 sample_ids=[None] * len(items), actor=actor, progress=None)
        for it, mp in zip(items, maps):
            setattr(it, attr, mp[method].attribution)
        if version == base:
            for it, r in zip(items, raw):
                it.image = r.cpu().numpy()
    return items
