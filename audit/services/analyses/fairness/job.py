"""The job kind of bias audits: its parameter check at submission and the service call that runs it.

The check and the run import their services inside the functions: job kinds are read by the queue before any
analysis runs, and the service modules load the engine (torch)."""

from __future__ import annotations

from typing import Any, Mapping

from audit.models.tasks import input_kind
from audit.services.governance.principals import Principal
from audit.services.jobs.kinds import (JobContext, JobKind, JobError, dataset_param, int_param, methods_param,
                                       names_param, no_extra, version_param)

BIAS_KEYS = ("family", "version", "dataset", "attributes", "csv_sha256", "n_boot", "positive_label",
             "explanation_method", "seed")


def _check_bias(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.services.analyses.fairness.service import group_attributes
    from storage.artifacts import ArtifactStore

    no_extra(p, BIAS_KEYS, "bias")
    info = version_param(p)
    dataset = dataset_param(p.get("dataset"), input_kind(info["task"]))
    attributes = names_param(p, "attributes")
    csv = p.get("csv_sha256")
    if csv is not None and not ArtifactStore().exists(str(csv)):
        raise JobError(f"csv_sha256 {csv} is not in the artifact store")
    if not attributes and csv is None:
        raise JobError("choose at least one sensitive attribute (or a group CSV)")
    known = group_attributes(dataset)
    missing = [a for a in attributes if a not in known]
    if missing:
        raise JobError(f"attribute(s) {', '.join(missing)} are not group columns of {dataset} "
                       f"(it has {', '.join(known) or 'none'})")
    positive = int_param(p, "positive_label", None, lo=0, hi=len(info["labels"]) - 1, optional=True)
    method = p.get("explanation_method")
    if method is not None:
        method = methods_param([method])[0]
    return {"family": p["family"], "version": p["version"], "dataset": dataset, "attributes": attributes,
            "csv_sha256": csv, "n_boot": int_param(p, "n_boot", 200, lo=0, hi=100_000), "positive_label": positive,
            "explanation_method": method, "seed": int_param(p, "seed", 0, lo=0, hi=2**31 - 1)}


def _run_bias(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.analyses.fairness.service import run_bias_audit
    from storage.artifacts import ArtifactStore

    csv_bytes = ArtifactStore().get_bytes(p["csv_sha256"]) if p.get("csv_sha256") else None
    audit = run_bias_audit(p["family"], p["version"], dataset=p["dataset"], attributes=p["attributes"],
                           n_boot=p["n_boot"], positive_label=p["positive_label"], csv_bytes=csv_bytes,
                           explanation_method=p["explanation_method"], seed=p["seed"], actor=actor,
                           progress=ctx.progress)
    return {"result_id": audit.result_id}


JOB = JobKind("bias", "Bias audit", ("run",), _check_bias, _run_bias)
