"""Benchmark: peak memory of Integrated Gradients with the internal batch sized from a memory budget.

``python -m audit.bench memory [--arch resnet50] [--size 224] [--steps 128] [--budget-mb 512]``: each case
runs in a child process; its peak RSS (getrusage ru_maxrss) is reported with the budget and as one
single batch of all path points, which is only run when its estimate fits under --max-single-mb.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m audit.bench memory", description=__doc__)
    p.add_argument("--arch", default="resnet50", help="torchvision architecture, random weights (default resnet50)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=128, help="IG steps (default 128)")
    p.add_argument("--budget-mb", type=float, default=512, help="AUDIT_MEMORY_MB of the budgeted run (default 512)")
    p.add_argument("--max-single-mb", type=float, default=3000,
                   help="run the single batch only when its estimated activations fit under this (default 3000)")
    p.add_argument("--child", choices=("budget", "single"), default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _child(args: argparse.Namespace) -> int:
    import torch
    import torchvision

    from audit.attribution import attribute
    from audit.attribution.context import ExplainContext
    from audit.attribution.options import AttributionOptions

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)(num_classes=10).eval()
    x = torch.rand(1, 3, args.size, args.size)
    t = torch.tensor([0])
    extra = {} if args.child == "budget" else {"batch_size": args.steps}
    ctx = ExplainContext(model=model, inputs=x, targets=t, options=AttributionOptions.from_kwargs(**extra))
    per_sample = ctx.sample_bytes()
    t0 = time.perf_counter()
    maps = attribute(model, x, t, methods=["integrated_gradients"], ig_steps=args.steps, optimize=False, **extra)
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "chunk": ctx.chunk(with_grad=True), "seconds": seconds, "sample_mb": per_sample / 2**20,
        "finite": bool(torch.isfinite(maps["integrated_gradients"]).all()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    return 0


def _run_child(args: argparse.Namespace, which: str) -> dict:
    env = dict(os.environ)
    if which == "budget":
        env["AUDIT_MEMORY_MB"] = str(args.budget_mb)
    cmd = [sys.executable, "-m", "audit.bench", "memory", "--child", which, "--arch", args.arch,
           "--size", str(args.size), "--steps", str(args.steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the {which} run failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if args.size < 32 or args.steps < 1 or args.budget_mb <= 0:
        print("--size must be >= 32, --steps >= 1 and --budget-mb > 0", file=sys.stderr)
        return 2
    if args.child:
        return _child(args)
    budget = _run_child(args, "budget")
    print(f"case: {args.arch} (random weights) at {args.size} px, IG {args.steps} steps, one image, CPU")
    print(f"budgeted (AUDIT_MEMORY_MB={args.budget_mb:g}): chunk {budget['chunk']} path points, peak RSS "
          f"{budget['peak_rss_mb']:.0f} MB, {budget['seconds']:.1f} s")
    # the engine's estimate: forward activations of one sample, three times with the backward
    estimate = budget["sample_mb"] * 3 * args.steps
    if estimate <= args.max_single_mb:
        single = _run_child(args, "single")
        print(f"single batch ({args.steps} path points): peak RSS {single['peak_rss_mb']:.0f} MB, "
              f"{single['seconds']:.1f} s")
        print(f"peak RSS ratio single/budgeted: {single['peak_rss_mb'] / budget['peak_rss_mb']:.2f}x")
    else:
        print(f"single batch ({args.steps} path points): not run, estimated activations {estimate:.0f} MB "
              f"exceed --max-single-mb {args.max_single_mb:g}")
        print(f"peak RSS ratio single (estimate)/budgeted: {estimate / budget['peak_rss_mb']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
