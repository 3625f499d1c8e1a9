"""Bias audits: group metrics with confidence intervals on a reference set (its stored groups or an
uploaded CSV), explanation disparity, and the identity-swap probe for text models."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from audit.jsonsafe import finite_or_none
from audit.results.base import AnalysisSpec
from audit.results.fairness import (
    BiasAudit,
    DisparityGroup,
    ExplanationDisparityFinding,
    GroupRates,
    MapComparison,
    MapPair,
    TextSwapProbe,
)
from audit.services.auth import SYSTEM, Principal, require
from audit.services.core import analysis_key, find_analysis, store_analysis, tracked_run
from audit.services.datasets import dataset_key
from audit.services.handles import handle_for
from audit.services.predict import predict_dataset, text_predict_proba

RATE_COLUMNS = ("accuracy", "selection_rate", "tpr", "fpr", "precision")
DISPARITY_BOOT = 200  # bootstrap resamples / permutations of the explanation-disparity intervals

# Every keyword argument of the public service functions is declared here, as a result option (it enters
# the cache key) or as another argument (it does not); tests/services/test_bias_cf_specs.py checks both ways.
BIAS_SPEC = AnalysisSpec(
    kind="bias",
    result_options=("dataset", "attributes", "n_boot", "positive_label", "csv_bytes", "explanation_method", "seed"),
    other_arguments=("actor", "progress"),
)
TEXT_PROBE_SPEC = AnalysisSpec(kind="text_probe", result_options=("dataset",), other_arguments=("actor",))


class BiasAuditError(ValueError):
    """A bias audit that cannot run; the message says why."""


def group_attributes(dataset: str) -> list[str]:
    from audit.services.datasets import list_datasets

    found = next((d for d in list_datasets() if d["name"] == dataset), None)
    if found is None:
        raise BiasAuditError(f"dataset {dataset!r} does not exist")
    return sorted(found["groups"])


def bias_options(*, dataset: str, attributes: Sequence[str], n_boot: int = 200, positive_label: Optional[int] = None,
                 csv_bytes: Optional[bytes] = None, explanation_method: Optional[str] = None,
                 seed: int = 0) -> dict[str, Any]:
    """The result options of a bias audit as they enter its key (attributes sorted, the CSV by hash)."""
    return {"dataset": dataset, "attributes": sorted(attributes), "n_boot": int(n_boot),
            "positive_label": None if positive_label is None else int(positive_label),
            "csv_bytes": None if csv_bytes is None else hashlib.sha256(csv_bytes).hexdigest(),
            "explanation_method": explanation_method, "seed": int(seed)}


def _frame_from_csv(csv_bytes: bytes, keys: list[str], kind: str) -> tuple[pd.DataFrame, dict[str, list[str]], list[str]]:
    from audit.fairness import load_group_csv

    table = load_group_csv(csv_bytes, known_sample_ids=set(keys), text_column="text" if kind == "text" else None,
                           label_column=None)
    by_id = table.frame.set_index(table.id_column)
    rows = [k for k in keys if k in by_id.index]
    return by_id.loc[rows, table.group_columns], table.small_groups, table.warnings


def _name(g: Any) -> str:
    return " & ".join(map(str, g)) if isinstance(g, tuple) else str(g)


def run_bias_audit(
    family: str, version: str, *, dataset: str, attributes: Sequence[str], n_boot: int = 200,
    positive_label: Optional[int] = None, csv_bytes: Optional[bytes] = None, explanation_method: Optional[str] = None,
    seed: int = 0, actor: Principal = SYSTEM, progress: Optional[Callable[[float, str], None]] = None,
) -> BiasAudit:
    """Per-group performance (with bootstrap CIs), gaps, worst group, flags; stored as kind 'bias'.
    ``progress(fraction, message)`` is called between the steps (and per batch of the explanations the
    disparity check computes); a job's progress raises there to stop a cancelled audit."""
    from audit.fairness import group_metrics

    require(actor, "run")
    if not attributes and csv_bytes is None:
        raise BiasAuditError("choose at least one sensitive attribute")
    handle = handle_for(family, version)
    options = bias_options(dataset=dataset, attributes=attributes, n_boot=n_boot, positive_label=positive_label,
                           csv_bytes=csv_bytes, explanation_method=explanation_method, seed=seed)
    key = analysis_key(BIAS_SPEC, model_sha256=handle.sha256, dataset_sha256=dataset_key(dataset, handle),
                       options=options)
    cached = find_analysis("bias", family, version, key)
    if cached is not None:
        return BiasAudit.from_stored(cached)
    steps = 3 if explanation_method else 2

    def step(done: int, message: str, fraction: float = 0.0) -> None:
        if progress is not None:
            progress(min(1.0, (done + fraction) / steps), message)

    with tracked_run("bias", family=family, version=version, parameters=options, actor=actor, seed=seed,
                     device=str(handle.device)) as run:
        step(0, f"predicting {dataset}")
        with run.phase("predict"):
            preds = predict_dataset(family, version, dataset)
        keys = preds.keys
        warnings: list[str] = []
        if csv_bytes is not None:
            groups, _, warnings = _frame_from_csv(csv_bytes, keys, "text" if preds.texts is not None else "image")
            idx = [keys.index(k) for k in groups.index]
            attributes = list(groups.columns)
        else:
            missing = [a for a in attributes if not all(a in g for g in preds.groups)]
            if missing:
                raise BiasAuditError(f"attribute(s) {', '.join(missing)} are not recorded for every sample of {dataset}")
            idx = list(range(len(keys)))
            groups = pd.DataFrame([{a: str(preds.groups[i][a]) for a in attributes} for i in idx])
        y_true = [preds.labels[i] for i in idx]
        if any(y is None for y in y_true):
            raise BiasAuditError(f"dataset {dataset} has samples without a label")
        kwargs: dict[str, Any] = {}
        if positive_label is not None:
            kwargs["positive_label"] = positive_label
        elif len(handle.labels) > 2:
            kwargs["average"] = "macro"
        step(1, f"group metrics with {n_boot} bootstrap resamples")
        with run.phase("group_metrics"):
            res = group_metrics(np.asarray(y_true), preds.predicted[idx],
                                groups if len(attributes) > 1 else groups[attributes[0]], n_boot=n_boot, seed=seed,
                                **kwargs)
        flags = [f"group {_name(g)} has fewer than {res.min_group_size} samples: read its rates with care"
                 for g in res.small_groups] + list(warnings)
        disparity = None
        if explanation_method:
            step(2, f"explanation disparity ({explanation_method})")
            with run.phase("explanation_disparity"):
                disparity = _explanation_disparity(
                    family, version, dataset, explanation_method, groups, idx, seed=seed, actor=actor,
                    progress=lambda f, m: step(2, f"explanation disparity: {m}", f))
        audit = BiasAudit(
            dataset=dataset, attributes=tuple(attributes), n=len(idx), by_group=_group_rows(res),
            overall={k: finite_or_none(v) for k, v in res.overall.items()},
            difference={k: finite_or_none(v) for k, v in res.difference.items()},
            ratio={k: finite_or_none(v) for k, v in res.ratio.items()},
            demographic_parity_difference=finite_or_none(res.demographic_parity_difference),
            equalized_odds_difference=finite_or_none(res.equalized_odds_difference),
            worst_group={k: _name(v) for k, v in res.worst_group.items()}, flags=tuple(flags), n_boot=int(n_boot),
            positive_label=positive_label, average=res.average, explanation_disparity=disparity)
        stored = store_analysis("bias", family, version, key=key, parameters=options, summary=audit.to_summary(),
                                actor=actor, dataset=dataset, seed=seed, device=str(handle.device),
                                duration_s=run.elapsed, run_id=run.run_id)
    step(steps, "bias audit stored")
    return BiasAudit.from_stored(stored)


