"""``python -m audit.bench audit --case pretrained``: the full audit of a model nobody here trained.

EfficientNet-Lite0 (ImageNet-1k, 1000 classes, 224 px; ``audit.bench.pretrained``) is registered by import
path with its declared preprocessing (shorter side 256, centre crop 224) into an empty AUDIT_HOME, the 60
real photographs of ``audit.bench.photos`` (mixed sizes, labelled by class name, groups ``source`` and
``orientation``) are imported, and the full audit runs with the default ``FullAuditOptions``. Printed: wall
time, CPU time and peak RSS of the three against the 120 s target, the seconds of each step (register,
import, then the full audit's own steps), the accuracy the report measured, and the explanations step
against its floor. Writing the photographs (about a second) is not counted.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_S = 120.0
OWN_STEPS = ("register", "import")  # the steps this case adds before the full audit's own
_ACCURACY = re.compile(r"^accuracy ([0-9.]+) on (\S+)$")


def performance(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's Performance finding and the accuracy it states (None when it measured none)."""
    found = [f for f in findings if f.get("area") == "Performance"]
    if len(found) != 1:
        return {"accuracy": None, "detail": f"{len(found)} Performance findings"}
    detail = str(found[0].get("detail") or "")
    m = _ACCURACY.match(detail)
    return {"accuracy": float(m.group(1)) if m else None, "dataset": m.group(2) if m else None,
            "status": found[0].get("status"), "detail": detail}


def prepare(home: Path) -> tuple[Any, float]:
    """An empty, migrated AUDIT_HOME at ``home / "home"`` and the photographs under ``home / "photos"``;
    returns the photo set and the seconds writing it took."""
    from audit.bench.photos import build_photos
    from audit.bench.pretrained import class_names

    os.environ["AUDIT_HOME"] = str(home / "home")
    os.environ.pop("AUDIT_DB_URL", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from storage.db import migrate

    migrate()
    t0 = time.perf_counter()
    photos = build_photos(home / "photos", class_names())
    return photos, time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
    from audit.bench.audit import explanations_summary
    from audit.bench import pretrained as M

    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-pretrained-"))
    try:
        photos, photos_s = prepare(tmp)
        import torch

        from audit.services.analyses.full_audit.service import FullAuditOptions, run_full_audit

        opts = FullAuditOptions()
        steps: dict[str, float] = {}
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        M.register()
        steps["register"] = round(time.perf_counter() - t0, 3)
        t1 = time.perf_counter()
        imported = M.import_photos(photos)
        steps["import"] = round(time.perf_counter() - t1, 3)
        audit = run_full_audit(M.FAMILY, M.VERSION, dataset=M.DATASET, options=opts,
                               progress=lambda f, m: print(f"\r[audit] {100 * f:3.0f}% {m[:60]:<60}", end="",
                                                           file=sys.stderr, flush=True))
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        print(file=sys.stderr)
        steps.update(audit.steps)
        return {
            "case": "pretrained", "family": M.FAMILY, "version": M.VERSION, "dataset": M.DATASET,
            "model": f"{M.ARCH}({', '.join(f'{k}={v!r}' for k, v in M.ARCH_KWARGS.items())}), {M.N_CLASSES} "
                     f"classes, shorter side {M.RESIZE} then centre crop {M.CROP[0]}x{M.CROP[1]}",
            "samples": int(imported["samples"]), "threads": torch.get_num_threads(), "photos_build_s": photos_s,
            "wall_s": wall, "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
            "peak_rss_mb": r1.ru_maxrss / 1024, "target_s": TARGET_S, "wall_over_target": wall / TARGET_S,
            "steps": steps, "skipped": audit.skipped, "sections": dict(audit.sections),
            "performance": performance(audit.findings), "report_sha256": audit.report_sha256,
            "explanations": explanations_summary(M.FAMILY, M.VERSION, opts, audit.steps),
            "home": str(tmp) if args.keep else None,
        }
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def print_result(res: dict[str, Any]) -> None:
    from audit.bench.audit import print_explanations, print_steps

    print(f"full audit of {res['family']} {res['version']} ({res['model']}) on {res['samples']} photographs "
          f"from an empty store ({res['threads']} threads; photographs written in {res['photos_build_s']:.1f} s, "
          "not counted)")
    print_steps(res)
    perf = res["performance"]
    acc = "none measured" if perf["accuracy"] is None else f"{perf['accuracy']:.4f}"
    print(f"report's accuracy on {res['dataset']}: {acc} ({perf['detail']})")
    print_explanations(res["explanations"])
    if res["home"]:
        print(f"AUDIT_HOME kept at {res['home']}/home")
