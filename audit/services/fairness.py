"""Bias audits: group metrics with confidence intervals on a reference set (its stored groups or an
uploaded CSV), explanation disparity, and the identity-swap probe for text models."""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from audit.jsonsafe import finite_or_none
from audit.services.analyses import find_result, store_result
from audit.services.auth import SYSTEM, Principal, require
from audit.services.explain import handle_for
from audit.services.predict import predict_dataset, text_predict_proba

RATE_COLUMNS = ("accuracy", "selection_rate", "tpr", "fpr", "precision")


class BiasAuditError(ValueError):
    """A bias audit that cannot run; the message says why."""


def group_attributes(dataset: str) -> list[str]:
    from audit.services.datasets import list_datasets, load_image_samples, load_text_samples

    kind = {d["name"]: d["kind"] for d in list_datasets()}.get(dataset)
    if kind is None:
        raise BiasAuditError(f"dataset {dataset!r} does not exist")
    samples = load_image_samples(dataset) if kind == "image" else load_text_samples(dataset)
    return sorted({k for g in samples.groups for k in g})


def _frame_from_csv(csv_bytes: bytes, keys: list[str], kind: str) -> tuple[pd.DataFrame, dict[str, list[str]], list[str]]:
    from audit.fairness import load_group_csv

    table = load_group_csv(csv_bytes, known_sample_ids=set(keys), text_column="text" if kind == "text" else None,
                           label_column=None)
    by_id = table.frame.set_index(table.id_column)
    rows = [k for k in keys if k in by_id.index]
    return by_id.loc[rows, table.group_columns], table.small_groups, table.warnings


def run_bias_audit(
    family: str, version: str, *, dataset: str, attributes: Sequence[str], n_boot: int = 200,
    positive_label: Optional[int] = None, csv_bytes: Optional[bytes] = None, explanation_method: Optional[str] = None,
    seed: int = 0, actor: Principal = SYSTEM,
) -> dict[str, Any]:
    """Per-group performance (with bootstrap CIs), gaps, worst group, flags; stored as kind 'bias'."""
    from audit.fairness import group_metrics

    require(actor, "run")
    if not attributes and csv_bytes is None:
        raise BiasAuditError("choose at least one sensitive attribute")
    csv_digest = None
    if csv_bytes is not None:
        import hashlib

        csv_digest = hashlib.sha256(csv_bytes).hexdigest()
    params = {"dataset": dataset, "attributes": sorted(attributes), "n_boot": n_boot, "positive_label": positive_label,
              "csv_sha256": csv_digest, "explanation_method": explanation_method, "seed": seed}
    cached = find_result("bias", family, version, params)
    if cached is not None:
        return cached
    start = time.perf_counter()
    handle = handle_for(family, version)
    preds = predict_dataset(family, version, dataset)
    keys = preds.keys
    warnings: list[str] = []
    if csv_bytes is not None:
        groups, small, warnings = _frame_from_csv(csv_bytes, keys, "text" if preds.texts is not None else "image")
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
    y_pred = preds.predicted[idx]
    n_classes = len(handle.labels)
    kwargs: dict[str, Any] = {}
    if n_classes > 2:
        if positive_label is None:
            kwargs["average"] = "macro"
        else:
            kwargs["positive_label"] = positive_label
    elif positive_label is not None:
        kwargs["positive_label"] = positive_label
    res = group_metrics(np.asarray(y_true), y_pred, groups if len(attributes) > 1 else groups[attributes[0]],
                        n_boot=n_boot, seed=seed, **kwargs)
    by_group = []
    for g, row in res.by_group.iterrows():
        name = " & ".join(map(str, g)) if isinstance(g, tuple) else str(g)
        entry: dict[str, Any] = {"group": name, "count": int(row["count"]), "small_group": bool(row.get("small_group", False))}
        for col in res.by_group.columns:
            if col in ("count", "small_group"):
                continue
            entry[col] = finite_or_none(row[col])
            if res.by_group_ci is not None and (col, "low") in res.by_group_ci.columns:
                entry[f"{col}_ci"] = [finite_or_none(res.by_group_ci.loc[g, (col, "low")]),
                                      finite_or_none(res.by_group_ci.loc[g, (col, "high")])]
        by_group.append(entry)
    flags = [f"group {' & '.join(map(str, g)) if isinstance(g, tuple) else g} has fewer than "
             f"{res.min_group_size} samples: read its rates with care" for g in res.small_groups] + list(warnings)
    summary: dict[str, Any] = {
        "dataset": dataset, "attributes": list(attributes), "n": len(idx), "by_group": by_group,
        "overall": {k: finite_or_none(v) for k, v in res.overall.items()},
        "difference": {k: finite_or_none(v) for k, v in res.difference.items()},
        "ratio": {k: finite_or_none(v) for k, v in res.ratio.items()},
        "demographic_parity_difference": finite_or_none(res.demographic_parity_difference),
        "equalized_odds_difference": finite_or_none(res.equalized_odds_difference),
        "worst_group": {k: (" & ".join(map(str, v)) if isinstance(v, tuple) else str(v)) for k, v in res.worst_group.items()},
        "flags": flags, "n_boot": n_boot, "positive_label": positive_label,
        "average": res.average,
    }
    if explanation_method:
        summary["explanation_disparity"] = _explanation_disparity(family, version, dataset, explanation_method,
                                                                   groups, idx, seed=seed, actor=actor)
    return store_result("bias", family, version, params, summary, actor=actor, dataset=dataset, seed=seed,
                        device=str(handle.device), duration_s=time.perf_counter() - start)


