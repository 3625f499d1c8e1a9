"""The job kind of counterfactual batches: its parameter check at submission and the service call that runs it.

The check and the run import their services inside the functions: job kinds are read by the queue before any
analysis runs, and the service modules load the engine (torch)."""

from __future__ import annotations

from typing import Any, Mapping

from audit.services.governance.principals import Principal
from audit.services.jobs.kinds import JobContext, JobKind, JobError, dataset_param, int_param, no_extra, version_param

CF_KEYS = ("family", "version", "dataset", "limit", "distance", "seed", "search")


def _check_counterfactuals(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.services.analyses.counterfactuals.service import CounterfactualError, search_options

    no_extra(p, CF_KEYS, "counterfactuals")
    version_param(p, image_only=True)
    distance = p.get("distance", "l2")
    if distance not in ("l1", "l2"):
        raise JobError(f"distance must be l1 or l2, got {distance!r}")
    search = p.get("search") or {}
    if not isinstance(search, Mapping):
        raise JobError("search must be a mapping of search options")
    try:
        search_options(search)
    except CounterfactualError as exc:
        raise JobError(str(exc)) from None
    return {"family": p["family"], "version": p["version"], "dataset": dataset_param(p.get("dataset"), "image"),
            "limit": int_param(p, "limit", 40, lo=1, hi=100_000), "distance": distance,
            "seed": int_param(p, "seed", 0, lo=0, hi=2**31 - 1), "search": dict(search)}


def _run_counterfactuals(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.analyses.counterfactuals.service import run_reference_counterfactuals

    res = run_reference_counterfactuals(p["family"], p["version"], dataset=p["dataset"], limit=p["limit"],
                                        distance=p["distance"], seed=p["seed"], actor=actor, progress=ctx.progress,
                                        **p["search"])
    return {"result_id": res.stored.id}


JOB = JobKind("counterfactuals", "Counterfactual batch", ("run",), _check_counterfactuals,
              _run_counterfactuals)
