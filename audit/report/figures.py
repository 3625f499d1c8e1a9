"""Matplotlib figures for the PDF report (Agg backend, PNG bytes): explanation grids, curves, bars
with confidence intervals, a confusion matrix. Inputs are plain arrays; maps arrive display-normalised.
"""

from __future__ import annotations

import io
from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 130
HEAT = "inferno"


def _png(fig, *, tight: bool = True) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    if tight:
        fig.tight_layout(pad=0.4)
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _grey(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    return img.mean(axis=0) if img.ndim == 3 else img


def _overlay(grey: np.ndarray, heat: np.ndarray, opacity: float) -> np.ndarray:
    """RGB image: the grey input under the heat map (colour map applied in numpy, no axes per cell)."""
    g = np.clip(grey, 0, 1)[..., None].repeat(3, axis=-1)
    h = matplotlib.colormaps[HEAT](np.clip(heat, 0, 1))[..., :3]
    return (1 - opacity) * g + opacity * h


def _upscale(img: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upscale to about ``size`` pixels so small inputs stay crisp in print."""
    f = max(1, size // max(img.shape[:2]))
    return np.repeat(np.repeat(img, f, axis=0), f, axis=1)


def explanation_grid(images: Sequence[np.ndarray], maps: Sequence[Mapping[str, np.ndarray]],
                     row_titles: Sequence[str], methods: Sequence[str], *, opacity: float = 0.6,
                     cell: int = 96, gap: int = 4, column_titles: Sequence[str] | None = None) -> bytes:
    """Rows are samples, columns the input then each method's heat map over it (one shared [0, 1] scale).

    The grid is composed as one image, so its cost does not grow with one plot per cell."""
    rows, cols = len(images), len(methods) + 1
    if rows == 0:
        raise ValueError("explanation_grid needs at least one sample")
    tiles = []
    for r in range(rows):
        grey = _grey(images[r])
        row = [_upscale(np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1), cell)]
        for m in methods:
            heat = np.asarray(maps[r][m], dtype=np.float32)
            if heat.shape != grey.shape:
                raise ValueError(f"map {m} of row {r} has shape {heat.shape}, the image {grey.shape}")
            row.append(_upscale(_overlay(grey, heat, opacity), cell))
        tiles.append(row)
    th, tw = tiles[0][0].shape[:2]
    mosaic = np.ones((rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, 3))
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = tiles[r][c]
    fig = plt.figure(figsize=(1.25 * cols + 1.0, 1.25 * rows + 0.35))
    ax = fig.add_axes((0.14, 0.0, 0.86, 1.0 - 0.3 / (1.25 * rows + 0.35)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for c, title in enumerate(["input", *(column_titles or methods)]):
        ax.text(c * (tw + gap) + tw / 2, -6, title.replace("_", " "), ha="center", va="bottom", fontsize=7)
    for r, title in enumerate(row_titles):
        ax.text(-8, r * (th + gap) + th / 2, title, ha="right", va="center", fontsize=6)
    return _png(fig, tight=False)


def curves(fractions: Sequence[float], series: Mapping[str, Sequence[float]], *, title: str, xlabel: str,
           ylabel: str, reference: Optional[str] = None) -> bytes:
    """Line per series; the ``reference`` series (e.g. a random map) is drawn dashed."""
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    for name, ys in series.items():
        ax.plot(list(fractions), list(ys), lw=1.4, ls="--" if name == reference else "-", label=name.replace("_", " "))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False)
    return _png(fig)


def sanity_lines(steps: Sequence[str], correlations: Mapping[str, Sequence[float]], threshold: float) -> bytes:
    fig, ax = plt.subplots(figsize=(5.0, 2.8))
    xs = ["trained", *steps]
    for name, ys in correlations.items():
        ax.plot(range(len(xs)), [1.0, *ys], marker="o", ms=3, lw=1.3, label=name.replace("_", " "))
    ax.axhline(threshold, color="grey", ls="--", lw=1)
    ax.set_xticks(range(len(xs)), [x[:18] for x in xs], rotation=25, ha="right", fontsize=6)
    ax.set_ylabel("rank correlation with trained maps", fontsize=7)
    ax.set_ylim(-0.25, 1.05)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False)
    ax.set_title("Sanity check: cascading randomisation from the output layer", fontsize=8)
    return _png(fig)


def bars_with_ci(names: Sequence[str], values: Sequence[float], lows: Optional[Sequence[float]] = None,
                 highs: Optional[Sequence[float]] = None, *, title: str, ylabel: str,
                 highlight: Optional[int] = None, ylim: Optional[tuple[float, float]] = (0.0, 1.0),
                 line: Optional[float] = None) -> bytes:
    v = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(max(3.0, 1.0 * len(v) + 1.5), 2.6))
    colors = ["#d62728" if highlight is not None and i == highlight else "#1f77b4" for i in range(len(v))]
    yerr = None
    if lows is not None and highs is not None:
        lo, hi = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
        yerr = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
    ax.bar(range(len(v)), v, color=colors, yerr=yerr, capsize=3)
    ax.set_xticks(range(len(v)), ["\n".join(part[:22] for part in str(n).split("\n")) for n in names],
                  rotation=20 if len(v) > 5 else 0, fontsize=7)
    if ylim:
        ax.set_ylim(*ylim)
    if line is not None:
        ax.axhline(line, color="grey", ls="--", lw=1)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, ylabel: str,
                 ylim: Optional[tuple[float, float]] = None, line: Optional[float] = None) -> bytes:
    """Bars per group, one colour per series (e.g. drift measures per method)."""
    names = list(series)
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(3.5, 1.1 * len(groups) + 1.5), 2.8))
    for i, n in enumerate(names):
        vals = [np.nan if v is None else v for v in series[n]]
        ax.bar(np.arange(len(groups)) + i * width - 0.4 + width / 2, vals, width, label=n.replace("_", " "))
    ax.set_xticks(range(len(groups)), [g.replace("_", " ") for g in groups], fontsize=7)
    if ylim:
        ax.set_ylim(*ylim)
    if line is not None:
        ax.axhline(line, color="grey", ls="--", lw=1)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def confusion_matrix(matrix: np.ndarray, labels: Sequence[str]) -> bytes:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=5,
                    color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), [str(x)[:8] for x in labels], fontsize=6, rotation=45)
    ax.set_yticks(range(len(labels)), [str(x)[:8] for x in labels], fontsize=6)
    ax.set_xlabel("predicted", fontsize=7)
    ax.set_ylabel("true", fontsize=7)
    ax.set_title("Confusion matrix (reference set)", fontsize=8)
    return _png(fig)
