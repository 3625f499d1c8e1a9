"""Benchmark: our text Integrated Gradients vs captum's LayerIntegratedGradients on a MiniLM classifier.

Two sets: the fixed one (loan notes of similar length) and a mixed-length one (5 to 120 tokens). Same
model, texts, targets, baseline, steps and rows per forward on both sides; captum runs as users call it
(the texts padded into one batch) and one text per call (no padding); rounds alternate the order.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m audit.bench text", description=__doc__)
    p.add_argument("--texts", type=int, default=16, help="loan notes in the fixed set (default 16)")
    p.add_argument("--mixed", type=int, default=10,
                   help="texts in the mixed-length set, lengths spread from --min-tokens to --max-tokens "
                        "(default 10; 0 skips it)")
    p.add_argument("--min-tokens", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--steps", type=int, default=50, help="IG steps for both sides (default 50)")
    p.add_argument("--method", default="gausslegendre", help="IG quadrature for both sides")
    p.add_argument("--tolerance", type=float, default=None,
                   help="also time ours with adaptive steps: start at --start-steps, double a text's steps while "
                        "its completeness gap exceeds this (compare its |delta| columns with captum's)")
    p.add_argument("--start-steps", type=int, default=8, help="first step count of the adaptive side (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (default 3)")
    p.add_argument("--internal-batch-size", type=int, default=256, help="rows per forward pass, both sides")
    p.add_argument("--model-dir", default=None,
                   help="a saved classifier (e.g. a demo text version); default: MiniLM + a seeded random head")
    p.add_argument("--tiny", action="store_true", help="a tiny random BERT instead of MiniLM (smoke tests)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_model(model_dir: str | None, seed: int, device: str, tiny: bool = False) -> tuple[Any, Any, str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if tiny:
        model, tokenizer = _tiny_bert(seed)
        name = "tiny random BERT (2 layers, width 32)"
    elif model_dir:
        from audit.demo.text_family import load_text_model

        model, tokenizer = load_text_model(model_dir)
        name = f"classifier from {model_dir}"
    else:
        from audit.demo.text_family import minilm_classifier

        model, tokenizer = minilm_classifier(seed)
        name = "all-MiniLM-L6-v2 encoder + seeded random 2-way head"
    # Both sides run the same attention kernel; the default one is fastest for gradients.
    if getattr(model.config, "_attn_implementation", None) == "eager" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("sdpa")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer, name


def _tiny_bert(seed: int) -> tuple[Any, Any]:
    import tempfile

    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from audit.demo.text_family import generate_notes

    words = sorted({w for n in generate_notes(2, seed=seed) for w in n["text"].lower().replace(".", " ").split()})
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + words) + "\n")
        tokenizer = BertTokenizer.from_pretrained(tmp, local_files_only=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=2)
    return BertForSequenceClassification(config).eval(), tokenizer


def fixed_texts(n: int, seed: int) -> list[str]:
    from audit.demo.text_family import generate_notes

    return [t["text"] for t in generate_notes(max(1, (n + 5) // 6), seed=seed + 7)][:n]


def mixed_texts(tokenizer: Any, n: int, lo: int, hi: int, seed: int) -> list[str]:
    """`n` texts whose token counts (special tokens included) spread evenly from `lo` to `hi`."""
    from audit.demo.text_family import generate_notes

    words = " ".join(t["text"] for t in generate_notes(40, seed=seed + 11)).split()
    out = []
    for j in range(n):
        want = lo if n == 1 else round(lo + (hi - lo) * j / (n - 1))
        # take words until the tokenised text reaches the wanted length, then cut tokens to fit exactly
        k = max(1, want // 2)
        while len(tokenizer(" ".join(words[j * 7 : j * 7 + k]))["input_ids"]) < want and k < len(words) - j * 7:
            k += 1
        ids = tokenizer(" ".join(words[j * 7 : j * 7 + k]), add_special_tokens=False)["input_ids"][: max(1, want - 2)]
        out.append(tokenizer.decode(ids))
    return out


def captum_ig(model: Any, tokenizer: Any, texts: list[str], targets: torch.Tensor, steps: int, method: str,
              rows: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Captum's LayerIntegratedGradients on the word embeddings, the texts padded into one batch."""
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
        ids, baselines=base, additional_forward_args=(mask, types), target=targets, n_steps=steps,
        method=method, internal_batch_size=rows, return_convergence_delta=True,
    )
    scores = attr.sum(-1).detach()
    return [scores[i, : int(mask[i].sum())].cpu() for i in range(len(texts))], delta.detach().cpu().reshape(-1)


