"""SHAP token values from the shap library: a Text masker with a Partition explainer over the classifier.

Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017 (Owen values
over the masker's token hierarchy).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from audit.text._encoding import EncodedText, pad_sequences
from audit.text._model import Output, forward_logits

ERR_SHAP_TOKENS = (
    "shap split text {index} into {got} tokens but the tokenizer gives {want}; the text is probably "
    "longer than max_length ({limit}); shorten it or raise max_length"
)


def prediction_function(
    model: nn.Module,
    tokenizer: Any,
    *,
    max_length: int,
    pad_id: int,
    batch_size: int,
    output: Output,
    device: torch.device,
) -> Callable[[Any], np.ndarray]:
    """strings -> [n, num_labels] array of logits or probabilities, evaluated in padded batches."""

    def predict(strings: Any) -> np.ndarray:
        strings = [str(s) for s in strings]
        rows = []
        for start in range(0, len(strings), batch_size):
            enc = tokenizer(strings[start : start + batch_size], truncation=True, max_length=max_length, padding=False)
            types = enc["token_type_ids"] if "token_type_ids" in enc else None
            batch = pad_sequences(enc["input_ids"], types, pad_id=pad_id, device=device)
            with torch.no_grad():
                logits, _ = forward_logits(
                    model,
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    token_type_ids=batch.token_type_ids,
                )
            values = logits.softmax(-1) if output == "probability" else logits
            rows.append(values.double().cpu().numpy())
        return np.concatenate(rows)

    return predict


def shap_values(
    model: nn.Module,
    tokenizer: Any,
    encoded: list[EncodedText],
    targets: torch.Tensor,
    *,
    max_evals: int,
    max_length: int,
    pad_id: int,
    batch_size: int,
    output: Output,
    device: torch.device,
) -> list[torch.Tensor]:
    """Per text, the SHAP value of each token (special tokens included) for its target class."""
    import shap  # imported here: it is slow to import and only this method needs it

    if not isinstance(max_evals, int) or max_evals < 2:
        raise ValueError(f"shap_max_evals must be an integer >= 2, got {max_evals!r}")
    predict = prediction_function(
        model, tokenizer, max_length=max_length, pad_id=pad_id, batch_size=batch_size, output=output, device=device
    )
    explainer = shap.explainers.Partition(predict, shap.maskers.Text(tokenizer))
    explanation = explainer([e.text for e in encoded], max_evals=max_evals, batch_size=batch_size, silent=True)
    out = []
    for i, e in enumerate(encoded):
        values = np.asarray(explanation[i].values)
        if values.shape[0] != len(e):
            raise ValueError(ERR_SHAP_TOKENS.format(index=i, got=values.shape[0], want=len(e), limit=max_length))
        out.append(torch.from_numpy(values[:, int(targets[i])].astype(np.float32)))
    return out
