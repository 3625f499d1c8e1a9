"""A tiny registry for drift tests: versions 1 and 2 share their weights, version 3 differs."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

LABELS = [str(i) for i in range(10)]
SPEC = {"channels": 1, "height": 32, "width": 32, "mean": [0.5], "std": [0.5]}
METHODS = ["saliency", "gradcam", "integrated_gradients"]
OPTIONS = {"ig_steps": 8, "seed": 0}


@pytest.fixture()
def tiny_family(audit_home, tmp_path):
    from audit.models.zoo import SmallCNN
    from audit.services.core.datasets import add_image_dataset
    from audit.services.core.registry import ModelSource, register_version

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"w{seed}.safetensors"
        save_file(SmallCNN(width=8).state_dict(), str(path))
        paths.append(path)
    for version, path, acc in (("1", paths[0], 0.90), ("2", paths[0], 0.90), ("3", paths[1], 0.70)):
        register_version(family="tiny", version=version, task="image-classification",
                         source=ModelSource("state_dict", path, "small_cnn", {"width": 8}), labels=LABELS,
                         input_spec=SPEC, metrics={"reference_accuracy": acc})
    g = torch.Generator().manual_seed(2)
    add_image_dataset("ref", torch.rand(12, 1, 32, 32, generator=g), [i % 10 for i in range(12)],
                      [{"site": "A" if i % 2 else "B"} for i in range(12)], label_names=LABELS)
    return audit_home


TEXT_WORDS = """the a and of to is has no not very she he her his mr ms applicant stable income savings debt loan
late missed payments good poor credit history job long short . ,""".split()


def save_tiny_text_model(path, *, seed: int) -> None:
    """A 2-layer BERT classifier with a word-list tokenizer, saved as a Hugging Face directory."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + TEXT_WORDS) + "\n")
    tok = BertTokenizer(str(path / "vocab.txt"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2, initializer_range=0.2,
                     id2label={0: "deny", 1: "approve"}, label2id={"deny": 0, "approve": 1})
    BertForSequenceClassification(cfg).eval().save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))


TEXTS = ["she has stable income and no late payments .", "mr applicant has poor credit history",
         "he has a long job history and savings", "ms applicant missed payments , very poor credit",
         "the applicant has debt and a short job history", "his loan payments are late",
         "her savings are good", "no income , no savings"]


@pytest.fixture()
def tiny_text_family(audit_home, tmp_path):
    """Text family "notes": versions 1 and 2 share weights, version 3 differs; reference set "notes-ref"."""
    from audit.services.core.datasets import add_text_dataset
    from audit.services.core.registry import ModelSource, register_version

    save_tiny_text_model(tmp_path / "a", seed=0)
    save_tiny_text_model(tmp_path / "b", seed=1)
    for version, d in (("1", "a"), ("2", "a"), ("3", "b")):
        register_version(family="notes", version=version, task="text-classification",
                         source=ModelSource("hf", tmp_path / d), labels=["deny", "approve"])
    add_text_dataset("notes-ref", TEXTS, [i % 2 for i in range(len(TEXTS))],
                     [{"gender": "f" if i % 2 else "m"} for i in range(len(TEXTS))], label_names=["deny", "approve"])
    return audit_home
