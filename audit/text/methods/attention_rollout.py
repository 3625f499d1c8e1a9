"""Attention rollout (Abnar & Zuidema 2020): heads averaged, identity added for the residual path, rows
renormalised, the product over layers read at the [CLS] row."""

from __future__ import annotations

import torch

from audit.text.attention import ABNAR_ZUIDEMA, attention_rollout
from audit.text.base import AttentionMethod


class AttentionRollout(AttentionMethod):
    name = "attention_rollout"
    label = "Attention rollout"
    summary = "attention multiplied through the layers with the residual path (Abnar & Zuidema 2020)"
    paper = ABNAR_ZUIDEMA
    listing = 40
    default = True
    preselected = True

    def score(self, attentions: torch.Tensor) -> torch.Tensor:
        return attention_rollout(attentions)
