"""Labels in the pages' Plotly figures are shown as typed (issue 22): Plotly turns <a href>, <b> and a few other
tags in any text it draws into markup, and these labels come from users (class names, groups, tokens, versions)."""

from __future__ import annotations

import json

import numpy as np

from audit import viz

LINK = '<a href="http://x.example/p">Session expired</a>'


def _strings(obj) -> list[str]:  # noqa: ANN001 - a figure's JSON-like tree
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _strings(v)]
    return []


def _drawn(fig) -> str:  # noqa: ANN001 - a plotly Figure
    return "\n".join(_strings(json.loads(fig.to_json())))


def test_every_figure_builder_escapes_its_labels():
    figures = [
        viz.topk_bar([0.7, 0.3], [LINK, "b"]),
        viz.bars_with_errors([LINK, "b"], [0.5, 0.6], [0.4, 0.5], [0.6, 0.7], title=f"by group {LINK}"),
        viz.matrix_heatmap(np.eye(2), [LINK, "b"], [LINK, "b"], title=LINK),
        viz.lines_figure([LINK, "1 → 2"], {LINK: [0.5, 0.6]}, title=LINK, ytitle="rank correlation"),
        viz.heatmap_grid(np.zeros((1, 8, 8)), {LINK: np.ones((8, 8))}),
        viz.curves_figure([0.0, 1.0], {LINK: [1.0, 0.0]}, {LINK: 0.5}, title="Deletion"),
        viz.sanity_figure([LINK], {LINK: [0.5]}, 0.3),
        viz.feature_maps_figure({"layer": LINK, "shape": (1, 2, 2), "channels": [0], "maps": np.ones((1, 2, 2))}),
    ]
    for fig in figures:
        drawn = _drawn(fig)
        assert "<a href" not in drawn and "&lt;a href" in drawn, drawn[:300]
