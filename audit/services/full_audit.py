"""The full audit: every analysis the data allows, each through its own service, then the report.

Each step calls the existing use case (explanations, concept tests, bias audits, counterfactuals, drift,
report), so every stored result is reused and a second run only adds a new report. A step the data
does not allow (no labels, no group columns, a text model, no parent version) is skipped with its
reason; a mistake of the caller (unknown family, version, dataset, concept or class) raises
``FullAuditError`` before anything runs. The whole run is one tracked run of kind ``full_audit``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

from audit.datasets.tables import flag_value  # noqa: F401 - re-exported: the full audit reads group flags
from audit.models.tasks import input_kind
from audit.services.auth import SYSTEM, Principal, require
from audit.services.core import tracked_run
from audit.services.predict import NonFiniteOutputs

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]
SectionStatus = Literal["PASS", "FAIL", "INFO", "MISSING"]
KIND = "full_audit"
STEPS: tuple[str, ...] = ("explanations", "concepts", "bias", "counterfactuals", "drift", "report")
# Share of the progress bar each step takes (the report gathers and renders, so it gets the most).
_WEIGHTS = {"explanations": 0.15, "concepts": 0.2, "bias": 0.1, "counterfactuals": 0.15, "drift": 0.15,
            "report": 0.25}


class FullAuditError(ValueError):
    """A full audit the caller asked for wrongly (unknown dataset, family, concept or class)."""


class _Skip(Exception):
    """A step the data does not allow; the message is the reason."""


@dataclass(frozen=True)
class FullAuditOptions:
    """Budgets of the steps. Defaults match what the report itself would compute, so it reuses them."""

    explain_limit: int = 16  # also bounds the report's explained samples (at most 8: its usual figure)
    explain_methods: Optional[tuple[str, ...]] = None  # None: the report's figure methods
    explain_options: Optional[dict[str, Any]] = None  # None: the report's figure options
    tcav_n_random: int = 10
    tcav_set_size: int = 40
    tcav_n_inputs: int = 60
    bias_n_boot: int = 200
    cf_limit: int = 8
    # 50 steps x 2 trade-off constants: on EfficientNet-Lite0 (8 photographs, 224 px) as valid as 100 x 3 (8 of 8)
    # with a mean L2 of 0.41 against 0.44, at 48% of its cost (DECISIONS 78)
    cf_search: dict[str, Any] = field(default_factory=lambda: {"max_iter": 50, "binary_steps": 2, "restarts": 1})
    drift_limit: Optional[int] = None  # None: the report's drift limit
    drift_methods: Optional[tuple[str, ...]] = None  # None: the drift service's defaults
    drift_options: Optional[dict[str, Any]] = None  # None: the report's drift options
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class FullAudit:
    """What one full audit produced: the stored report, a status per report section and the timings."""

    report_id: int
    report_sha256: str
    sections: dict[str, SectionStatus]
    findings: list[dict[str, Any]]
    steps: dict[str, float]  # step -> seconds
    skipped: dict[str, str]  # step -> reason
    run_id: Optional[int] = None
    # step -> ids of the stored results it produced or reused (explanations: the id of their run)
    results: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"report_id": self.report_id, "report_sha256": self.report_sha256, "sections": dict(self.sections),
                "findings": list(self.findings), "steps": dict(self.steps), "skipped": dict(self.skipped)}


def _area_to_section() -> dict[str, str]:
    from audit.report.sections import bias, concepts, counterfactuals, drift, quality

    return {bias.AREA: "bias", concepts.AREA: "concepts", counterfactuals.AREA: "counterfactuals",
            drift.AREA: "drift", quality.AREA: "quality", "Performance": "performance"}


def section_statuses(findings: Sequence[dict[str, Any]]) -> dict[str, SectionStatus]:
    """One status per report section from its findings: FAIL if any fails, else MISSING if any is
    missing, else PASS if any passes, else INFO. A finding names its section (``section``) or its area."""
    by_area = _area_to_section()
    grouped: dict[str, set[str]] = {}
    for f in findings:
        name = f.get("section") or by_area.get(f.get("area", ""), str(f.get("area", "")).lower())
        grouped.setdefault(name, set()).add(str(f.get("status", "info")).lower())
    out: dict[str, SectionStatus] = {}
    for name, statuses in grouped.items():
        out[name] = ("FAIL" if "fail" in statuses else "MISSING" if "missing" in statuses
                     else "PASS" if "pass" in statuses else "INFO")
    return out


@dataclass
class _Plan:
    family: str
    version: str
    dataset: str
    info: dict[str, Any]  # registry record of the version
    kind: str  # image | text
    labels: list[Optional[int]]  # per sample
    groups: list[dict[str, Any]]  # per sample
    concepts: list[str]
    targets: Optional[list[int]]  # class indices the caller chose


def _class_index(text: str, labels: list[str]) -> int:
    if text in labels:
        return labels.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(labels):
        return int(text)
    from audit.datasets.labels import unknown_labels_message

    raise FullAuditError(unknown_labels_message([text], labels, what="--targets"))


def _plan(family: str, version: str, dataset: str, concepts: Sequence[str], targets: Optional[Sequence[str]]) -> _Plan:
    """Check everything the caller named before any work starts."""
    from audit.services.concepts import ConceptError, concept_hashes
    from audit.datasets.labels import LabelMismatch, labels_for_model
    from audit.services.datasets import DatasetError, pick_reference_set, sample_index
    from audit.services.registry import RegistryError, get_version

    try:
        info = get_version(family, version)
    except RegistryError as exc:
        raise FullAuditError(str(exc)) from None
    try:
        ds = pick_reference_set(dataset, info["task"], info["labels"])
    except DatasetError as exc:
        raise FullAuditError(str(exc)) from None
    kind = input_kind(info["task"])
    try:
        concept_hashes(concepts, info["task"])
    except ConceptError as exc:
        raise FullAuditError(str(exc)) from None
    labels = list(info["labels"] or [])
    chosen = [_class_index(t, labels) for t in targets] if targets else None
    index = sample_index(ds["name"])
    try:  # the data's class names as the model's class indices (never the set's own positions)
        model_labels = labels_for_model(index.label_texts, labels, what=f"dataset {ds['name']!r}")
    except LabelMismatch as exc:
        raise FullAuditError(str(exc)) from None
    return _Plan(family, version, ds["name"], info, kind, model_labels, [dict(g or {}) for g in index.groups],
                 list(dict.fromkeys(concepts)), chosen)


def check_request(family: str, version: str, *, dataset: str, concepts: Sequence[str] = (),
                  targets: Optional[Sequence[str]] = None) -> None:
    """Raise FullAuditError for anything the caller named wrongly, running nothing (a job checks its
    parameters when it is submitted)."""
    _plan(family, version, dataset, concepts, targets)


def boolean_groups(groups: Sequence[dict[str, Any]]) -> list[str]:
    """Group columns recorded for every sample with flag values only (see ``flag_value``)."""
    names = list(dict.fromkeys(k for g in groups for k in g))
    return [n for n in names if groups and all(flag_value(g.get(n)) is not None for g in groups)]


def default_targets(concepts: Sequence[str], labels: Sequence[Optional[int]],
                    groups: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The class each concept is tested on: for a concept that is also a boolean group column, the most
    frequent class among the samples where it is True; otherwise the dataset's most frequent class
    (ties: the lower class index)."""
    known = [(y, g) for y, g in zip(labels, groups) if y is not None]
    if not known:
        return {}

    def most_frequent(ys: list[int]) -> int:
        counts = Counter(ys)
        return min(counts, key=lambda y: (-counts[y], y))

    overall = most_frequent([y for y, _ in known])
    flags = set(boolean_groups(groups))
    out = {}
    for c in concepts:
        marked = [y for y, g in known if c in flags and flag_value(g.get(c)) is True]
        out[c] = most_frequent(marked) if marked else overall
    return out


