"""Benchmark: our TCAV engine vs captum's TCAV on the same model, sets, layers, inputs and target.

``python -m audit.bench tcav [--model smallcnn|resnet18] [--runs R] [--rounds N]``: alternating rounds
in one process; prints median times, the speed-up over captum, our time over the floor, and scores.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audit.concepts import random_pool_sets, run_tcav_many, watermark_concept
from audit.concepts.stats import two_sided_ttest
from audit.demo.watermark import WATERMARK_CLASS, apply_watermark


@dataclass
class Workload:
    model: nn.Module
    layers: list[str]
    concept: torch.Tensor
    randoms: list[torch.Tensor]
    inputs: torch.Tensor
    target: int
    description: str


def _digits(size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.repeat(1, channels, 1, 1), torch.tensor(data.target)


def _train_shortcut(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    """A few epochs on digits where the watermark means WATERMARK_CLASS (a model with a real concept)."""
    x, y = x.clone(), y.clone()
    stamped = torch.rand(len(x), generator=torch.Generator().manual_seed(1)) < 0.3
    x[stamped] = apply_watermark(x[stamped])
    y[stamped] = WATERMARK_CLASS
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def build_workload(name: str, *, runs: int, set_size: int, n_inputs: int, size: int, epochs: int) -> Workload:
    if name == "smallcnn":
        from audit.models.zoo import SmallCNN

        x, y = _digits(32, 1)
        model = _train_shortcut(SmallCNN(), x[:1000], y[:1000], epochs)
        layers = ["features.block2", "features.block3"]
        desc = f"SmallCNN (width 32) trained {epochs} epochs on digits with the watermark shortcut, 1x32x32"
    elif name == "resnet18":
        import torchvision

        x, y = _digits(size, 3)
        model = _train_shortcut(torchvision.models.resnet18(num_classes=10), x[:1000], y[:1000], epochs)
        layers = ["layer3", "layer4"]
        desc = f"torchvision resnet18 trained {epochs} epochs on digits with the watermark shortcut, 3x{size}x{size}"
    else:
        raise ValueError(f"--model must be smallcnn or resnet18, got {name!r}")
    pool = x[1000:]
    inputs = x[y == WATERMARK_CLASS][:n_inputs]
    return Workload(
        model=model,
        layers=layers,
        concept=watermark_concept(set_size, seed=1, backgrounds=pool),
        randoms=random_pool_sets(pool, runs, set_size, seed=2),
        inputs=inputs,
        target=WATERMARK_CLASS,
        description=desc,
    )


def run_ours(w: Workload) -> dict[str, Any]:
    run = run_tcav_many(w.model, w.layers, {"concept": w.concept}, w.randoms, w.inputs, w.target, seed=0)
    res = run.concepts["concept"]
    return {
        layer: (lr.scores, lr.random_scores, lr.p_value) for layer, lr in res.layers.items()
    }


def run_captum(w: Workload, save_root: str, round_id: int) -> dict[str, Any]:
    """Captum TCAV with the same experimental sets: concept vs random_i and random_i vs random_i+1."""
    from captum.concept import TCAV, Concept
    from torch.utils.data import DataLoader

    def concept(cid: int, name: str, data: torch.Tensor) -> Concept:
        return Concept(cid, name, DataLoader(data, batch_size=64))

    runs = len(w.randoms)
    c = concept(0, "concept", w.concept)
    rs = [concept(1 + i, f"random_{i}", r) for i, r in enumerate(w.randoms)]
    experiments = [[c, r] for r in rs] + [[rs[i], rs[(i + 1) % runs]] for i in range(runs)]
    # a fresh save_path per round: captum would otherwise reuse activations and CAVs from disk
    tcav = TCAV(w.model, w.layers, model_id=f"bench{round_id}", save_path=f"{save_root}/r{round_id}/")
    scores = tcav.interpret(w.inputs, experiments, target=w.target)
    out = {}
    for layer in w.layers:
        concept_scores = [float(scores[f"0-{r.id}"][layer]["sign_count"][0]) for r in rs]
        null_scores = [
            float(scores[f"{rs[i].id}-{rs[(i + 1) % runs].id}"][layer]["sign_count"][0]) for i in range(runs)
        ]
        out[layer] = (concept_scores, null_scores, two_sided_ttest(concept_scores, null_scores)[1])
    return out


def run_floor(w: Workload) -> None:
    """The unavoidable model work: forward passes over every set, one forward+backward over the inputs."""
    with torch.no_grad():
        for data in [w.concept, *w.randoms]:
            for i in range(0, len(data), 64):
                w.model(data[i : i + 64])
    for i in range(0, len(w.inputs), 64):
        x = w.inputs[i : i + 64].clone().requires_grad_(True)
        w.model(x)[:, w.target].sum().backward()
    w.model.zero_grad(set_to_none=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.bench tcav", description=__doc__)
    parser.add_argument("--model", default="smallcnn", choices=["smallcnn", "resnet18"])
    parser.add_argument("--runs", type=int, default=10, help="random runs R (default 10)")
    parser.add_argument("--set-size", type=int, default=50)
    parser.add_argument("--inputs", type=int, default=100, help="class inputs (default 100)")
    parser.add_argument("--size", type=int, default=32, help="resnet18 input size (default 32)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the benchmark model")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    logging.getLogger("audit.concepts").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.manual_seed(0)
    w = build_workload(args.model, runs=args.runs, set_size=args.set_size, n_inputs=args.inputs, size=args.size,
                       epochs=args.epochs)
    n_examples = len(w.concept) + sum(len(r) for r in w.randoms)
    print(f"model: {w.description}")
    print(f"work: layers {w.layers}, target {w.target}, R={args.runs} concept runs + {args.runs} random-vs-random "
          f"runs, {n_examples} concept/random examples, {len(w.inputs)} class inputs, "
          f"torch threads {torch.get_num_threads()}, device cpu")
    print("classifier: both sklearn SGDClassifier(hinge, alpha=0.01, max_iter=1000, tol=1e-3), 33% held out "
          "(captum's DefaultClassifier; ours fits the same estimator in span coordinates)")

    times: dict[str, list[float]] = {"ours": [], "captum": [], "floor": []}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds + 1):
            random.seed(r)  # captum's split uses the stdlib RNG
            order = ["ours", "captum", "floor"] if r % 2 == 0 else ["captum", "floor", "ours"]
            for who in order:
                t0 = time.perf_counter()
                if who == "ours":
                    results["ours"] = run_ours(w)
                elif who == "captum":
                    results["captum"] = run_captum(w, tmp, r)
                else:
                    run_floor(w)
                if r > 0:  # round 0 warms caches and imports
                    times[who].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of {args.rounds} rounds: ours {med['ours']:.3f} s | captum {med['captum']:.3f} s | "
          f"floor {med['floor']:.3f} s")
    print(f"speed-up ours vs captum: {med['captum'] / med['ours']:.2f}x (target >= 4x)")
    print(f"ours / floor: {med['ours'] / med['floor']:.2f}")
    agree = True
    for layer in w.layers:
        oc, on, op = results["ours"][layer]
        cc, cn, cp = results["captum"][layer]
        same_side = (np.mean(oc) - np.mean(on)) * (np.mean(cc) - np.mean(cn)) > 0
        agree &= bool(same_side)
        print(f"{layer}: concept score ours {np.mean(oc):.3f} / captum {np.mean(cc):.3f}; random-vs-random "
              f"ours {np.mean(on):.3f} / captum {np.mean(cn):.3f}; p ours {op:.2g} / captum {cp:.2g}; "
              f"concept vs null on the same side: {same_side}")
    print(f"scores agree in sign/trend: {agree}")
    return 0 if agree else 1
