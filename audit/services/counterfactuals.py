"""Counterfactual use cases: the smallest change that flips a decision, for one reference sample (shown
side by side) or a whole reference set (validity and distances, stored as kind 'counterfactual')."""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
import torch

from audit.images import image_to_tensor
from audit.services.analyses import find_result, store_result
from audit.services.auth import SYSTEM, Principal, require
from audit.services.datasets import load_image_samples
from audit.services.explain import handle_for


class CounterfactualError(ValueError):
    """A counterfactual request that cannot run; the message says why."""


def _model_input(handle, images: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    return handle.input_spec.normalize(image_to_tensor(images, handle.input_spec)).to(handle.device)


def _to_pixels(handle, x: torch.Tensor) -> np.ndarray:  # noqa: ANN001
    """Model input -> [C, H, W] pixel values in [0, 1] for display."""
    spec = handle.input_spec
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x * std + mean).clamp(0, 1)[0].detach().cpu().numpy()


def counterfactual_for_sample(family: str, version: str, *, dataset: str, sample_key: str,
                              target: Optional[int] = None, distance: str = "l2", k_diverse: int = 0,
                              seed: int = 0, actor: Principal = SYSTEM, **search: Any) -> dict[str, Any]:
    """``search``: budget options of the engine (max_iter, restarts, binary_steps, ...)."""
    from audit.counterfactuals import diverse_counterfactuals, image_counterfactual

    require(actor, "run")
    handle = handle_for(family, version)
    if handle.input_spec is None:
        raise CounterfactualError("use the text counterfactual for text models")
    if distance not in ("l1", "l2"):
        raise CounterfactualError("distance must be l1 or l2")
    samples = load_image_samples(dataset, keys=[sample_key])
    x = _model_input(handle, samples.images)
    cf = image_counterfactual(handle.module, x, target=target, distance=distance, seed=seed,
                              input_range=handle.input_spec.value_range(), **search)
    p0 = handle.predict_proba(x)[0].cpu().numpy()
    p1 = handle.predict_proba(cf.x_cf)[0].cpu().numpy()
    out = {"original": _to_pixels(handle, x), "counterfactual": _to_pixels(handle, cf.x_cf),
           "difference": (_to_pixels(handle, cf.x_cf) - _to_pixels(handle, x)),
           "original_class": cf.original_class, "cf_class": cf.cf_class, "valid": cf.valid, "l1": cf.l1,
           "l2": cf.l2, "changed_fraction": cf.changed_fraction, "probabilities_before": p0,
           "probabilities_after": p1, "labels": list(handle.labels), "true_label": samples.labels[0], "diverse": None}
    if k_diverse:
        ds = diverse_counterfactuals(handle.module, x, k=k_diverse, distance=distance, seed=seed,
                                     input_range=handle.input_spec.value_range(), **search)
        out["diverse"] = {"images": [_to_pixels(handle, it.x_cf) for it in ds.items],
                          "classes": [it.cf_class for it in ds.items], "valid": [it.valid for it in ds.items],
                          "validity": ds.validity, "diversity_l2": ds.diversity_l2}
    return out


def run_reference_counterfactuals(family: str, version: str, *, dataset: str, limit: int = 40,
                                  distance: str = "l2", seed: int = 0, actor: Principal = SYSTEM,
                                  progress=None, **search: Any) -> dict[str, Any]:  # noqa: ANN001
    """Untargeted counterfactuals for the first ``limit`` samples; validity and mean distances."""
    from audit.counterfactuals import image_counterfactuals

    require(actor, "run")
    params = {"dataset": dataset, "limit": limit, "distance": distance, "seed": seed, **search}
    cached = find_result("counterfactual", family, version, params)
    if cached is not None:
        return cached
    handle = handle_for(family, version)
    if handle.input_spec is None:
        raise CounterfactualError("reference counterfactuals apply to image models")
    start = time.perf_counter()
    samples = load_image_samples(dataset)
    x = _model_input(handle, samples.images[:limit])
    cs = image_counterfactuals(handle.module, x, None, distance=distance, seed=seed, progress=progress,
                               input_range=handle.input_spec.value_range(), **search)
    summary = {"dataset": dataset, "n": len(cs.items), "distance": distance, "valid_rate": cs.validity,
               "mean_l1": cs.proximity_l1, "mean_l2": cs.proximity_l2, "mean_changed_fraction": cs.sparsity,
               "per_sample": [{"sample": k, "original": it.original_class, "cf": it.cf_class, "valid": it.valid,
                               "l2": it.l2} for k, it in zip(samples.keys, cs.items)]}
    return store_result("counterfactual", family, version, params, summary, actor=actor, dataset=dataset,
                        seed=seed, device=str(handle.device), duration_s=time.perf_counter() - start)


def text_counterfactual_for(family: str, version: str, text: str, *, target: Optional[int] = None,
                            actor: Principal = SYSTEM) -> dict[str, Any]:
    from audit.counterfactuals import text_counterfactual

    require(actor, "run")
    handle = handle_for(family, version)
    if handle.task != "text-classification":
        raise CounterfactualError("this model takes images")
    if not text.strip():
        raise CounterfactualError("enter a non-empty text")
    res = text_counterfactual(handle.module, handle.tokenizer, text, target=target)
    return res.to_dict() if hasattr(res, "to_dict") else dict(res.__dict__)
