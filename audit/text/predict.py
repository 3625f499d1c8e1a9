"""`predict_texts`: the classifier's probabilities for texts, tokenised exactly as `attribute_text` does,
so a caller can look stored attributions up by predicted class without computing any."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from audit.text._encoding import encode_texts, pad_encoded, pad_token_id
from audit.text._model import forward_logits, inference_mode, model_device
from audit.text.core import TokenAttribution, _check_texts


def predict_texts(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | str,
    *,
    max_length: int | None = None,
    batch_size: int = 16,
) -> list[TokenAttribution]:
    """One TokenAttribution per text with tokens, words, probabilities and prediction, and no scores
    (target is the prediction). Tokenisation and truncation are those of `attribute_text`."""
    texts = _check_texts(texts)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    pad_id = pad_token_id(tokenizer)
    encoded = encode_texts(tokenizer, texts, max_length=max_length)
    device = model_device(model)
    out: list[TokenAttribution] = []
    with inference_mode(model, eager_attention=False), torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            batch = pad_encoded(chunk, pad_id=pad_id, device=device)
            logits, _ = forward_logits(model, input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                       token_type_ids=batch.token_type_ids)
            probs = logits.float().softmax(-1).cpu()
            for e, p in zip(chunk, probs):
                pred = int(p.argmax())
                out.append(TokenAttribution(text=e.text, tokens=e.tokens, token_ids=e.input_ids, special=e.special,
                                            words=e.words, word_ids=e.word_ids, target=pred, prediction=pred,
                                            probabilities=p))
    return out