def _group_rows(res: Any) -> tuple[GroupRates, ...]:
    rows = []
    for g, row in res.by_group.iterrows():
        rates, intervals = {}, {}
        for col in res.by_group.columns:
            if col in ("count", "small_group"):
                continue
            rates[col] = finite_or_none(row[col])
            if res.by_group_ci is not None and (col, "low") in res.by_group_ci.columns:
                intervals[col] = (finite_or_none(res.by_group_ci.loc[g, (col, "low")]),
                                  finite_or_none(res.by_group_ci.loc[g, (col, "high")]))
        rows.append(GroupRates(group=_name(g), count=int(row["count"]), small_group=bool(row.get("small_group", False)),
                               rates=rates, intervals=intervals))
    return tuple(rows)


def _explanation_disparity(family: str, version: str, dataset: str, method: str, groups: pd.DataFrame,
                           idx: list[int], *, seed: int, actor: Principal,
                           progress: Optional[Callable[[float, str], None]] = None) -> ExplanationDisparityFinding:
    """Image models: share of |attribution| on the regions the data declares, per group, or a region-free
    comparison of the groups' mean maps when it declares none; text: share on identity tokens."""
    from audit.fairness import identity_token_mask, text_explanation_disparity

    handle = handle_for(family, version)
    col = groups.columns[0] if len(groups.columns) == 1 else None
    labels = groups[col].tolist() if col else [" & ".join(map(str, r)) for r in groups.itertuples(index=False)]
    if handle.task == "text-classification":
        from audit.services.datasets import load_text_samples
        from audit.services.text import explain_texts

        texts = load_text_samples(dataset).texts
        results = explain_texts(family, version, [texts[i] for i in idx], methods=[method], actor=actor,
                                progress=progress)
        scores = [r["scores"][method] for r in results]
        masks = [identity_token_mask(r["tokens"]) for r in results]
        d = text_explanation_disparity(scores, masks, labels, n_boot=DISPARITY_BOOT, seed=seed)
        return _share_finding(method, d, region_source=None,
                              note="share of |attribution| on identity words (gendered terms and names)")
    from audit.services.datasets import load_image_samples
    from audit.services.explain import explain_reference_set, stored_maps_for

    explain_reference_set(family, version, dataset, methods=[method], actor=actor, progress=progress)
    maps = stored_maps_for(family, version, dataset, method)[idx]
    samples = load_image_samples(dataset, model=handle)  # regions moved into the model's view, as the maps are
    finding = image_disparity(method, maps, [samples.regions[i] if samples.regions else None for i in idx],
                              labels, image_size=tuple(samples.images.shape[-2:]), seed=seed)
    view = (int(samples.images.shape[-1]), int(samples.images.shape[-2]))
    stored = sorted({tuple(samples.sizes[i]) for i in idx if samples.regions[i] is not None and samples.sizes[i] != view})
    if stored:
        sizes = ", ".join(f"{w}x{h}" for w, h in stored[:3]) + (" ..." if len(stored) > 3 else "")
        finding = replace(finding, note=f"{finding.note}; regions moved from the stored {sizes} images to the "
                                        f"model's {view[0]}x{view[1]} input by its own resize and crop")
    cropped = sum(samples.outside_view[i] for i in idx) if samples.outside_view else 0
    if cropped:
        finding = replace(finding, note=f"{finding.note}; {cropped} sample(s) declare a region that the model's "
                                        "crop leaves outside its view (left out)")
    return finding


