"""Section "Explanations": heat maps of representative and misclassified samples (images), or the most
influential words by Integrated Gradients (texts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from audit.report.naming import method_label, method_labels
from audit.report import figures as figs
from audit.report.content import Figure, Section, Table
from audit.report.sections.base import Gap, ModelFacts, SampleChoice, digest, fmt, new_section

TOP_WORDS = 6


@dataclass(frozen=True)
class ExplanationRef:
    """A stored explanation map a figure shows."""

    id: int
    sha256: str
    method: str
    target: int
    sample_sha256: str
    engine: Optional[dict[str, Any]] = None  # the stored row's engine record (None: stored before it existed)


@dataclass
class ImageExplanations:
    choice: SampleChoice
    images: np.ndarray  # [B, C, H, W] in [0, 1]
    maps: dict[str, np.ndarray]  # method -> [B, ...] raw maps, one per chosen sample
    references: list[ExplanationRef]
    ig_steps: int
    cam_layer: bool = True  # False: the model has no convolutional layer, so no Grad-CAM maps

    @property
    def methods(self) -> list[str]:
        return list(self.maps)


@dataclass
class TextExplanations:
    choice: SampleChoice
    results: Sequence[Any]  # audit.text.TokenAttribution, one per chosen text
    ig_steps: int


Explained = Union[ImageExplanations, TextExplanations]


def explanations_section(model: ModelFacts, evidence: Optional[Explained], gap: Optional[Gap] = None) -> Section:
    sec = new_section("explanations")
    if model.kind == "text":
        sec.text("Text model: image-only figures (heat-map grids, deletion/insertion curves, the randomisation sanity "
                 "check) do not apply and are skipped. Token attributions are shown as the words with the largest "
                 "Integrated Gradients scores instead.", "note")
    if evidence is None:
        return (gap or Gap("No explanations are available.", "regenerate the report.")).apply(sec)
    if isinstance(evidence, TextExplanations):
        return _texts(sec, evidence)
    return _images(sec, evidence)


def _images(sec: Section, ev: ImageExplanations) -> Section:
    from audit.attribution import normalize_for_display

    for ref in ev.references:
        sec.cite("explanation", ref.id, ref.sha256,
                 f"{method_label(ref.method)} map, target {ref.target}, sample {ref.sample_sha256[:12]}")
    methods = ev.methods
    display = {m: normalize_for_display(torch.as_tensor(a), mode="abs").numpy() for m, a in ev.maps.items()}
    sec.text(f"Maps explain each sample's predicted class with {', '.join(method_labels(methods))} "
             f"(Integrated Gradients with "
             f"{ev.ig_steps} steps, zero baseline). Heat maps share one display scale: magnitude, "
             "divided by each map's 99th percentile and clipped.")
    sec.text("Computed on (from the stored maps): " + _engine_summary(ev.references) + ".", "note")
    for kind, label in (("representative", "Representative samples: correctly classified with high confidence."),
                        ("misclassified", "Misclassified samples: the most confident mistakes.")):
        idx = [i for i, k in enumerate(ev.choice.kinds) if k == kind]
        if not idx:
            sec.text(f"No {kind} samples in the reference set.", "note")
            continue
        png = figs.explanation_grid([ev.images[i] for i in idx], [{m: display[m][i] for m in methods} for i in idx],
                                    [ev.choice.titles[i] for i in idx], methods,
                                    column_titles=method_labels(methods))
        sec.add(Figure(png, label, 16.0))
    if not ev.cam_layer:
        sec.text("Grad-CAM and Grad-CAM++ are left out: the model has no convolutional layer to explain.", "note")
    return sec


def _engine_summary(references: Sequence[ExplanationRef]) -> str:
    """What the cited maps were computed on, read from their stored rows: methods that share a
    description are listed together (a method whose maps differ lists each description)."""
    from audit.attribution.engine_record import describe_engine

    by_description: dict[str, list[str]] = {}
    for ref in references:
        names = by_description.setdefault(describe_engine(ref.engine), [])
        if method_label(ref.method) not in names:
            names.append(method_label(ref.method))
    return "; ".join(f"{', '.join(names)}: {d}" for d, names in by_description.items())


def _texts(sec: Section, ev: TextExplanations) -> Section:
    rows = []
    for key, kind, caption, r in zip(ev.choice.keys, ev.choice.kinds, ev.choice.captions, ev.results):
        ws = np.asarray(r.word_scores["integrated_gradients"], dtype=float)
        top = np.argsort(-np.abs(ws))[:TOP_WORDS]
        words = ", ".join(f"{r.words[i]} ({ws[i]:+.2f})" for i in top)
        rows.append([key, kind, caption, words, fmt(r.delta, 3)])
    sec.add(Table(["Sample", "Kind", "Label / prediction", "Most influential words (IG, + pushes to the class)",
                   "IG gap"], rows, widths=[0.15, 0.12, 0.17, 0.42, 0.14],
                  caption=f"Integrated Gradients over the word embeddings ({ev.ig_steps} steps, [PAD] baseline), "
                          "summed into words; IG gap = sum of attributions - (f(x) - f(baseline))."))
    pin = digest([[float(v) for v in r.scores["integrated_gradients"]] for r in ev.results])
    sec.cite("text_attribution", None, pin, f"IG and grad x input on {len(ev.results)} texts, computed at report time")
    return sec
