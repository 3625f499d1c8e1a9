"""The job kind of explanation drift: its parameter check at submission and the service call that runs it.

The check and the run import their services inside the functions: job kinds are read by the queue before any
analysis runs, and the service modules load the engine (torch)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from audit.models.tasks import input_kind
from audit.services.governance.principals import Principal
from audit.services.jobs.kinds import (JobContext, JobKind, JobError, dataset_param, float_param, int_param,
                                       methods_param, names_param, no_extra, options_param, version_param)

DRIFT_KEYS = ("family", "base", "new", "dataset", "methods", "limit", "target", "options", "thresholds", "top_k",
              "batch_size", "recompute")


def _check_drift(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.drift import DriftThresholds

    no_extra(p, DRIFT_KEYS, "drift")
    base, new = version_param(p, "base"), version_param(p, "new")
    kind = input_kind(new["task"])
    if input_kind(base["task"]) != kind:
        raise JobError("base and new versions must be of the same task")
    dataset = dataset_param(p["dataset"], kind) if p.get("dataset") else None
    methods = names_param(p, "methods") or None
    if methods and kind == "image":
        methods = methods_param(methods)
    target = p.get("target", "base_prediction")
    if target not in ("base_prediction", "label"):
        raise JobError(f"target must be base_prediction or label, got {target!r}")
    thresholds = p.get("thresholds") or {}
    names = {f.name for f in fields(DriftThresholds)}
    if not isinstance(thresholds, Mapping) or set(thresholds) - names:
        raise JobError(f"thresholds must be a mapping with keys among {', '.join(sorted(names))}")
    try:
        DriftThresholds(**thresholds)
    except (TypeError, ValueError) as exc:
        raise JobError(str(exc).splitlines()[0]) from None
    return {"family": p["family"], "base": p["base"], "new": p["new"], "dataset": dataset, "methods": methods,
            "limit": int_param(p, "limit", None, lo=1, optional=True), "target": target,
            "options": options_param(p.get("options")) if kind == "image" else dict(p.get("options") or {}),
            "thresholds": dict(thresholds), "top_k": float_param(p, "top_k", 0.1, lo=1e-6, hi=1.0),
            "batch_size": int_param(p, "batch_size", 16, lo=1, hi=1024), "recompute": bool(p.get("recompute", False))}


def _run_drift(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.analyses.drift.service import compute_drift

    res = compute_drift(p["family"], p["base"], p["new"], dataset=p["dataset"], methods=p["methods"],
                        limit=p["limit"], target=p["target"], options=dict(p["options"]),
                        thresholds=p["thresholds"] or None, top_k=p["top_k"], batch_size=p["batch_size"],
                        recompute=p["recompute"], actor=actor, progress=ctx.progress)
    return {"result_id": int(res["result_id"]), "flagged": bool(res["flagged"])}


JOB = JobKind("drift", "Explanation drift", ("run",), _check_drift, _run_drift)
