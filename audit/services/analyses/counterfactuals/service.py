"""Counterfactual use cases: the smallest change that flips a decision, for one reference sample (shown
side by side) or a whole reference set (validity and distances, stored as kind 'counterfactual').

The search keeps every channel in its own pixel range and returns 8-bit images; validity is judged by
feeding the shown 8-bit image back through the model, so what the page shows is what was judged."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from audit.counterfactuals import SearchOptions
from audit.images import image_to_tensor
from audit.results.base import AnalysisSpec
from audit.results.counterfactuals import (
    CounterfactualBatch,
    CounterfactualOutcome,
    DiverseCounterfactuals,
    SampleCounterfactual,
)
from audit.services.governance.principals import SYSTEM, Principal, require
from audit.services.core.runs import find_analysis, store_analysis, tracked_run
from audit.services.core.datasets import load_image_samples
from audit.services.core.runs import analysis_key
from audit.services.core.datasets import dataset_key
from audit.services.core.handles import handle_for
from audit.services.core.predict import require_finite

PIXEL_LEVELS = 256  # images are shown and stored with 8 bits per channel
# The engine's budget knobs a caller may pass (``**search``); the service sets distance, ranges and levels.
SEARCH_OPTIONS = tuple(f.name for f in fields(SearchOptions) if f.name not in ("distance", "input_range", "levels"))
CF_SPEC = AnalysisSpec(
    kind="counterfactual",
    result_options=("dataset", "limit", "distance", "seed", *SEARCH_OPTIONS),
    other_arguments=("actor", "progress"),
)
Progress = Optional[Callable[[float, str], None]]


class CounterfactualError(ValueError):
    """A counterfactual request that cannot run; the message says why."""


def search_options(search: Mapping[str, Any]) -> dict[str, Any]:
    """The search knobs with the engine's defaults filled in (passing a default changes no key)."""
    unknown = sorted(set(search) - set(SEARCH_OPTIONS))
    if unknown:
        raise CounterfactualError(f"unknown search option(s) {unknown}; valid: {', '.join(SEARCH_OPTIONS)}")
    defaults = SearchOptions()
    return {name: search.get(name, getattr(defaults, name)) for name in SEARCH_OPTIONS}


def counterfactual_options(*, dataset: str, limit: int = 40, distance: str = "l2", seed: int = 0,
                           **search: Any) -> dict[str, Any]:
    """The result options of a reference-set search as they enter its key."""
    return {"dataset": dataset, "limit": int(limit), "distance": distance, "seed": int(seed), **search_options(search)}


def channel_range(spec: Any) -> tuple[list[float], list[float]]:
    """Per channel, the normalised values of pixels 0 and 1 (the spec's value range and mean/std applied)."""
    c = spec.channels
    lo = spec.normalize(torch.zeros(1, c, 1, 1, dtype=torch.float64)).flatten().tolist()
    hi = spec.normalize(torch.ones(1, c, 1, 1, dtype=torch.float64)).flatten().tolist()
    return lo, hi


def _engine_options(handle: Any, search: Mapping[str, Any]) -> dict[str, Any]:
    return {**search, "input_range": channel_range(handle.input_spec), "levels": PIXEL_LEVELS}


def _model_input(handle: Any, images: torch.Tensor) -> torch.Tensor:
    return handle.input_spec.normalize(image_to_tensor(images, handle.input_spec)).to(handle.device)


def shown_pixels(handle: Any, x: torch.Tensor) -> np.ndarray:
    """Model inputs [N, C, H, W] -> the 8-bit images [N, C, H, W] that are shown (and could be stored)."""
    pixels = handle.input_spec.denormalize(x.detach().double()).clamp(0, 1)
    return (pixels * (PIXEL_LEVELS - 1)).round().to(torch.uint8).cpu().numpy()


