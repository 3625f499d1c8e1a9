"""CLI commands for concept tests and bias audits: ``tcav`` and ``bias`` (results stored like the app's)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from audit.cli import CliError, _operator, _progress_printer, emit
from audit.multiple_testing import CORRECTIONS, DEFAULT_CORRECTION


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cmd_tcav(args: argparse.Namespace) -> int:
    from audit.services.concepts import run_concept_test
    from audit.services.registry import get_version
    from storage.db import migrate

    migrate()
    labels = get_version(args.family, args.version)["labels"]
    if args.target not in labels:
        raise CliError(f"--target must be one of the class labels {labels}")
    if args.background:
        from audit.cli_ext.jobs import submit_background

        return submit_background("tcav", {
            "family": args.family, "version": args.version, "dataset": args.dataset, "concepts": _split(args.concepts),
            "target": labels.index(args.target), "layers": _split(args.layers) or None, "n_random": args.n_random,
            "alpha": args.alpha, "correction": args.correction, "test": args.test, "seed": args.seed})
    res = run_concept_test(args.family, args.version, concepts=_split(args.concepts), target=labels.index(args.target),
                           layers=_split(args.layers) or None, dataset=args.dataset, n_random=args.n_random,
                           alpha=args.alpha, correction=args.correction, test=args.test, seed=args.seed,
                           actor=_operator(), progress=_progress_printer("tcav"))
    if args.json:
        emit(json.dumps({"id": res.stored.id, "cached": res.stored.cached, **res.to_summary()}, indent=2, default=str))
        return 0
    emit(f"class {res.target_label}: {res.n_random} random runs, alpha {res.alpha} ({res.correction}, {res.test})"
         f"{' (stored result ' + str(res.stored.id) + ')' if res.stored.cached else ''}")
    for c in res.cells:
        emit(f"  {c.concept:<18} {c.layer:<18} score {c.score:.3f} (random {c.random_mean:.3f}) "
             f"p={c.p_value:.2e} p_corr={c.p_value_corrected:.2e} "
             f"{'SIGNIFICANT' if c.significant else 'not significant'} cav_acc {c.cav_accuracy:.2f}")
    return 0


def cmd_bias(args: argparse.Namespace) -> int:
    from audit.services.fairness import run_bias_audit
    from storage.db import migrate

    migrate()
    csv_bytes = open(args.csv, "rb").read() if args.csv else None
    if args.background:
        from audit.cli_ext.jobs import submit_background
        from storage.artifacts import ArtifactStore

        return submit_background("bias", {
            "family": args.family, "version": args.version, "dataset": args.dataset,
            "attributes": _split(args.attributes), "n_boot": args.n_boot, "positive_label": args.positive_label,
            "csv_sha256": ArtifactStore().put_bytes(csv_bytes) if csv_bytes is not None else None,
            "explanation_method": args.explanation_method, "seed": args.seed})
    audit = run_bias_audit(args.family, args.version, dataset=args.dataset, attributes=_split(args.attributes),
                           n_boot=args.n_boot, positive_label=args.positive_label, csv_bytes=csv_bytes,
                           explanation_method=args.explanation_method, seed=args.seed, actor=_operator())
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
    sp = sub.add_parser("tcav", help="concept test (TCAV) with significance against random runs")
    sp.add_argument("--family", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--concepts", default="watermark,random-reference")
    sp.add_argument("--target", required=True, help="class label, e.g. 7")
    sp.add_argument("--layers", help="comma-separated module names (default: the last two blocks)")
    sp.add_argument("--dataset", default="digits-reference")
    sp.add_argument("--n-random", type=int, default=10)
    sp.add_argument("--alpha", type=float, default=0.05)
    sp.add_argument("--correction", choices=CORRECTIONS, default=DEFAULT_CORRECTION)
    sp.add_argument("--test", choices=["ttest", "pseudo_concept"], default="ttest")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--background", action="store_true", help='queue as a job for the worker; prints {"job": ID}')
    sp.set_defaults(fn=cmd_tcav)

    sp = sub.add_parser("bias", help="group metrics with bootstrap confidence intervals")
    sp.add_argument("--family", required=True)
    sp.add_argument("--version", required=True)
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
