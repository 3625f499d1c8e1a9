"""Fixtures for the text attribution tests: a tiny BERT classifier and a tokenizer built from a word list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = """the a an and or but of to in on for with is was has have had no not very
applicant client she he her his mr ms man woman wife husband mary john brown smith
stable steady income salary savings debt loan loans payments missed late credit score good poor
high low long short history employment job record account overdrawn repaid default recent
several some many months years six two three strong weak request requests small large
it this that they their them we you . , ! ? ' - play run work""".split()
PIECES = ["##ing", "##s", "##ed", "##er", "##ly"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TEXTS = [
    "She has stable income and no missed payments.",
    "Mr Brown has several late payments",
    "the client requests a small loan, working with high debt",
    "John",
]


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items; only this directory's tests are touched.
    run_slow = os.environ.get("AUDIT_RUN_SLOW") == "1"
    for item in items:
        if HERE not in Path(str(item.path)).resolve().parents:
            continue
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow; set AUDIT_RUN_SLOW=1 to run"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("tiny_vocab")
    (path / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + PIECES) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tokenizer(vocab_dir):
    return BertTokenizer.from_pretrained(str(vocab_dir), local_files_only=True)


def make_tiny_bert(vocab_size: int, *, seed: int = 0, num_labels: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        initializer_range=0.2,  # wide enough that tokens change the output noticeably
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="session")
def tiny_bert_factory():
    return make_tiny_bert


@pytest.fixture(scope="session")
def tiny_bert(tokenizer):
    return make_tiny_bert(len(tokenizer), seed=0, num_labels=3)


@pytest.fixture
def texts() -> list[str]:
    return list(TEXTS)
