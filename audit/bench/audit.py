"""Benchmark: one full audit from an empty store, its steps, and reference-set explanation throughput.

``python -m audit.bench audit [--home DEMO_HOME] [--family digits-resnet18] [--version 2]`` (case ``demo``,
the default): the demo's image families are built into a fresh AUDIT_HOME (or a prebuilt demo home is
copied there, and refused if it already holds stored results), the full audit runs once and its wall time,
CPU time, peak RSS and the seconds of each step are printed against the 60 s target. The explanations step
is then set against its floor: the forward and backward passes its methods declare
(``audit.attribution.costs``), timed as bare torch passes on the same model and batch size.

``python -m audit.bench audit --case pretrained``: a pretrained ImageNet classifier nobody here trained,
registered by import path and audited on 60 real photographs, against a 120 s target
(``audit.bench.audit_pretrained``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_S = 60.0
RESULT_TABLES = ("explanations", "analysis_results", "reports", "runs")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m audit.bench audit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=("demo", "pretrained"), default="demo",
                   help="demo: digits-resnet18 from the demo build (60 s target); pretrained: EfficientNet-Lite0 "
                        "by import path on 60 photographs (120 s target; the demo options below do not apply)")
    p.add_argument("--home", help="a prebuilt demo AUDIT_HOME to copy (default: build the image demo afresh)")
    p.add_argument("--family", default="digits-resnet18")
    p.add_argument("--version", default="2")
    p.add_argument("--dataset", default="digits-reference")
    p.add_argument("--concepts", default="watermark")
    p.add_argument("--keep", action="store_true", help="keep the temporary AUDIT_HOME and print its path")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.case == "pretrained" and args.home:
        p.error("--home applies to the demo case; the pretrained case always starts from an empty store")
    return args


def _stored_results() -> dict[str, int]:
    from sqlalchemy import text

    from storage.db import transaction

    with transaction() as s:
        return {t: int(s.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in RESULT_TABLES}


def _prepare_home(args: argparse.Namespace, home: Path) -> float:
    """Fill ``home`` with the demo's registry and reference sets only; returns the build seconds (0 if copied)."""
    os.environ["AUDIT_HOME"] = str(home)
    os.environ.pop("AUDIT_DB_URL", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from storage.db import migrate

    if args.home:
        src = Path(args.home)
        if not (src / "audit.db").is_file():
            raise SystemExit(f"--home {src}: no audit.db there; build one with AUDIT_HOME={src} python -m audit demo")
        shutil.copytree(src, home, dirs_exist_ok=True)
        migrate()
        stored = {k: v for k, v in _stored_results().items() if v}
        if stored:
            raise SystemExit(f"--home {src} already holds stored results {stored}: the benchmark starts from an "
                             "empty store; pass a freshly built demo home or none")
        return 0.0
    from audit.demo.build import build_demo

    migrate()
    t0 = time.perf_counter()
    build_demo(seed=0, text=False)
    return time.perf_counter() - t0


def _explanation_floor(family: str, version: str, methods: list[str], options: dict[str, Any],
                       n: int) -> dict[str, float]:
    """Seconds of the passes the explanations step cannot avoid for ``n`` samples, timed as bare torch."""
    import torch

    from audit.attribution.costs import method_costs, total_cost
    from audit.services.core.registry import load_handle

    handle = load_handle(family, version)
    model = handle.module
    spec = handle.input_spec
    shape = (spec.channels, spec.height, spec.width)
    cost = total_cost(method_costs(model, shape, methods=methods, batch=1, **options))
    batch = 16
    x = torch.randn(batch, *shape)
    t = torch.zeros(batch, dtype=torch.long)

    def timed(fn, repeats: int = 5) -> float:
        fn()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best / batch

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def forward_backward() -> None:
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        (g,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), xi)

    f = timed(forward)
    fb = timed(forward_backward)
    backward = max(fb - f, 0.0)
    per_sample = cost.forward_samples * f + cost.backward_samples * backward
    return {"forward_samples": cost.forward_samples, "backward_samples": cost.backward_samples,
            "floor_s": per_sample * n, "forward_s_per_sample": f, "backward_s_per_sample": backward}