def image_disparity(method: str, maps: np.ndarray, regions: Sequence[Optional[Sequence[int]]], labels: Sequence[Any],
                    *, image_size: tuple[int, int], seed: int = 0) -> ExplanationDisparityFinding:
    """The disparity finding of image maps [N, (C,) H, W] from the regions the samples declare (boxes in the
    stored images' coordinates, scaled to the maps' size), or region-free when none declares one."""
    from audit.fairness import explanation_disparity, map_disparity, region_masks

    map_size = tuple(maps.shape[-2:])
    try:
        m = map_disparity(maps, list(labels), n_perm=DISPARITY_BOOT, seed=seed)
    except ValueError as exc:  # fewer than two groups with a usable map: nothing to compare
        m, why = None, str(exc)
    declared = sum(r is not None for r in regions)
    if declared == 0:
        note = ("the reference set declares no regions, so no region share was measured; the groups' mean "
                "normalised maps were compared instead (difference: largest total-variation distance, 0 = the "
                "same map, 1 = disjoint)")
        return ExplanationDisparityFinding(
            method=method, kind="map_similarity", region_source="none", baseline=None,
            difference=finite_or_none(m.difference) if m else None, worst_group=None,
            by_group=tuple(DisparityGroup(_name(g), None, (None, None), int(r["count"]))
                           for g, r in m.by_group.iterrows()) if m else (),
            note=note if m else f"{note}; not possible here: {why}", n_without_region=len(regions),
            maps=_map_comparison(m) if m else None)
    masks = region_masks(list(regions), image_size=image_size, map_size=map_size)
    d = explanation_disparity(maps, masks, list(labels), n_boot=DISPARITY_BOOT, seed=seed)
    scaled = "" if tuple(image_size) == map_size else (
        f"; boxes scaled from the stored {image_size[1]}x{image_size[0]} images to the model's "
        f"{map_size[1]}x{map_size[0]} input")
    note = (f"share of |attribution| inside the regions the data declares ({declared} of {len(regions)} samples"
            f" declare one; the others are left out){scaled}")
    return _share_finding(method, d, region_source="declared", note=note, maps=_map_comparison(m) if m else None)


