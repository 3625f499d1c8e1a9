"""Benchmark: the attribution engine vs Captum / pytorch-grad-cam on the 7-method suite.

``python -m audit.bench attribution [--images N] [--repeats R] [--size S] [--json] [--deletion]``
times ours, the peers and the floor (the unavoidable passes) in alternating rounds, in one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

SUITE = ("saliency", "grad_x_input", "gradcam", "gradcam_pp", "integrated_gradients", "smoothgrad", "occlusion")
GRADIENT_FAMILY = ("saliency", "grad_x_input", "gradcam", "gradcam_pp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel")


@dataclass
class Config:
    images: int
    repeats: int
    size: int
    ig_steps: int
    sg_samples: int
    window: int
    layer: str
    arch: str
    seed: int
    batch: int
    warmup: int


@dataclass
class Round:
    """Wall-clock and process CPU seconds per method (and in total) for one contestant."""

    times: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    cpu_total: float = 0.0


def load_images(n: int, size: int, channels: int = 3) -> torch.Tensor:
    """scikit-image's bundled photos, centre-cropped, resized and ImageNet-normalised (cycled);
    one channel gives their normalised grey levels."""
    import skimage.data

    out = []
    for i in range(n):
        img = getattr(skimage.data, SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)])()
        t = torch.as_tensor(img[..., :3]).permute(2, 0, 1).float() / 255.0
        h, w = t.shape[1:]
        s = min(h, w)
        t = t[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        t = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        if i >= len(SAMPLE_IMAGES):
            t = t.flip(-1)  # a different view of a repeated photo
        out.append(t)
    x = torch.stack(out)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.mean(dim=1, keepdim=True) if channels == 1 else x


ARCHS = {"resnet18": ("layer4", 3), "small_cnn": ("features.block3", 1)}


def build_model(seed: int, arch: str = "resnet18") -> nn.Module:
    """Seeded random weights; BatchNorm statistics are randomised too, since at their init values
    the network is positively homogeneous and IG would equal Grad x Input."""
    import torchvision

    from audit.models.zoo import SmallCNN

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10) if arch == "resnet18" else SmallCNN(1, 10, 16)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    return model.eval()


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


# ---- the three contestants ---------------------------------------------------------------

def run_ours(model: nn.Module, x: torch.Tensor, t: torch.Tensor, cfg: Config) -> tuple[Round, dict[str, Any]]:
    from audit.attribution import explain

    total, cpu_total, res = _timed(
        lambda: explain(
            model, x, t, list(SUITE), cfg.layer, ig_steps=cfg.ig_steps, sg_samples=cfg.sg_samples,
            occlusion_window=cfg.window, occlusion_stride=cfg.window, batch_size=cfg.batch, seed=cfg.seed,
        )
    )
    rnd = Round({m: res.info[m].time_s for m in SUITE}, {m: res.info[m].cpu_s for m in SUITE}, total, cpu_total)
    extra = {"maps": res.maps, "ig_delta": res.info["integrated_gradients"].completeness_delta,
             "optimized": res.optimized}
    return rnd, extra


def run_peers(model: nn.Module, x: torch.Tensor, t: torch.Tensor, cfg: Config) -> tuple[Round, dict[str, Any]]:
    from captum.attr import (
        InputXGradient,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = model.get_submodule(cfg.layer)
    n = x.shape[0]
    maps: dict[str, Any] = {}
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    targets = [ClassifierOutputTarget(int(c)) for c in t]

    def grad_cam(cls: type) -> Any:
        with cls(model=model, target_layers=[layer]) as cam:
            return torch.as_tensor(cam(input_tensor=x, targets=targets))

    stdev = 0.15 * float(x.max() - x.min())
    runs: dict[str, Callable[[], Any]] = {
        "saliency": lambda: Saliency(model).attribute(x.clone(), target=t, abs=True),
        "grad_x_input": lambda: InputXGradient(model).attribute(x.clone(), target=t),
        "gradcam": lambda: grad_cam(GradCAM),
        "gradcam_pp": lambda: grad_cam(GradCAMPlusPlus),
        "integrated_gradients": lambda: IntegratedGradients(model).attribute(
            x.clone(), target=t, n_steps=cfg.ig_steps, method="gausslegendre",
            internal_batch_size=cfg.batch, return_convergence_delta=True,
        ),
        "smoothgrad": lambda: NoiseTunnel(Saliency(model)).attribute(
            x.clone(), nt_type="smoothgrad", nt_samples=cfg.sg_samples, stdevs=stdev, target=t,
            abs=False, nt_samples_batch_size=max(1, cfg.batch // n),
        ),
        "occlusion": lambda: Occlusion(model).attribute(
            x.clone(), sliding_window_shapes=(x.shape[1], cfg.window, cfg.window),
            strides=(x.shape[1], cfg.window, cfg.window),
            baselines=0.0, target=t, perturbations_per_eval=max(1, cfg.batch // n),
        ),
        "gradcam_captum": lambda: LayerAttribution.interpolate(
            LayerGradCam(model, layer).attribute(x.clone(), target=t, relu_attributions=True),
            tuple(x.shape[-2:]), interpolate_mode="bilinear",
        )[:, 0],
    }
    extra: dict[str, Any] = {}
    for name, fn in runs.items():
        times[name], cpu[name], out = _timed(fn)
        if name == "integrated_gradients":
            out, extra["ig_delta"] = out
        maps[name] = out.detach()
    extra["maps"] = maps
    return Round(times, cpu, sum(times[m] for m in SUITE), sum(cpu[m] for m in SUITE)), extra


def run_floor(model: nn.Module, x: torch.Tensor, t: torch.Tensor, cfg: Config) -> Round:
    """The passes no implementation can skip, as bare torch loops with the same batch size."""
    n = x.shape[0]

    def fwd_bwd(count: int) -> None:
        for s in range(0, count, cfg.batch):
            m = min(cfg.batch, count - s)
            xi = x.repeat((m + n - 1) // n, 1, 1, 1)[:m].detach().requires_grad_(True)
            ti = t.repeat((m + n - 1) // n)[:m]
            out = model(xi).gather(1, ti.view(-1, 1)).sum()
            torch.autograd.grad(out, [xi])

    def forwards(count: int) -> None:
        with torch.no_grad():
            for s in range(0, count, cfg.batch):
                m = min(cfg.batch, count - s)
                model(x.repeat((m + n - 1) // n, 1, 1, 1)[:m])

    windows = (-(-(cfg.size - cfg.window) // cfg.window) + 1) ** 2
    runs = {
        "gradient_family": _timed(lambda: fwd_bwd(n)),
        "integrated_gradients": _timed(lambda: (fwd_bwd(n * cfg.ig_steps), forwards(2 * n))),
        "smoothgrad": _timed(lambda: fwd_bwd(n * cfg.sg_samples)),
        "occlusion": _timed(lambda: forwards(n * (windows + 1))),
    }
    times = {k: v[0] for k, v in runs.items()}
    cpu = {k: v[1] for k, v in runs.items()}
    return Round(times, cpu, sum(times.values()), sum(cpu.values()))


# ---- reporting ---------------------------------------------------------------------------

def _rank_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    from audit.attribution import spearman

    a = a.float().reshape(a.shape[0], -1)
    b = torch.as_tensor(b).float().reshape(b.shape[0], -1)
    return float(spearman(a, b).mean())


def benchmark(cfg: Config) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.seed, cfg.arch)
    x = load_images(cfg.images, cfg.size, ARCHS[cfg.arch][1])
    with torch.no_grad():
        t = model(x).argmax(1)
    ours_rounds: list[Round] = []
    peer_rounds: list[Round] = []
    floor_rounds: list[Round] = []
    ours_extra: dict[str, Any] = {}
    peer_extra: dict[str, Any] = {}
    for r in range(cfg.warmup + cfg.repeats):
        order = ["ours", "peers", "floor"]
        order = order[r % 3 :] + order[: r % 3]  # rotate so no contestant always runs first
        for who in order:
            if who == "ours":
                rnd, ours_extra = run_ours(model, x, t, cfg)
                if r >= cfg.warmup:
                    ours_rounds.append(rnd)
            elif who == "peers":
                rnd, peer_extra = run_peers(model, x, t, cfg)
                if r >= cfg.warmup:
                    peer_rounds.append(rnd)
            else:
                rnd = run_floor(model, x, t, cfg)
                if r >= cfg.warmup:
                    floor_rounds.append(rnd)

    def stat(rounds: list[Round], key: str | None = None, *, cpu: bool = False, how=min) -> float:
        if key is None:
            return how(rd.cpu_total if cpu else rd.total for rd in rounds)
        return how((rd.cpu if cpu else rd.times)[key] for rd in rounds)

    floor_of = {m: "gradient_family" for m in GRADIENT_FAMILY}
    floor_of.update({m: m for m in ("integrated_gradients", "smoothgrad", "occlusion")})
    methods: dict[str, Any] = {}
    for m in SUITE:
        ours_s, peer_s = stat(ours_rounds, m), stat(peer_rounds, m)
        ours_cpu, peer_cpu = stat(ours_rounds, m, cpu=True), stat(peer_rounds, m, cpu=True)
        methods[m] = {
            "ours_s": ours_s,
            "peer_s": peer_s,
            "speedup": peer_s / ours_s,
            "ours_median_s": stat(ours_rounds, m, how=statistics.median),
            "peer_median_s": stat(peer_rounds, m, how=statistics.median),
            "ours_cpu_s": ours_cpu,
            "peer_cpu_s": peer_cpu,
            "cpu_speedup": peer_cpu / ours_cpu,
            "rank_corr": _rank_corr(ours_extra["maps"][m], peer_extra["maps"][m]),
            "floor_key": floor_of[m],
        }
    floor = {k: stat(floor_rounds, k) for k in floor_rounds[0].times}
    family_ours = sum(methods[m]["ours_s"] for m in GRADIENT_FAMILY)
    ours_total, peer_total, floor_total = stat(ours_rounds), stat(peer_rounds), stat(floor_rounds)
    return {
        "config": cfg.__dict__,
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "statistic": "min over rounds (least disturbed by other load); medians and CPU seconds alongside",
        "optimized": ours_extra["optimized"],
        "methods": methods,
        "gradcam_captum_s": stat(peer_rounds, "gradcam_captum"),
        "gradcam_captum_rank_corr": _rank_corr(ours_extra["maps"]["gradcam"], peer_extra["maps"]["gradcam_captum"]),
        "floor": floor,
        "ours_over_floor": {
            "gradient_family": family_ours / floor["gradient_family"],
            **{m: methods[m]["ours_s"] / floor[m] for m in ("integrated_gradients", "smoothgrad", "occlusion")},
        },
        "totals": {
            "ours_s": ours_total,
            "peer_s": peer_total,
            "floor_s": floor_total,
            "speedup": peer_total / ours_total,
            "ours_median_s": stat(ours_rounds, how=statistics.median),
            "peer_median_s": stat(peer_rounds, how=statistics.median),
            "median_speedup": stat(peer_rounds, how=statistics.median) / stat(ours_rounds, how=statistics.median),
            "ours_cpu_s": stat(ours_rounds, cpu=True),
            "peer_cpu_s": stat(peer_rounds, cpu=True),
            "cpu_speedup": stat(peer_rounds, cpu=True) / stat(ours_rounds, cpu=True),
            "ours_over_floor": ours_total / floor_total,
        },
        "ig_completeness_mean_abs": {
            "ours": float(ours_extra["ig_delta"].abs().mean()),
            "captum": float(peer_extra["ig_delta"].abs().mean()),
        },
        "rounds": cfg.repeats,
    }


def print_table(res: dict[str, Any]) -> None:
    cfg = res["config"]
    print(
        f"{cfg['arch']} (seeded, untrained) on {cfg['images']} x {cfg['size']}x{cfg['size']} | "
        f"IG {cfg['ig_steps']} steps, SmoothGrad {cfg['sg_samples']} samples, occlusion {cfg['window']}px | "
        f"batch {cfg['batch']} | layer {cfg['layer']} | {res['device']}, {res['threads']} threads | "
        f"min of {res['rounds']} alternating rounds"
    )
    print(f"engine: optimised copy {res['optimized']}")
    head = f"{'method':<22}{'ours s':>9}{'peer s':>9}{'peer/ours':>11}{'cpu ratio':>11}{'rank corr':>11}  peer"
    print(head)
    print("-" * len(head))
    peers = {
        "saliency": "captum Saliency", "grad_x_input": "captum InputXGradient",
        "gradcam": "pytorch_grad_cam GradCAM", "gradcam_pp": "pytorch_grad_cam GradCAMPlusPlus",
        "integrated_gradients": "captum IntegratedGradients", "smoothgrad": "captum NoiseTunnel(Saliency)",
        "occlusion": "captum Occlusion",
    }
    for m, row in res["methods"].items():
        print(f"{m:<22}{row['ours_s']:>9.3f}{row['peer_s']:>9.3f}{row['speedup']:>10.2f}x"
              f"{row['cpu_speedup']:>10.2f}x{row['rank_corr']:>11.3f}  {peers[m]}")
    tot = res["totals"]
    print("-" * len(head))
    print(f"{'total (7 methods)':<22}{tot['ours_s']:>9.3f}{tot['peer_s']:>9.3f}{tot['speedup']:>10.2f}x"
          f"{tot['cpu_speedup']:>10.2f}x")
    print(f"(medians: ours {tot['ours_median_s']:.3f}s, peers {tot['peer_median_s']:.3f}s, "
          f"{tot['median_speedup']:.2f}x; rank corr of smoothgrad reflects different noise draws)")
    print(
        f"(captum LayerGradCam for gradcam: {res['gradcam_captum_s']:.3f}s, "
        f"rank corr {res['gradcam_captum_rank_corr']:.3f})"
    )
    print("ratio to floor (ours / unavoidable passes as bare torch loops on the unmodified model; occlusion's "
          "floor is full forwards, which its crops avoid):")
    for k, v in res["ours_over_floor"].items():
        print(f"  {k:<22}{v:>6.2f}x   floor {res['floor'][k]:.3f}s")
    print(f"  {'suite total':<22}{tot['ours_over_floor']:>6.2f}x   floor {tot['floor_s']:.3f}s")
    ig = res["ig_completeness_mean_abs"]
    print(f"IG completeness |sum(attr) - (f(x) - f(0))| mean: ours {ig['ours']:.2e}, captum {ig['captum']:.2e}")


# ---- deletion study ----------------------------------------------------------------------

DELETION_METHODS = ("saliency", "grad_x_input", "smoothgrad", "integrated_gradients", "gradcam", "gradcam_pp", "occlusion")


def train_digits_model(seed: int, epochs: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    """A SmallCNN trained on scikit-learn's digits upscaled to 32x32 (the deletion study needs a
    trained model; no weights are downloaded)."""
    from sklearn.datasets import load_digits

    from audit.models.zoo import SmallCNN

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    y = torch.as_tensor(digits.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=gen)
    train, test = perm[:1400], perm[1400:]
    torch.manual_seed(seed)
    model = SmallCNN(in_channels=1, num_classes=10, width=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        order = train[torch.randperm(len(train), generator=gen)]
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x[test]).argmax(1) == y[test]).float().mean())
    return model, x[test], y[test], acc


def deletion_study(images: int, seed: int, epochs: int) -> dict[str, Any]:
    from audit.attribution import attribute
    from audit.quality import deletion_curve

    model, xs, ys, acc = train_digits_model(seed, epochs)
    x = xs[:images]
    with torch.no_grad():
        t = model(x).argmax(1)
    maps = attribute(model, x, t, list(DELETION_METHODS), ig_steps=32, sg_samples=16,
                     occlusion_window=4, occlusion_stride=2, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    maps["random"] = torch.rand(x.shape, generator=gen)
    rows = {}
    for name, a in maps.items():
        res = deletion_curve(model, x, t, a, steps=32, seed=seed)
        sem = float(res.auc.std() / max(1, len(res.auc)) ** 0.5)
        rows[name] = {"mean_auc": res.mean_auc, "sem": sem}
    return {"model": "SmallCNN trained on sklearn digits (32x32)", "test_accuracy": acc, "images": len(x),
            "deletion_baseline": "zeros", "steps": 32, "methods": rows}


def print_deletion(res: dict[str, Any]) -> None:
    print(f"deletion AUC (lower is better), {res['model']}, test accuracy {res['test_accuracy']:.3f}, "
          f"{res['images']} images, pixels set to {res['deletion_baseline']} in {res['steps']} steps")
    for name, row in sorted(res["methods"].items(), key=lambda kv: kv[1]["mean_auc"]):
        print(f"  {name:<22}{row['mean_auc']:.4f} +- {row['sem']:.4f}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m audit.bench attribution", description=__doc__)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--sg-samples", type=int, default=25)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--arch", choices=sorted(ARCHS), default="resnet18")
    p.add_argument("--layer", default=None, help="Grad-CAM layer (default: layer4 / features.block3)")
    p.add_argument("--batch", type=int, default=16, help="samples per evaluation, same for every contestant")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--deletion", action="store_true", help="also run the deletion-AUC study")
    p.add_argument("--deletion-images", type=int, default=64)
    p.add_argument("--deletion-epochs", type=int, default=8)
    p.add_argument("--skip-timing", action="store_true", help="only the deletion study")
    args = p.parse_args(argv)
    if args.images < 1 or args.repeats < 1 or args.size < args.window:
        print("--images and --repeats must be >= 1 and --size >= --window", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    out: dict[str, Any] = {}
    if not args.skip_timing:
        cfg = Config(args.images, args.repeats, args.size, args.ig_steps, args.sg_samples, args.window,
                     args.layer or ARCHS[args.arch][0], args.arch, args.seed, args.batch, args.warmup)
        out["timing"] = benchmark(cfg)
        if not args.json:
            print_table(out["timing"])
    if args.deletion or args.skip_timing:
        out["deletion"] = deletion_study(args.deletion_images, args.seed, args.deletion_epochs)
        if not args.json:
            print_deletion(out["deletion"])
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
