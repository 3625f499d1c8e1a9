"""CLI commands for explanation drift: ``drift`` (two versions) and ``drift-trend`` (each consecutive pair of a
family's versions). Each prints a one-line error and exits non-zero on bad input."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from audit.cli_ext.common import emit, progress_printer, shell_operator, submit_background
from audit.drift import DriftThresholds


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
    # deferred: every command builds the parser, and the services load torch and the engine
    from audit.services.analyses.drift.service import compute_drift
    from storage.db import migrate

    migrate()
    if args.background:
        return submit_background("drift", {
            "family": args.family, "base": args.base, "new": args.new, "dataset": args.dataset,
            "methods": _methods(args.methods), "limit": args.limit, "target": args.target, "options": _options(args),
            "thresholds": asdict(_thresholds(args)), "top_k": args.top_k, "batch_size": args.batch_size,
            "recompute": args.recompute})
    res = compute_drift(args.family, args.base, args.new, dataset=args.dataset, methods=_methods(args.methods),
                        limit=args.limit, target=args.target, options=_options(args), thresholds=_thresholds(args),
                        top_k=args.top_k, batch_size=args.batch_size, recompute=args.recompute, actor=shell_operator(),
                        progress=None if args.json else progress_printer("drift"))
    if args.json:
        # Explanation ids stay in the stored result (provenance); the printed summary leaves them out.
        emit(json.dumps({k: v for k, v in res.items() if k != "explanation_ids"}, indent=2, default=str))
    else:
        _print_drift_text(res)
    return 1 if (args.fail_on_drift and res["flagged"]) else 0


def cmd_drift_trend(args: argparse.Namespace) -> int:
    # deferred: every command builds the parser, and the services load torch and the engine
    from audit.services.analyses.drift.views import drift_trend
    from storage.db import migrate

    migrate()
    res = drift_trend(args.family, dataset=args.dataset, methods=_methods(args.methods), limit=args.limit,
                      target=args.target, options=_options(args), thresholds=_thresholds(args), top_k=args.top_k,
                      actor=shell_operator(), progress=None if args.json else progress_printer("drift"))
    if args.json:
        emit(json.dumps(res, indent=2, default=str))
        return 0
    for p in res["pairs"]:
        cells = ", ".join(f"{m} ρ={d['rank_correlation_mean']:.2f}" for m, d in p["methods"].items()
                          if d.get("rank_correlation_mean") is not None)
        emit(f"{p['base']} -> {p['new']}: {'FLAGGED' if p['flagged'] else 'ok'}  {cells}")
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
