"""Drift use cases: compare two versions' explanations of one reference set (same sample, same target),
store the assessment as an AnalysisResult(kind="drift"), follow a family's trend, and pick a gallery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

import numpy as np

from audit.drift import SIMILARITY_METRICS, DriftResult, DriftThresholds, assess_drift
from audit.images import image_to_tensor
from audit.models.tasks import input_kind
from audit.results import AnalysisSpec, ConceptTest, StoredResult
from audit.results.drift import DriftAssessment
from audit.services.auth import SYSTEM, Principal, require
from audit.services.datasets import dataset_key, load_image_samples, load_text_samples
from audit.services.core import result_key, store_analysis, stored_analyses, tracked_run
from audit.services.explain import ExplainError, explain_batch
from audit.services.handles import handle_for
from audit.services.predict import require_finite
from audit.services.registry import RegistryError, get_version
from storage.artifacts import ArtifactStore
from storage.db import transaction
from storage.orm import AnalysisResult
from storage.repositories import ModelRepository, ResultRepository

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]
TargetMode = Literal["base_prediction", "label"]
TARGET_MODES: tuple[str, ...] = ("base_prediction", "label")

DEFAULT_IMAGE_METHODS: tuple[str, ...] = ("saliency", "gradcam", "integrated_gradients")
DEFAULT_TEXT_METHODS: tuple[str, ...] = ("grad_x_input", "integrated_gradients")
DEFAULT_OPTIONS: dict[str, Any] = {"ig_steps": 32, "seed": 0}
GALLERY_SIZE = 8
KIND = "drift"
DRIFT_SPEC = AnalysisSpec(
    kind=KIND,
    result_options=("dataset", "methods", "limit", "target", "options", "thresholds", "top_k"),
    other_arguments=("batch_size", "recompute", "actor", "progress"),
    reads=("tcav", "bias"),
)


class DriftError(ValueError):
    """A drift request that cannot be served; the message says why."""


def pick_reference_set(name: Optional[str], task: str, labels: Sequence[str]) -> dict[str, Any]:
    from audit.services.datasets import DatasetError, pick_reference_set as pick

    try:
        return pick(name, task, labels)
    except DatasetError as exc:
        raise DriftError(str(exc)) from exc


def _check_methods(methods: Optional[Sequence[str]], task: str) -> list[str]:
    if input_kind(task) == "text":
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


def _applying(family: str, versions: Sequence[str], methods: Sequence[str]) -> list[str]:
    """``methods`` that apply to every one of these versions' models, as each class declares
    (``not_applicable_reason``: attention rollout needs a vision transformer, a TorchScript model takes no hooks)."""
    from audit.attribution import method_spec

    modules = [handle_for(family, v).module for v in versions]
    return [m for m in methods if all(method_spec(m).not_applicable_reason(mod) is None for mod in modules)]


def _defaults_that_apply(family: str, versions: Sequence[str], methods: list[str]) -> list[str]:
    """The default methods that apply to both versions' models (a TorchScript model takes no hooks, so
    Grad-CAM is left out there); an explicit request is never reduced."""
    kept = _applying(family, versions, methods)
    if not kept:
        raise DriftError(f"none of the default methods ({', '.join(methods)}) applies to both versions")
    return kept


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


def available_methods(task: str, *, family: Optional[str] = None, versions: Sequence[str] = ()) -> dict[str, Any]:
    """Attribution methods a drift check can use for a task, and the defaults (for pages and the CLI). Given a
    family's versions, the image methods are those that apply to each of their models (as each method's class
    declares); without, every registered method (one that does not apply stops the check with its reason)."""
    if input_kind(task) == "text":
        from audit.text import TEXT_METHODS

        return {"methods": list(TEXT_METHODS), "default": list(DEFAULT_TEXT_METHODS)}
    from audit.attribution import METHODS

    methods = _applying(family, versions, METHODS) if family is not None and versions else list(METHODS)
    return {"methods": methods, "default": [m for m in DEFAULT_IMAGE_METHODS if m in methods]}


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
    samples = load_image_samples(dataset, model=hb)  # labels: the base version's class indices, by name
    other = samples if hn.input_spec == hb.input_spec else load_image_samples(dataset, model=hn)
    n = len(samples.keys) if limit is None else min(limit, len(samples.keys))
    if n == 0:
        raise DriftError(f"dataset {dataset} has no samples")
    out = _PairMaps(samples.keys[:n], [], samples.labels[:n], [], [], {m: [] for m in methods},
                    {m: [] for m in methods}, {m: [] for m in methods})
    for b0 in range(0, n, batch_size):
        b1 = min(n, b0 + batch_size)
        xb = hb.input_spec.normalize(image_to_tensor(samples.images[b0:b1], hb.input_spec)).to(hb.device)
        xn = hn.input_spec.normalize(image_to_tensor(other.images[b0:b1], hn.input_spec)).to(hn.device)
        keys = samples.keys[b0:b1]
        pb, pn = hb.predict_proba(xb), hn.predict_proba(xn)
        require_finite(pb, keys, what=f"{base}'s outputs")
        require_finite(pn, keys, what=f"{new}'s outputs")
        pb, pn = pb.argmax(1).tolist(), pn.argmax(1).tolist()
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
    samples = load_text_samples(dataset, model=hb)
    n = len(samples.texts) if limit is None else min(limit, len(samples.texts))
    if n == 0:
        raise DriftError(f"dataset {dataset} has no samples")
    texts, labels = samples.texts[:n], samples.labels[:n]
    opts = {"ig_steps": int(options.get("ig_steps", DEFAULT_OPTIONS["ig_steps"])), "batch_size": batch_size}
    if target_mode == "label":
        targets = _targets_for("label", [], labels, dataset)
        with hb.lock:
            rb = attribute_text(hb.module, hb.tokenizer, texts, targets, methods, **opts)
    else:
        with hb.lock:
            rb = attribute_text(hb.module, hb.tokenizer, texts, None, methods, **opts)
        targets = [r.target for r in rb]
    if progress:
        progress(0.5, f"explained {n} texts with version {base}")
    with hn.lock:
        rn = attribute_text(hn.module, hn.tokenizer, texts, targets, methods, **opts)
    keys = samples.keys[:n]
    require_finite(np.stack([np.asarray(r.probabilities, dtype=np.float64) for r in rb]), keys,
                   what=f"{base}'s outputs")
    require_finite(np.stack([np.asarray(r.probabilities, dtype=np.float64) for r in rn]), keys,
                   what=f"{new}'s outputs")
    out = _PairMaps(samples.keys[:n], targets, labels, [r.prediction for r in rb], [r.prediction for r in rn],
                    {}, {}, {m: [] for m in methods})
    for m in methods:
        out.base_maps[m], out.new_maps[m] = _text_scores(rb, rn, m)
    return out


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
    if methods is None and input_kind(task) == "image":
        methods_l = _defaults_that_apply(family, (base, new), methods_l)
    ds = pick_reference_set(dataset, task, info_b["labels"])
    opts = {**DEFAULT_OPTIONS, **(options or {})}
    chosen = {"dataset": ds["name"], "methods": methods_l, "options": opts, "limit": limit, "target": target,
              "top_k": top_k, "thresholds": thresholds.to_dict()}
    options_key = {name: chosen[name] for name in DRIFT_SPEC.result_options}
    params = {"family": family, "base": base, "new": new, "base_sha256": info_b["sha256"],
              "new_sha256": info_n["sha256"], "dataset_sha256": ds["sha256"], **options_key}
    # The stored concept tests and bias audits of both versions are inputs of the result: their ids
    # enter the key, so storing a new one makes the next request recompute instead of serving stale.
    inputs = _input_results(info_b["id"], info_n["id"])
    phash = result_key(KIND, model_sha256=info_n["sha256"], other_model_sha256=info_b["sha256"],
                       dataset_sha256=dataset_key(ds["name"], info_b["labels"]), options=options_key,
                       inputs=[r.id for r in inputs])
    if not recompute:
        with transaction() as s:
            row = ResultRepository(s).find(kind=KIND, model_version_id=info_n["id"], params_sha256=phash)
            if row is not None:
                return {**dict(row.summary), "result_id": row.id, "cached": True}
    with tracked_run(KIND, family=family, version=new, parameters=params, actor=actor,
                     seed=int(opts.get("seed", 0)), device=_device_of(family, new, task)) as run:
        if progress:
            progress(0.05, "loading both versions")
        try:
            with run.phase("explain"):
                if input_kind(task) == "image":
                    pair = _image_pair_maps(family, base, new, ds["name"], methods=methods_l, limit=limit,
                                            target_mode=target, options=opts, batch_size=batch_size, actor=actor,
                                            run_id=run.run_id, progress=progress)
                else:
                    pair = _text_pair_maps(family, base, new, ds["name"], methods=methods_l, limit=limit,
                                           target_mode=target, options=opts, batch_size=batch_size, progress=progress)
        except ExplainError as exc:
            raise DriftError(str(exc)) from exc
        tcav = {vid: [ConceptTest.from_stored(r) for r in inputs if r.kind == "tcav" and r.version == v]
                for vid, v in ((info_b["id"], base), (info_n["id"], new))}
        bias = {vid: [dict(r.summary) for r in inputs if r.kind == "bias" and r.version == v]
                for vid, v in ((info_b["id"], base), (info_n["id"], new))}
        with run.phase("assess"):
            result = assess_drift(
                pair.base_maps, pair.new_maps, thresholds=thresholds, top_k=top_k,
                base_metrics=info_b["metrics"], new_metrics=info_n["metrics"], base_tcav=tcav[info_b["id"]],
                new_tcav=tcav[info_n["id"]], base_bias=bias[info_b["id"]], new_bias=bias[info_n["id"]],
                base_predictions=pair.base_pred, new_predictions=pair.new_pred, labels=pair.labels,
            )
        summary = _summary(result, pair, info_b, info_n, ds, task, target, methods_l)
        per_sample = np.stack([np.stack([getattr(result.methods[m].similarity, k) for k in SIMILARITY_METRICS])
                               for m in methods_l])  # [methods, measures, samples]
        sha = ArtifactStore().put_array(per_sample.astype(np.float64))
        stored = store_analysis(KIND, family, new, key=phash, parameters=params, summary=summary, actor=actor,
                                dataset=ds["name"], seed=int(opts.get("seed", 0)),
                                device=_device_of(family, new, task), duration_s=run.elapsed,
                                artifact_sha256=sha, other_version=base, run_id=run.run_id,
                                inputs=[r.id for r in inputs])
    if progress:
        progress(1.0, "drift stored")
    return {**summary, "result_id": stored.id, "cached": False}


def _input_results(base_id: int, new_id: int) -> list[StoredResult]:
    """The stored results drift reads: concept tests and bias audits of both versions, oldest first."""
    out: list[StoredResult] = []
    with transaction() as s:
        repo = ModelRepository(s)
        names = [(mv.family.name, mv.version) for mv in (repo.version_by_id(base_id), repo.version_by_id(new_id))]
    for fam, ver in names:
        for kind in ("tcav", "bias"):
            out += stored_analyses(fam, ver, kind)
    return out


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


def drift_assessment(result_id: int) -> DriftAssessment:
    """A stored drift result as its typed reading (the one the page, the report and the CLI use)."""
    from audit.services.core import get_analysis

    try:
        stored = get_analysis(result_id)
        return DriftAssessment.from_stored(stored)
    except ValueError as exc:
        raise DriftError(f"no stored drift result with id {result_id}") from exc
