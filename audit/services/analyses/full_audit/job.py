"""The job kind of full audits: its parameter check at submission and the service call that runs it.

The check and the run import their services inside the functions: job kinds are read by the queue before any
analysis runs, and the service modules load the engine (torch)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from audit.services.governance.principals import Principal
from audit.services.jobs.kinds import JobContext, JobKind, JobError, names_param, no_extra, version_param

AUDIT_KEYS = ("family", "version", "dataset", "concepts", "targets", "options", "author")


def _check_full_audit(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.services.analyses.full_audit.service import FullAuditError, FullAuditOptions, check_request

    no_extra(p, AUDIT_KEYS, "full_audit")
    version_param(p)
    options = p.get("options") or {}
    names = {f.name for f in fields(FullAuditOptions)}
    if not isinstance(options, Mapping) or set(options) - names:
        raise JobError(f"options must be a mapping with keys among {', '.join(sorted(names))}")
    concepts, targets = names_param(p, "concepts"), names_param(p, "targets") or None
    try:
        check_request(p["family"], p["version"], dataset=str(p.get("dataset") or ""), concepts=concepts,
                      targets=targets)
    except FullAuditError as exc:
        raise JobError(str(exc)) from None
    return {"family": p["family"], "version": p["version"], "dataset": p["dataset"], "concepts": concepts,
            "targets": targets, "options": dict(options), "author": p.get("author") or None}


def _run_full_audit(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.analyses.full_audit.service import FullAuditOptions, run_full_audit

    opts = dict(p["options"])
    for name in ("explain_methods", "drift_methods"):  # JSON has lists where the options hold tuples
        if opts.get(name) is not None:
            opts[name] = tuple(opts[name])
    res = run_full_audit(p["family"], p["version"], dataset=p["dataset"], concepts=p["concepts"],
                         targets=p["targets"], options=FullAuditOptions(**opts), author=p["author"], actor=actor,
                         progress=ctx.progress)
    return {"report_id": res.report_id, "report_sha256": res.report_sha256, "sections": dict(res.sections),
            "skipped": dict(res.skipped), "run_id": res.run_id}


JOB = JobKind("full_audit", "Full audit", ("run", "report"), _check_full_audit, _run_full_audit)
