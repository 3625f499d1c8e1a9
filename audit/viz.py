"""Plotly figures for the pages (pure functions of arrays; no streamlit, no database).

Heat maps go through the engine's one display normalisation, so every grid shares one colour scale.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

HEAT_SCALE = "Inferno"
DIVERGING = "RdBu"


def _plain(text: Any) -> str:
    """A label shown as typed: Plotly reads <a href>, <b> and a few other tags in any text it draws (axis ticks,
    titles, legends, hover), and labels here come from users (class names, groups, tokens, version names)."""
    return html.escape(str(text), quote=False)


def display_maps(maps: Mapping[str, np.ndarray], *, mode: str = "abs") -> dict[str, np.ndarray]:
    """Raw maps ([C,H,W] or [H,W]) -> [H, W] arrays on the shared display scale."""
    import torch

    from audit.attribution import normalize_for_display

    out = {}
    for name, arr in maps.items():
        t = torch.as_tensor(np.asarray(arr, dtype=np.float32))
        t = t.unsqueeze(0)  # [1, C, H, W] or [1, H, W]
        out[name] = normalize_for_display(t, mode=mode)[0].numpy()
    return out


def _grey(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    return img.mean(axis=0) if img.ndim == 3 else img


def heatmap_grid(image: np.ndarray, maps: Mapping[str, np.ndarray], *, cols: int = 4, mode: str = "abs",
                 opacity: float = 0.6, titles: Optional[Mapping[str, str]] = None) -> go.Figure:
    """The input under each method's heat map, one shared colour scale and colour bar."""
    shown = display_maps(maps, mode=mode)
    names = list(shown)
    cols = max(1, min(cols, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_plain((titles or {}).get(n, n)) for n in names],
                        horizontal_spacing=0.03, vertical_spacing=0.08)
    grey = _grey(image)
    zmin, zmax, scale = (0.0, 1.0, HEAT_SCALE) if mode != "signed" else (-1.0, 1.0, DIVERGING)
    for i, name in enumerate(names):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Heatmap(z=grey, colorscale="Greys", reversescale=True, showscale=False, hoverinfo="skip"), r, c)
        fig.add_trace(go.Heatmap(z=shown[name], colorscale=scale, zmin=zmin, zmax=zmax, opacity=opacity,
                                 showscale=(i == 0), colorbar={"title": "relevance"}, name=_plain(name)), r, c)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if i == 0 else i + 1}", showticklabels=False,
                         row=r, col=c)
        fig.update_xaxes(showticklabels=False, row=r, col=c)
    fig.update_layout(height=260 * rows + 40, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def topk_bar(probabilities: Sequence[float], labels: Sequence[str], *, k: int = 5,
             highlight: Optional[int] = None) -> go.Figure:
    p = np.asarray(probabilities, dtype=float)
    order = np.argsort(-p)[:k]
    colors = ["#d62728" if highlight is not None and int(i) == highlight else "#1f77b4" for i in order]
    fig = go.Figure(go.Bar(x=p[order][::-1], y=[_plain(labels[i]) for i in order][::-1], orientation="h",
                           marker_color=colors[::-1], text=[f"{v:.1%}" for v in p[order][::-1]]))
    fig.update_layout(height=60 + 30 * len(order), xaxis={"range": [0, 1], "title": "probability"},
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def curves_figure(fractions: Sequence[float], curves: Mapping[str, Sequence[float]],
                  aucs: Mapping[str, Optional[float]], *, title: str, xaxis: str = "fraction of pixels",
                  yaxis: str = "probability of the class") -> go.Figure:
    fig = go.Figure()
    for name, ys in curves.items():
        auc = "-" if aucs.get(name) is None else f"{aucs[name]:.3f}"
        fig.add_trace(go.Scatter(x=list(fractions), y=list(ys), mode="lines", name=_plain(f"{name} (AUC {auc})")))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis,
                      yaxis={"range": [0, 1.02]}, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def feature_maps_figure(layer: Mapping[str, Any]) -> go.Figure:
    maps = np.asarray(layer["maps"])
    n = len(maps)
    fig = make_subplots(rows=1, cols=n, subplot_titles=[f"ch {c}" for c in layer["channels"]],
                        horizontal_spacing=0.02)
    for i in range(n):
        fig.add_trace(go.Heatmap(z=maps[i], colorscale="Viridis", showscale=False), 1, i + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=i + 1)
        fig.update_xaxes(showticklabels=False, row=1, col=i + 1)
    fig.update_layout(height=200, title=_plain(f"{layer['layer']} {tuple(layer['shape'])}"),
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def sanity_figure(steps: Sequence[str], correlations: Mapping[str, Sequence[float]], threshold: float) -> go.Figure:
    fig = go.Figure()
    xs = ["trained"] + [_plain(s) for s in steps]
    for name, ys in correlations.items():
        fig.add_trace(go.Scatter(x=xs, y=[1.0] + list(ys), mode="lines+markers", name=_plain(name)))
    fig.add_hline(y=threshold, line_dash="dash", annotation_text="flag threshold")
    fig.update_layout(xaxis_title="randomised down to", yaxis_title="rank correlation with trained maps",
                      yaxis={"range": [-0.2, 1.05]}, height=320, margin={"l": 10, "r": 10, "t": 20, "b": 10})
    return fig


def bars_with_errors(names: Sequence[str], values: Sequence[float], lows: Sequence[float], highs: Sequence[float],
                     *, title: str, highlight: Optional[int] = None, yrange: Optional[tuple[float, float]] = None) -> go.Figure:
    v, lo, hi = (_floats(a) for a in (values, lows, highs))
    colors = ["#d62728" if highlight is not None and i == highlight else "#1f77b4" for i in range(len(v))]
    fig = go.Figure(go.Bar(x=[_plain(n) for n in names], y=v, marker_color=colors,
                           error_y={"type": "data", "symmetric": False, "array": np.nan_to_num(hi - v),
                                    "arrayminus": np.nan_to_num(v - lo)}))
    fig.update_layout(title=_plain(title), height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"range": list(yrange)} if yrange else {})
    return fig


def _floats(values: Sequence[Optional[float]]) -> np.ndarray:
    """None (an undefined rate, stored as JSON null) becomes NaN."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def token_html(tokens: Sequence[str], scores: Sequence[float], *, scale: Optional[float] = None) -> str:
    """Tokens on a diverging background (red pushes towards the class, blue away), shared scale."""
    import html

    s = np.asarray(scores, dtype=float)
    m = scale if scale else (float(np.max(np.abs(s))) or 1.0)
    spans = []
    for tok, v in zip(tokens, s):
        a = min(1.0, abs(v) / m)
        rgb = "214,39,40" if v >= 0 else "31,119,180"
        spans.append(f'<span title="{v:+.4f}" style="background: rgba({rgb},{a:.2f}); padding:2px 3px; '
                     f'margin:1px; border-radius:3px; display:inline-block">{html.escape(tok)}</span>')
    return "".join(spans)


def matrix_heatmap(z: np.ndarray, x: Sequence[str], y: Sequence[str], *, title: str, zmin: Optional[float] = None,
                   zmax: Optional[float] = None, colorscale: str = "Blues") -> go.Figure:
    fig = go.Figure(go.Heatmap(z=z, x=[_plain(v) for v in x], y=[_plain(v) for v in y], colorscale=colorscale,
                               zmin=zmin, zmax=zmax))
    fig.update_layout(title=_plain(title), height=max(260, 22 * len(y) + 80), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"autorange": "reversed"})
    return fig


def lines_figure(x: Sequence[Any], series: Mapping[str, Sequence[float]], *, title: str, ytitle: str) -> go.Figure:
    fig = go.Figure()
    for name, ys in series.items():
        fig.add_trace(go.Scatter(x=[_plain(v) for v in x], y=list(ys), mode="lines+markers", name=_plain(name)))
    fig.update_layout(title=_plain(title), yaxis_title=ytitle, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def outlined(image: np.ndarray, region: Any, *, color: Sequence[float] = (1.0, 0.0, 0.0)) -> np.ndarray:
    """An RGB [H, W, 3] float copy of an image ([C, H, W], [H, W, C] or [H, W] in [0, 1]) with its declared
    region (a box [x0, y0, x1, y1] or a boolean mask [H, W], see audit.regions) outlined in ``color``."""
    from audit.regions import as_mask, outline

    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.transpose(img, (1, 2, 0))
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3].copy()
    rgb = np.clip(rgb, 0.0, 1.0)
    if region is not None:
        rgb[outline(as_mask(region, rgb.shape[0], rgb.shape[1]))] = np.asarray(color, dtype=np.float64)
    return rgb


def describe_region(region: Any) -> str:
    """A caption for a declared region: the box's coordinates or the mask's pixel count."""
    from audit.regions import describe

    return describe(region)
