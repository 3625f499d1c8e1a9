"""CLI commands for explanation drift and compliance reports: ``drift``, ``drift-trend``, ``report``,
``report-sign`` and ``reports``. Each prints a one-line error and exits non-zero on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from audit.cli import emit


def _operator():  # noqa: ANN202 - the CLI's principal (see audit.cli)
    from audit.cli import _operator as op

    return op()


def _progress(label: str):  # noqa: ANN202
    from audit.cli import _progress_printer

    return _progress_printer(label)


def _methods(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [m.strip() for m in text.split(",") if m.strip()]


def _off_or_float(text: str) -> float | None:
    """A threshold on the command line: a number, or "off" to turn that check off."""
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'off', got {text!r}") from None


def _thresholds(args: argparse.Namespace):  # noqa: ANN202
    from audit.drift import DriftThresholds

    return DriftThresholds(
        min_rank_correlation=args.min_rank_corr, min_topk_iou=args.min_topk_iou, min_ssim=args.min_ssim,
        max_accuracy_drop=args.max_accuracy_drop, max_tcav_score_change=args.max_tcav_change,
        max_disparity_increase=args.max_disparity_increase, min_prediction_agreement=args.min_agreement,
    )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"seed": args.seed}
    if args.ig_steps:
        opts["ig_steps"] = args.ig_steps
    return opts


def _print_drift_text(res: dict[str, Any]) -> None:
    head = "DRIFT FLAGGED" if res["flagged"] else "no drift flagged"
    emit(f"{res['family']} {res['base']} -> {res['new']} on {res['dataset']} ({res['samples']} samples, "
          f"top-k {res['top_k']:.0%}): {head}  [result {res['result_id']}{', stored' if res.get('cached') else ''}]")
    emit(f"  {'method':<22} {'rank corr':>10} {'top-k IoU':>10} {'SSIM':>8}  flag")
    for m, d in res["methods"].items():
        fmt = lambda v: "   n/a" if v is None else f"{v:.3f}"  # noqa: E731
        emit(f"  {m:<22} {fmt(d['rank_correlation']['mean']):>10} {fmt(d['topk_iou']['mean']):>10} "
              f"{fmt(d['ssim']['mean']):>8}  {'FLAG' if d['flagged'] else ''}")
    for f in res["flags"]:
        emit(f"  - {f}")


def cmd_drift(args: argparse.Namespace) -> int:
    from audit.services.drift import compute_drift
    from storage.db import migrate

    migrate()
    if args.background:
        from dataclasses import asdict

        from audit.cli_ext.jobs import submit_background

        return submit_background("drift", {
            "family": args.family, "base": args.base, "new": args.new, "dataset": args.dataset,
            "methods": _methods(args.methods), "limit": args.limit, "target": args.target, "options": _options(args),
            "thresholds": asdict(_thresholds(args)), "top_k": args.top_k, "batch_size": args.batch_size,
            "recompute": args.recompute})
    res = compute_drift(args.family, args.base, args.new, dataset=args.dataset, methods=_methods(args.methods),
                        limit=args.limit, target=args.target, options=_options(args), thresholds=_thresholds(args),
                        top_k=args.top_k, batch_size=args.batch_size, recompute=args.recompute, actor=_operator(),
                        progress=None if args.json else _progress("drift"))
    if args.json:
        # Explanation ids stay in the stored result (provenance); the printed summary leaves them out.
        emit(json.dumps({k: v for k, v in res.items() if k != "explanation_ids"}, indent=2, default=str))
    else:
        _print_drift_text(res)
    return 1 if (args.fail_on_drift and res["flagged"]) else 0


def cmd_drift_trend(args: argparse.Namespace) -> int:
    from audit.services.drift_views import drift_trend
    from storage.db import migrate

    migrate()
    res = drift_trend(args.family, dataset=args.dataset, methods=_methods(args.methods), limit=args.limit,
                      target=args.target, options=_options(args), thresholds=_thresholds(args), top_k=args.top_k,
                      actor=_operator(), progress=None if args.json else _progress("drift"))
    if args.json:
        emit(json.dumps(res, indent=2, default=str))
        return 0
    for p in res["pairs"]:
        cells = ", ".join(f"{m} ρ={d['rank_correlation_mean']:.2f}" for m, d in p["methods"].items()
                          if d.get("rank_correlation_mean") is not None)
        emit(f"{p['base']} -> {p['new']}: {'FLAGGED' if p['flagged'] else 'ok'}  {cells}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from audit.services.reports import generate_report
    from storage.db import migrate

    migrate()
    if args.background:
        from audit.cli_ext.jobs import submit_background

        if args.out:
            raise ValueError("--out cannot be used with --background: the worker stores the report; write it "
                             "with `python -m audit jobs download ID --out FILE.pdf` once the job is done")
        return submit_background("report", {"family": args.family, "version": args.version,
                                            "author": args.author or _operator().username, "dataset": args.dataset,
                                            "compute_missing": not args.no_compute})
    if not args.out:
        raise ValueError("--out FILE.pdf is required (or --background to queue the report as a job)")
    out = Path(args.out)
    if out.suffix.lower() != ".pdf":
        raise ValueError(f"--out must name a .pdf file, got {out}")
    if not out.parent.exists():
        raise FileNotFoundError(f"the folder {out.parent} does not exist")
    actor = _operator()
    info = generate_report(args.family, args.version, author=args.author or actor.username, dataset=args.dataset,
                           compute_missing=not args.no_compute, actor=actor,
                           progress=_progress("report") if not args.quiet else None)
    from audit.services.reports import report_bytes

    _, data = report_bytes(info["id"], actor=actor)
    out.write_bytes(data)
    emit(f"report {info['id']}: {info['pages']} pages, {info['seconds']:.1f} s, stored as {info['filename']}",
          file=sys.stderr)
    emit(f"{info['sha256']}  {out}")
    return 0


def cmd_report_sign(args: argparse.Namespace) -> int:
    from audit.services.reports import sign_report
    from storage.db import migrate

    from audit.cli import read_password
    from audit.services.auth import authenticate

    migrate()
    # A sign-off is a personal attestation: it is made by a registered user who proves who they are, never by
    # the shell operator (four-eyes compares the signer with the report's generator).
    signer = authenticate(args.as_user, read_password(args.as_user))
    res = sign_report(args.report_id, decision=args.decision, reason=args.reason, actor=signer)
    emit(f"report {res['report_id']} {res['decision']} by {res['signed_by']} at {res['signed_at']}; "
          f"{res['family']} {res['version']} is now {res['status']}")
    return 0


def cmd_reports(args: argparse.Namespace) -> int:
    from audit.services.reports import list_reports
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


def _drift_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--family", required=True)
    sp.add_argument("--dataset", help="reference set (default: the stored set whose labels match the model)")
    sp.add_argument("--methods", help="comma-separated (image default: saliency,gradcam,integrated_gradients; "
                                      "text default: grad_x_input,integrated_gradients)")
    sp.add_argument("--limit", type=int, help="compare only the first N reference samples")
    sp.add_argument("--target", choices=["base_prediction", "label"], default="base_prediction",
                    help="class explained in both versions: the base version's prediction (default) or the true label")
    sp.add_argument("--top-k", type=float, default=0.1, help="fraction of most relevant positions compared (0.1)")
    sp.add_argument("--ig-steps", type=int, help="Integrated Gradients steps (default 32)")
    sp.add_argument("--seed", type=int, default=0)
    from audit.drift import DriftThresholds

    d = DriftThresholds()
    sp.add_argument("--min-rank-corr", type=_off_or_float, default=d.min_rank_correlation,
                    help="flag a method whose mean rank correlation is lower ('off' to skip; default %(default)s)")
    sp.add_argument("--min-topk-iou", type=_off_or_float, default=d.min_topk_iou,
                    help="flag a method whose mean top-k IoU is lower ('off' to skip; default %(default)s)")
    sp.add_argument("--min-ssim", type=_off_or_float, default=d.min_ssim,
                    help="flag a method whose mean SSIM is lower (default %(default)s)")
    sp.add_argument("--max-accuracy-drop", type=float, default=d.max_accuracy_drop,
                    help="flag an accuracy metric that falls by more (default %(default)s)")
    sp.add_argument("--max-tcav-change", type=float, default=d.max_tcav_score_change,
                    help="flag a TCAV score that moves by more (default %(default)s)")
    sp.add_argument("--max-disparity-increase", type=float, default=d.max_disparity_increase,
                    help="flag a between-group gap that grows by more (default %(default)s)")
    sp.add_argument("--min-agreement", type=_off_or_float, default=d.min_prediction_agreement,
                    help="flag when the versions agree on fewer predictions (default %(default)s)")
    sp.add_argument("--json", action="store_true", help="print the stored summary as JSON")


def add_commands(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("drift", help="explanation drift between two versions of a family")
    _drift_args(sp)
    sp.add_argument("--base", required=True, help="the earlier version")
    sp.add_argument("--new", required=True, help="the later version")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--recompute", action="store_true", help="ignore a stored identical drift result")
    sp.add_argument("--fail-on-drift", action="store_true", help="exit 1 when drift is flagged (for CI gates)")
    sp.add_argument("--background", action="store_true", help='queue as a job for the worker; prints {"job": ID}')
    sp.set_defaults(fn=cmd_drift)

    sp = sub.add_parser("drift-trend", help="drift between each consecutive pair of a family's versions")
    _drift_args(sp)
    sp.set_defaults(fn=cmd_drift_trend)

    sp = sub.add_parser("report", help="write a PDF compliance report for a version; prints its SHA-256")
    sp.add_argument("--family", required=True)
    sp.add_argument("--version", required=True)
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
