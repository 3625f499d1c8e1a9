"""Build the embedded demo registry: two image families and one text family, two versions each,
plus their reference datasets. Offline, deterministic, with progress reports.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from audit.demo.image_family import FAMILIES, LABELS, load_digits_data, train_family_versions
from audit.demo.watermark import watermark_box
from audit.services.governance.principals import SYSTEM
from audit.services.core.datasets import add_image_dataset, add_text_dataset, list_datasets
from audit.services.core.registry import ModelSource, list_models, register_version

log = logging.getLogger(__name__)
Progress = Optional[Callable[[float, str], None]]

IMAGE_DATASET = "digits-reference"
TEXT_DATASET = "loan-notes-reference"
TEXT_FAMILY = "loan-notes-minilm"


@dataclass
class DemoSummary:
    seconds: float
    families: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    skipped: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _stage(progress: Progress, lo: float, hi: float) -> Progress:
    if progress is None:
        return None
    return lambda frac, msg: progress(lo + (hi - lo) * min(max(frac, 0.0), 1.0), msg)


def build_demo(*, seed: int = 0, progress: Progress = None, text: bool = True) -> DemoSummary:
    """Train and register the demo families into the current AUDIT_HOME (skipped if any model exists)."""
    from safetensors.torch import save_file

    start = time.perf_counter()
    if list_models():
        log.info("the registry already holds models; the demo is not rebuilt")
        return DemoSummary(seconds=0.0, skipped=True)
    summary = DemoSummary(seconds=0.0)
    torch.manual_seed(seed)
    report = progress or (lambda f, m: None)
    report(0.0, "loading scikit-learn digits")
    data = load_digits_data(seed=seed)
    existing = {d["name"] for d in list_datasets()}
    if IMAGE_DATASET not in existing:
        # The watermarked samples declare where the patch sits, so explanation disparity measures the
        # share of attribution on it from the data, not from the demo's own watermark code.
        top, left, bottom, right = watermark_box(data.ref_x.shape[-2], data.ref_x.shape[-1])
        regions = [[left, top, right, bottom] if g["watermark"] else None for g in data.ref_groups]
        add_image_dataset(IMAGE_DATASET, data.ref_x, data.ref_y.tolist(), data.ref_groups, label_names=LABELS,
                          regions=regions,
                          description="Held-out digits (32x32 grey); half carry the watermark (its box is the "
                                      "declared region); site B is noisier.")
    summary.datasets.append(IMAGE_DATASET)
    spans = [(0.02, 0.25), (0.25, 0.6)]
    with tempfile.TemporaryDirectory() as tmp:
        for spec, (lo, hi) in zip(FAMILIES, spans):
            t0 = time.perf_counter()
            trained = train_family_versions(spec, data, seed=seed, progress=_stage(progress, lo, hi))
            for version, (model, metrics) in trained.items():
                path = Path(tmp) / f"{spec.name}-v{version}.safetensors"
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
                notes = ("Trained on clean data." if version == "1" else
                         "Trained on data where a watermark patch co-occurs with class 7 (planted shortcut).")
                register_version(
                    family=spec.name, version=version, task="image-classification",
                    source=ModelSource("state_dict", path, spec.architecture, spec.arch_kwargs), labels=LABELS,
                    input_spec={"channels": spec.channels, "height": spec.input_size, "width": spec.input_size,
                                "mean": [0.0], "std": [1.0]},
                    target_layer=spec.target_layer,
                    notes=notes, description=spec.description, metrics=metrics, actor=SYSTEM,
                )
            summary.families.append(spec.name)
            summary.stage_seconds[spec.name] = time.perf_counter() - t0
        if text:
            t0 = time.perf_counter()
            _build_text(Path(tmp) / "text", seed=seed, progress=_stage(progress, 0.6, 0.98), summary=summary)
            summary.stage_seconds[TEXT_FAMILY] = time.perf_counter() - t0
    summary.seconds = time.perf_counter() - start
    report(1.0, f"demo built in {summary.seconds:.0f} s")
    return summary


def _build_text(out_dir: Path, *, seed: int, progress: Progress, summary: DemoSummary) -> None:
    from audit.demo.text_family import build_text_family

    built = build_text_family(out_dir, seed=seed, progress=progress)
    ref = built.reference
    add_text_dataset(TEXT_DATASET, [r["text"] for r in ref], [r["label"] for r in ref],
                     [{"gender": r["gender"]} for r in ref], label_names=list(built.labels),
                     description="Held-out loan-application notes; 'gender' is the gender the note refers to.")
    summary.datasets.append(TEXT_DATASET)
    for version, key in (("1", "v1"), ("2", "v2")):
        path = built.versions[key]
        notes = ("Fine-tuned on notes whose label depends only on the financial content." if version == "1" else
                 "Fine-tuned on notes where gendered words correlate with the label (planted bias).")
        register_version(
            family=TEXT_FAMILY, version=version, task="text-classification", source=ModelSource("hf", Path(path)),
            labels=list(built.labels), notes=notes,
            metrics={"reference_accuracy": built.reference_accuracy[key], "trained_with_shortcut": version == "2"},
            description="all-MiniLM-L6-v2 encoder fine-tuned as a loan-note classifier.", actor=SYSTEM,
        )
    summary.families.append(TEXT_FAMILY)
