"""The report's localisation evidence: explanation maps of reference samples that declare a region, scored
by relevance mass accuracy and the pointing game. Maps come from (and go to) the explanation store."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np
import torch

from audit.images import image_to_tensor
from audit.report.sections.localisation import LocalisationEvidence
from audit.services.governance.principals import Principal

log = logging.getLogger(__name__)
N_LOCALISATION = 8


def gather_localisation(handle: Any, family: str, version: str, dataset: str, keys: Sequence[str],
                        predicted: Sequence[int], methods: Sequence[str], options: dict[str, Any], *,
                        actor: Principal) -> Optional[LocalisationEvidence]:
    """Up to N_LOCALISATION samples with a region (in reference-set order), their maps of the predicted
    class, scored per method. None when no sample of ``dataset`` declares a region."""
    from audit.fairness.disparity import region_masks
    from audit.quality import localisation
    from audit.services.core.datasets import load_image_samples
    from audit.services.analyses.explanations.service import explain_batch

    samples = load_image_samples(dataset, model=handle)  # regions in the model's view (a cropped-away one: None)
    picks = [i for i, r in enumerate(samples.regions or []) if r is not None][:N_LOCALISATION]
    if not picks:
        return None
    pred_of = dict(zip(keys, predicted))
    raw = image_to_tensor(samples.images[picks], handle.input_spec)
    x = handle.input_spec.normalize(raw).to(handle.device)
    targets = [int(pred_of[samples.keys[i]]) for i in picks]
    maps, _ = explain_batch(handle, family, version, x, [samples.hashes[i] for i in picks], targets, list(methods),
                            dict(options), sample_ids=[None] * len(picks), actor=actor, progress=None)
    regions = [samples.regions[i] for i in picks]
    image_size = (int(samples.images.shape[-2]), int(samples.images.shape[-1]))
    masks: dict[tuple[int, int], torch.Tensor] = {}  # per map size (maps are at the input size as a rule)

    def masks_for(size: tuple[int, int]) -> torch.Tensor:
        if size not in masks:
            masks[size] = region_masks(regions, image_size=image_size, map_size=size)
        return masks[size]

    size_in = (int(x.shape[-2]), int(x.shape[-1]))
    chance = float(masks_for(size_in).double().mean(dim=(1, 2)).mean())
    scores: dict[str, tuple[float, float]] = {}
    ids: list[int] = []
    for m in methods:
        attr = torch.from_numpy(np.stack([np.asarray(d[m].attribution) for d in maps]))
        res = localisation(attr, masks_for((int(attr.shape[-2]), int(attr.shape[-1]))))
        scores[m] = (res.relevance_mass_mean, res.pointing_game_mean)
        ids += [int(d[m].explanation_id) for d in maps if d[m].explanation_id is not None]
    return LocalisationEvidence(dataset=dataset, samples=[samples.keys[i] for i in picks], targets=targets,
                                scores=scores, chance=chance, explanation_ids=ids)
