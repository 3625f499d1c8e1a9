"""CLI commands for compliance reports: ``report`` (write the PDF, or queue it), ``report-sign`` (approve or
reject as a registered user) and ``reports`` (list them). Each prints a one-line error and exits non-zero."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audit.cli_ext.common import (emit, progress_printer, read_password, shell_operator, submit_background,
                                  version_command)


def cmd_report(args: argparse.Namespace) -> int:
    # deferred: every command builds the parser, and the services load torch and the engine
    from audit.services.analyses.reports.service import generate_report, report_bytes
    from storage.db import migrate

    migrate()
    if args.background:
        if args.out:
            raise ValueError("--out cannot be used with --background: the worker stores the report; write it "
                             "with `python -m audit jobs download ID --out FILE.pdf` once the job is done")
        return submit_background("report", {"family": args.family, "version": args.version,
                                            "author": args.author or shell_operator().username, "dataset": args.dataset,
                                            "compute_missing": not args.no_compute})
    if not args.out:
        raise ValueError("--out FILE.pdf is required (or --background to queue the report as a job)")
    out = Path(args.out)
    if out.suffix.lower() != ".pdf":
        raise ValueError(f"--out must name a .pdf file, got {out}")
    if not out.parent.exists():
        raise FileNotFoundError(f"the folder {out.parent} does not exist")
    actor = shell_operator()
    info = generate_report(args.family, args.version, author=args.author or actor.username, dataset=args.dataset,
                           compute_missing=not args.no_compute, actor=actor,
                           progress=progress_printer("report") if not args.quiet else None)

    _, data = report_bytes(info["id"], actor=actor)
    out.write_bytes(data)
    emit(f"report {info['id']}: {info['pages']} pages, {info['seconds']:.1f} s, stored as {info['filename']}",
          file=sys.stderr)
    emit(f"{info['sha256']}  {out}")
    return 0


def cmd_report_sign(args: argparse.Namespace) -> int:
    # deferred: every command builds the parser, and the services load torch and the engine
    from audit.services.analyses.reports.service import sign_report
    from audit.services.governance.auth import authenticate
    from storage.db import migrate

    migrate()
    # A sign-off is a personal attestation: it is made by a registered user who proves who they are, never by
    # the shell operator (four-eyes compares the signer with the report's generator).
    signer = authenticate(args.as_user, read_password(args.as_user))
    res = sign_report(args.report_id, decision=args.decision, reason=args.reason, actor=signer)
    emit(f"report {res['report_id']} {res['decision']} by {res['signed_by']} at {res['signed_at']}; "
          f"{res['family']} {res['version']} is now {res['status']}")
    return 0


def cmd_reports(args: argparse.Namespace) -> int:
    # deferred: every command builds the parser, and the services load torch and the engine
    from audit.services.analyses.reports.service import list_reports
    from storage.db import migrate

    migrate()
    rows = list_reports(family=args.family, version=args.version)
    if args.json:
        emit(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        emit("no reports stored")
    for r in rows:
        sign = f"{r['signoff']['decision']} by {r['signoff']['signed_by']}" if r.get("signoff") else "not signed"
        emit(f"{r['id']:>4}  {r['family']} {r['version']}  {r['sha256'][:16]}  {r['created_at'][:19]}  {sign}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    sp = version_command(sub, "report", help="write a PDF compliance report for a version; prints its SHA-256")
    sp.add_argument("--out", help="the PDF file to write (required unless --background)")
    sp.add_argument("--background", action="store_true",
                    help='queue as a job for the worker; prints {"job": ID} (then: jobs download ID --out FILE.pdf)')
    sp.add_argument("--author", help="name printed on the cover (default: the operator)")
    sp.add_argument("--dataset", help="reference set (default: the stored set whose labels match the model)")
    sp.add_argument("--no-compute", action="store_true",
                    help="use stored results only; sections without them say how to produce them")
    sp.add_argument("--quiet", action="store_true", help="no progress on stderr")
    sp.set_defaults(fn=cmd_report)

    sp = sub.add_parser("report-sign", help="approve or reject a version on a stored report (once, as a registered user)")
    sp.add_argument("--report-id", type=int, required=True)
    sp.add_argument("--decision", required=True, choices=["approved", "rejected"])
    sp.add_argument("--reason", required=True)
    sp.add_argument("--as", dest="as_user", required=True, metavar="USERNAME",
                    help="the registered user who signs (needs the sign permission and must not have generated the "
                         "report); the password is asked for, or read from standard input when it is not a terminal")
    sp.set_defaults(fn=cmd_report_sign)

    sp = sub.add_parser("reports", help="list stored reports and their sign-offs")
    sp.add_argument("--family")
    sp.add_argument("--version")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_reports)
