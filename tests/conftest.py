"""Shared fixtures: an empty AUDIT_HOME per test, and one demo registry built once per session."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _use_home(path: Path) -> None:
    os.environ["AUDIT_HOME"] = str(path)
    os.environ.pop("AUDIT_DB_URL", None)
    os.environ.setdefault("AUDIT_DEVICE", "auto")
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture()
def audit_home(tmp_path: Path):
    """A fresh, migrated AUDIT_HOME for one test."""
    from storage.db import migrate

    before = os.environ.get("AUDIT_HOME")
    home = tmp_path / "home"
    _use_home(home)
    migrate()
    yield home
    if before is None:
        os.environ.pop("AUDIT_HOME", None)
    else:
        os.environ["AUDIT_HOME"] = before


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory):
    """The embedded demo built once into its own AUDIT_HOME (the slow part of the suite)."""
    from audit.demo.build import build_demo
    from storage.db import migrate

    reuse = os.environ.get("AUDIT_TEST_DEMO_HOME")
    if reuse:  # a demo built earlier (developer runs); CI always builds a fresh one
        _use_home(Path(reuse))
        migrate()
        return Path(reuse)
    home = tmp_path_factory.mktemp("demo-home")
    _use_home(home)
    migrate()
    summary = build_demo(seed=0)
    (home / "demo_seconds.txt").write_text(f"{summary.seconds:.1f}\n")
    return home


@pytest.fixture()
def in_demo(demo_home: Path):
    """Point the services at the demo registry for one test."""
    before = os.environ.get("AUDIT_HOME")
    _use_home(demo_home)
    yield demo_home
    if before is not None:
        os.environ["AUDIT_HOME"] = before


TINY_LABELS = [str(i) for i in range(10)]
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "she", "he", "her", "his", "has", "a", "stable",
              "income", "missed", "payments", "no", "debt", "applicant", "mr", "ms", "woman", "man", "and", "."]


@pytest.fixture()
def register_small_cnn(audit_home, tmp_path):
    """Register a seeded SmallCNN (1x32x32, ten classes "0".."9") under a family and version."""
    from safetensors.torch import save_file

    from audit.models.zoo import SmallCNN
    from audit.services.core.registry import ModelSource, register_version

    def register(family: str = "tiny", version: str = "1", *, seed: int = 0, mean: float = 0.0,
                 std: float = 1.0, labels: list[str] = TINY_LABELS) -> Path:
        torch.manual_seed(seed)
        path = tmp_path / f"{family}-{version}-{seed}.safetensors"
        save_file(SmallCNN(width=8).state_dict(), str(path))
        register_version(family=family, version=version, task="image-classification",
                         source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=labels,
                         input_spec={"channels": 1, "height": 32, "width": 32, "mean": [mean], "std": [std]})
        return path

    return register


@pytest.fixture()
def tiny_image(audit_home, register_small_cnn):
    """A registered small CNN (family 'tiny', version '1') and a 24-image reference set 'ref'."""
    from audit.services.core.datasets import add_image_dataset

    register_small_cnn()
    g = torch.Generator().manual_seed(1)
    add_image_dataset("ref", torch.rand(24, 1, 32, 32, generator=g), [i % 10 for i in range(24)],
                      [{"site": "A" if i % 3 else "B", "watermark": bool(i % 2)} for i in range(24)],
                      label_names=TINY_LABELS)
    return audit_home


@pytest.fixture()
def tiny_text(audit_home, tmp_path):
    """A registered two-layer BERT (family 'tiny-text', version '1') with a toy vocabulary, and 'notes'."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from audit.services.core.datasets import add_text_dataset
    from audit.services.core.registry import ModelSource, register_version

    d = tmp_path / "tiny-bert"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, num_labels=2, max_position_embeddings=64,
                     id2label={0: "decline", 1: "approve"}, label2id={"decline": 0, "approve": 1})
    BertForSequenceClassification(cfg).save_pretrained(str(d), safe_serialization=True)
    register_version(family="tiny-text", version="1", task="text-classification", source=ModelSource("hf", d),
                     labels=["decline", "approve"])
    texts = ["she has a stable income .", "he has no debt .", "ms applicant missed payments .",
             "mr applicant has a stable income .", "her income and his debt ."] * 8
    add_text_dataset("notes", texts, [i % 2 for i in range(len(texts))],
                     [{"gender": "female" if i % 2 else "male"} for i in range(len(texts))],
                     label_names=["decline", "approve"])
    return audit_home


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for every browser test of the session: Playwright's sync API allows one
    running instance per thread, so browser tests in any folder share this one and open their own contexts."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.serving import launch_chromium, need_chromium

    need_chromium()
    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@contextmanager
def empty_postgres(url: str) -> Iterator[None]:
    """AUDIT_DB_URL pointed at ``url`` with its public schema dropped and migrated afresh, for one test."""
    from sqlalchemy import create_engine, text

    from storage.db import migrate

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    os.environ["AUDIT_DB_URL"] = url
    try:
        migrate()
        yield
    finally:
        os.environ.pop("AUDIT_DB_URL", None)
