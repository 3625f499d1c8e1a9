"""CLI command ``bias``: group metrics with bootstrap confidence intervals (stored like the app's)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from audit.cli_ext.common import emit, shell_operator, split_names, submit_background, version_command


def cmd_bias(args: argparse.Namespace) -> int:
    # deferred: every command builds the parser, and the services load torch and the engine
    from audit.services.analyses.fairness.service import run_bias_audit
    from storage.artifacts import ArtifactStore
    from storage.db import migrate

    migrate()
    csv_bytes = open(args.csv, "rb").read() if args.csv else None
    if args.background:
        return submit_background("bias", {
            "family": args.family, "version": args.version, "dataset": args.dataset,
            "attributes": split_names(args.attributes), "n_boot": args.n_boot, "positive_label": args.positive_label,
            "csv_sha256": ArtifactStore().put_bytes(csv_bytes) if csv_bytes is not None else None,
            "explanation_method": args.explanation_method, "seed": args.seed})
    audit = run_bias_audit(args.family, args.version, dataset=args.dataset, attributes=split_names(args.attributes),
                           n_boot=args.n_boot, positive_label=args.positive_label, csv_bytes=csv_bytes,
                           explanation_method=args.explanation_method, seed=args.seed, actor=shell_operator())
    if args.json:
        emit(json.dumps({"id": audit.result_id, **audit.to_summary()}, indent=2, default=str))
        return 0
    emit(f"{audit.n} samples by {', '.join(audit.attributes)}; worst accuracy: {audit.worst_group.get('accuracy')}")
    for g in audit.by_group:
        acc = g.rate("accuracy")
        lo, hi = g.intervals.get("accuracy", (None, None))
        emit(f"  {g.group:<24} n={g.count:<5} accuracy {'n/a' if acc is None else f'{acc:.3f}'}"
             + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""))
    d = audit.explanation_disparity
    if d is not None:
        emit(f"  explanation disparity ({d.method}, {d.kind}): difference "
             f"{'n/a' if d.difference is None else f'{d.difference:.3f}'}; {d.note}")
    for flag in audit.flags:
        emit(f"  note: {flag}")
    return 0


def add_commands(sub: Any) -> None:
    sp = version_command(sub, "bias", help="group metrics with bootstrap confidence intervals")
    sp.add_argument("--dataset", default="digits-reference")
    sp.add_argument("--attributes", default="", help="comma-separated group attributes of the dataset")
    sp.add_argument("--csv", help="CSV with sample_id and group columns instead of the stored groups")
    sp.add_argument("--positive-label", type=int)
    sp.add_argument("--n-boot", type=int, default=200)
    sp.add_argument("--explanation-method", help="also measure explanation disparity with this method, e.g. gradcam")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--background", action="store_true", help='queue as a job for the worker; prints {"job": ID}')
    sp.set_defaults(fn=cmd_bias)
