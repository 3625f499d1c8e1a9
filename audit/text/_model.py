"""Checks and forward helpers for transformers sequence classifiers under attribution.

Keeps model-specific knowledge (input embeddings, eager attention, which inputs a forward takes) in one place.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Iterator, Literal

import torch
from torch import nn

Output = Literal["logit", "probability"]

ERR_NOT_MODULE = "model must be a torch.nn.Module (a transformers *ForSequenceClassification model), got {kind}"
ERR_NO_EMBEDDINGS = (
    "model {kind} has no input-embedding layer (model.get_input_embeddings()); text attribution needs a "
    "transformers sequence classifier such as BertForSequenceClassification"
)
ERR_NO_INPUTS_EMBEDS = (
    "model {kind}.forward does not accept `inputs_embeds` and `attention_mask`; text attribution needs a "
    "transformers sequence classifier"
)
ERR_NOT_CLASSIFIER = (
    "model {kind} did not return `logits` of shape [batch, num_labels] (got {got}); text attribution needs a "
    "sequence classifier (e.g. AutoModelForSequenceClassification), not a bare encoder or a token classifier"
)
ERR_NO_ATTENTIONS = (
    "model {kind} returned no attention weights with output_attentions=True; load it with "
    "attn_implementation='eager' to use the attention methods"
)


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def input_embeddings(model: Any) -> nn.Module:
    """The word-embedding module of a transformers model, validated."""
    if not isinstance(model, nn.Module):
        raise TypeError(ERR_NOT_MODULE.format(kind=type(model).__name__))
    kind = type(model).__name__
    getter = getattr(model, "get_input_embeddings", None)
    emb = None
    if callable(getter):
        try:
            emb = getter()
        except NotImplementedError:
            emb = None
    weight = getattr(emb, "weight", None)
    if not isinstance(emb, nn.Module) or not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError(ERR_NO_EMBEDDINGS.format(kind=kind))
    params = inspect.signature(model.forward).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_kwargs and not {"inputs_embeds", "attention_mask"} <= set(params):
        raise ValueError(ERR_NO_INPUTS_EMBEDS.format(kind=kind))
    return emb


def accepts_token_type_ids(model: nn.Module) -> bool:
    return "token_type_ids" in inspect.signature(model.forward).parameters


@contextmanager
def inference_mode(model: nn.Module, *, eager_attention: bool) -> Iterator[None]:
    """Put the model in eval mode (and eager attention when asked); restore both on exit.

    Recent transformers releases default to SDPA attention, which returns no attention weights;
    switching to the eager implementation for the duration of the call keeps the caller's model as it was.
    """
    was_training = model.training
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switched = False
    try:
        model.eval()
        if eager_attention and config is not None and previous not in (None, "eager"):
            _set_attention(model, "eager")
            switched = True
        yield
    finally:
        if switched:
            _set_attention(model, previous)
        model.train(was_training)


def _set_attention(model: nn.Module, impl: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        setter(impl)
    else:
        # Older releases pick the kernel per call from the config.
        model.config._attn_implementation = impl  # type: ignore[union-attr]


def forward_logits(
    model: nn.Module,
    *,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """Run the classifier; returns (logits [B, C], attentions or None). Validates the output shape."""
    kwargs: dict[str, Any] = {"attention_mask": attention_mask}
    if input_ids is not None:
        kwargs["input_ids"] = input_ids
    else:
        kwargs["inputs_embeds"] = inputs_embeds
    if token_type_ids is not None and accepts_token_type_ids(model):
        kwargs["token_type_ids"] = token_type_ids
    if output_attentions:
        kwargs["output_attentions"] = True
    out = model(**kwargs)
    logits = getattr(out, "logits", None)
    batch = attention_mask.shape[0]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
        got = "no logits" if not isinstance(logits, torch.Tensor) else f"shape {tuple(logits.shape)}"
        raise ValueError(ERR_NOT_CLASSIFIER.format(kind=type(model).__name__, got=got))
    attentions = getattr(out, "attentions", None) if output_attentions else None
    if output_attentions and not attentions:
        raise ValueError(ERR_NO_ATTENTIONS.format(kind=type(model).__name__))
    return logits, attentions


def target_output(logits: torch.Tensor, targets: torch.Tensor, output: Output) -> torch.Tensor:
    """The scalar each method explains, one per row: the target's logit or probability."""
    values = logits.softmax(-1) if output == "probability" else logits
    return values.gather(1, targets.view(-1, 1)).squeeze(1)
