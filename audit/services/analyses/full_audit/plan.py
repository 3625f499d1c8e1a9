"""What a full-audit step is given (the checked request, ``AuditPlan``) and what it may answer besides the ids
of its stored results (``StepSkipped``: the data does not allow it). Each analysis's ``step.py`` reads these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from audit.services.analyses.reports.service import FIGURE_SAMPLES
from audit.services.core.predict import NonFiniteOutputs


class StepSkipped(Exception):
    """A step the data does not allow; the message is the reason."""


@dataclass
class AuditPlan:
    """The request of one full audit, checked before any step runs."""

    family: str
    version: str
    dataset: str
    info: dict[str, Any]  # registry record of the version
    kind: str  # image | text
    labels: list[Optional[int]]  # per sample, as the model's class indices
    groups: list[dict[str, Any]]  # per sample
    concepts: list[str]
    targets: Optional[list[int]]  # class indices the caller chose


def figure_samples(opts: Any) -> int:
    """The report's explained samples under the full audit's explanation budget (``explain_limit``)."""
    return max(1, min(FIGURE_SAMPLES, opts.explain_limit))


def each_item(items: Sequence[Any], run: Callable[[int, Any], Any], where: Callable[[Any], str]) -> list[int]:
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
        raise StepSkipped("; ".join(errors))
    return ids