def run_full_audit(family: str, version: str, *, dataset: str, concepts: Sequence[str] = (),
                   targets: Optional[Sequence[str]] = None, options: Optional[FullAuditOptions] = None,
                   author: Optional[str] = None, actor: Principal = SYSTEM, progress: Progress = None) -> FullAudit:
    """Run every analysis the data allows on ``dataset``, then generate and store the report."""
    require(actor, "run")
    require(actor, "report")
    opts = options or FullAuditOptions()
    plan = _plan(family, version, dataset, concepts, targets)
    tick = progress or (lambda f, msg: None)
    parameters = {"dataset": plan.dataset, "concepts": plan.concepts, "targets": plan.targets,
                  "options": opts.to_dict(), "author": author}
    steps: dict[str, float] = {}
    skipped: dict[str, str] = {}
    results: dict[str, list[int]] = {}
    done = [0.0]

    def sub(name: str) -> Callable[[float, str], None]:
        start, width = done[0], _WEIGHTS[name]
        return lambda f, msg: tick(min(1.0, start + width * max(0.0, min(1.0, float(f)))), f"{name}: {msg}")

    with tracked_run(KIND, family=family, version=version, parameters=parameters, actor=actor, seed=opts.seed) as run:
        report: dict[str, Any] = {}
        for name in STEPS:
            fn = _STEP_FUNCS[name]
            tick(done[0], f"{name}")
            t0 = time.perf_counter()
            with run.phase(name):
                try:
                    out = fn(plan, opts, actor, sub(name), author)
                    if name == "report":
                        report = out
                    else:
                        results[name] = list(out)
                except _Skip as exc:
                    skipped[name] = str(exc)
                except NonFiniteOutputs:  # the model itself is broken: no later step can be trusted
                    raise
                except ValueError as exc:  # the services' "cannot run" errors (ConceptError, DriftError, ...)
                    if name == "report":
                        raise
                    log.info("full audit: %s skipped: %s", name, exc)
                    skipped[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            steps[name] = round(time.perf_counter() - t0, 3)
            done[0] += _WEIGHTS[name]
        tick(1.0, f"report {report['id']} stored")
        run_id = run.run_id
    findings = list(report.get("findings") or [])
    return FullAudit(report_id=int(report["id"]), report_sha256=str(report["sha256"]),
                     sections=section_statuses(findings), findings=findings, steps=steps, skipped=skipped,
                     run_id=run_id, results=results)


# ------------------------------------------------------------------ steps (each one service call)

def _explanations(plan: _Plan, opts: FullAuditOptions, actor: Principal, progress: Progress,
                  author: Optional[str]) -> list[int]:
    from audit.services.explain import explain_reference_set
    from audit.services.reports import FIGURE_METHODS, FIGURE_OPTIONS

    if plan.kind == "text":
        raise _Skip("reference-set explanations apply to image models; the report computes token attributions")
    methods, not_applicable = applicable_methods(plan.family, plan.version,
                                                 list(opts.explain_methods or FIGURE_METHODS))
    if not methods:
        raise _Skip("; ".join(f"{m}: {why}" for m, why in not_applicable.items()))
    for method, why in not_applicable.items():  # e.g. the layer methods on TorchScript: the others still run
        log.info("full audit: explanations without %s: %s", method, why)
    options = dict(opts.explain_options if opts.explain_options is not None else FIGURE_OPTIONS)
    res = explain_reference_set(plan.family, plan.version, plan.dataset, methods=methods, options=options,
                                keys=_explained_keys(plan, opts), actor=actor, progress=progress)
    return [res.run_id]


def _explained_keys(plan: _Plan, opts: FullAuditOptions) -> list[str]:
    """``explain_limit`` samples: first the ones the report will show (so it reuses their maps instead of
    computing them again), then the reference set's first samples."""
    from audit.services.datasets import sample_index
    from audit.services.reports import report_sample_keys

    shown = report_sample_keys(plan.family, plan.version, plan.dataset, figure_samples=_figure_samples(opts))
    rest = [k for k in sample_index(plan.dataset).keys if k not in set(shown)]
    return (shown + rest)[:max(opts.explain_limit, 0)]


def _figure_samples(opts: FullAuditOptions) -> int:
    from audit.services.reports import FIGURE_SAMPLES

    return max(1, min(FIGURE_SAMPLES, opts.explain_limit))


def applicable_methods(family: str, version: str, methods: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``methods`` split into those that apply to the version's model and, for the others, why not (the
    methods' own declarations: e.g. no layer methods on a TorchScript model, which takes no hooks)."""
    from audit.attribution import method_spec
    from audit.services.handles import handle_for

    module = handle_for(family, version).module
    reasons = {m: method_spec(m).not_applicable_reason(module) for m in methods}
    return [m for m in methods if reasons[m] is None], {m: r for m, r in reasons.items() if r is not None}


def _concepts(plan: _Plan, opts: FullAuditOptions, actor: Principal, progress: Progress,
              author: Optional[str]) -> list[int]:
    from audit.services.concepts import run_concept_test

    if not plan.concepts:
        raise _Skip("no concepts given (--concepts)")
    if all(y is None for y in plan.labels):
        raise _Skip(f"dataset {plan.dataset} has no labels: a concept test needs samples of its class")
    by_target: dict[int, list[str]] = {}
    if plan.targets:
        for t in plan.targets:
            by_target[t] = list(plan.concepts)
    else:
        for c, t in default_targets(plan.concepts, plan.labels, plan.groups).items():
            by_target.setdefault(t, []).append(c)
    items = sorted(by_target.items())

    def one(i: int, item: tuple[int, list[str]]) -> Any:
        def part(f: float, msg: str) -> None:
            if progress:
                progress((i + f) / len(items), msg)
        return run_concept_test(plan.family, plan.version, concepts=item[1], target=item[0], dataset=plan.dataset,
                                n_random=opts.tcav_n_random, set_size=opts.tcav_set_size,
                                n_inputs=opts.tcav_n_inputs, seed=opts.seed, actor=actor, progress=part)

    # e.g. too few samples of one class: the other classes still run
    return _each(items, one, lambda item: f"class {item[0]}")


def _each(items: Sequence[Any], run: Callable[[int, Any], Any], where: Callable[[Any], str]) -> list[int]:
    """Run one stored analysis per item; an item the service refuses is noted, the others still run. The
    step is skipped (with every reason) only when no item ran."""
    ids, errors = [], []
    for i, item in enumerate(items):
        try:
            ids.append(run(i, item).stored.id)  # typed results carry the row they were read from
        except NonFiniteOutputs:
            raise
        except ValueError as exc:
            errors.append(f"{where(item)}: {exc}")
    if errors and not ids:
        raise _Skip("; ".join(errors))
    return ids


def _bias(plan: _Plan, opts: FullAuditOptions, actor: Principal, progress: Progress,
          author: Optional[str]) -> list[int]:
    from audit.services.fairness import run_bias_audit

    columns = list(dict.fromkeys(k for g in plan.groups for k in g))
    if not columns:
        raise _Skip(f"dataset {plan.dataset} has no group columns")
    if any(y is None for y in plan.labels):
        raise _Skip(f"dataset {plan.dataset} has samples without a label")
    def one(i: int, col: str) -> Any:
        if progress:
            progress(i / len(columns), col)
        return run_bias_audit(plan.family, plan.version, dataset=plan.dataset, attributes=[col],
                              n_boot=opts.bias_n_boot, seed=opts.seed, actor=actor)

    # e.g. a column not recorded for every sample: the other columns still run
    return _each(columns, one, str)


def _counterfactuals(plan: _Plan, opts: FullAuditOptions, actor: Principal, progress: Progress,
                     author: Optional[str]) -> list[int]:
    if plan.kind == "text":
        from audit.services.fairness import run_text_probe

        res = run_text_probe(plan.family, plan.version, dataset=plan.dataset, actor=actor)
    else:
        from audit.services.counterfactuals import run_reference_counterfactuals

        res = run_reference_counterfactuals(plan.family, plan.version, dataset=plan.dataset, limit=opts.cf_limit,
                                            seed=opts.seed, actor=actor, progress=progress, **dict(opts.cf_search))
    return [res.stored.id]


def _drift(plan: _Plan, opts: FullAuditOptions, actor: Principal, progress: Progress,
           author: Optional[str]) -> list[int]:
    from audit.services.drift import compute_drift
    from audit.services.reports import DRIFT_LIMIT, DRIFT_OPTIONS

    parent = plan.info.get("parent")
    if not parent:
        raise _Skip(f"{plan.family} {plan.version} has no parent version to compare with")
    res = compute_drift(plan.family, parent, plan.version, dataset=plan.dataset,
                        methods=list(opts.drift_methods) if opts.drift_methods else None,
                        limit=opts.drift_limit if opts.drift_limit is not None else DRIFT_LIMIT[plan.kind],
                        options=dict(opts.drift_options if opts.drift_options is not None else DRIFT_OPTIONS),
                        actor=actor, progress=progress)
    return [int(res["result_id"])]


def _report(plan: _Plan, opts: FullAuditOptions, actor: Principal, progress: Progress,
            author: Optional[str]) -> dict[str, Any]:
    from audit.services.reports import generate_report

    return generate_report(plan.family, plan.version, author=author, dataset=plan.dataset, compute_missing=True,
                           actor=actor, progress=progress, figure_samples=_figure_samples(opts))


_STEP_FUNCS: dict[str, Callable[..., Any]] = {
    "explanations": _explanations, "concepts": _concepts, "bias": _bias, "counterfactuals": _counterfactuals,
    "drift": _drift, "report": _report,
}
