"""CLI command ``tcav``: a concept test with significance against random runs (stored like the app's)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from audit.cli_ext.common import (CliError, emit, progress_printer, shell_operator, split_names, submit_background,
                                  version_command)
from audit.multiple_testing import CORRECTIONS, DEFAULT_CORRECTION


def cmd_tcav(args: argparse.Namespace) -> int:
    # deferred: every command builds the parser, and the services load torch and the engine
    from audit.services.analyses.concepts.service import run_concept_test
    from audit.services.core.registry import get_version
    from storage.db import migrate

    migrate()
    labels = get_version(args.family, args.version)["labels"]
    if args.target not in labels:
        raise CliError(f"--target must be one of the class labels {labels}")
    if args.background:
        return submit_background("tcav", {
            "family": args.family, "version": args.version, "dataset": args.dataset,
            "concepts": split_names(args.concepts),
            "target": labels.index(args.target), "layers": split_names(args.layers) or None, "n_random": args.n_random,
            "alpha": args.alpha, "correction": args.correction, "test": args.test, "seed": args.seed})
    res = run_concept_test(args.family, args.version, concepts=split_names(args.concepts),
                           target=labels.index(args.target),
                           layers=split_names(args.layers) or None, dataset=args.dataset, n_random=args.n_random,
                           alpha=args.alpha, correction=args.correction, test=args.test, seed=args.seed,
                           actor=shell_operator(), progress=progress_printer("tcav"))
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


def add_commands(sub: Any) -> None:
    sp = version_command(sub, "tcav", help="concept test (TCAV) with significance against random runs")
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
