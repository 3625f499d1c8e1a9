"""Concept tests (TCAV) on registered image models: concept sets, random counterparts from the
reference data, significance over random runs, stored results and version comparisons."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import torch

from audit.images import image_to_tensor
from audit.services.analyses import find_result, store_result
from audit.services.auth import SYSTEM, Principal, require
from audit.services.datasets import load_image_samples
from audit.services.explain import handle_for

GENERATED_CONCEPTS = ("watermark", "stripes", "texture", "random-reference")
Progress = Optional[Callable[[float, str], None]]


class ConceptError(ValueError):
    """A concept test that cannot run; the message says why."""


def layer_choices(family: str, version: str) -> list[str]:
    """Named blocks a concept test can probe: top-level children and their direct children with parameters."""
    handle = handle_for(family, version)
    names = []
    for name, module in handle.module.named_modules():
        depth = name.count(".")
        if name and depth <= 1 and any(True for _ in module.parameters()):
            names.append(name)
    return names


def default_layers(family: str, version: str) -> list[str]:
    names = layer_choices(family, version)
    conv_blocks = [n for n in names if n.startswith(("features.block", "layer"))]
    picks = conv_blocks[-2:] if len(conv_blocks) >= 2 else names[-3:-1]
    return picks


def concept_examples(name: str, *, n: int, seed: int, dataset: str,
                     pool: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A concept set at the reference images' native size (pixel values in [0, 1]).

    ``random-reference`` is a control: a set drawn like the random counterparts (from ``pool``, default
    the whole reference set), which should never come out significant."""
    from audit.concepts import stripes_concept, texture_concept, watermark_concept

    ref = load_image_samples(dataset)
    size, channels = ref.images.shape[-1], ref.images.shape[1]
    if name == "watermark":
        backgrounds = ref.images[torch.tensor([not g.get("watermark", False) for g in ref.groups])]
        return watermark_concept(n, size=size, channels=channels, seed=seed, backgrounds=backgrounds)
    if name == "stripes":
        return stripes_concept(n, size=size, channels=channels, seed=seed)
    if name == "texture":
        return texture_concept(n, size=size, channels=channels, seed=seed)
    if name == "random-reference":
        source = ref.images if pool is None else pool
        g = torch.Generator().manual_seed(seed + 991)
        return source[torch.randperm(len(source), generator=g)[:n]]
    # Otherwise a stored image dataset is the concept set.
    try:
        return load_image_samples(name).images[:n]
    except ValueError:
        raise ConceptError(f"unknown concept {name!r}: use one of {', '.join(GENERATED_CONCEPTS)} "
                           "or the name of a stored image dataset") from None


