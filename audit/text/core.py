"""`attribute_text`: token and word attributions for transformers sequence classifiers, several methods at once.

Texts are tokenised once, right-padded per batch, and every score is cut back to the text's own tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence, get_args

import torch
from torch import nn

from audit.text import attention as attn
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
from audit.text.gradients import (
    BASELINES,
    IG_METHODS,
    IGMethod,
    grad_times_input,
    grad_x_input,
    integrated_gradients,
    path_nodes,
)
from audit.text.occlusion import REPLACEMENTS, leave_one_out
from audit.text.shap_text import shap_values

log = logging.getLogger(__name__)

TextMethod = Literal[
    "integrated_gradients",
    "grad_x_input",
    "attention",
    "attention_rollout",
    "attention_flow",
    "occlusion",
    "shap",
]
TEXT_METHODS: tuple[str, ...] = get_args(TextMethod)
DEFAULT_METHODS: tuple[str, ...] = (
    "integrated_gradients",
    "grad_x_input",
    "attention",
    "attention_rollout",
    "occlusion",
    "shap",
)
ATTENTION_METHODS = frozenset({"attention", "attention_rollout", "attention_flow"})
Progress = Callable[[float, str], None]

ERR_TEXTS = "texts must be a non-empty list of strings, got {got}"
ERR_METHOD = "unknown text attribution method {name!r}; choose from {choices}"
ERR_TARGETS_LEN = "got {n_targets} targets for {n_texts} texts; give one target per text, one int, or None"
ERR_TARGET_RANGE = "target {target} of text {index} is outside the model's {n} labels (0..{last})"
ERR_FLOW_LENGTH = (
    "attention_flow solves one max-flow problem per token and is limited to {limit} tokens "
    "(flow_max_tokens); text {index} has {n}. Use attention_rollout, or shorten the text"
)


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
    *,
    ig_steps: int = 50,
    ig_method: IGMethod = "gausslegendre",
    ig_baseline: Literal["pad", "mask", "zero"] | int = "pad",
    ig_tolerance: float | None = None,
    ig_max_steps: int = 512,
    internal_batch_size: int = 256,
    batch_size: int = 16,
    max_length: int | None = None,
    occlusion_replacement: Literal["remove", "mask", "pad"] = "remove",
    shap_max_evals: int = 100,
    shap_batch_size: int = 16,
    flow_max_tokens: int = 32,
    output: Output = "logit",
    progress: Progress | None = None,
) -> list[TokenAttribution]:
    """Attribute the classifier's target output to the tokens of each text, with several methods.

    model: a transformers sequence classifier (BERT, DistilBERT, RoBERTa ...); its device is used.
    targets: class per text; None explains the predicted class.
    methods (the explained scalar is the target's logit, or its probability with output="probability"):
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
    Options: ig_steps / ig_method (gausslegendre or riemann_*) set the path quadrature; with
    ig_tolerance, a text whose completeness gap |sum(IG) - (f(x) - f(baseline))| exceeds it is integrated
    again with twice the steps, up to ig_max_steps (start low, e.g. ig_steps=8, and let the check decide);
    internal_batch_size caps the rows of one IG forward pass (steps x texts); batch_size is the
    number of texts padded together; max_length truncates (default: the tokenizer's limit);
    occlusion_replacement "remove" deletes the unit, "mask"/"pad" overwrite it; progress(fraction, message).
    Attention methods switch the model to eager attention for the call and switch it back after, so a
    model shared between threads must be used under one lock (the services hold ``ModelHandle.lock``).
    Which options change which method's scores is declared in audit.text.methods (TEXT_METHOD_SPECS).
    Returns one TokenAttribution per text, in order.
    """
    texts = _check_texts(texts)
    method_list = _check_methods(methods)
    _check_options(
        ig_steps=ig_steps, shap_max_evals=shap_max_evals, ig_method=ig_method, ig_baseline=ig_baseline,
        ig_tolerance=ig_tolerance, ig_max_steps=ig_max_steps, internal_batch_size=internal_batch_size,
        batch_size=batch_size, shap_batch_size=shap_batch_size, occlusion_replacement=occlusion_replacement,
        output=output, max_length=max_length, flow_max_tokens=flow_max_tokens,
    )
    embedding = input_embeddings(model)
    pad_id = pad_token_id(tokenizer)
    encoded = encode_texts(tokenizer, texts, max_length=max_length)
    if "attention_flow" in method_list:
        for i, e in enumerate(encoded):
            if len(e) > flow_max_tokens:
                raise ValueError(ERR_FLOW_LENGTH.format(limit=flow_max_tokens, index=i, n=len(e)))
    target_list = _check_targets(targets, len(texts))
    cfg = _Settings(
        ig_steps=ig_steps, ig_method=ig_method, ig_baseline=ig_baseline, ig_tolerance=ig_tolerance,
        ig_max_steps=ig_max_steps, internal_batch_size=internal_batch_size,
        batch_size=batch_size, max_length=max_length or model_max_length(tokenizer),
        occlusion_replacement=occlusion_replacement, shap_max_evals=shap_max_evals,
        shap_batch_size=shap_batch_size, output=output, pad_id=pad_id,
        mask_id=getattr(tokenizer, "mask_token_id", None), device=model_device(model),
    )
    need_attention = bool(ATTENTION_METHODS & set(method_list))
    log.debug("attributing %d texts with %s on %s", len(encoded), method_list, cfg.device)
    total_units = ((len(encoded) + batch_size - 1) // batch_size) * len(method_list)
    done = 0
    # Texts are batched in order of length, so a batch pads to about its own texts' length.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[TokenAttribution | None] = [None] * len(encoded)
    with inference_mode(model, eager_attention=need_attention):
        for start in range(0, len(encoded), batch_size):
            picked = order[start : start + batch_size]
            chunk = [encoded[i] for i in picked]
            batch = pad_encoded(chunk, pad_id=cfg.pad_id, device=cfg.device)
            # Gradient x input shares the batch's one forward pass with the predictions and the attention
            # methods: the pass keeps its graph and the word embeddings' output is the input it explains.
            shared = _SharedPass(embedding) if "grad_x_input" in method_list else None
            with torch.no_grad() if shared is None else shared:
                logits, attentions = forward_logits(
                    model,
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    token_type_ids=batch.token_type_ids,
                    output_attentions=need_attention,
                )
            probs = logits.detach().float().softmax(-1)
            predicted = probs.argmax(-1)
            tgt = _resolve_targets(target_list, predicted, picked, n_labels=logits.shape[1])
            gxi = shared.grad_x_input(logits, tgt, batch, cfg.output) if shared is not None else None
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
            if attentions is not None:
                stacked = torch.stack([a.detach().float() for a in attentions], dim=1).cpu()  # [B, L, H, T, T]
                for i, (e, r) in enumerate(zip(chunk, chunk_results)):
                    r.attentions = stacked[i, :, :, : len(e), : len(e)].contiguous()
            for method in method_list:
                _run_method(method, model, tokenizer, embedding, chunk, batch, tgt, logits, chunk_results, cfg,
                            gxi=gxi)
                done += 1
                if progress is not None:
                    progress(done / total_units, f"{method}: {start + len(chunk)} of {len(encoded)} texts")
            for i, r in zip(picked, chunk_results):
                results[i] = r
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class _Settings:
    """Validated options of one attribute_text call, plus what comes from the tokenizer and model."""

    ig_steps: int
    ig_method: str
    ig_baseline: Any
    ig_tolerance: float | None
    ig_max_steps: int
    internal_batch_size: int
    batch_size: int
    max_length: int
    occlusion_replacement: str
    shap_max_evals: int
    shap_batch_size: int
    output: Output
    pad_id: int
    mask_id: int | None
    device: torch.device


def _run_method(
    method: str,
    model: nn.Module,
    tokenizer: Any,
    embedding: nn.Module,
    chunk: list[EncodedText],
    batch: PaddedBatch,
    targets: torch.Tensor,
    logits: torch.Tensor,
    results: list[TokenAttribution],
    cfg: _Settings,
    gxi: torch.Tensor | None = None,
) -> None:
    """Run one method on one padded batch and store token and word scores on the results. ``gxi``: the
    batch's gradient x input scores from the shared forward pass, when it gave them."""
    if method == "integrated_gradients":
        ig = integrated_gradients(
            model, embedding, batch, chunk, targets, steps=cfg.ig_steps, method=cfg.ig_method,
            baseline=cfg.ig_baseline, pad_id=cfg.pad_id, mask_id=cfg.mask_id,
            internal_batch_size=cfg.internal_batch_size, output=cfg.output,
            tolerance=cfg.ig_tolerance, max_steps=cfg.ig_max_steps,
        )
        per_text = _unpad(ig.scores, chunk)
        for r, d in zip(results, ig.delta.tolist()):  # type: ignore[union-attr]
            r.delta = float(d)
    elif method == "grad_x_input":
        if gxi is None:
            gxi = grad_x_input(model, embedding, batch, targets, output=cfg.output).scores
        per_text = _unpad(gxi, chunk)
    elif method in ATTENTION_METHODS:
        fn = {"attention": attn.cls_attention, "attention_rollout": attn.attention_rollout,
              "attention_flow": attn.attention_flow}[method]
        per_text = [fn(r.attentions) for r in results]  # type: ignore[arg-type]
    elif method == "occlusion":
        occ = leave_one_out(
            model, chunk, targets, target_output(logits, targets, cfg.output),
            replacement=cfg.occlusion_replacement, pad_id=cfg.pad_id, mask_id=cfg.mask_id,
            batch_size=cfg.batch_size * 4, output=cfg.output, device=cfg.device,
        )
        for r, token_scores, word_scores in zip(results, occ.tokens, occ.words):
            r.scores[method] = token_scores.float()
            r.word_scores[method] = word_scores.float()
        return
    elif method == "shap":
        per_text = shap_values(
            model, tokenizer, chunk, targets, max_evals=cfg.shap_max_evals, max_length=cfg.max_length,
            pad_id=cfg.pad_id, batch_size=cfg.shap_batch_size, output=cfg.output, device=cfg.device,
        )
    else:  # pragma: no cover - methods are validated up front
        raise ValueError(ERR_METHOD.format(name=method, choices=TEXT_METHODS))
    for r, scores in zip(results, per_text):
        r.scores[method] = scores.detach().float().cpu()
        r.word_scores[method] = word_sum(r.scores[method], r.word_ids, len(r.words))


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


def _unpad(scores: torch.Tensor, chunk: list[EncodedText]) -> list[torch.Tensor]:
    return [scores[i, : len(e)] for i, e in enumerate(chunk)]


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(ERR_TEXTS.format(got=type(texts).__name__ if not isinstance(texts, Sequence) else texts))
    return list(texts)


def _check_methods(methods: Any) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    out: list[str] = []
    for m in methods:
        if m not in TEXT_METHODS:
            raise ValueError(ERR_METHOD.format(name=m, choices=TEXT_METHODS))
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError(ERR_METHOD.format(name=None, choices=TEXT_METHODS))
    return out


def _check_options(
    *, ig_steps: int, shap_max_evals: int, ig_method: str, ig_baseline: Any, ig_tolerance: float | None,
    ig_max_steps: int, internal_batch_size: int,
    batch_size: int, shap_batch_size: int, occlusion_replacement: str, output: str, max_length: int | None,
    flow_max_tokens: int,
) -> None:
    if ig_method not in IG_METHODS:
        raise ValueError(f"ig_method must be one of {IG_METHODS}, got {ig_method!r}")
    path_nodes(ig_steps, ig_method)  # raises on a step count the quadrature cannot use
    if ig_tolerance is not None and (isinstance(ig_tolerance, bool) or not isinstance(ig_tolerance, (int, float))
                                     or not ig_tolerance > 0):
        raise ValueError(f"ig_tolerance must be a positive number or None, got {ig_tolerance!r}")
    if isinstance(ig_max_steps, bool) or not isinstance(ig_max_steps, int) or ig_max_steps < ig_steps:
        raise ValueError(f"ig_max_steps must be an integer >= ig_steps ({ig_steps}), got {ig_max_steps!r}")
    if not isinstance(shap_max_evals, int) or shap_max_evals < 2:
        raise ValueError(f"shap_max_evals must be an integer >= 2, got {shap_max_evals!r}")
    if ig_baseline not in BASELINES and not (isinstance(ig_baseline, int) and not isinstance(ig_baseline, bool)):
        raise ValueError(f"ig_baseline must be one of {BASELINES} or a token id, got {ig_baseline!r}")
    for name, value in (("internal_batch_size", internal_batch_size), ("batch_size", batch_size),
                        ("flow_max_tokens", flow_max_tokens), ("shap_batch_size", shap_batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 2):
        raise ValueError(f"max_length must be an integer >= 2 or None, got {max_length!r}")
    if occlusion_replacement not in REPLACEMENTS:
        raise ValueError(f"occlusion_replacement must be one of {REPLACEMENTS}, got {occlusion_replacement!r}")
    if output not in get_args(Output):
        raise ValueError(f"output must be one of {get_args(Output)}, got {output!r}")


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
