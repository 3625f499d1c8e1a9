"""Batched predictions of a registered version on a stored reference set (images or texts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from audit.attribution.memory import batch_for
from audit.images import image_to_tensor
from audit.services.datasets import load_image_samples, load_text_samples
from audit.services.handles import handle_for

MAX_NAMED = 10


class NonFiniteOutputs(ValueError):
    """The model returned NaN or infinite outputs for some inputs; ``keys`` names them."""

    def __init__(self, what: str, keys: Sequence[str], total: int) -> None:
        self.keys = list(keys)
        shown = ", ".join(self.keys[:MAX_NAMED]) + (f", ... ({len(self.keys) - MAX_NAMED} more)"
                                                     if len(self.keys) > MAX_NAMED else "")
        super().__init__(f"{what} are not finite for {len(self.keys)} sample(s): {shown} (of {total} evaluated); "
                         "the analysis stopped, since an argmax of NaN would read as class 0")


def require_finite(outputs: Any, keys: Sequence[Any], *, what: str = "model outputs") -> None:
    """Raise NonFiniteOutputs naming every sample (by ``keys``, one per row of ``outputs``) whose outputs
    hold a NaN or an infinity. Every place that turns model outputs into classes or metrics calls this."""
    arr = outputs.detach().float().cpu().numpy() if isinstance(outputs, torch.Tensor) else np.asarray(outputs)
    arr = arr.reshape(len(arr), -1) if arr.ndim else arr.reshape(1, 1)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise NonFiniteOutputs(what, [str(k) for k, b in zip(keys, bad) if b], len(arr))


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


def text_keys(texts: Sequence[str]) -> list[str]:
    """Names for texts that have no sample key: position and opening words."""
    return [f"text {i} ({t[:40]!r})" for i, t in enumerate(texts)]


def text_predict_proba(family: str, version: str):  # noqa: ANN201 - returns a callable
    """texts -> probabilities [n, K] for a text model (tokenised with padding, batched). ``keys`` (optional,
    one per text) name the texts whose outputs are not finite (NonFiniteOutputs); by default their position."""
    handle = handle_for(family, version)
    tok, model = handle.tokenizer, handle.module

    @torch.no_grad()
    def predict(texts: list[str], keys: Optional[Sequence[str]] = None) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 32):
            enc = tok(list(texts[i:i + 32]), padding=True, truncation=True, max_length=128, return_tensors="pt")
            enc = {k: v.to(handle.device) for k, v in enc.items()}
            with handle.lock:
                out.append(torch.softmax(model(**enc).logits.float(), -1).cpu().numpy())
        probs = np.concatenate(out) if out else np.zeros((0, len(handle.labels)))
        require_finite(probs, list(keys) if keys is not None else text_keys(texts))
        return probs

    return predict


def predict_dataset(family: str, version: str, dataset: str, *, batch_size: Optional[int] = None) -> Predictions:
    """Class probabilities of every sample, with its labels as the model's class indices (mapped by name);
    images ``batch_size`` at a time (None: ``batch_for`` the model's input size and device)."""
    handle = handle_for(family, version)
    if handle.task == "text-classification":
        s = load_text_samples(dataset, model=handle)
        probs = text_predict_proba(family, version)(s.texts, keys=s.keys)
        return Predictions(s.keys, s.labels, s.groups, probs, texts=s.texts)
    s = load_image_samples(dataset, model=handle)
    if batch_size is None:
        batch_size = batch_for(int(np.prod(handle.input_spec.shape)), device=handle.device)
    chunks = []
    for i in range(0, len(s.keys), batch_size):
        x = handle.input_spec.normalize(image_to_tensor(s.images[i:i + batch_size], handle.input_spec))
        chunks.append(handle.predict_proba(x).cpu().numpy())
    probs = np.concatenate(chunks)
    require_finite(probs, s.keys)
    return Predictions(s.keys, s.labels, s.groups, probs)
