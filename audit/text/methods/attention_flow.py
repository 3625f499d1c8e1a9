"""Attention flow (Abnar & Zuidema 2020): the max-flow from each token to [CLS] through the layered
attention graph. One max-flow problem per token, so it is limited to short texts."""

from __future__ import annotations

import torch

from audit.declarations import Option, positive_int
from audit.text._encoding import EncodedText
from audit.text.attention import ABNAR_ZUIDEMA, attention_flow
from audit.text.base import AttentionMethod
from audit.text.options import TextOptions

FLOW_MAX_TOKENS = Option("flow_max_tokens", 32, "longest text (in tokens) attention flow accepts; a longer one "
                         "is refused before any model call", result=False, check=positive_int)
ERR_FLOW_LENGTH = (
    "attention_flow solves one max-flow problem per token and is limited to {limit} tokens "
    "(flow_max_tokens); text {index} has {n}. Use attention_rollout, or shorten the text"
)


class AttentionFlow(AttentionMethod):
    name = "attention_flow"
    label = "Attention flow"
    summary = "max-flow from each token to [CLS] through the attention graph (short texts only)"
    paper = ABNAR_ZUIDEMA
    listing = 50
    options = (FLOW_MAX_TOKENS,)

    @classmethod
    def check_texts(cls, encoded: list[EncodedText], opts: TextOptions) -> None:
        for i, e in enumerate(encoded):
            if len(e) > opts.flow_max_tokens:
                raise ValueError(ERR_FLOW_LENGTH.format(limit=opts.flow_max_tokens, index=i, n=len(e)))

    def score(self, attentions: torch.Tensor) -> torch.Tensor:
        return attention_flow(attentions)
