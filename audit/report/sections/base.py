"""What every section builder shares: number formatting, the empty section of a key, the command hints
of missing results, and the evidence several sections read (the model, reference sets, predictions)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from audit.models.tasks import input_kind
from audit.report.compliance import SECTION_BY_KEY
from audit.report.content import Section


def fmt(v: Any, digits: int = 4) -> str:
    """A table cell: "-" for missing or non-finite, yes/no for flags, 4 decimals (scientific below 1e-3)."""
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "-"
        return f"{f:.{digits}f}" if abs(f) >= 1e-3 or f == 0 else f"{f:.3e}"
    return str(v)


def num(v: Any) -> Optional[float]:
    """A finite float, else None (flags are not numbers)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def digest(data: Any) -> str:
    """SHA-256 of canonical JSON: pins a result computed at report time in the manifest."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def new_section(key: str) -> Section:
    return Section(key, SECTION_BY_KEY[key].title)


@dataclass(frozen=True)
class Gap:
    """Why a piece of evidence is absent, and what produces it (printed as a MISSING note)."""

    what: str
    how: str
    short: str = ""  # the executive summary's wording, where the section reports one


    def apply(self, sec: Section) -> Section:
        return sec.lack(self.what, self.how)


@dataclass(frozen=True)
class ModelFacts:
    """The registry record of the version the report is about, its family and its lineage."""

    family: str
    version: str
    description: str
    info: Mapping[str, Any]  # the registry's record of the version (audit.services.registry.get_version)
    lineage: tuple[Mapping[str, Any], ...] = ()  # every version of the family, oldest first

    @property
    def task(self) -> str:
        return str(self.info.get("task", ""))

    @property
    def kind(self) -> str:
        return input_kind(self.task)

    @property
    def labels(self) -> list[str]:
        return list(self.info.get("labels") or [])

    @property
    def parent(self) -> Optional[str]:
        return self.info.get("parent") or None

    def command(self, template: str, dataset: Optional[str] = None) -> str:
        """A command hint with {F}, {V} and {D} (the reference set) filled in."""
        return template.format(F=self.family, V=self.version, D=dataset or "DATASET")


@dataclass(frozen=True)
class DatasetFacts:
    id: int
    name: str
    kind: str
    samples: int
    sha256: str
    description: str = ""


@dataclass
class ReferencePredictions:
    """Class probabilities of the version on its reference set, with each sample's label and groups."""

    dataset: str
    keys: list[str]
    labels: list[Optional[int]]
    groups: list[dict[str, Any]]
    probabilities: np.ndarray  # [N, K]
    texts: Optional[list[str]] = None

    def __post_init__(self) -> None:
        n = len(self.keys)
        if not (len(self.labels) == len(self.groups) == len(self.probabilities) == n):
            raise ValueError(f"predictions on {self.dataset}: {n} keys, {len(self.labels)} labels, "
                             f"{len(self.groups)} group records and {len(self.probabilities)} rows; give one per sample")

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(1)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.probabilities.astype(np.float32)).tobytes()).hexdigest()


@dataclass
class SampleChoice:
    """The samples the explanation and quality sections show: the most confident correct prediction of
    a few classes (representative) and the most confident mistakes (misclassified)."""

    indices: list[int]
    keys: list[str]
    titles: list[str]
    kinds: list[str]  # "representative" | "misclassified"
    targets: list[int]  # the predicted class, which the maps explain
    captions: list[str] = field(default_factory=list)  # "true X / pred Y (0.93)"


def pick_samples(preds: ReferencePredictions, label_names: Sequence[str], *, n_representative: int = 4,
                 n_misclassified: int = 4) -> Optional[SampleChoice]:
    if not len(preds.probabilities):
        return None
    pred, conf = preds.predicted, preds.confidence
    order = np.argsort(-conf, kind="stable")
    rep, seen = [], set()
    for i in order:
        y = preds.labels[i]
        if y is not None and pred[i] == y and y not in seen:
            rep.append(int(i))
            seen.add(y)
        if len(rep) == n_representative:
            break
    if not rep:  # unlabelled set: the most confident predictions stand in
        rep = [int(i) for i in order[:n_representative]]
    mis = [int(i) for i in order if preds.labels[i] is not None and pred[i] != preds.labels[i]][:n_misclassified]
    picks = rep + mis
    titles, captions = [], []
    for i in picks:
        y = preds.labels[i]
        true, predicted = f"true {label_names[y] if y is not None else '?'}", f"pred {label_names[pred[i]]} ({conf[i]:.2f})"
        titles.append(f"{preds.keys[i].rsplit('-', 1)[-1]}\n{true}\n{predicted}")
        captions.append(f"{true} / {predicted}")
    return SampleChoice(picks, [preds.keys[i] for i in picks], titles,
                        ["representative"] * len(rep) + ["misclassified"] * len(mis),
                        [int(pred[i]) for i in picks], captions)
