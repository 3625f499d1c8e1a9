"""Method names as people say them, and the publication behind each method or analysis, so the report
names "Integrated Gradients" where the CLI and JSON say ``integrated_gradients`` and cites each paper once."""

from __future__ import annotations

from typing import Iterable

# Analyses of the report that are not attribution methods; the methods declare their own paper.
ANALYSIS_PAPERS: dict[str, str] = {
    "tcav": "Kim, Wattenberg, Gilmer, Cai, Wexler, Viegas & Sayres (2018). Interpretability Beyond Feature "
            "Attribution: Quantitative Testing with Concept Activation Vectors (TCAV). ICML.",
    "sanity": "Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim (2018). Sanity Checks for Saliency Maps. NeurIPS.",
    "deletion_insertion": "Petsiuk, Das & Saenko (2018). RISE: Randomized Input Sampling for Explanation of "
                          "Black-box Models. BMVC.",
    "relevance_mass": "Arras, Osman & Samek (2022). CLEVR-XAI: A benchmark dataset for the ground truth evaluation "
                      "of neural network explanations. Information Fusion.",
    "pointing_game": "Zhang, Bargal, Lin, Brandt, Shen & Sclaroff (2018). Top-down Neural Attention by Excitation "
                     "Backprop. IJCV.",
    "eraser": "DeYoung, Jain, Rajani, Lehman, Xiong, Socher & Wallace (2020). ERASER: A Benchmark to Evaluate "
              "Rationalized NLP Models. ACL.",
}

ANALYSIS_LABELS: dict[str, str] = {
    "tcav": "TCAV", "sanity": "Sanity checks (model randomisation)", "deletion_insertion": "Deletion / insertion",
    "relevance_mass": "Relevance mass accuracy", "pointing_game": "Pointing game",
    "eraser": "ERASER comprehensiveness and sufficiency",
}


def _spec(name: str):  # noqa: ANN202 - an attribution method class or a text method spec, or None
    from audit.attribution.registry import method_spec
    from audit.text.methods import TEXT_METHOD_SPECS

    try:
        return method_spec(name)
    except (KeyError, ValueError):
        return TEXT_METHOD_SPECS.get(name)


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