def _explanation_disparity(family: str, version: str, dataset: str, method: str, groups: pd.DataFrame,
                           idx: list[int], *, seed: int, actor: Principal) -> dict[str, Any]:
    """Image models: share of |attribution| on the watermark region per group; text: on identity tokens."""
    from audit.fairness import explanation_disparity, identity_token_mask, text_explanation_disparity

    handle = handle_for(family, version)
    col = groups.columns[0] if len(groups.columns) == 1 else None
    labels = groups[col].tolist() if col else [" & ".join(map(str, r)) for r in groups.itertuples(index=False)]
    if handle.task == "text-classification":
        from audit.services.text import explain_texts
        from audit.services.datasets import load_text_samples

        texts = load_text_samples(dataset).texts
        results = explain_texts(family, version, [texts[i] for i in idx], methods=[method], actor=actor)
        scores = [r["scores"][method] for r in results]
        masks = [identity_token_mask(r["tokens"]) for r in results]
        d = text_explanation_disparity(scores, masks, labels, n_boot=200, seed=seed)
    else:
        from audit.demo.watermark import watermark_mask
        from audit.services.explain import explain_reference_set, stored_maps_for

        explain_reference_set(family, version, dataset, methods=[method], actor=actor)
        maps = stored_maps_for(family, version, dataset, method)
        h, w = maps.shape[-2:]
        d = explanation_disparity(maps[idx], watermark_mask(h, w), labels, n_boot=200, seed=seed)
    return {"method": method, "kind": d.kind, "baseline": d.baseline, "difference": finite_or_none(d.difference),
            "worst_group": str(d.worst_group),
            "by_group": [{"group": str(g), "mean": finite_or_none(r["mean"]), "ci": [finite_or_none(r["ci_low"]), finite_or_none(r["ci_high"])],
                          "count": int(r["count"])} for g, r in d.by_group.iterrows()]}


def run_text_probe(family: str, version: str, *, dataset: str, actor: Principal = SYSTEM) -> dict[str, Any]:
    """Swap gendered terms and names; flip rate and probability change. Stored as kind 'text_probe'."""
    from audit.fairness import text_swap_probe
    from audit.services.datasets import load_text_samples

    require(actor, "run")
    params = {"dataset": dataset}
    cached = find_result("text_probe", family, version, params)
    if cached is not None:
        return cached
    handle = handle_for(family, version)
    if handle.task != "text-classification":
        raise BiasAuditError("the identity-swap probe applies to text models")
    start = time.perf_counter()
    texts = load_text_samples(dataset).texts
    res = text_swap_probe(text_predict_proba(family, version), texts)
    d = res.to_dict(include_details=True)
    summary = {"dataset": dataset, "n": res.n_probed, "n_excluded": res.n_excluded, "flip_rate": res.flip_rate,
               "mean_prob_change": res.mean_abs_prob_change, "max_prob_change": res.max_abs_prob_change,
               "examples": [x for x in d.get("details", []) if x.get("flipped")][:10]}
    return store_result("text_probe", family, version, params, summary, actor=actor, dataset=dataset,
                        device=str(handle.device), duration_s=time.perf_counter() - start)
