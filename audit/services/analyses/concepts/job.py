"""The job kind of concept tests (TCAV): its parameter check at submission and the service call that runs it.

The check and the run import their services inside the functions: job kinds are read by the queue before any
analysis runs, and the service modules load the engine (torch)."""

from __future__ import annotations

from typing import Any, Mapping

from audit.models.tasks import input_kind
from audit.multiple_testing import DEFAULT_CORRECTION, check_correction
from audit.services.governance.principals import Principal
from audit.services.jobs.kinds import (JobContext, JobKind, JobError, dataset_param, float_param, int_param,
                                       names_param, no_extra, version_param)

TCAV_KEYS = ("family", "version", "dataset", "concepts", "target", "layers", "n_random", "set_size", "n_inputs",
             "alpha", "correction", "test", "seed")


def _check_tcav(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.services.analyses.concepts.service import MIN_RUNS, ConceptError, concept_hashes

    no_extra(p, TCAV_KEYS, "tcav")
    info = version_param(p)
    dataset = dataset_param(p.get("dataset"), input_kind(info["task"]))
    concepts = names_param(p, "concepts", required=True)
    try:
        concept_hashes(concepts, info["task"])
    except ConceptError as exc:
        raise JobError(str(exc)) from None
    labels = list(info["labels"])
    target = p.get("target")
    if isinstance(target, str) and target in labels:
        target = labels.index(target)
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < len(labels):
        raise JobError(f"target must be one of the class labels {labels}, got {p.get('target')!r}")
    correction, test = p.get("correction", DEFAULT_CORRECTION), p.get("test", "ttest")
    try:
        check_correction(correction)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    if test not in ("ttest", "pseudo_concept"):
        raise JobError(f"test must be ttest or pseudo_concept, got {test!r}")
    return {"family": p["family"], "version": p["version"], "dataset": dataset, "concepts": concepts,
            "target": target, "layers": names_param(p, "layers") or None,
            "n_random": int_param(p, "n_random", 10, lo=MIN_RUNS, hi=500),
            "set_size": int_param(p, "set_size", 40, lo=2),
            "n_inputs": int_param(p, "n_inputs", 60, lo=1), "alpha": float_param(p, "alpha", 0.05, lo=1e-9, hi=0.5),
            "correction": correction, "test": test, "seed": int_param(p, "seed", 0, lo=0, hi=2**31 - 1)}


def _run_tcav(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.analyses.concepts.service import run_concept_test

    res = run_concept_test(p["family"], p["version"], concepts=p["concepts"], target=p["target"], layers=p["layers"],
                           dataset=p["dataset"], n_random=p["n_random"], set_size=p["set_size"],
                           n_inputs=p["n_inputs"], alpha=p["alpha"], correction=p["correction"], test=p["test"],
                           seed=p["seed"], actor=actor, progress=ctx.progress)
    return {"result_id": res.stored.id, "cached": bool(res.stored.cached)}


JOB = JobKind("tcav", "Concept test", ("run",), _check_tcav, _run_tcav)
