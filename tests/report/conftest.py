"""Report test fixtures: PDF text and page images (poppler when installed, a small text reader
otherwise), tiny registries whose stored results come from the real services, and the demo's concept test."""

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
N_REF = 24  # 6 samples of each of the classes 0-3: enough inputs for a concept test of class 0
CONCEPTS = ("watermark", "random-reference")
TCAV_OPTIONS = {"n_random": 3, "set_size": 6, "n_inputs": 6}
CF_SEARCH = {"max_iter": 15, "binary_steps": 2, "restarts": 1}


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
    from audit.services.core.datasets import add_image_dataset
    from audit.services.core.registry import ModelSource, register_version

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
        add_image_dataset("ref", torch.rand(N_REF, 1, 32, 32, generator=g), [i % 4 for i in range(N_REF)],
                          [{"site": "A" if i % 2 else "B"} for i in range(N_REF)], label_names=LABELS)


def stored(kind: str, family: str, version: str):
    """The newest stored result of a kind, as the services core reads it back."""
    from audit.services.core.runs import stored_analyses

    rows = stored_analyses(family, version, kind)
    assert rows, f"no stored {kind} result for {family} {version}"
    return rows[-1]


def run_tiny_concept_test(version: str) -> None:
    from audit.services.analyses.concepts.service import run_concept_test

    run_concept_test("tiny", version, concepts=list(CONCEPTS), target=0, dataset="ref", **TCAV_OPTIONS)


@pytest.fixture()
def tiny_reports(audit_home, tmp_path):
    """Two versions and a reference set; version 2 has a concept test, a bias audit and a counterfactual
    search, each produced by its real service. Returns the stored results by kind."""
    from audit.services.analyses.counterfactuals.service import run_reference_counterfactuals
    from audit.services.analyses.fairness.service import run_bias_audit

    register_tiny(tmp_path)
    run_tiny_concept_test("2")
    run_bias_audit("tiny", "2", dataset="ref", attributes=["site"], n_boot=50)
    # A short search keeps the fixture quick; the report prints whatever the search found.
    run_reference_counterfactuals("tiny", "2", dataset="ref", limit=4, **CF_SEARCH)
    return {k: stored(k, "tiny", "2") for k in ("tcav", "bias", "counterfactual")}


@pytest.fixture(scope="session")
def demo_concept_test(demo_home):
    """The concept test the demo's story rests on (watermark vs a random control, class 7 of the shortcut
    version), run once by the real concept service and read back as stored."""
    import os

    from audit.services.analyses.concepts.service import run_concept_test

    before = os.environ.get("AUDIT_HOME")
    os.environ["AUDIT_HOME"] = str(demo_home)
    try:
        run_concept_test("digits-cnn", "2", concepts=["watermark", "random-reference"], target=7)
        return stored("tcav", "digits-cnn", "2")
    finally:
        if before is not None:
            os.environ["AUDIT_HOME"] = before


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
    """Text family "notes" (two tiny BERT versions), a labelled reference set, and a text probe of version
    2 run by the real service; returns the stored probe."""
    from audit.services.core.datasets import add_text_dataset
    from audit.services.core.registry import ModelSource, register_version

    for version, seed in (("1", 0), ("2", 1)):
        _save_tiny_text_model(tmp_path / version, seed=seed)
        register_version(family="notes", version=version, task="text-classification",
                         source=ModelSource("hf", tmp_path / version), labels=["deny", "approve"],
                         description="Loan-note classifier (toy).")
    texts = ["she has stable income and no late payments .", "mr has poor credit", "he has savings",
             "ms missed payments , poor credit", "the debt is late", "his income is stable"]
    add_text_dataset("notes-ref", texts, [1, 0, 1, 0, 0, 1], [{"gender": g} for g in "fmmfxm"],
                     label_names=["deny", "approve"])
    from audit.services.analyses.fairness.service import run_text_probe

    run_text_probe("notes", "2", dataset="notes-ref")
    return stored("text_probe", "notes", "2")
