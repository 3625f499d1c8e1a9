"""Method and metric names as people say them, and the publication behind each method, quality metric or
analysis, so the report names "Integrated Gradients" where the CLI and JSON say ``integrated_gradients`` and
cites each paper once. Methods and metrics declare both; this module only reads them."""

from __future__ import annotations

from typing import Iterable

from audit.quality.registry import find_metric

# Analyses of the report that are neither attribution methods nor quality metrics; those declare their own.
ANALYSIS_PAPERS: dict[str, str] = {
    "tcav": "Kim, Wattenberg, Gilmer, Cai, Wexler, Viegas & Sayres (2018). Interpretability Beyond Feature "
            "Attribution: Quantitative Testing with Concept Activation Vectors (TCAV). ICML.",
}

ANALYSIS_LABELS: dict[str, str] = {"tcav": "TCAV"}


def _spec(name: str):  # noqa: ANN202 - an attribution method class, a text method spec, a quality metric, or None
    from audit.attribution.registry import method_spec
    from audit.text.methods import TEXT_METHOD_SPECS

    try:
        return method_spec(name)
    except (KeyError, ValueError):
        return TEXT_METHOD_SPECS.get(name) or find_metric(name)


def method_label(name: str) -> str:
    """``gradcam_pp`` -> "Grad-CAM++"; an unknown identifier is returned as it is."""
    spec = _spec(name)
    return str(getattr(spec, "label", "") or ANALYSIS_LABELS.get(name) or name)


def method_labels(names: Iterable[str]) -> list[str]:
    return [method_label(n) for n in names]


def references(names: Iterable[str]) -> list[tuple[str, str]]:
    """(what, paper) for every method or analysis named, each paper once, in order of first mention;
    a paper shared by several methods lists them together."""
    order: list[str] = []
    users: dict[str, list[str]] = {}
    for name in names:
        spec = _spec(name)
        paper = ANALYSIS_PAPERS.get(name) or str(getattr(spec, "paper", "") or "")
        if not paper:
            continue
        what = ANALYSIS_LABELS.get(name) or method_label(name)
        if paper not in users:
            order.append(paper)
            users[paper] = []
        if what not in users[paper]:
            users[paper].append(what)
    return [(", ".join(users[p]), p) for p in order]
