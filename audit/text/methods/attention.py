"""Raw attention: what [CLS] attends to in the last layer, heads averaged."""

from __future__ import annotations

import torch

from audit.text.attention import cls_attention
from audit.text.base import AttentionMethod


class Attention(AttentionMethod):
    name = "attention"
    label = "Attention ([CLS], last layer)"
    summary = "attention paid by [CLS] to each token in the last layer, heads averaged"
    listing = 30
    default = True

    def score(self, attentions: torch.Tensor) -> torch.Tensor:
        return cls_attention(attentions)
