"""Section "Concept tests (TCAV)": every stored concept test of the version, one row per concept and
layer, read through the typed ``ConceptTest``; the executive summary counts the significant tests."""

from __future__ import annotations

from typing import Sequence

from audit.report import figures as figs
from audit.report.content import Figure, Section, Table
from audit.report.sections.base import ModelFacts, fmt, new_section
from audit.results.concepts import ConceptCell, ConceptTest

AREA = "Concept tests"
COLUMNS = ["Concept", "Layer", "Score", "Random CAVs (mean +/- std)", "Magn.", "p-value", "p corr.", "Signif.",
           "CAV acc."]
LISTED_IN_SUMMARY = 6


def concept_row(cell: ConceptCell) -> list[str]:
    """A cell's row in the section's table (the column order of ``COLUMNS``)."""
    rnd = (f"{cell.random_mean:.3f} +/- {cell.random_std:.3f}"
           if cell.random_mean is not None and cell.random_std is not None else "-")
    return [cell.concept, cell.layer, fmt(cell.score), rnd, fmt(cell.magnitude), fmt(cell.p_value),
            fmt(cell.p_value_corrected), fmt(cell.significant), fmt(cell.cav_accuracy)]


def concepts_section(model: ModelFacts, tests: Sequence[ConceptTest]) -> Section:
    sec = new_section("concepts")
    if not tests:
        sec.lack("No TCAV result is stored for this version.",
                 model.command("run a concept test, e.g. python -m audit tcav --family {F} --version {V} "
                               "(Concepts page), then regenerate the report."))
        return sec.find(AREA, "TCAV", "missing", "no stored TCAV result")
    raising: list[str] = []
    lowering: list[str] = []
    total = 0
    for test in tests:
        _one_test(sec, test)
        total += test.n_tests
        for c in test.significant_cells():
            (lowering if c.lowers_class else raising).append(f"{c.concept}@{c.layer}")
    detail = f"{len(raising) + len(lowering)} of {total} concept/layer tests significant"
    if raising:
        detail += ": " + _listed(raising)
    if lowering:  # significant below random: the concept pushes away from the class
        detail += ("; " if raising else ": ") + "below random, the concept lowers the class score: " + _listed(lowering)
    return sec.find(AREA, "concepts the model relies on", "info", detail)


def _listed(names: list[str]) -> str:
    return ", ".join(names[:LISTED_IN_SUMMARY]) + (" ..." if len(names) > LISTED_IN_SUMMARY else "")


def _one_test(sec: Section, test: ConceptTest) -> None:
    st = test.stored
    if st is not None:
        sec.cite("tcav", st.id, st.pin, f"TCAV for class {test.target_label}")
    origin = f"Result {st.id}: " if st is not None else ""
    when = f"; computed {(st.created_at or '')[:10]} by {st.created_by}" if st is not None else ""
    sec.text(f"{origin}class {test.target_label}; {len(test.concepts)} concept(s) at {len(test.layers)} layer(s), "
             f"{test.n_random} random runs, {test.test} significance test; level alpha = {fmt(test.alpha, 3)}, "
             f"multiple-testing correction: {test.correction} over {test.n_tests} tests{when}.")
    sec.add(Table(COLUMNS, [concept_row(c) for c in test.cells],
                  widths=[0.16, 0.15, 0.08, 0.15, 0.08, 0.1, 0.1, 0.07, 0.08],  # 1.0000 and 8.528e-04 fit on one line
                  caption="Score: fraction of the class's inputs whose class logit increases along the concept "
                          "direction (mean over runs), against the scores of random concept directions; magnitude: "
                          "signed share of that change; p corr.: after the multiple-testing correction."))
    weak = [f"{c.concept}@{c.layer}" for c in test.cells if c.low_cav_accuracy]
    if weak:
        sec.text(f"Low CAV accuracy ({', '.join(weak)}): the concept is barely separable from random examples at "
                 "that layer, so its direction and score are unreliable.", "note")
    scored = [c for c in test.cells if c.score is not None]
    if scored:
        first = next((i for i, c in enumerate(scored) if c.significant), None)
        sec.add(Figure(figs.bars_with_ci([f"{c.concept}\n{c.layer}" for c in scored], [float(c.score) for c in scored],
                                         title=f"TCAV scores, class {test.target_label}", ylabel="TCAV score",
                                         line=0.5, highlight=first),
                       "TCAV scores per concept and layer (red: first significant concept).",
                       min(16.0, 5.0 + 1.6 * len(scored))))
