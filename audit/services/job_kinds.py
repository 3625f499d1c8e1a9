"""What each kind of job is: the permission it needs, how its parameters are checked when it is submitted,
and which existing service runs it. A job never re-implements an analysis: it calls the same use case the
pages and the CLI call, with a progress callback where that service takes one."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Optional, Sequence

from audit.models.tasks import input_kind
from audit.multiple_testing import DEFAULT_CORRECTION, check_correction
from audit.services.auth import Principal

Progress = Callable[[float, str], None]


class JobError(ValueError):
    """A job request that cannot be accepted or acted on; the message says what is wrong."""


@dataclass
class JobContext:
    """What the worker hands a running job: its progress callback (which raises at a batch boundary when
    the job must stop) and the batch executor of sample-sharded kinds."""

    progress: Progress
    executor: Any = None


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str  # as people say it
    permissions: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], dict[str, Any]]  # -> the parameters as stored
    run: Callable[[dict[str, Any], Principal, JobContext], dict[str, Any]]  # -> the result pointer
    shardable: bool = False  # the Ray executor spreads its samples over a cluster

    def subject(self, params: Mapping[str, Any]) -> str:
        if "base" in params:
            return f"{params['family']}/{params['base']}->{params['new']}"
        return f"{params['family']}/{params['version']}"


# ------------------------------------------------------------------ parameter checks (one-line errors)

def _unknown(params: Mapping[str, Any], allowed: Sequence[str], kind: str) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise JobError(f"{kind}: unknown parameter(s) {', '.join(extra)}; allowed: {', '.join(allowed)}")


def _int(params: Mapping[str, Any], name: str, default: Optional[int], *, lo: int, hi: int = 1_000_000,
         optional: bool = False) -> Optional[int]:
    value = params.get(name, default)
    if value is None:
        if optional:
            return None
        raise JobError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise JobError(f"{name} must be a whole number, got {value!r}") from None
    if not lo <= value <= hi:
        raise JobError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(params: Mapping[str, Any], name: str, default: float, *, lo: float, hi: float) -> float:
    value = params.get(name, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise JobError(f"{name} must be a number, got {value!r}") from None
    if not lo <= value <= hi:
        raise JobError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _names(params: Mapping[str, Any], name: str, *, required: bool = False) -> list[str]:
    value = params.get(name) or []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise JobError(f"{name} must be a list of names")
    if required and not value:
        raise JobError(f"{name}: give at least one")
    return list(dict.fromkeys(value))


def _version(params: Mapping[str, Any], key: str = "version", *, image_only: bool = False) -> dict[str, Any]:
    from audit.services.registry import RegistryError, get_version

    family, version = params.get("family"), params.get(key)
    if not family or not version:
        raise JobError(f"family and {key} are required")
    try:
        info = get_version(str(family), str(version))
    except RegistryError as exc:
        raise JobError(str(exc)) from None
    if image_only and info["task"] != "image-classification":
        raise JobError(f"{family} {version} is a text model; this job applies to image models")
    return info


def _dataset(name: Any, kind: str, *, what: str = "dataset") -> str:
    from audit.services.datasets import list_datasets

    if not name or not isinstance(name, str):
        raise JobError(f"{what} is required")
    stored = {d["name"]: d["kind"] for d in list_datasets()}
    if name not in stored:
        raise JobError(f"{what} {name!r} does not exist")
    if stored[name] != kind:
        raise JobError(f"{what} {name!r} holds {stored[name]} samples, not {kind}s")
    return name


def _engine_options(options: Any) -> dict[str, Any]:
    from audit.attribution import AttributionOptions

    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise JobError("options must be a mapping of attribution option names to values")
    if "progress" in options:
        raise JobError("progress is not an option of a job: the worker reports progress")
    try:
        AttributionOptions.from_kwargs(**{k: v for k, v in options.items() if k != "layer"})
    except (TypeError, ValueError) as exc:
        raise JobError(str(exc).splitlines()[0]) from None
    return dict(options)


def _methods(value: Any, *, required: bool = True) -> list[str]:
    from audit.attribution.registry import check_methods

    names = _names({"methods": value}, "methods", required=required)
    try:
        return list(check_methods(names))
    except (TypeError, ValueError) as exc:
        raise JobError(str(exc).splitlines()[0]) from None


# ------------------------------------------------------------------ kinds

EXPLAIN_KEYS = ("family", "version", "dataset", "methods", "batch_size", "limit", "options")


def _check_explain(p: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(p, EXPLAIN_KEYS, "explain")
    _version(p, image_only=True)
    return {"family": p["family"], "version": p["version"], "dataset": _dataset(p.get("dataset"), "image"),
            "methods": _methods(p.get("methods")), "batch_size": _int(p, "batch_size", 16, lo=1, hi=1024),
            "limit": _int(p, "limit", None, lo=1, optional=True), "options": _engine_options(p.get("options"))}


def _run_explain(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.explain import explain_reference_set

    res = explain_reference_set(p["family"], p["version"], p["dataset"], methods=p["methods"],
                                batch_size=p["batch_size"], options=dict(p["options"]), limit=p["limit"], actor=actor,
                                progress=ctx.progress, executor=ctx.executor)
    return {"run_id": res.run_id, "samples": res.samples, "computed": res.computed, "reused": res.reused,
            "seconds": round(res.seconds, 3)}


TCAV_KEYS = ("family", "version", "dataset", "concepts", "target", "layers", "n_random", "set_size", "n_inputs",
             "alpha", "correction", "test", "seed")


def _check_tcav(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.services.concepts import MIN_RUNS, ConceptError, concept_hashes

    _unknown(p, TCAV_KEYS, "tcav")
    info = _version(p)
    dataset = _dataset(p.get("dataset"), input_kind(info["task"]))
    concepts = _names(p, "concepts", required=True)
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
            "target": target, "layers": _names(p, "layers") or None,
            "n_random": _int(p, "n_random", 10, lo=MIN_RUNS, hi=500), "set_size": _int(p, "set_size", 40, lo=2),
            "n_inputs": _int(p, "n_inputs", 60, lo=1), "alpha": _float(p, "alpha", 0.05, lo=1e-9, hi=0.5),
            "correction": correction, "test": test, "seed": _int(p, "seed", 0, lo=0, hi=2**31 - 1)}


def _run_tcav(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.concepts import run_concept_test

    res = run_concept_test(p["family"], p["version"], concepts=p["concepts"], target=p["target"], layers=p["layers"],
                           dataset=p["dataset"], n_random=p["n_random"], set_size=p["set_size"],
                           n_inputs=p["n_inputs"], alpha=p["alpha"], correction=p["correction"], test=p["test"],
                           seed=p["seed"], actor=actor, progress=ctx.progress)
    return {"result_id": res.stored.id, "cached": bool(res.stored.cached)}


BIAS_KEYS = ("family", "version", "dataset", "attributes", "csv_sha256", "n_boot", "positive_label",
             "explanation_method", "seed")


def _check_bias(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.services.fairness import group_attributes
    from storage.artifacts import ArtifactStore

    _unknown(p, BIAS_KEYS, "bias")
    info = _version(p)
    dataset = _dataset(p.get("dataset"), input_kind(info["task"]))
    attributes = _names(p, "attributes")
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
    positive = _int(p, "positive_label", None, lo=0, hi=len(info["labels"]) - 1, optional=True)
    method = p.get("explanation_method")
    if method is not None:
        method = _methods([method])[0]
    return {"family": p["family"], "version": p["version"], "dataset": dataset, "attributes": attributes,
            "csv_sha256": csv, "n_boot": _int(p, "n_boot", 200, lo=0, hi=100_000), "positive_label": positive,
            "explanation_method": method, "seed": _int(p, "seed", 0, lo=0, hi=2**31 - 1)}


def _run_bias(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.fairness import run_bias_audit
    from storage.artifacts import ArtifactStore

    csv_bytes = ArtifactStore().get_bytes(p["csv_sha256"]) if p.get("csv_sha256") else None
    audit = run_bias_audit(p["family"], p["version"], dataset=p["dataset"], attributes=p["attributes"],
                           n_boot=p["n_boot"], positive_label=p["positive_label"], csv_bytes=csv_bytes,
                           explanation_method=p["explanation_method"], seed=p["seed"], actor=actor,
                           progress=ctx.progress)
    return {"result_id": audit.result_id}


CF_KEYS = ("family", "version", "dataset", "limit", "distance", "seed", "search")


def _check_counterfactuals(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.services.counterfactuals import CounterfactualError, search_options

    _unknown(p, CF_KEYS, "counterfactuals")
    _version(p, image_only=True)
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
    return {"family": p["family"], "version": p["version"], "dataset": _dataset(p.get("dataset"), "image"),
            "limit": _int(p, "limit", 40, lo=1, hi=100_000), "distance": distance,
            "seed": _int(p, "seed", 0, lo=0, hi=2**31 - 1), "search": dict(search)}


def _run_counterfactuals(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.counterfactuals import run_reference_counterfactuals

    res = run_reference_counterfactuals(p["family"], p["version"], dataset=p["dataset"], limit=p["limit"],
                                        distance=p["distance"], seed=p["seed"], actor=actor, progress=ctx.progress,
                                        **p["search"])
    return {"result_id": res.stored.id}


DRIFT_KEYS = ("family", "base", "new", "dataset", "methods", "limit", "target", "options", "thresholds", "top_k",
              "batch_size", "recompute")


def _check_drift(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.drift import DriftThresholds

    _unknown(p, DRIFT_KEYS, "drift")
    base, new = _version(p, "base"), _version(p, "new")
    kind = input_kind(new["task"])
    if input_kind(base["task"]) != kind:
        raise JobError("base and new versions must be of the same task")
    dataset = _dataset(p["dataset"], kind) if p.get("dataset") else None
    methods = _names(p, "methods") or None
    if methods and kind == "image":
        methods = _methods(methods)
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
            "limit": _int(p, "limit", None, lo=1, optional=True), "target": target,
            "options": _engine_options(p.get("options")) if kind == "image" else dict(p.get("options") or {}),
            "thresholds": dict(thresholds), "top_k": _float(p, "top_k", 0.1, lo=1e-6, hi=1.0),
            "batch_size": _int(p, "batch_size", 16, lo=1, hi=1024), "recompute": bool(p.get("recompute", False))}


def _run_drift(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.drift import compute_drift

    res = compute_drift(p["family"], p["base"], p["new"], dataset=p["dataset"], methods=p["methods"],
                        limit=p["limit"], target=p["target"], options=dict(p["options"]),
                        thresholds=p["thresholds"] or None, top_k=p["top_k"], batch_size=p["batch_size"],
                        recompute=p["recompute"], actor=actor, progress=ctx.progress)
    return {"result_id": int(res["result_id"]), "flagged": bool(res["flagged"])}


REPORT_KEYS = ("family", "version", "author", "dataset", "compute_missing")


def _check_report(p: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(p, REPORT_KEYS, "report")
    info = _version(p)
    author = p.get("author")
    if author is not None and (not isinstance(author, str) or len(author) > 200):
        raise JobError("author must be text of at most 200 characters")
    dataset = _dataset(p["dataset"], input_kind(info["task"])) if p.get("dataset") else None
    return {"family": p["family"], "version": p["version"], "author": author or None, "dataset": dataset,
            "compute_missing": bool(p.get("compute_missing", True))}


def _run_report(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.reports import generate_report

    info = generate_report(p["family"], p["version"], author=p["author"], dataset=p["dataset"],
                           compute_missing=p["compute_missing"], actor=actor, progress=ctx.progress)
    return {"report_id": info["id"], "sha256": info["sha256"], "filename": info["filename"], "pages": info["pages"]}


AUDIT_KEYS = ("family", "version", "dataset", "concepts", "targets", "options", "author")


def _check_full_audit(p: Mapping[str, Any]) -> dict[str, Any]:
    from audit.services.full_audit import FullAuditError, FullAuditOptions, check_request

    _unknown(p, AUDIT_KEYS, "full_audit")
    _version(p)
    options = p.get("options") or {}
    names = {f.name for f in fields(FullAuditOptions)}
    if not isinstance(options, Mapping) or set(options) - names:
        raise JobError(f"options must be a mapping with keys among {', '.join(sorted(names))}")
    concepts, targets = _names(p, "concepts"), _names(p, "targets") or None
    try:
        check_request(p["family"], p["version"], dataset=str(p.get("dataset") or ""), concepts=concepts,
                      targets=targets)
    except FullAuditError as exc:
        raise JobError(str(exc)) from None
    return {"family": p["family"], "version": p["version"], "dataset": p["dataset"], "concepts": concepts,
            "targets": targets, "options": dict(options), "author": p.get("author") or None}


def _run_full_audit(p: dict[str, Any], actor: Principal, ctx: JobContext) -> dict[str, Any]:
    from audit.services.full_audit import FullAuditOptions, run_full_audit

    opts = dict(p["options"])
    for name in ("explain_methods", "drift_methods"):  # JSON has lists where the options hold tuples
        if opts.get(name) is not None:
            opts[name] = tuple(opts[name])
    res = run_full_audit(p["family"], p["version"], dataset=p["dataset"], concepts=p["concepts"],
                         targets=p["targets"], options=FullAuditOptions(**opts), author=p["author"], actor=actor,
                         progress=ctx.progress)
    return {"report_id": res.report_id, "report_sha256": res.report_sha256, "sections": dict(res.sections),
            "skipped": dict(res.skipped), "run_id": res.run_id}


KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind("explain", "Reference-set explanations", ("run",), _check_explain, _run_explain, shardable=True),
    JobKind("tcav", "Concept test", ("run",), _check_tcav, _run_tcav),
    JobKind("bias", "Bias audit", ("run",), _check_bias, _run_bias),
    JobKind("counterfactuals", "Counterfactual batch", ("run",), _check_counterfactuals, _run_counterfactuals),
    JobKind("drift", "Explanation drift", ("run",), _check_drift, _run_drift),
    JobKind("report", "Compliance report", ("report",), _check_report, _run_report),
    JobKind("full_audit", "Full audit", ("run", "report"), _check_full_audit, _run_full_audit),
)}


def job_kind(name: str) -> JobKind:
    if name not in KINDS:
        raise JobError(f"unknown job kind {name!r}; use one of {', '.join(KINDS)}")
    return KINDS[name]