def _pixels_to_input(handle: Any, pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(pixels.astype(np.float32) / (PIXEL_LEVELS - 1))
    return handle.input_spec.normalize(x).to(handle.device)


def _judge(handle: Any, pixels: np.ndarray, original: np.ndarray, target: Optional[int], keys: list[str]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feed shown images back: (probabilities [N, K], predicted class [N], valid [N])."""
    probs = handle.predict_proba(_pixels_to_input(handle, pixels)).cpu().numpy()
    require_finite(probs, keys, what="model outputs on the counterfactuals")
    cls = probs.argmax(1)
    valid = cls == target if target is not None else cls != np.asarray(original)
    return probs, cls, valid


def _image_handle(family: str, version: str, distance: str, not_image: str) -> Any:
    """The image model's handle for a search in ``distance``; ``not_image`` is the refusal for a text model."""
    handle = handle_for(family, version)
    if handle.input_spec is None:
        raise CounterfactualError(not_image)
    if distance not in ("l1", "l2"):
        raise CounterfactualError("distance must be l1 or l2")
    return handle


def counterfactual_for_sample(family: str, version: str, *, dataset: str, sample_key: str,
                              target: Optional[int] = None, distance: str = "l2", k_diverse: int = 0,
                              seed: int = 0, actor: Principal = SYSTEM, **search: Any) -> SampleCounterfactual:
    """``search``: budget options of the engine (max_iter, restarts, binary_steps, ...). Not stored."""
    from audit.counterfactuals import diverse_counterfactuals, image_counterfactual

    require(actor, "run")
    handle = _image_handle(family, version, distance, "use the text counterfactual for text models")
    search = search_options(search)
    samples = load_image_samples(dataset, keys=[sample_key], model=handle)
    x = _model_input(handle, samples.images)
    require_finite(handle.predict_proba(x), [sample_key])
    # The search only reads the module (no hooks, gradients w.r.t. the input only): no handle lock needed.
    cf = image_counterfactual(handle.module, x, target=target, distance=distance, seed=seed,
                              **_engine_options(handle, search))
    before = shown_pixels(handle, x)
    after = shown_pixels(handle, cf.x_cf)
    p0 = handle.predict_proba(_pixels_to_input(handle, before))[0].cpu().numpy()
    require_finite(p0[None], [sample_key])
    p1, cls, valid = _judge(handle, after, np.array([cf.original_class]), target, [sample_key])
    diverse = None
    if k_diverse:
        ds = diverse_counterfactuals(handle.module, x, k=k_diverse, distance=distance, seed=seed,
                                     **_engine_options(handle, search))
        images = shown_pixels(handle, torch.cat([it.x_cf for it in ds.items]))
        _, d_cls, _ = _judge(handle, images, np.array([cf.original_class] * len(images)), None,
                             [f"{sample_key} (diverse {i})" for i in range(len(images))])
        d_valid = [bool(c == it.target) if it.target is not None else bool(c != cf.original_class)
                   for c, it in zip(d_cls, ds.items)]
        diverse = DiverseCounterfactuals(images=tuple(images), classes=tuple(int(c) for c in d_cls),
                                         valid=tuple(d_valid), validity=float(np.mean(d_valid)),
                                         diversity_l2=None if np.isnan(ds.diversity_l2) else float(ds.diversity_l2))
    return SampleCounterfactual(
        sample_key=sample_key, labels=tuple(handle.labels), true_label=samples.labels[0], original=before[0],
        counterfactual=after[0], original_class=cf.original_class, cf_class=int(cls[0]), target=target,
        valid=bool(valid[0]), l1=cf.l1, l2=cf.l2, changed_fraction=cf.changed_fraction, probabilities_before=p0,
        probabilities_after=p1[0], diverse=diverse)


def run_reference_counterfactuals(family: str, version: str, *, dataset: str, limit: int = 40,
                                  distance: str = "l2", seed: int = 0, actor: Principal = SYSTEM,
                                  progress: Progress = None, **search: Any) -> CounterfactualBatch:
    """Untargeted counterfactuals for the first ``limit`` samples; validity and mean distances."""
    from audit.counterfactuals import image_counterfactuals

    require(actor, "run")
    handle = _image_handle(family, version, distance, "reference counterfactuals apply to image models")
    options = counterfactual_options(dataset=dataset, limit=limit, distance=distance, seed=seed, **search)
    key = analysis_key(CF_SPEC, model_sha256=handle.sha256, dataset_sha256=dataset_key(dataset, handle),
                       options=options)
    cached = find_analysis("counterfactual", family, version, key)
    if cached is not None:
        return CounterfactualBatch.from_stored(cached)
    search = {k: options[k] for k in SEARCH_OPTIONS}
    with tracked_run("counterfactual", family=family, version=version, parameters=options, actor=actor, seed=seed,
                     device=str(handle.device)) as run:
        samples = load_image_samples(dataset, model=handle)
        x = _model_input(handle, samples.images[:limit])
        require_finite(handle.predict_proba(x), samples.keys[:limit])
        with run.phase("search"):
            cs = image_counterfactuals(handle.module, x, None, distance=distance, seed=seed, progress=progress,
                                       **_engine_options(handle, search))
        original = np.array([it.original_class for it in cs.items])
        _, cls, valid = _judge(handle, shown_pixels(handle, torch.cat([it.x_cf for it in cs.items])), original, None,
                               list(samples.keys[:limit]))
        outcomes = tuple(CounterfactualOutcome(sample=k, original=int(it.original_class), cf=int(c), valid=bool(v),
                                               l1=it.l1, l2=it.l2, changed_fraction=it.changed_fraction)
                         for k, it, c, v in zip(samples.keys, cs.items, cls, valid))
        ok = [o for o in outcomes if o.valid]
        batch = CounterfactualBatch(
            dataset=dataset, n=len(outcomes), distance=distance,
            valid_rate=len(ok) / len(outcomes) if outcomes else None,
            mean_l1=float(np.mean([o.l1 for o in ok])) if ok else None,
            mean_l2=float(np.mean([o.l2 for o in ok])) if ok else None,
            mean_changed_fraction=float(np.mean([o.changed_fraction for o in ok])) if ok else None,
            per_sample=outcomes, pixel_levels=PIXEL_LEVELS)
        stored = store_analysis("counterfactual", family, version, key=key, parameters=options,
                                summary=batch.to_summary(), actor=actor, dataset=dataset, seed=seed,
                                device=str(handle.device), duration_s=run.elapsed, run_id=run.run_id)
    return CounterfactualBatch.from_stored(stored)


def text_counterfactual_for(family: str, version: str, text: str, *, target: Optional[int] = None,
                            actor: Principal = SYSTEM) -> dict[str, Any]:
    """The fewest word substitutions that flip a text model's decision (shown, not stored)."""
    from audit.counterfactuals import text_counterfactual

    require(actor, "run")
    handle = handle_for(family, version)
    if handle.task != "text-classification":
        raise CounterfactualError("this model takes images")
    if not text.strip():
        raise CounterfactualError("enter a non-empty text")
    res = text_counterfactual(handle.module, handle.tokenizer, text, target=target)
    return res.to_dict() if hasattr(res, "to_dict") else dict(res.__dict__)
