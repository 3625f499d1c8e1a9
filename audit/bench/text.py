"""Benchmark: our text Integrated Gradients vs captum's LayerIntegratedGradients on a MiniLM classifier.

Same model, texts, baseline, steps and rows per forward; rounds alternate which side runs first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import torch


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m audit.bench text", description=__doc__)
    p.add_argument("--texts", type=int, default=16, help="number of loan notes to attribute (default 16)")
    p.add_argument("--steps", type=int, default=50, help="IG steps for both sides (default 50)")
    p.add_argument("--method", default="gausslegendre", help="IG quadrature for both sides")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (default 3)")
    p.add_argument("--internal-batch-size", type=int, default=256, help="rows per forward pass, both sides")
    p.add_argument("--model-dir", default=None,
                   help="a saved classifier (e.g. a demo text version); default: MiniLM + a seeded random head")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _model(args: argparse.Namespace) -> tuple[Any, Any, str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from audit.demo.text_family import minilm_classifier, load_text_model

    if args.model_dir:
        model, tokenizer = load_text_model(args.model_dir)
        name = f"classifier from {args.model_dir}"
    else:
        model, tokenizer = minilm_classifier(args.seed)
        name = "all-MiniLM-L6-v2 encoder + seeded random 2-way head"
    # Both sides run the same attention kernel; the default one is fastest for gradients.
    if getattr(model.config, "_attn_implementation", None) == "eager" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("sdpa")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer, name


def _captum_ig(model: Any, tokenizer: Any, texts: list[str], targets: torch.Tensor, args: argparse.Namespace):
    from captum.attr import LayerIntegratedGradients

    device = next(model.parameters()).device
    enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt", return_special_tokens_mask=True)
    ids = enc["input_ids"].to(device)
    mask = enc["attention_mask"].to(device)
    types = enc["token_type_ids"].to(device)
    keep = enc["special_tokens_mask"].bool().to(device) | (mask == 0)
    base = torch.where(keep, ids, torch.full_like(ids, tokenizer.pad_token_id))

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    attr, delta = lig.attribute(
        ids, baselines=base, additional_forward_args=(mask, types), target=targets, n_steps=args.steps,
        method=args.method, internal_batch_size=args.internal_batch_size, return_convergence_delta=True,
    )
    scores = attr.sum(-1).detach()
    return [scores[i, : int(mask[i].sum())].cpu() for i in range(len(texts))], delta.detach().cpu()


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if args.texts < 1 or args.steps < 2 or args.rounds < 1:
        print("--texts and --rounds must be >= 1 and --steps >= 2", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    from audit.demo.text_family import generate_notes
    from audit.text import attribute_text

    model, tokenizer, name = _model(args)
    notes = generate_notes(max(1, (args.texts + 5) // 6), seed=args.seed + 7)
    texts = [n["text"] for n in notes][: args.texts]
    device = next(model.parameters()).device

    def ours():
        return attribute_text(
            model, tokenizer, texts, methods=["integrated_gradients"], ig_steps=args.steps, ig_method=args.method,
            internal_batch_size=args.internal_batch_size, batch_size=len(texts),
        )

    warm = ours()  # warm-up, and fixes the targets both sides explain
    targets = torch.tensor([r.target for r in warm], device=device)

    def theirs():
        return _captum_ig(model, tokenizer, texts, targets, args)

    _ = theirs()
    times: dict[str, list[float]] = {"ours": [], "captum": []}
    last: dict[str, Any] = {}
    for r in range(args.rounds):
        order = [("ours", ours), ("captum", theirs)]
        if r % 2:
            order.reverse()
        for label, fn in order:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            last[label] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[label].append(time.perf_counter() - t0)

    our_res = last["ours"]
    cap_scores, cap_delta = last["captum"]
    max_diff = max(float((a.scores["integrated_gradients"] - b).abs().max()) for a, b in zip(our_res, cap_scores))
    our_delta = torch.tensor([r.delta for r in our_res]).abs()
    t_ours, t_cap = statistics.median(times["ours"]), statistics.median(times["captum"])
    mean_tokens = sum(len(r.tokens) for r in our_res) / len(our_res)
    print(f"model: {name}; device: {device}; torch threads: {torch.get_num_threads()}")
    print(f"texts: {len(texts)} (mean {mean_tokens:.1f} tokens); IG {args.method}, {args.steps} steps; "
          f"{args.internal_batch_size} rows per forward; {args.rounds} alternating rounds (median shown)")
    print(f"{'side':<8} {'seconds':>9} {'texts/s':>9} {'mean |delta|':>13} {'max |delta|':>12}")
    print(f"{'ours':<8} {t_ours:9.3f} {len(texts) / t_ours:9.2f} {float(our_delta.mean()):13.2e} "
          f"{float(our_delta.max()):12.2e}")
    print(f"{'captum':<8} {t_cap:9.3f} {len(texts) / t_cap:9.2f} {float(cap_delta.abs().mean()):13.2e} "
          f"{float(cap_delta.abs().max()):12.2e}")
    print("round seconds: ours " + " ".join(f"{t:.2f}" for t in times["ours"])
          + "; captum " + " ".join(f"{t:.2f}" for t in times["captum"]))
    print(f"throughput ratio ours/captum: {t_cap / t_ours:.2f}x; max |score difference|: {max_diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