def captum_ig_per_text(model: Any, tokenizer: Any, texts: list[str], targets: torch.Tensor, steps: int,
                       method: str, rows: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The same, one text per call (no padding at all)."""
    scores, deltas = [], []
    for i, text in enumerate(texts):
        s, d = captum_ig(model, tokenizer, [text], targets[i : i + 1], steps, method, rows)
        scores.extend(s)
        deltas.append(d)
    return scores, torch.cat(deltas)


@dataclass
class SideResult:
    seconds: list[float]
    scores: list[torch.Tensor]
    delta: torch.Tensor

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)


def compare(sides: dict[str, Callable[[], tuple[list[torch.Tensor], torch.Tensor]]], rounds: int,
            device: torch.device) -> dict[str, SideResult]:
    """Time each side `rounds` times after one warm-up, rotating which side goes first."""
    out: dict[str, SideResult] = {}
    for label, fn in sides.items():
        scores, delta = fn()
        out[label] = SideResult([], scores, delta)
    names = list(sides)
    for r in range(rounds):
        for label in names[r % len(names):] + names[: r % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            scores, delta = sides[label]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            out[label].seconds.append(time.perf_counter() - t0)
            out[label].scores, out[label].delta = scores, delta
    return out


def run_set(title: str, model: Any, tokenizer: Any, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Time ours, captum batched and captum per text on one set; print the table; return the figures."""
    from audit.text import attribute_text

    device = next(model.parameters()).device

    def ours_with(**extra: Any) -> Callable[[], tuple[list[torch.Tensor], torch.Tensor]]:
        def run() -> tuple[list[torch.Tensor], torch.Tensor]:
            res = attribute_text(
                model, tokenizer, texts, targets=targets, methods=["integrated_gradients"], ig_method=args.method,
                internal_batch_size=args.internal_batch_size, batch_size=len(texts), **extra,
            )
            return [r.scores["integrated_gradients"] for r in res], torch.tensor([r.delta for r in res])
        return run

    targets = None
    first = attribute_text(model, tokenizer, texts, methods=["integrated_gradients"], ig_steps=2)
    targets = [r.target for r in first]
    t_targets = torch.tensor(targets, device=device)
    sides: dict[str, Callable[[], tuple[list[torch.Tensor], torch.Tensor]]] = {
        "ours": ours_with(ig_steps=args.steps),
        "captum": lambda: captum_ig(model, tokenizer, texts, t_targets, args.steps, args.method,
                                    args.internal_batch_size),
        "captum/text": lambda: captum_ig_per_text(model, tokenizer, texts, t_targets, args.steps, args.method,
                                                  args.internal_batch_size),
    }
    if args.tolerance is not None:
        sides["ours/adaptive"] = ours_with(ig_steps=args.start_steps, ig_tolerance=args.tolerance,
                                           ig_max_steps=max(args.start_steps, 4 * args.steps))
    res = compare(sides, args.rounds, device)
    lengths = [len(s) for s in res["ours"].scores]
    print(f"== {title}: {len(texts)} texts, tokens {min(lengths)}-{max(lengths)} (mean "
          f"{sum(lengths) / len(lengths):.1f}); IG {args.method} {args.steps} steps; "
          f"{args.internal_batch_size} rows per forward; {args.rounds} rounds")
    print(f"{'side':<14} {'min s':>8} {'median s':>9} {'texts/s':>8} {'mean |delta|':>13} {'max |delta|':>12}")
    for label, r in res.items():
        print(f"{label:<14} {r.best:8.3f} {r.median:9.3f} {len(texts) / r.median:8.2f} "
              f"{float(r.delta.abs().mean()):13.2e} {float(r.delta.abs().max()):12.2e}")
    print("round seconds: " + "; ".join(f"{k} " + " ".join(f"{t:.2f}" for t in r.seconds) for k, r in res.items()))
    max_diff = max(float((a - b).abs().max()) for a, b in zip(res["ours"].scores, res["captum/text"].scores))
    best_captum = min(res["captum"].median, res["captum/text"].median)
    ratios = {
        "batched": res["captum"].median / res["ours"].median,
        "per_text": res["captum/text"].median / res["ours"].median,
        "best": best_captum / res["ours"].median,
    }
    print(f"{title} ratio ours/captum (median): {ratios['batched']:.2f}x vs captum batched, "
          f"{ratios['per_text']:.2f}x vs captum one text per call, {ratios['best']:.2f}x vs the faster captum; "
          f"max |score difference|: {max_diff:.2e}")
    if "ours/adaptive" in res:
        a = res["ours/adaptive"]
        ratios["adaptive_best"] = best_captum / a.median
        better = float(a.delta.abs().max()) <= float(min(res["captum"].delta.abs().max(),
                                                         res["captum/text"].delta.abs().max()))
        print(f"{title} adaptive (start {args.start_steps} steps, tolerance {args.tolerance:g}): "
              f"{ratios['adaptive_best']:.2f}x vs the faster captum; its max |delta| is "
              f"{'within' if better else 'ABOVE'} captum's")
    shared = shared_passes(model, tokenizer, texts, args.rounds)
    print(f"{title} shared passes ({', '.join(SHARED_METHODS)}): together {shared['together']:.3f} s, one call per "
          f"method {shared['separate']:.3f} s (median): {shared['ratio']:.2f}x; max |score difference| "
          f"{shared['max_diff']:.2e}")
    return {"ratios": ratios, "max_diff": max_diff, "shared": shared}


SHARED_METHODS = ("grad_x_input", "attention", "attention_rollout")


def shared_passes(model: Any, tokenizer: Any, texts: list[str], rounds: int) -> dict[str, float]:
    """Gradient x input, attention and rollout asked for together (one forward pass per batch, its graph
    kept for the gradient) against one attribute_text call per method, alternating (``compare``)."""
    from audit.text import attribute_text

    none = torch.zeros(0)  # these methods have no completeness gap

    def together() -> tuple[list[torch.Tensor], torch.Tensor]:
        res = attribute_text(model, tokenizer, texts, methods=list(SHARED_METHODS), batch_size=len(texts))
        return [r.scores[m] for m in SHARED_METHODS for r in res], none

    def separate() -> tuple[list[torch.Tensor], torch.Tensor]:
        return [r.scores[m] for m in SHARED_METHODS
                for r in attribute_text(model, tokenizer, texts, methods=[m], batch_size=len(texts))], none

    res = compare({"together": together, "separate": separate}, rounds, next(model.parameters()).device)
    diff = max(float((a - b).abs().max()) for a, b in zip(res["together"].scores, res["separate"].scores))
    t, s = res["together"].median, res["separate"].median
    return {"together": t, "separate": s, "ratio": s / t, "max_diff": diff}


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if args.texts < 1 or args.steps < 2 or args.rounds < 1 or args.mixed < 0:
        print("--texts and --rounds must be >= 1, --mixed >= 0 and --steps >= 2", file=sys.stderr)
        return 2
    if not 3 <= args.min_tokens <= args.max_tokens:
        print("--min-tokens must be >= 3 and <= --max-tokens", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    model, tokenizer, name = load_model(args.model_dir, args.seed, args.device, tiny=args.tiny)
    device = next(model.parameters()).device
    print(f"model: {name}; device: {device}; torch threads: {torch.get_num_threads()}")
    run_set("fixed set", model, tokenizer, fixed_texts(args.texts, args.seed), args)
    if args.mixed:
        texts = mixed_texts(tokenizer, args.mixed, args.min_tokens, args.max_tokens, args.seed)
        run_set("mixed-length set", model, tokenizer, texts, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