def run_concept_test(
    family: str, version: str, *, concepts: Sequence[str], target: int, layers: Optional[Sequence[str]] = None,
    dataset: str = "digits-reference", n_random: int = 10, set_size: int = 40, n_inputs: int = 60,
    alpha: float = 0.05, correction: str = "holm", test: str = "ttest", seed: int = 0, actor: Principal = SYSTEM,
    progress: Progress = None,
) -> dict[str, Any]:
    """Run (or return the stored) TCAV test of each concept for one class; returns the stored summary."""
    from audit.concepts import random_pool_sets, run_tcav_many, significance, two_sided_ttest
    from audit.concepts.tcav import MIN_CAV_ACCURACY

    require(actor, "run")
    if not concepts:
        raise ConceptError("choose at least one concept")
    if n_random < 2:
        raise ConceptError("at least 2 random runs are needed for a significance test (10 or more recommended)")
    handle = handle_for(family, version)
    if handle.input_spec is None:
        raise ConceptError("concept tests on text models are not available on this page yet")
    if not 0 <= target < len(handle.labels):
        raise ConceptError(f"target {target} is not a class of this model")
    layers = list(layers or default_layers(family, version))
    params = {"concepts": sorted(concepts), "target": target, "layers": layers, "dataset": dataset,
              "n_random": n_random, "set_size": set_size, "n_inputs": n_inputs, "alpha": alpha,
              "correction": correction, "test": test, "seed": seed}
    cached = find_result("tcav", family, version, params)
    if cached is not None:
        return cached
    start = time.perf_counter()
    ref = load_image_samples(dataset)
    to_model = lambda x: handle.input_spec.normalize(image_to_tensor(x, handle.input_spec))  # noqa: E731
    class_idx = [i for i, y in enumerate(ref.labels) if y == target]
    if len(class_idx) < 5:
        raise ConceptError(f"dataset {dataset} has only {len(class_idx)} samples of class {handle.labels[target]}")
    inputs = to_model(ref.images[class_idx[:n_inputs]])
    # Random counterparts come from the reference data, minus samples annotated as carrying a tested
    # concept (e.g. group "watermark"): a random set half made of the concept cannot separate from it.
    keep = [i for i, g in enumerate(ref.groups) if not any(g.get(c) is True for c in concepts)]
    pool = ref.images[keep]
    randoms = [to_model(r) for r in random_pool_sets(pool, n_random + 1, set_size, seed=seed)]
    # Each run draws a fresh concept sample as well as a fresh random counterpart, so the spread of the
    # concept's scores includes concept sampling: with one fixed concept set the t-test against the
    # random-vs-random null rejects far more often than alpha (docs/DECISIONS.md).
    concept_sets = {f"{c}#{r}": to_model(concept_examples(c, n=set_size, seed=seed + 7919 * (r + 1),
                                                          dataset=dataset, pool=pool))
                    for c in concepts for r in range(n_random)}
    res = run_tcav_many(handle.module, layers, concept_sets, randoms, inputs, target, alpha=alpha,
                        correction=correction, test=test, n_random=n_random, seed=seed, progress=progress)
    summary: dict[str, Any] = {
        "target": target, "target_label": handle.labels[target], "alpha": alpha, "correction": correction,
        "test": test, "n_random": res.n_random, "n_tests": len(concepts) * len(layers), "layers": layers,
        "concepts": {}, "random_hashes": list(res.random_hashes), "inputs_hash": res.inputs_hash,
        "random_pool_size": len(keep), "concept_resampled_per_run": True,
    }
    raw = []
    for c in concepts:
        for layer in layers:
            runs = [res.concepts[f"{c}#{r}"].layers[layer] for r in range(n_random)]
            scores = [lr.scores[r] for r, lr in enumerate(runs)]
            mags = [lr.magnitudes[r] for r, lr in enumerate(runs)]
            accs = [lr.cav_accuracies[r] for r, lr in enumerate(runs)]
            null = runs[0].random_scores
            if test == "ttest":
                t_stat, p = two_sided_ttest(scores, null)
            else:
                t_stat, p = runs[0].t_statistic, runs[0].p_value
            raw.append((c, layer, scores, mags, accs, null, p))
    corrected, decisions = significance([r[-1] for r in raw], alpha=alpha, correction=correction)
    for (c, layer, scores, mags, accs, null, p), pc, sig in zip(raw, corrected, decisions):
        rs = torch.tensor(null, dtype=torch.float64)
        entry = summary["concepts"].setdefault(c, {"concept_hashes": [res.concepts[f"{c}#{r}"].concept_hash
                                                                      for r in range(n_random)], "layers": {}})
        acc = float(sum(accs) / len(accs))
        entry["layers"][layer] = {
            "score": float(sum(scores) / len(scores)), "magnitude": float(sum(mags) / len(mags)),
            "scores": scores, "p_value": float(p), "p_value_corrected": float(pc), "significant": bool(sig),
            "cav_accuracy": acc, "low_cav_accuracy": acc < MIN_CAV_ACCURACY, "random_scores": list(null),
            "random_mean": float(rs.mean()), "random_std": float(rs.std()) if len(rs) > 1 else 0.0,
        }
    return store_result("tcav", family, version, params, summary, actor=actor, dataset=dataset, seed=seed,
                        device=str(handle.device), duration_s=time.perf_counter() - start)


def concept_examples_preview(concept: str, *, dataset: str = "digits-reference", n: int = 8,
                             seed: int = 0) -> list[Any]:
    """A few examples of a concept set as [H, W] or [H, W, 3] arrays in [0, 1], for the page."""
    x = concept_examples(concept, n=n, seed=seed, dataset=dataset)
    return [img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy() for img in x]
