"""The job kind of compliance reports: its parameter check at submission and the service call that runs it.

The check and the run import their services inside the functions: job kinds are read by the queue before any
analysis runs, and the service modules load the engine (torch)."""

from __future__ import annotations

from typing import Any, Mapping

from audit.models.tasks import input_kind
from audit.services.governance.principals import Principal
from audit.services.jobs.kinds import JobContext, JobKind, JobError, dataset_param, no_extra, version_param

REPORT_KEYS = ("family", "version", "author", "dataset", "compute_missing")


def _check_report(p: Mapping[str, Any]) -> dict[str, Any]:
    no_extra(p, REPORT_KEYS, "report")
    info = version_param(p)
    author = p.get("author")
    if author is not None and (not isinstance(author, str) or len(author) > 200):
        raise JobError("author must be text of at most 200 characters")
    dataset = dataset_param(p["dataset"], input_kind(info["task"])) if p.get("dataset") else None
    return {"family": p["family"], "version": p["version"], "author": author or None, "dataset": dataset,
            "compute_missing": bool(p.get("compute_missing", True))}


def _run_report(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.analyses.reports.service import generate_report

    info = generate_report(p["family"], p["version"], author=p["author"], dataset=p["dataset"],
                           compute_missing=p["compute_missing"], actor=actor, progress=ctx.progress)
    return {"report_id": info["id"], "sha256": info["sha256"], "filename": info["filename"], "pages": info["pages"]}


JOB = JobKind("report", "Compliance report", ("report",), _check_report, _run_report)
