"""The analysis registry: each package under ``audit/services/analyses`` declares one ``Analysis`` and
registers it when it is imported; ``discover`` imports every package there (and of any folder added to the
package's ``__path__``), so a new analysis kind is one new package.

The job kinds, the full audit's steps, the report's sections and the CLI's commands are read from the
registered analyses, in their ``order``; nobody keeps a list of analyses by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from audit.report.compliance import BUILT_IN_SECTIONS, SectionSpec, declare_section, withdraw_section
from audit.results.base import AnalysisSpec

if TYPE_CHECKING:
    from audit.report.content import Section
    from audit.services.jobs.kinds import JobKind

DUPLICATE_ANALYSIS = "analysis name {name!r} is declared by both {a} and {b}"
DUPLICATE_PART = "{what} {name!r} is declared by both analysis {a!r} and analysis {b!r}"


@dataclass(frozen=True)
class UseCase:
    """A service function that stores results of ``spec.kind``; its keyword-only arguments are exactly the
    spec's result options and other arguments (a test reads both)."""

    spec: AnalysisSpec
    run: Callable[..., Any]


@dataclass(frozen=True)
class AuditStep:
    """One step of the full audit: ``run(plan, options, actor, progress)`` returns the ids of the stored
    results it produced or reused, or raises ``StepSkipped`` with the reason the data does not allow it.
    ``check(plan)``, when given, raises ``ValueError`` for a caller's mistake before any step runs."""

    name: str
    weight: float  # share of the full audit's progress bar, relative to the other steps
    run: Callable[..., list[int]]
    check: Optional[Callable[[Any], None]] = None


@dataclass(frozen=True)
class ReportPart:
    """The analysis's sections of the report. ``gather(g)`` reads (or, when ``g.compute``, computes) the
    evidence for one report and returns its sections; ``areas`` are the finding areas those sections use
    (a stored report's findings name their area, the full audit gives one status per section);
    ``finding_rank`` orders the executive summary (lower first)."""

    section: SectionSpec
    gather: Callable[[Any], Sequence["Section"]]
    areas: tuple[str, ...] = ()
    finding_rank: int = 100


@dataclass(frozen=True)
class Analysis:
    """What one analysis kind is and where the application meets it."""

    name: str  # the package's name
    label: str  # as people say it
    order: int  # place among the analyses: job listing, full-audit steps, report sections
    kinds: tuple[str, ...] = ()  # kinds of the results it stores
    use_cases: tuple[UseCase, ...] = ()
    jobs: tuple["JobKind", ...] = ()
    step: Optional[AuditStep] = None
    report: Optional[ReportPart] = None
    commands: Optional[Callable[[Any], None]] = None  # adds its subcommands to the CLI's subparsers


_ANALYSES: dict[str, Analysis] = {}
_MODULES: dict[str, str] = {}
_discovered = False


def register_analysis(analysis: Analysis, *, module: Optional[str] = None) -> Analysis:
    """Add ``analysis`` (a package registers its own; importing the package again replaces it). A report
    section the compliance table does not know is declared there, before "Limitations"."""
    where = module or analysis.name
    seen = _MODULES.get(analysis.name)
    if seen is not None and seen != where:
        raise ValueError(DUPLICATE_ANALYSIS.format(name=analysis.name, a=seen, b=where))
    for other in _ANALYSES.values():
        if other.name == analysis.name:
            continue
        _refuse_shared(other, analysis)
    if analysis.report is not None:
        declare_section(analysis.report.section)
    _ANALYSES[analysis.name] = analysis
    _MODULES[analysis.name] = where
    return analysis


def _refuse_shared(a: Analysis, b: Analysis) -> None:
    shared = {"job kind": {j.name for j in a.jobs} & {j.name for j in b.jobs},
              "full-audit step": ({a.step.name} if a.step else set()) & ({b.step.name} if b.step else set()),
              "report section": ({a.report.section.key} if a.report else set())
                                & ({b.report.section.key} if b.report else set())}
    for what, names in shared.items():
        for name in sorted(names):
            raise ValueError(DUPLICATE_PART.format(what=what, name=name, a=a.name, b=b.name))


def unregister_analysis(name: str) -> None:
    """Remove ``name`` and the report section it declared."""
    gone = _ANALYSES.pop(name, None)
    _MODULES.pop(name, None)
    if gone is not None and gone.report is not None and gone.report.section.key not in BUILT_IN_SECTIONS:
        withdraw_section(gone.report.section.key)


def discover(*, force: bool = False) -> None:
    """Import every package of ``audit.services.analyses`` (each registers its analysis)."""
    global _discovered
    if _discovered and not force:
        return
    _discovered = True
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            importlib.import_module(f"{package.__name__}.{info.name}")


def registered_analyses() -> tuple[Analysis, ...]:
    """Every registered analysis, in ``order`` (then name)."""
    discover()
    return tuple(sorted(_ANALYSES.values(), key=lambda a: (a.order, a.name)))


def analysis(name: str) -> Analysis:
    discover()
    try:
        return _ANALYSES[name]
    except KeyError:
        raise ValueError(f"unknown analysis {name!r}; choose from: {', '.join(_ANALYSES)}") from None


def audit_steps() -> tuple[AuditStep, ...]:
    return tuple(a.step for a in registered_analyses() if a.step is not None)


def report_parts() -> tuple[ReportPart, ...]:
    return tuple(a.report for a in registered_analyses() if a.report is not None)


def use_cases() -> tuple[UseCase, ...]:
    return tuple(u for a in registered_analyses() for u in a.use_cases)
