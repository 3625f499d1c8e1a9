"""Report test fixtures: PDF text and page images (poppler when installed, a small text reader
otherwise), and a tiny registry with stored TCAV, bias and counterfactual results."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

LABELS = [str(i) for i in range(10)]
SPEC = {"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]}
TCAV_P = 0.0123
TCAV_SUMMARY = {
    "target": 7, "target_label": "7", "alpha": 0.05, "correction": "bonferroni",
    "concepts": {"watermark": {"features.block3": {
        "score": 0.93, "magnitude": 0.41, "p_value": TCAV_P, "p_value_corrected": 0.0246, "significant": True,
        "cav_accuracy": 0.97, "random_mean": 0.51, "random_std": 0.08}},
        "stripes": {"features.block3": {
            "score": 0.48, "magnitude": 0.02, "p_value": 0.61, "p_value_corrected": 1.0, "significant": False,
            "cav_accuracy": 0.66, "random_mean": 0.5, "random_std": 0.09}}},
}
BIAS_SUMMARY = {
    "dataset": "ref", "attributes": ["site"],
    "by_group": [
        {"group": "A", "accuracy": 0.8333, "selection_rate": 0.5, "tpr": 0.8, "fpr": 0.1, "precision": 0.9,
         "count": 6, "accuracy_ci": [0.4365, 0.9699]},
        {"group": "B", "accuracy": 0.5, "selection_rate": 0.3, "tpr": 0.5, "fpr": 0.2, "precision": 0.7,
         "count": 6, "accuracy_ci": [0.1876, 0.8124]},
    ],
    "difference": {"accuracy": 0.3333, "selection_rate": 0.2}, "worst_group": {"accuracy": "B"},
    "flags": ["accuracy gap 0.33 between site groups"],
}
CF_SUMMARY = {"dataset": "ref", "n": 12, "valid_rate": 0.9167, "mean_l1": 12.5, "mean_l2": 1.75,
              "mean_changed_fraction": 0.0625}


def _pdf_text_fallback(data: bytes) -> str:
    """Text shown by the page content streams (Tj strings); enough for the reports this project writes."""
    out = []
    for m in re.finditer(rb"<<(.*?)>>\s*stream\r?\n(.*?)\r?\nendstream", data, re.S):
        head, body = m.group(1), m.group(2)
        if b"/Image" in head:
            continue
        if b"/ASCII85Decode" in head:
            body = base64.a85decode(body.strip().removesuffix(b"~>"))
        if b"/FlateDecode" in head:
            body = zlib.decompress(body)
        for s in re.finditer(rb"\(((?:\\.|[^\\)])*)\)\s*Tj", body):
            raw = re.sub(rb"\\([0-7]{1,3})", lambda o: bytes([int(o.group(1), 8)]), s.group(1))
            raw = re.sub(rb"\\(.)", rb"\1", raw)
            out.append(raw.decode("latin-1"))
    return "\n".join(out)


class PdfTools:
    def text(self, path: Path) -> str:
        if shutil.which("pdftotext"):
            return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                                  text=True).stdout
        return _pdf_text_fallback(Path(path).read_bytes())

    def flat(self, path: Path) -> str:
        """Text with whitespace runs collapsed, for phrases that may wrap."""
        return re.sub(r"\s+", " ", self.text(path))

    def page_images(self, path: Path, out_dir: Path, *, dpi: int = 40) -> list[np.ndarray]:
        if not shutil.which("pdftoppm"):
            pytest.skip("pdftoppm (poppler-utils) is not installed: apt-get install -y poppler-utils")
        from PIL import Image

        subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(path), str(out_dir / "page")], check=True)
        return [np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in sorted(out_dir.glob("page*.png"))]


@pytest.fixture()
def pdf() -> PdfTools:
    return PdfTools()


def register_tiny(tmp_path: Path, *, versions=("1", "2"), with_dataset: bool = True) -> None:
    from audit.models.zoo import SmallCNN
    from audit.services.datasets import add_image_dataset
    from audit.services.registry import ModelSource, register_version

    for i, version in enumerate(versions):
        torch.manual_seed(i)
        path = tmp_path / f"w{i}.safetensors"
        save_file(SmallCNN(width=8).state_dict(), str(path))
        register_version(family="tiny", version=version, task="image-classification",
                         source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=LABELS,
                         input_spec=SPEC, metrics={"reference_accuracy": 0.8125 + i / 100},
                         description="Toy digit classifier for report tests.", notes=f"toy version {version}")
    if with_dataset:
        g = torch.Generator().manual_seed(5)
        add_image_dataset("ref", torch.rand(12, 1, 32, 32, generator=g), [i % 10 for i in range(12)],
                          [{"site": "A" if i % 2 else "B"} for i in range(12)], label_names=LABELS)


def store_result(kind: str, family: str, version: str, summary: dict) -> int:
    from audit.services.registry import get_version
    from storage.db import transaction
    from storage.orm import AnalysisResult

    vid = get_version(family, version)["id"]
    with transaction() as s:
        row = AnalysisResult(kind=kind, model_version_id=vid, params_sha256="0" * 63 + "1", parameters={},
                             summary=summary, created_by="tester")
        s.add(row)
        s.flush()
        return row.id


@pytest.fixture()
def tiny_reports(audit_home, tmp_path):
    """Two versions and a reference set; version 2 has stored TCAV, bias and counterfactual results."""
    register_tiny(tmp_path)
    ids = {k: store_result(k, "tiny", "2", s)
           for k, s in (("tcav", TCAV_SUMMARY), ("bias", BIAS_SUMMARY), ("counterfactual", CF_SUMMARY))}
    return ids


def _save_tiny_text_model(path: Path, *, seed: int) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = "the a and has no not she he her his mr ms stable income savings debt late missed payments poor credit ."
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words.split()) + "\n")
    tok = BertTokenizer(str(path / "vocab.txt"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2, initializer_range=0.2)
    BertForSequenceClassification(cfg).eval().save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))


@pytest.fixture()
def tiny_text_reports(audit_home, tmp_path):
    """Text family "notes" (two tiny BERT versions), a labelled reference set, a stored text probe."""
    from audit.services.datasets import add_text_dataset
    from audit.services.registry import ModelSource, register_version

    for version, seed in (("1", 0), ("2", 1)):
        _save_tiny_text_model(tmp_path / version, seed=seed)
        register_version(family="notes", version=version, task="text-classification",
                         source=ModelSource("hf", tmp_path / version), labels=["deny", "approve"],
                         description="Loan-note classifier (toy).")
    texts = ["she has stable income and no late payments .", "mr has poor credit", "he has savings",
             "ms missed payments , poor credit", "the debt is late", "his income is stable"]
    add_text_dataset("notes-ref", texts, [1, 0, 1, 0, 0, 1], [{"gender": g} for g in "fmmfxm"],
                     label_names=["deny", "approve"])
    store_result("text_probe", "notes", "2", {"dataset": "notes-ref", "n": 6, "flip_rate": 0.3333,
                                              "mean_prob_change": 0.0812})
