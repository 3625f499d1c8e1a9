"""Benchmark on a CUDA device, short enough for a few minutes of lent GPU time.

``python -m audit.bench gpu [--rounds 3] [--json]`` prints, side by side in one process and alternating:
integrated gradients (50 steps) on ResNet-50 at 224 px as a multiple of its forward+backward floor, against
Captum's IntegratedGradients; occlusion on crops against full forwards and Captum; TCAV with significance against Captum's TCAV on the same sets; text IG against
Captum's LayerIntegratedGradients on texts of mixed length. Without CUDA it says so and exits 0 (skipped).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any, Callable

import torch


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m audit.bench gpu", description=__doc__)
    p.add_argument("--rounds", type=int, default=3, help="alternating timed rounds after one warm-up")
    p.add_argument("--images", type=int, default=8, help="ResNet-50 inputs for IG (default 8)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--size", type=int, default=224, help="occlusion's image side (default 224)")
    p.add_argument("--parts", default="ig,occlusion,tcav,text", help="comma list of ig, occlusion, tcav, text")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _cuda_timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    _sync()
    t0 = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - t0, out


def _alternate(sides: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, float]]:
    for fn in sides.values():  # warm-up: cuDNN autotuning and allocator growth are not timed
        _cuda_timed(fn)
    times: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(_cuda_timed(sides[name])[0])
    return {k: {"min": min(v), "median": statistics.median(v), "max": max(v)} for k, v in times.items()}


def bench_ig(args: argparse.Namespace) -> dict[str, Any]:
    import torchvision
    from captum.attr import IntegratedGradients

    from audit.attribution import attribute

    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = torchvision.models.resnet50(num_classes=1000).eval().to(dev)
    x = torch.randn(args.images, 3, 224, 224, device=dev)
    t = torch.arange(args.images, device=dev) % 1000
    steps = args.steps

    def ours() -> torch.Tensor:
        return attribute(model, x, t, methods=["integrated_gradients"], ig_steps=steps)["integrated_gradients"]

    def captum() -> torch.Tensor:
        return IntegratedGradients(model).attribute(x, target=t, n_steps=steps, method="gausslegendre",
                                                    internal_batch_size=steps)

    def floor() -> None:  # the passes IG cannot avoid: steps forward+backward passes of every input
        for i in range(args.images):
            xi = x[i:i + 1].expand(steps, -1, -1, -1).clone().requires_grad_(True)
            out = model(xi)[:, int(t[i])].sum()
            torch.autograd.grad(out, xi)

    stats = _alternate({"ours": ours, "captum": captum, "floor": floor}, args.rounds)
    a, b = ours(), captum()
    rel = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
    med = {k: v["median"] for k, v in stats.items()}
    return {"what": f"IG-{steps}, ResNet-50 224 px, {args.images} images", "seconds": stats,
            "captum_over_ours": med["captum"] / med["ours"], "ours_over_floor": med["ours"] / med["floor"],
            "max_rel_diff_vs_captum": rel}


def bench_occlusion(args: argparse.Namespace, device: str = "cuda") -> dict[str, Any]:
    """Occlusion 16/16 on ResNet-50: the crop path (``incremental=True``) against full forwards of the
    occluded images and against Captum, to decide the GPU default of ``incremental``."""
    import torchvision
    from captum.attr import Occlusion

    from audit.attribution import attribute

    torch.manual_seed(0)
    dev = torch.device(device)
    model = torchvision.models.resnet50(num_classes=1000).eval().to(dev)
    x = torch.randn(args.images, 3, args.size, args.size, device=dev)
    t = torch.arange(args.images, device=dev) % 1000

    def ours(incremental: bool) -> Callable[[], torch.Tensor]:
        return lambda: attribute(model, x, t, methods=["occlusion"], occlusion_window=16, occlusion_stride=16,
                                 optimize=True, incremental=incremental)["occlusion"]

    def captum() -> torch.Tensor:
        return Occlusion(model).attribute(x, sliding_window_shapes=(3, 16, 16), strides=(3, 16, 16), target=t,
                                          perturbations_per_eval=64)

    stats = _alternate({"crops": ours(True), "full": ours(False), "captum": captum}, args.rounds)
    a, b = ours(True)(), ours(False)()
    med = {k: v["median"] for k, v in stats.items()}
    return {"what": f"occlusion 16/16, ResNet-50 {args.size} px, {args.images} images", "seconds": stats,
            "full_over_crops": med["full"] / med["crops"], "captum_over_crops": med["captum"] / med["crops"],
            "captum_over_full": med["captum"] / med["full"],
            "max_rel_diff_crops_vs_full": float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))}


def bench_tcav(args: argparse.Namespace) -> dict[str, Any]:
    from audit.bench import tcav as tb

    w = tb.build_workload("resnet18", runs=10, set_size=50, n_inputs=100, size=64, epochs=1)
    dev = torch.device("cuda")
    w.model.to(dev)
    w.concept, w.inputs = w.concept.to(dev), w.inputs.to(dev)
    w.randoms = [r.to(dev) for r in w.randoms]
    root = tempfile.mkdtemp(prefix="tcav-gpu-")
    counter = iter(range(10_000))
    stats = _alternate({"ours": lambda: tb.run_ours(w), "captum": lambda: tb.run_captum(w, root, next(counter)),
                        "floor": lambda: tb.run_floor(w)}, args.rounds)
    med = {k: v["median"] for k, v in stats.items()}
    return {"what": w.description + " (on CUDA)", "seconds": stats, "captum_over_ours": med["captum"] / med["ours"],
            "ours_over_floor": med["ours"] / med["floor"]}


def bench_text(args: argparse.Namespace) -> dict[str, Any]:
    from audit.bench import text as tb

    ns = tb._parse(["--device", "cuda", "--rounds", str(args.rounds), "--steps", str(args.steps)])
    model, tokenizer, device = tb.load_model(ns.model_dir, ns.seed, ns.device, ns.tiny)
    texts = tb.mixed_texts(tokenizer, ns.mixed, ns.min_tokens, ns.max_tokens, ns.seed)
    return tb.run_set("mixed lengths on CUDA", model, tokenizer, texts, ns)


PARTS = {"ig": bench_ig, "occlusion": bench_occlusion, "tcav": bench_tcav, "text": bench_text}


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: the GPU benchmark is skipped (run it where the device tool lends a GPU)")
        return 0
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    for name in parts:
        out[name] = PARTS[name](args)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"device: {out['device']} (torch {out['torch']})")
    for name in parts:
        res = out[name]
        if name == "text":
            print(f"text IG: {json.dumps(res, default=str)[:600]}")
            continue
        if name == "occlusion":
            print(f"{res['what']}: full forwards/crops {res['full_over_crops']:.2f}x, Captum/crops "
                  f"{res['captum_over_crops']:.2f}x, Captum/full {res['captum_over_full']:.2f}x, "
                  f"max rel diff crops vs full {res['max_rel_diff_crops_vs_full']:.1e}")
        else:
            print(f"{res['what']}: Captum/ours {res['captum_over_ours']:.2f}x, ours/floor {res['ours_over_floor']:.2f}")
        for side, s in res["seconds"].items():
            print(f"  {side:<8} min {s['min']:.3f}  median {s['median']:.3f}  max {s['max']:.3f} s")
    return 0
