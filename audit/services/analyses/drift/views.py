"""Views over stored drift results: a family's trend across consecutive versions, and the gallery of
samples whose explanations changed most (both versions' maps read back from the explanation store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from audit.drift import SIMILARITY_METRICS, DriftThresholds
from audit.images import image_to_tensor
from audit.services.governance.principals import SYSTEM, Principal, require
from audit.services.core.datasets import load_image_samples, load_text_samples
from audit.services.analyses.drift.service import (DEFAULT_OPTIONS, DriftError, Progress, TargetMode, compute_drift, get_drift,
                                  stored_drift)
from audit.services.analyses.explanations.service import explain_batch
from audit.services.core.handles import handle_for
from audit.services.core.registry import RegistryError, get_version
from storage.db import transaction
from storage.repositories import ModelRepository


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
        with hb.lock:
            rb = attribute_text(hb.module, hb.tokenizer, texts, targets, [method], **ig)
        with hn.lock:
            rn = attribute_text(hn.module, hn.tokenizer, texts, targets, [method], **ig)
        for it, a, b in zip(items, rb, rn):
            it.tokens, it.base_scores, it.new_scores = a.tokens, a.scores[method].numpy(), b.scores[method].numpy()
        return items
    for version, attr in ((base, "base_map"), (new, "new_map")):
        h = handle_for(family, version)
        samples = load_image_samples(params["dataset"], keys=[it.key for it in items], model=h)
        order = [samples.keys.index(it.key) for it in items]
        hashes = [samples.hashes[i] for i in order]
        raw = image_to_tensor(samples.images[order], h.input_spec)
        x = h.input_spec.normalize(raw).to(h.device)
        maps, _ = explain_batch(h, family, version, x, hashes, targets, [method], dict(params["options"]),
                                 sample_ids=[None] * len(items), actor=actor, progress=None)
        for it, mp in zip(items, maps):
            setattr(it, attr, mp[method].attribution)
        if version == base:
            for it, r in zip(items, raw):
                it.image = r.cpu().numpy()
    return items