def explanations_summary(family: str, version: str, opts: Any, steps: dict[str, float]) -> dict[str, Any]:
    """The full audit's explanations step (``steps``, run with ``opts``) set against its floor."""
    from audit.services.analyses.reports.service import FIGURE_METHODS, FIGURE_OPTIONS

    methods = list(opts.explain_methods or FIGURE_METHODS)
    options = dict(opts.explain_options if opts.explain_options is not None else FIGURE_OPTIONS)
    floor = _explanation_floor(family, version, methods, options, opts.explain_limit)
    explain_s = steps.get("explanations", float("nan"))
    return {"samples": opts.explain_limit, "methods": methods, "seconds": explain_s,
            "images_per_s": opts.explain_limit / explain_s if explain_s else None,
            "ours_over_floor": explain_s / floor["floor_s"] if floor["floor_s"] else None, **floor}


def run(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        build_s = _prepare_home(args, home)
        import torch

        from audit.services.analyses.full_audit.service import FullAuditOptions, run_full_audit

        opts = FullAuditOptions()
        concepts = [c for c in args.concepts.split(",") if c]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        audit = run_full_audit(args.family, args.version, dataset=args.dataset, concepts=concepts, options=opts,
                               progress=lambda f, m: print(f"\r[audit] {100 * f:3.0f}% {m[:60]:<60}", end="",
                                                           file=sys.stderr, flush=True))
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        print(file=sys.stderr)
        return {
            "family": args.family, "version": args.version, "dataset": args.dataset, "concepts": concepts,
            "threads": torch.get_num_threads(), "demo_build_s": build_s,
            "wall_s": wall, "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
            "peak_rss_mb": r1.ru_maxrss / 1024, "target_s": TARGET_S, "wall_over_target": wall / TARGET_S,
            "steps": audit.steps, "skipped": audit.skipped, "sections": dict(audit.sections),
            "report_sha256": audit.report_sha256,
            "explanations": explanations_summary(args.family, args.version, opts, audit.steps),
            "home": str(home) if args.keep else None,
        }
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def print_steps(res: dict[str, Any]) -> None:
    """Wall, CPU and peak RSS against the case's target, then each step's seconds and share of the wall."""
    print(f"  wall {res['wall_s']:.1f} s = {res['wall_over_target']:.2f} x the {res['target_s']:.0f} s target; "
          f"CPU {res['cpu_s']:.1f} s; peak RSS {res['peak_rss_mb']:.0f} MB")
    for step, sec in res["steps"].items():
        print(f"  {step:<16}{sec:>8.1f} s  {100 * sec / res['wall_s']:5.1f}%")
    for step, why in res["skipped"].items():
        print(f"  skipped {step}: {why}")


def print_explanations(ex: dict[str, Any]) -> None:
    rate = "n/a" if ex["images_per_s"] is None else f"{ex['images_per_s']:.2f}"
    ratio = "n/a" if ex["ours_over_floor"] is None else f"{ex['ours_over_floor']:.2f}"
    print(f"reference-set explanations: {ex['samples']} images, {', '.join(ex['methods'])}: "
          f"{rate} images/s; floor {ex['floor_s']:.2f} s ({ex['forward_samples']} forward + "
          f"{ex['backward_samples']} backward sample passes each); ours/floor {ratio}")


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.case == "pretrained":
        from audit.bench import audit_pretrained as case

        res = case.run(args)
    else:
        res = run(args)
    if args.json:
        print(json.dumps(res, indent=2, default=str))
        return 0
    if args.case == "pretrained":
        case.print_result(res)
        return 0
    print(f"full audit of {res['family']} {res['version']} on {res['dataset']} from an empty store "
          f"({res['threads']} threads; demo build {res['demo_build_s']:.1f} s, not counted)")
    print_steps(res)
    print_explanations(res["explanations"])
    if res["home"]:
        print(f"AUDIT_HOME kept at {res['home']}")
    return 0
