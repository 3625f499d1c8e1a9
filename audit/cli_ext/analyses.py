"""CLI commands for concept tests and bias audits: ``tcav`` and ``bias`` (results stored like the app's)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from audit.cli import CliError, _operator, _progress_printer, emit


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
    res = run_concept_test(args.family, args.version, concepts=_split(args.concepts), target=labels.index(args.target),
                           layers=_split(args.layers) or None, dataset=args.dataset, n_random=args.n_random,
                           alpha=args.alpha, correction=args.correction, test=args.test, seed=args.seed,
                           actor=_operator(), progress=_progress_printer("tcav"))
    s = res["summary"]
    if args.json:
        emit(json.dumps({"id": res["id"], **s}, indent=2, default=str))
        return 0
    emit(f"class {s['target_label']}: {s['n_random']} random runs, alpha {s['alpha']} ({s['correction']}, {s['test']})")
    for concept, data in s["concepts"].items():
        for layer, r in data["layers"].items():
            emit(f"  {concept:<18} {layer:<18} score {r['score']:.3f} (random {r['random_mean']:.3f}) "
                 f"p={r['p_value']:.2e} p_corr={r['p_value_corrected']:.2e} "
                 f"{'SIGNIFICANT' if r['significant'] else 'not significant'} cav_acc {r['cav_accuracy']:.2f}")
    return 0


def cmd_bias(args: argparse.Namespace) -> int:
    from audit.services.fairness import run_bias_audit
    from storage.db import migrate

    migrate()
    csv_bytes = open(args.csv, "rb").read() if args.csv else None
    res = run_bias_audit(args.family, args.version, dataset=args.dataset, attributes=_split(args.attributes),
                         n_boot=args.n_boot, positive_label=args.positive_label, csv_bytes=csv_bytes, seed=args.seed,
                         actor=_operator())
    s = res["summary"]
    if args.json:
        emit(json.dumps({"id": res["id"], **s}, indent=2, default=str))
        return 0
    emit(f"{s['n']} samples by {', '.join(s['attributes'])}; worst accuracy: {s['worst_group'].get('accuracy')}")
    for row in s["by_group"]:
        ci = row.get("accuracy_ci")
        emit(f"  {row['group']:<24} n={row['count']:<5} accuracy {row['accuracy']:.3f}"
             + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else ""))
    for flag in s["flags"]:
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
    sp.add_argument("--correction", choices=["holm", "bonferroni"], default="holm")
    sp.add_argument("--test", choices=["ttest", "pseudo_concept"], default="ttest")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_tcav)

    sp = sub.add_parser("bias", help="group metrics with bootstrap confidence intervals")
    sp.add_argument("--family", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--dataset", default="digits-reference")
    sp.add_argument("--attributes", default="", help="comma-separated group attributes of the dataset")
    sp.add_argument("--csv", help="CSV with sample_id and group columns instead of the stored groups")
    sp.add_argument("--positive-label", type=int)
    sp.add_argument("--n-boot", type=int, default=200)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_bias)