def _share_finding(method: str, d: Any, *, region_source: Optional[str], note: str,
                   maps: Optional[MapComparison] = None) -> ExplanationDisparityFinding:
    return ExplanationDisparityFinding(
        method=method, kind=d.kind, region_source=region_source, baseline=finite_or_none(d.baseline),
        difference=finite_or_none(d.difference), worst_group=None if d.worst_group is None else _name(d.worst_group),
        by_group=tuple(DisparityGroup(_name(g), finite_or_none(r["mean"]),
                                      (finite_or_none(r["ci_low"]), finite_or_none(r["ci_high"])), int(r["count"]))
                       for g, r in d.by_group.iterrows()),
        note=note, n_without_region=int(getattr(d, "n_without_region", 0)), maps=maps)


def _map_comparison(m: Any) -> MapComparison:
    return MapComparison(
        difference=finite_or_none(m.difference), min_rank_correlation=finite_or_none(m.min_rank_correlation),
        most_different=None if m.most_different is None else (_name(m.most_different[0]), _name(m.most_different[1])),
        null_difference=finite_or_none(m.null_difference), p_value=finite_or_none(m.p_value),
        pairs=tuple(MapPair((_name(r.group_a), _name(r.group_b)), finite_or_none(r.total_variation),
                            finite_or_none(r.rank_correlation)) for r in m.pairs.itertuples()),
        n_perm=int(m.n_perm))


def run_text_probe(family: str, version: str, *, dataset: str, actor: Principal = SYSTEM) -> TextSwapProbe:
    """Swap gendered terms and names; flip rate and probability change. Stored as kind 'text_probe'."""
    from audit.fairness import text_swap_probe
    from audit.services.datasets import load_text_samples

    require(actor, "run")
    handle = handle_for(family, version)
    if handle.task != "text-classification":
        raise BiasAuditError("the identity-swap probe applies to text models")
    options = {"dataset": dataset}
    key = analysis_key(TEXT_PROBE_SPEC, model_sha256=handle.sha256, dataset_sha256=dataset_key(dataset, handle),
                       options=options)
    cached = find_analysis("text_probe", family, version, key)
    if cached is not None:
        return TextSwapProbe.from_stored(cached)
    with tracked_run("text_probe", family=family, version=version, parameters=options, actor=actor,
                     device=str(handle.device)) as run:
        texts = load_text_samples(dataset).texts
        with run.phase("probe"):
            res = text_swap_probe(text_predict_proba(family, version), texts)
        probe = TextSwapProbe(
            dataset=dataset, n=res.n_probed, n_excluded=res.n_excluded, flip_rate=finite_or_none(res.flip_rate),
            mean_prob_change=finite_or_none(res.mean_abs_prob_change),
            max_prob_change=finite_or_none(res.max_abs_prob_change),
            examples=tuple(d for d in res.details if d.flipped)[:10])
        stored = store_analysis("text_probe", family, version, key=key, parameters=options,
                                summary=probe.to_summary(), actor=actor, dataset=dataset, device=str(handle.device),
                                duration_s=run.elapsed, run_id=run.run_id)
    return TextSwapProbe.from_stored(stored)
