"""CLI command ``audit``: every analysis the data allows, then the report; prints the report's SHA-256.

``python -m audit audit --family F --version V --dataset D [--concepts a,b] [--targets label,...]
[--out FILE.pdf] [--json]``. A mistake of the caller prints one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from audit.cli import CliError, emit


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cmd_audit(args: argparse.Namespace) -> int:
    from audit.cli import _operator, _progress_printer
    from audit.services.full_audit import FullAuditOptions, run_full_audit
    from audit.services.reports import report_bytes
    from storage.db import migrate

    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix.lower() != ".pdf":
            raise CliError(f"--out must name a .pdf file, got {out}")
        if not out.parent.exists():
            raise CliError(f"the folder {out.parent} does not exist")
    migrate()
    actor = _operator()
    opts = FullAuditOptions(explain_limit=args.explain_limit, cf_limit=args.cf_limit, tcav_n_random=args.tcav_runs,
                            tcav_set_size=args.tcav_set_size, tcav_n_inputs=args.tcav_set_size,
                            bias_n_boot=args.n_boot, seed=args.seed,
                            cf_search={**FullAuditOptions().cf_search,
                                       **({} if args.cf_steps is None else {"max_iter": args.cf_steps})})
    if args.background:
        from audit.cli_ext.jobs import submit_background

        if out is not None:
            raise CliError("--out cannot be used with --background: the worker stores the report; write it with "
                           "`python -m audit jobs download ID --out FILE.pdf` once the job is done")
        return submit_background("full_audit", {
            "family": args.family, "version": args.version, "dataset": args.dataset, "concepts": _split(args.concepts),
            "targets": _split(args.targets) or None, "options": opts.to_dict(),
            "author": args.author or actor.username})
    res = run_full_audit(args.family, args.version, dataset=args.dataset, concepts=_split(args.concepts),
                         targets=_split(args.targets) or None, options=opts, author=args.author or actor.username,
                         actor=actor, progress=None if (args.json or args.quiet) else _progress_printer("audit"))
    if out is not None:
        _, data = report_bytes(res.report_id, actor=actor)
        out.write_bytes(data)
    if args.json:
        emit(json.dumps({k: v for k, v in res.to_json().items()
                         if k in ("report_id", "report_sha256", "sections", "findings")}, indent=2, default=str))
        return 0
    for name, status in res.sections.items():
        emit(f"  {name:<16} {status}")
    for step, reason in res.skipped.items():
        emit(f"  skipped {step}: {reason}")
    emit(f"{res.report_sha256}  {out if out is not None else f'report {res.report_id}'}")
    return 0


def add_commands(sub: Any) -> None:
    sp = sub.add_parser("audit", help="run every analysis the data allows, then write the report; prints its SHA-256")
    sp.add_argument("--family", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--dataset", required=True, help="the reference set")
    sp.add_argument("--concepts", help="comma-separated concepts to test (generated or stored concept sets)")
    sp.add_argument("--targets", help="comma-separated class labels the concepts are tested on (default: for a "
                                      "concept that is a boolean group column, the class most associated with it; "
                                      "else the most frequent class)")
    sp.add_argument("--out", help="also write the PDF here")
    sp.add_argument("--author")
    sp.add_argument("--explain-limit", type=int, default=16, help="reference samples explained (16)")
    sp.add_argument("--cf-limit", type=int, default=8, help="reference samples given a counterfactual (8)")
    sp.add_argument("--cf-steps", type=int, default=None,
                    help="optimiser steps per counterfactual search (default: the full audit's budget)")
    sp.add_argument("--tcav-runs", type=int, default=10, help="TCAV runs per concept (10; at least 3)")
    sp.add_argument("--tcav-set-size", type=int, default=40,
                    help="images per concept and random set, and class inputs scored (40)")
    sp.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples of the bias audit (200)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", action="store_true",
                    help="print {report_id, report_sha256, sections, findings} as JSON")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--background", action="store_true",
                    help='queue as a job for the worker; prints {"job": ID} (then: jobs download ID --out FILE.pdf)')
    sp.set_defaults(fn=cmd_audit)
