"""Batched predictions of a registered version on a stored reference set (images or texts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from audit.images import image_to_tensor
from audit.services.datasets import load_image_samples, load_text_samples
from audit.services.handles import handle_for


@dataclass
class Predictions:
    keys: list[str]
    labels: list[Optional[int]]
    groups: list[dict[str, Any]]
    probabilities: np.ndarray  # [N, K]
    texts: Optional[list[str]] = None

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)


def text_predict_proba(family: str, version: str):  # noqa: ANN201 - returns a callable
    """texts -> probabilities [n, K] for a text model (tokenised with padding, batched)."""
    handle = handle_for(family, version)
    tok, model = handle.tokenizer, handle.module

    @torch.no_grad()
    def predict(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 32):
            enc = tok(list(texts[i:i + 32]), padding=True, truncation=True, max_length=128, return_tensors="pt")
            enc = {k: v.to(handle.device) for k, v in enc.items()}
            with handle.lock:
                out.append(torch.softmax(model(**enc).logits.float(), -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(handle.labels)))

    return predict


def predict_dataset(family: str, version: str, dataset: str, *, batch_size: int = 64) -> Predictions:
    """Class probabilities of every sample, with its labels as the model's class indices (mapped by name)."""
    handle = handle_for(family, version)
    if handle.task == "text-classification":
        s = load_text_samples(dataset, model=handle)
        probs = text_predict_proba(family, version)(s.texts)
        return Predictions(s.keys, s.labels, s.groups, probs, texts=s.texts)
    s = load_image_samples(dataset, model=handle)
    chunks = []
    for i in range(0, len(s.keys), batch_size):
        x = handle.input_spec.normalize(image_to_tensor(s.images[i:i + batch_size], handle.input_spec))
        chunks.append(handle.predict_proba(x).cpu().numpy())
    return Predictions(s.keys, s.labels, s.groups, np.concatenate(chunks))
