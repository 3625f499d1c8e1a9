"""`attribute_text`: token and word attributions for transformers sequence classifiers, several methods at once.

Texts are tokenised once, right-padded per batch, and every score is cut back to the text's own tokens.
Each method is a class of ``audit.text.methods``, found through ``audit.text.registry``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from audit.declarations import OptionsView
from audit.text._encoding import (
    EncodedText,
    PaddedBatch,
    encode_texts,
    model_max_length,
    pad_encoded,
    pad_token_id,
)
from audit.text._model import (
    Output,
    forward_logits,
    inference_mode,
    input_embeddings,
    model_device,
    target_output,
)
from audit.text.base import TextBatch, TextScores
from audit.text.gradients import grad_times_input
from audit.text.options import ENGINE_OPTIONS, TextOptions
from audit.text.registry import DEFAULT_METHODS, TEXT_METHODS, TextMethod, check_methods, text_method_spec

__all__ = ["DEFAULT_METHODS", "TEXT_METHODS", "TextMethod", "TokenAttribution", "attribute_text", "word_sum"]

log = logging.getLogger(__name__)

ERR_TEXTS = "texts must be a non-empty list of strings, got {got}"
ERR_TARGETS_LEN = "got {n_targets} targets for {n_texts} texts; give one target per text, one int, or None"
ERR_TARGET_RANGE = "target {target} of text {index} is outside the model's {n} labels (0..{last})"


@dataclass
class TokenAttribution:
    """Attributions for one text. Every per-token tensor has len(tokens) entries (no padding)."""

    text: str
    tokens: list[str]  # special tokens included, e.g. [CLS] ... [SEP]
    token_ids: list[int]
    special: list[bool]  # per token: True for special tokens
    words: list[str]  # sub-word pieces merged; special tokens are not words
    word_ids: list[int | None]  # per token: index into `words`, None for special tokens
    target: int
    prediction: int
    probabilities: torch.Tensor  # [num_labels]
    scores: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> [len(tokens)]
    word_scores: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> [len(words)]
    delta: float | None = None  # IG completeness gap: sum(IG) - (f(x) - f(baseline))
    attentions: torch.Tensor | None = None  # [layers, heads, T, T] when an attention method ran


def attribute_text(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | str,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    methods: Sequence[TextMethod] | TextMethod = DEFAULT_METHODS,
    **options: Any,
) -> list[TokenAttribution]:
    """Attribute the classifier's target output to the tokens of each text, with several methods.

    model: a transformers sequence classifier (BERT, DistilBERT, RoBERTa ...); its device is used.
    targets: class per text; None explains the predicted class.
    methods: names from ``TEXT_METHODS``, each a class in ``audit.text.methods`` (the explained scalar is the
    target's logit, or its probability with output="probability"):
      integrated_gradients  IG over the word-embedding output (model.get_input_embeddings()), summed
                            over the embedding dimension; baseline "pad" (default: [PAD] everywhere
                            except special tokens, which are kept), "mask", "zero" or a token id.
      grad_x_input          gradient x word embedding, summed over the embedding dimension.
      attention             last layer, heads averaged, attention paid by [CLS] to each token.
      attention_rollout     Abnar & Zuidema (2020): heads averaged, identity added, rows
                            renormalised, product over layers, the [CLS] row.
      attention_flow        max-flow from each token to [CLS] through the same graph (short texts).
      occlusion             leave-one-out: f(x) - f(x without the token); word_scores leave out
                            whole words.
      shap                  the shap library's Partition explainer with a Text masker
                            (shap_max_evals model calls per text, shap_batch_size strings per call).
    options: each method declares the options it reads (``option_table()`` lists them all with defaults,
    ranges and what they do), the engine its own: batch_size (texts padded together), max_length
    (truncation; default: the tokenizer's limit), progress(fraction, message). For IG, ig_steps / ig_method
    (a rule of audit.quadrature or an alias) set the path quadrature; with ig_tolerance, a text whose
    completeness gap |sum(IG) - (f(x) - f(baseline))| exceeds it is integrated again with twice the steps,
    up to ig_max_steps (start low, e.g. ig_steps=8, and let the check decide). An unknown option is a
    TypeError, a bad value a ValueError.
    Attention methods switch the model to eager attention for the call and switch it back after, so a
    model shared between threads must be used under one lock (the services hold ``ModelHandle.lock``).
    Returns one TokenAttribution per text, in order.
    """
    texts = _check_texts(texts)
    classes = [text_method_spec(name) for name in check_methods(methods)]
    opts = TextOptions.from_kwargs(**options)
    embedding = input_embeddings(model)
    pad_id = pad_token_id(tokenizer)
    encoded = encode_texts(tokenizer, texts, max_length=opts.max_length)
    for cls in classes:
        cls.check_texts(encoded, opts)
    target_list = _check_targets(targets, len(texts))
    device = model_device(model)
    run = _Run(model=model, tokenizer=tokenizer, embedding=embedding, options=opts, pad_id=pad_id,
               mask_id=getattr(tokenizer, "mask_token_id", None), device=device,
               max_length=opts.max_length or model_max_length(tokenizer))
    need_attention = any(cls.needs_attentions for cls in classes)
    share_gradient = any(cls.shares_gradient for cls in classes)
    log.debug("attributing %d texts with %s on %s", len(encoded), [c.name for c in classes], device)
    batch_size = opts.batch_size
    total_units = ((len(encoded) + batch_size - 1) // batch_size) * len(classes)
    done = 0
    instances = [cls() for cls in classes]
    # Texts are batched in order of length, so a batch pads to about its own texts' length.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[TokenAttribution | None] = [None] * len(encoded)
    with inference_mode(model, eager_attention=need_attention):
        for start in range(0, len(encoded), batch_size):
            picked = order[start : start + batch_size]
            chunk = [encoded[i] for i in picked]
            batch, chunk_results = run.forward(chunk, picked, target_list, need_attention=need_attention,
                                               share_gradient=share_gradient)
            for method in instances:
                scoped = dataclasses.replace(batch, options=OptionsView.scoped(opts, method, ENGINE_OPTIONS))
                _store(method.name, method.run(scoped), chunk_results)
                done += 1
                if opts.progress is not None:
                    opts.progress(done / total_units, f"{method.name}: {start + len(chunk)} of {len(encoded)} texts")
            for i, r in zip(picked, chunk_results):
                results[i] = r
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class _Run:
    """What every batch of one attribute_text call shares: the model, the validated options, and what
    comes from the tokenizer."""

    model: nn.Module
    tokenizer: Any
    embedding: nn.Module
    options: TextOptions
    pad_id: int
    mask_id: int | None
    device: torch.device
    max_length: int

    def forward(self, chunk: list[EncodedText], picked: list[int], target_list: list[int] | None, *,
                need_attention: bool, share_gradient: bool) -> tuple[TextBatch, list[TokenAttribution]]:
        """The batch's one forward pass: predictions, attentions when a method needs them, and gradient x
        input when a method shares it (the pass keeps its graph and the word embeddings' output is the input
        it explains). Returns the batch methods read and a result per text, scores still empty."""
        padded = pad_encoded(chunk, pad_id=self.pad_id, device=self.device)
        shared = _SharedPass(self.embedding) if share_gradient else None
        with torch.no_grad() if shared is None else shared:
            logits, attentions = forward_logits(
                self.model,
                input_ids=padded.input_ids,
                attention_mask=padded.attention_mask,
                token_type_ids=padded.token_type_ids,
                output_attentions=need_attention,
            )
        probs = logits.detach().float().softmax(-1)
        predicted = probs.argmax(-1)
        tgt = _resolve_targets(target_list, predicted, picked, n_labels=logits.shape[1])
        gxi = shared.grad_x_input(logits, tgt, padded, self.options.output) if shared is not None else None
        logits = logits.detach()
        chunk_results = [
            TokenAttribution(
                text=e.text,
                tokens=e.tokens,
                token_ids=e.input_ids,
                special=e.special,
                words=e.words,
                word_ids=e.word_ids,
                target=int(tgt[i]),
                prediction=int(predicted[i]),
                probabilities=probs[i].cpu(),
            )
            for i, e in enumerate(chunk)
        ]
        per_text = None
        if attentions is not None:
            stacked = torch.stack([a.detach().float() for a in attentions], dim=1).cpu()  # [B, L, H, T, T]
            per_text = [stacked[i, :, :, : len(e), : len(e)].contiguous() for i, e in enumerate(chunk)]
            for r, a in zip(chunk_results, per_text):
                r.attentions = a
        batch = TextBatch(model=self.model, tokenizer=self.tokenizer, embedding=self.embedding, encoded=chunk,
                          padded=padded, targets=tgt, logits=logits, attentions=per_text, shared_gradient=gxi,
                          options=self.options, pad_id=self.pad_id, mask_id=self.mask_id,
                          max_length=self.max_length, device=self.device)
        return batch, chunk_results


def _store(method: str, scores: TextScores, results: list[TokenAttribution]) -> None:
    """Put one method's scores for one batch on the texts' results (words summed from tokens unless the
    method scored words itself)."""
    for i, r in enumerate(results):
        r.scores[method] = scores.tokens[i].detach().float().cpu()
        if scores.words is not None:
            r.word_scores[method] = scores.words[i].detach().float().cpu()
        else:
            r.word_scores[method] = word_sum(r.scores[method], r.word_ids, len(r.words))
    if scores.delta is not None:
        for r, d in zip(results, scores.delta.tolist()):
            r.delta = float(d)


class _SharedPass:
    """A forward pass with its graph kept and the word embeddings' output captured (a forward hook on the
    embedding module marks it as requiring grad), so gradient x input needs one backward and no pass of
    its own. Use as the context of the forward call."""

    def __init__(self, embedding: nn.Module) -> None:
        self.embedding = embedding
        self.outputs: list[torch.Tensor] = []
        self._grad = torch.enable_grad()

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.detach().requires_grad_(True)
        self.outputs.append(output)
        return output

    def __enter__(self) -> "_SharedPass":
        self._handle = self.embedding.register_forward_hook(self._hook)
        self._grad.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()
        self._grad.__exit__(*exc)

    def grad_x_input(self, logits: torch.Tensor, targets: torch.Tensor, batch: PaddedBatch,
                     output: Output) -> torch.Tensor | None:
        """Per-token scores [B, T], or None when the embedding module did not run exactly once (a model
        that calls it twice gets gradient x input from a pass of its own)."""
        if len(self.outputs) != 1:
            return None
        emb = self.outputs[0]
        (grad,) = torch.autograd.grad(target_output(logits, targets, output).sum(), emb)
        return grad_times_input(grad, emb, batch.attention_mask)


def word_sum(token_scores: torch.Tensor, word_ids: Sequence[int | None], n_words: int) -> torch.Tensor:
    """Sum token scores into their words; special tokens (word id None) are left out."""
    out = torch.zeros(n_words, dtype=token_scores.dtype)
    keep = [j for j, w in enumerate(word_ids) if w is not None]
    if keep:
        index = torch.tensor([word_ids[j] for j in keep], dtype=torch.long)
        out.index_add_(0, index, token_scores[keep].to(out.dtype))
    return out


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(ERR_TEXTS.format(got=type(texts).__name__ if not isinstance(texts, Sequence) else texts))
    return list(texts)


def _check_targets(targets: Any, n_texts: int) -> list[int] | None:
    if targets is None:
        return None
    if isinstance(targets, torch.Tensor):
        targets = targets.reshape(-1).tolist()
    if isinstance(targets, int) and not isinstance(targets, bool):
        return [targets] * n_texts
    targets = list(targets)
    if len(targets) != n_texts:
        raise ValueError(ERR_TARGETS_LEN.format(n_targets=len(targets), n_texts=n_texts))
    return [int(t) for t in targets]


def _resolve_targets(
    target_list: list[int] | None, predicted: torch.Tensor, picked: list[int], *, n_labels: int
) -> torch.Tensor:
    """Targets of the texts at indices `picked` (the asked ones, else the predicted classes)."""
    if target_list is None:
        return predicted
    chosen = [target_list[i] for i in picked]
    for index, t in zip(picked, chosen):
        if not 0 <= t < n_labels:
            raise ValueError(ERR_TARGET_RANGE.format(target=t, index=index, n=n_labels, last=n_labels - 1))
    return torch.tensor(chosen, dtype=torch.long, device=predicted.device)
