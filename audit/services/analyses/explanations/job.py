"""The job kind of reference-set explanations: its parameter check at submission and the service call that runs it.

The check and the run import their services inside the functions: job kinds are read by the queue before any
analysis runs, and the service modules load the engine (torch)."""

from __future__ import annotations

from typing import Any, Mapping

from audit.services.governance.principals import Principal
from audit.services.jobs.kinds import (JobContext, JobKind, dataset_param, int_param, methods_param, no_extra,
                                       options_param, version_param)

EXPLAIN_KEYS = ("family", "version", "dataset", "methods", "batch_size", "limit", "options")


def _check_explain(p: Mapping[str, Any]) -> dict[str, Any]:
    no_extra(p, EXPLAIN_KEYS, "explain")
    version_param(p, image_only=True)
    return {"family": p["family"], "version": p["version"], "dataset": dataset_param(p.get("dataset"), "image"),
            "methods": methods_param(p.get("methods")), "batch_size": int_param(p, "batch_size", 16, lo=1, hi=1024),
            "limit": int_param(p, "limit", None, lo=1, optional=True), "options": options_param(p.get("options"))}


def _run_explain(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.analyses.explanations.service import explain_reference_set

    res = explain_reference_set(p["family"], p["version"], p["dataset"], methods=p["methods"],
                                batch_size=p["batch_size"], options=dict(p["options"]), limit=p["limit"], actor=actor,
                                progress=ctx.progress, executor=ctx.executor)
    return {"run_id": res.run_id, "samples": res.samples, "computed": res.computed, "reused": res.reused,
            "seconds": round(res.seconds, 3)}


JOB = JobKind("explain", "Reference-set explanations", ("run",), _check_explain, _run_explain, shardable=True)
