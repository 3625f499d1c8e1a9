"""The full audit's concept-test step: each named concept on the class it is tested on (the caller's classes,
or for each concept its most associated class), one stored test per class."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from audit.datasets.tables import flag_value
from audit.services.analyses.concepts.service import concept_hashes, run_concept_test
from audit.services.analyses.full_audit.plan import AuditPlan, StepSkipped, each_item
from audit.services.analyses.registry import AuditStep
from audit.services.governance.principals import Principal

if TYPE_CHECKING:
    from audit.services.analyses.full_audit.service import FullAuditOptions

Progress = Optional[Callable[[float, str], None]]


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


def _run(plan: AuditPlan, opts: FullAuditOptions, actor: Principal, progress: Progress) -> list[int]:
    if not plan.concepts:
        raise StepSkipped("no concepts given (--concepts)")
    if all(y is None for y in plan.labels):
        raise StepSkipped(f"dataset {plan.dataset} has no labels: a concept test needs samples of its class")
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
    return each_item(items, one, lambda item: f"class {item[0]}")


def _check(plan: AuditPlan) -> None:
    concept_hashes(plan.concepts, plan.info["task"])  # an unknown concept stops the audit before it starts


STEP = AuditStep("concepts", 0.2, _run, check=_check)
