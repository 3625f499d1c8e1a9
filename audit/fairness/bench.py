"""Benchmark: `group_metrics` against fairlearn's MetricFrame, point estimates and bootstrap intervals.

Run `python -m audit.fairness.bench [--n 2000 10000] [--n-boot 50] [--repeats 2]`; prints ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import numpy as np
import pandas as pd


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    sf = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "age": rng.choice(["<30", "30-60", ">60"], n)})
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true)
    return y_true, y_pred, sf


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from fairlearn.metrics import (
        MetricFrame,
        count,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, precision_score

    from audit.fairness import group_metrics

    parser = argparse.ArgumentParser(prog="python -m audit.fairness.bench", description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--n-boot", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    metrics = {
        "accuracy": accuracy_score,
        "selection_rate": selection_rate,
        "tpr": true_positive_rate,
        "fpr": false_positive_rate,
        "precision": lambda t, p: precision_score(t, p, zero_division=0),
        "count": count,
    }
    print(f"{'case':<34}{'ours (s)':>10}{'fairlearn (s)':>15}{'fairlearn/ours':>16}")
    for n in args.n:
        y_true, y_pred, sf = _data(n)
        cases = [
            (f"point estimates, n={n}",
             lambda: group_metrics(y_true, y_pred, sf),
             lambda: MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=sf)),
            (f"bootstrap x{args.n_boot}, n={n}",
             lambda: group_metrics(y_true, y_pred, sf, n_boot=args.n_boot, seed=0),
             lambda: MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=sf,
                                 n_boot=args.n_boot, ci_quantiles=[0.025, 0.975], random_state=0)),
        ]
        for name, ours, peer in cases:
            ours_t, peer_t = [], []
            for _ in range(args.repeats):  # alternate so drift in machine load hits both alike
                ours_t.append(_timed(ours))
                peer_t.append(_timed(peer))
            o, p = statistics.median(ours_t), statistics.median(peer_t)
            print(f"{name:<34}{o:>10.3f}{p:>15.3f}{p / o:>16.1f}")
    print("note: fairlearn resamples the whole data set; group_metrics resamples each group at its own "
          "size (stratified), so group sizes stay fixed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
