"""CLI command ``explain``: explain a reference set (resumable; stored maps are reused), or queue it as a job."""

from __future__ import annotations

import argparse
from typing import Any

from audit.cli_ext.common import emit, progress_printer, shell_operator, submit_background, version_command


def cmd_explain(args: argparse.Namespace) -> int:
    # deferred: every command builds the parser, and the services load torch and the engine
    from audit.services.analyses.explanations.service import explain_reference_set
    from storage.db import migrate

    migrate()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options: dict[str, Any] = {"seed": args.seed}
    if args.ig_steps:
        options["ig_steps"] = args.ig_steps
    if args.sg_samples:
        options["sg_samples"] = args.sg_samples
    if args.background:
        return submit_background("explain", {"family": args.family, "version": args.version, "dataset": args.dataset,
                                             "methods": methods, "batch_size": args.batch_size, "limit": args.limit,
                                             "options": options})
    summary = explain_reference_set(args.family, args.version, args.dataset, methods=methods,
                                    batch_size=args.batch_size, options=options, limit=args.limit,
                                    actor=shell_operator(), progress=progress_printer("explain"))
    emit(f"run {summary.run_id}: {summary.samples} samples, {summary.computed} maps computed, "
         f"{summary.reused} reused from the store, {summary.seconds:.1f} s")
    return 0


def add_commands(sub: Any) -> None:
    sp = version_command(sub, "explain", help="explain a reference set (resumable; stored maps are reused)")
    sp.add_argument("--dataset", default="digits-reference")
    sp.add_argument("--methods", default="saliency,grad_x_input,gradcam,integrated_gradients")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--limit", type=int)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--ig-steps", type=int)
    sp.add_argument("--sg-samples", type=int)
    sp.add_argument("--background", action="store_true", help='queue as a job for the worker; prints {"job": ID}')
    sp.set_defaults(fn=cmd_explain)
