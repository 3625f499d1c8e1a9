"""The analysis registry: each package under ``audit/services/analyses`` declares one ``Analysis`` and
registers it when it is imported; ``discover`` imports every package there (and of any folder added to the
package's ``__path__``), so a new analysis kind is one new package.

The job kinds, the full audit's steps, the report's sections and the CLI's commands are read from the
registered analyses, in their ``order``; nobody keeps a list of analyses by hand. Every command and the job
queue list the analyses, so a package's ``__init__`` imports only its light parts (job kinds, command
registration); the parts that load the engine (use cases, full-audit step, report part) are named by a
``Ref`` and imported when first read.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

if TYPE_CHECKING:
    from audit.report.compliance import SectionSpec
    from audit.report.content import Section
    from audit.results.base import AnalysisSpec
    from audit.services.jobs.kinds import JobKind

DUPLICATE_ANALYSIS = "analysis name {name!r} is declared by both {a} and {b}"
DUPLICATE_PART = "{what} {name!r} is declared by both analysis {a!r} and analysis {b!r}"


@dataclass(frozen=True)
class Ref:
    """A part defined in another module (``module``'s attribute ``name``), imported when first read."""

    module: str
    name: str

    def load(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)


@dataclass(frozen=True)
class UseCase:
    """A service function (``run``) that stores results of ``spec.kind``, both named in ``module``; its
    keyword-only arguments are exactly the spec's result options and other arguments (a test reads both)."""

    module: str
    spec_name: str
    run_name: str

    @property
    def spec(self) -> "AnalysisSpec":
        return Ref(self.module, self.spec_name).load()

    @property
    def run(self) -> Callable[..., Any]:
        return Ref(self.module, self.run_name).load()


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
    ``finding_rank`` orders the executive summary (lower first). A ``section`` the compliance table does not
    know is declared there, before "Limitations", when the report reads its parts."""

    section: "SectionSpec"
    gather: Callable[[Any], Sequence["Section"]]
    areas: tuple[str, ...] = ()
    finding_rank: int = 100


@dataclass(frozen=True)
class Analysis:
    """What one analysis kind is and where the application meets it."""

    name: str  # the package's name
    label: str  # as people say it
    order: int  # place among the analyses: job listing, full-audit steps, report sections
    use_cases: tuple[UseCase, ...] = ()
    jobs: tuple["JobKind", ...] = ()
    step: Union[AuditStep, Ref, None] = None
    report: Union[ReportPart, Ref, None] = None
    commands: Optional[Callable[[Any], None]] = None  # adds its subcommands to the CLI's subparsers

    def audit_step(self) -> Optional[AuditStep]:
        return self.step.load() if isinstance(self.step, Ref) else self.step

    def report_part(self) -> Optional[ReportPart]:
        return self.report.load() if isinstance(self.report, Ref) else self.report


_ANALYSES: dict[str, Analysis] = {}
_MODULES: dict[str, str] = {}
_DECLARED: dict[str, str] = {}  # report section key -> analysis that declared it in the compliance table
_discovered = False


def register_analysis(analysis: Analysis, *, module: Optional[str] = None) -> Analysis:
    """Add ``analysis`` (a package registers its own; importing the package again replaces it)."""
    where = module or analysis.name
    seen = _MODULES.get(analysis.name)
    if seen is not None and seen != where:
        raise ValueError(DUPLICATE_ANALYSIS.format(name=analysis.name, a=seen, b=where))
    for other in _ANALYSES.values():
        shared = {j.name for j in other.jobs} & {j.name for j in analysis.jobs}
        if other.name != analysis.name and shared:
            raise ValueError(DUPLICATE_PART.format(what="job kind", name=min(shared), a=other.name,
                                                   b=analysis.name))
    _ANALYSES[analysis.name] = analysis
    _MODULES[analysis.name] = where
    return analysis


def unregister_analysis(name: str) -> None:
    """Remove ``name`` and the report section it declared."""
    _ANALYSES.pop(name, None)
    _MODULES.pop(name, None)
    for key in [k for k, owner in _DECLARED.items() if owner == name]:
        from audit.report.compliance import withdraw_section  # deferred: audit.report loads reportlab

        withdraw_section(key)
        del _DECLARED[key]


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


def _unique(parts: list[tuple[str, str]], what: str) -> None:
    """``parts``: (analysis, part name) pairs; two analyses may not declare the same part."""
    owner: dict[str, str] = {}
    for name, part in parts:
        if part in owner:
            raise ValueError(DUPLICATE_PART.format(what=what, name=part, a=owner[part], b=name))
        owner[part] = name


def audit_steps() -> tuple[AuditStep, ...]:
    """The full audit's steps, in the analyses' order (their modules imported here)."""
    steps = [(a.name, s) for a in registered_analyses() if (s := a.audit_step()) is not None]
    _unique([(name, s.name) for name, s in steps], "full-audit step")
    return tuple(s for _, s in steps)


def report_parts() -> tuple[ReportPart, ...]:
    """The report's analysis parts, in the analyses' order; a section the compliance table lacks is declared."""
    from audit.report.compliance import declare_section  # deferred: audit.report loads reportlab

    parts = [(a.name, p) for a in registered_analyses() if (p := a.report_part()) is not None]
    _unique([(name, p.section.key) for name, p in parts], "report section")
    for name, part in parts:
        if declare_section(part.section):
            _DECLARED[part.section.key] = name
    return tuple(p for _, p in parts)


def use_cases() -> tuple[UseCase, ...]:
    return tuple(u for a in registered_analyses() for u in a.use_cases)
