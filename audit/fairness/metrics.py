"""Performance broken down by group (fairlearn MetricFrame), disparities and bootstrap intervals.

`group_metrics` is the bias-audit entry point: per-group rates, between-group gaps, worst group, flags.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from fairlearn.metrics import count as fairlearn_count

from audit.fairness import errors
from audit.fairness._bootstrap import percentile_interval, resampled_sums
from audit.fairness._validate import (
    check_groups,
    check_no_missing,
    label_text,
    sort_key,
    to_1d,
    to_group_frame,
)

logger = logging.getLogger(__name__)

Average = Literal["macro"]


@dataclass(frozen=True)
class MetricSpec:
    """What a per-group metric is, as data, so reports can rank and colour any metric generically."""

    name: str
    higher_is_better: bool
    description: str


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("accuracy", True, "fraction of correct predictions"),
    "selection_rate": MetricSpec(
        "selection_rate", True, "fraction predicted positive (the positive label is taken as the favourable outcome)"
    ),
    "tpr": MetricSpec("tpr", True, "true positive rate (recall): P(pred = pos | true = pos)"),
    "fpr": MetricSpec("fpr", False, "false positive rate: P(pred = pos | true != pos)"),
    "precision": MetricSpec("precision", True, "P(true = pos | pred = pos)"),
}
RATE_METRICS: tuple[str, ...] = tuple(METRICS)
DEFAULT_MIN_GROUP_SIZE = 30


# --- counts -> rates ------------------------------------------------------------------------------
# Every metric is a ratio of confusion counts. Point estimates (through MetricFrame) and bootstrap
# replicates both go through the same two functions, so they cannot disagree on a definition.


@dataclass(frozen=True)
class _Binarizer:
    """Turns (y_true, y_pred) into per-sample indicator columns whose sums define every metric."""

    positive_label: Any  # used when classes is None
    classes: tuple[Any, ...] | None  # one-vs-rest over these when set

    def features(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        cols = [np.ones(len(y_true), dtype=np.int64), (y_true == y_pred).astype(np.int64)]
        for label in self._labels():
            t = y_true == label
            p = y_pred == label
            cols += [p, t, t & p, ~t & p]
        return np.stack([np.asarray(c, dtype=np.int64) for c in cols], axis=1)

    def rates(self, sums: np.ndarray) -> dict[str, np.ndarray]:
        sums = np.asarray(sums, dtype=np.float64)
        n = sums[..., 0]
        out: dict[str, np.ndarray] = {"accuracy": _div(sums[..., 1], n)}
        per_class = {"selection_rate": [], "tpr": [], "fpr": [], "precision": []}
        for k in range(len(self._labels())):
            p, t, tp, fp = (sums[..., 2 + 4 * k + j] for j in range(4))
            per_class["selection_rate"].append(_div(p, n))
            per_class["tpr"].append(_div(tp, t))
            per_class["fpr"].append(_div(fp, n - t))
            per_class["precision"].append(_div(tp, p))
        if self.classes is None:
            for name, values in per_class.items():
                out[name] = values[0]
            return out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # classes absent from a group are NaN
            for name in ("tpr", "fpr", "precision"):
                out[name] = np.nanmean(np.stack(per_class[name], axis=-1), axis=-1)
        # The macro mean of one-vs-rest selection rates is 1/K by construction: report per class.
        out["selection_rate"] = np.full_like(n, np.nan)
        for label, values in zip(self.classes, per_class["selection_rate"]):
            out[f"selection_rate[{label}]"] = values
        return out

    def metric_names(self) -> list[str]:
        names = list(RATE_METRICS)
        if self.classes is not None:
            names += [f"selection_rate[{label}]" for label in self.classes]
        return names

    def _labels(self) -> tuple[Any, ...]:
        return (self.positive_label,) if self.classes is None else self.classes


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --- result ---------------------------------------------------------------------------------------


@dataclass
class GroupMetricsResult:
    """Per-group performance with between-group gaps.

    `by_group` is indexed by group (a MultiIndex for intersections of several attributes) with the
    rate columns, `count` and `small_group` (True when count < min_group_size: read with care).
    `difference` is max - min between groups and `ratio` is min / max, per metric.
    `worst_group[metric]` is the group with the lowest value (highest for metrics where lower is better).
    Bootstrap intervals (`*_ci`) are present when n_boot > 0; `by_group_ci` has columns (metric, low|high).
    """

    by_group: pd.DataFrame
    overall: pd.Series
    difference: pd.Series
    ratio: pd.Series
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float
    equalized_odds_ratio: float
    worst_group: dict[str, Any]
    small_groups: list[Any]
    sensitive_names: list[str]
    positive_label: Any
    average: str | None
    classes: list[Any] | None
    min_group_size: int
    n_boot: int
    seed: int
    ci_level: float
    by_group_ci: pd.DataFrame | None = None
    overall_ci: pd.DataFrame | None = None
    difference_ci: pd.DataFrame | None = None
    unobserved_groups: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def metric_names(self) -> list[str]:
        return [c for c in self.by_group.columns if c not in ("count", "small_group")]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (NaN -> None, group labels as text; intersections joined by ' | ')."""
        metrics = self.metric_names

        def row(frame_row: pd.Series, cols: list[str]) -> dict[str, Any]:
            return {c: _json_number(frame_row[c]) for c in cols}

        by_group = {}
        for label, r in self.by_group.iterrows():
            entry = row(r, metrics)
            entry["count"] = int(r["count"])
            entry["small_group"] = bool(r["small_group"])
            if self.by_group_ci is not None:
                entry["ci"] = {
                    m: [_json_number(self.by_group_ci.loc[label, (m, "low")]),
                        _json_number(self.by_group_ci.loc[label, (m, "high")])]
                    for m in metrics
                }
            by_group[label_text(label)] = entry
        out: dict[str, Any] = {
            "by_group": by_group,
            "overall": {m: _json_number(self.overall[m]) for m in metrics},
            "difference": {m: _json_number(self.difference[m]) for m in metrics},
            "ratio": {m: _json_number(self.ratio[m]) for m in metrics},
            "demographic_parity_difference": _json_number(self.demographic_parity_difference),
            "demographic_parity_ratio": _json_number(self.demographic_parity_ratio),
            "equalized_odds_difference": _json_number(self.equalized_odds_difference),
            "equalized_odds_ratio": _json_number(self.equalized_odds_ratio),
            "worst_group": {m: label_text(g) for m, g in self.worst_group.items()},
            "small_groups": [label_text(g) for g in self.small_groups],
            "unobserved_groups": [label_text(g) for g in self.unobserved_groups],
            "sensitive_names": list(self.sensitive_names),
            "positive_label": _json_label(self.positive_label),
            "average": self.average,
            "classes": None if self.classes is None else [_json_label(c) for c in self.classes],
            "min_group_size": self.min_group_size,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "ci_level": self.ci_level,
            "warnings": list(self.warnings),
            "metrics": {m: {"higher_is_better": METRICS[m].higher_is_better,
                            "description": METRICS[m].description} for m in metrics if m in METRICS},
        }
        if self.difference_ci is not None:
            out["difference_ci"] = {
                m: [_json_number(self.difference_ci.loc[m, "low"]), _json_number(self.difference_ci.loc[m, "high"])]
                for m in metrics
            }
        if self.overall_ci is not None:
            out["overall_ci"] = {
                m: [_json_number(self.overall_ci.loc[m, "low"]), _json_number(self.overall_ci.loc[m, "high"])]
                for m in metrics
            }
        return out


def _json_number(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _json_label(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- entry point ----------------------------------------------------------------------------------


def group_metrics(
    y_true: Any,
    y_pred: Any,
    sensitive_features: Any,
    n_boot: int = 0,
    seed: int = 0,
    *,
    positive_label: Any = None,
    average: Average | None = None,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    ci_level: float = 0.95,
) -> GroupMetricsResult:
    """Accuracy, selection rate, TPR, FPR, precision and count per group, with between-group gaps.

    Args:
        y_true, y_pred: one label per sample (lists, numpy arrays, Series or tensors).
        sensitive_features: one group label per sample, or a DataFrame / dict / 2-D array with one
            column per attribute; several columns give their intersections as groups.
        n_boot: bootstrap resamples for percentile intervals (0 = none). Resampling is stratified:
            each group is resampled with replacement at its own size, so group sizes stay fixed.
        seed: seed of the bootstrap generator.
        positive_label: the label treated as positive (favourable) for binary rates. Defaults to 1
            when labels are {0, 1} or {-1, 1}. With more classes the others form the negative class
            (accuracy stays the multi-class accuracy).
        average: "macro" for one-vs-rest over all classes, averaging TPR, FPR and precision over
            classes; selection rates are then reported per class as ``selection_rate[<label>]``.
        min_group_size: groups with fewer samples are flagged (``small_group``), not hidden.
        ci_level: coverage of the percentile intervals.

    Raises:
        ValueError: with a message from `audit.fairness.errors` for length mismatch, empty input,
            missing labels or groups, an unknown positive label or a declared group with no member.
    """
    n_boot, min_group_size, ci_level = _check_options(n_boot, min_group_size, ci_level)
    yt = to_1d(y_true, "y_true")
    yp = to_1d(y_pred, "y_pred")
    groups = to_group_frame(sensitive_features)
    if len(yt) != len(yp) or len(yt) != len(groups):
        raise ValueError(
            f"{errors.LENGTH_MISMATCH} (y_true: {len(yt)}, y_pred: {len(yp)}, sensitive_features: {len(groups)})"
        )
    if len(yt) == 0:
        raise ValueError(errors.EMPTY_INPUT)
    check_no_missing(yt.astype(object), errors.NAN_LABELS, "y_true")
    check_no_missing(yp.astype(object), errors.NAN_LABELS, "y_pred")
    check_groups(groups)

    binarizer, positive, classes = _binarizer(yt, yp, positive_label, average)
    names = binarizer.metric_names()

    def metric_fn(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
        def fn(t: np.ndarray, p: np.ndarray) -> float:
            sums = binarizer.features(np.asarray(t), np.asarray(p)).sum(axis=0)
            return float(binarizer.rates(sums)[name])

        fn.__name__ = name
        return fn

    frame = MetricFrame(
        metrics={**{name: metric_fn(name) for name in names}, "count": fairlearn_count},
        y_true=yt,
        y_pred=yp,
        sensitive_features=groups,
    )
    by_group = frame.by_group.copy()
    observed = by_group["count"].notna() & (by_group["count"] > 0)
    unobserved = [label for label, ok in zip(by_group.index, observed) if not ok]
    by_group = by_group[observed].copy()
    by_group["count"] = by_group["count"].astype(np.int64)
    by_group["small_group"] = by_group["count"] < min_group_size
    small = [label for label, flag in zip(by_group.index, by_group["small_group"]) if flag]

    notes: list[str] = []
    if unobserved:
        notes.append(
            f"{len(unobserved)} combination(s) of the sensitive attributes have no samples and are not "
            "reported: " + ", ".join(label_text(g) for g in unobserved[:5])
        )
    if small:
        notes.append(
            f"{len(small)} group(s) have fewer than {min_group_size} samples; their rates are unreliable: "
            + ", ".join(f"{label_text(g)} (n={int(by_group.loc[g, 'count'])})" for g in small[:10])
        )
    if len(by_group) < 2:
        notes.append("only one group is present: differences and ratios are 0 and 1 by definition")
    for note in notes:
        logger.warning(note)

    # Gaps come from MetricFrame too; unobserved intersections are NaN rows, which it skips.
    difference = frame.difference(method="between_groups")[names].astype(float)
    ratio = frame.ratio(method="between_groups")[names].astype(float)
    overall = frame.overall[names].astype(float)

    dp_cols = [n for n in names if n.startswith("selection_rate")]
    dp_cols = [c for c in dp_cols if not np.isnan(difference[c])] or dp_cols
    result = GroupMetricsResult(
        by_group=by_group,
        overall=overall,
        difference=difference,
        ratio=ratio,
        demographic_parity_difference=_nanmax([difference[c] for c in dp_cols]),
        demographic_parity_ratio=_nanmin([ratio[c] for c in dp_cols]),
        equalized_odds_difference=_nanmax([difference["tpr"], difference["fpr"]]),
        equalized_odds_ratio=_nanmin([ratio["tpr"], ratio["fpr"]]),
        worst_group=_worst_groups(by_group, names),
        small_groups=small,
        sensitive_names=list(groups.columns),
        positive_label=positive,
        average=average,
        classes=classes,
        min_group_size=min_group_size,
        n_boot=n_boot,
        seed=seed,
        ci_level=ci_level,
        unobserved_groups=unobserved,
        warnings=notes,
    )
    if n_boot > 0:
        _add_bootstrap(result, binarizer, yt, yp, groups, names)
    return result


def _check_options(n_boot: Any, min_group_size: Any, ci_level: Any) -> tuple[int, int, float]:
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 0:
        raise ValueError(f"{errors.BAD_N_BOOT}, got {n_boot!r}")
    if isinstance(min_group_size, bool) or not isinstance(min_group_size, numbers.Integral) or min_group_size < 1:
        raise ValueError(f"{errors.BAD_MIN_GROUP_SIZE}, got {min_group_size!r}")
    if not isinstance(ci_level, numbers.Real) or not 0.0 < float(ci_level) < 1.0:
        raise ValueError(f"{errors.BAD_CI_LEVEL}, got {ci_level!r}")
    return int(n_boot), int(min_group_size), float(ci_level)


def _binarizer(
    yt: np.ndarray, yp: np.ndarray, positive_label: Any, average: Any
) -> tuple[_Binarizer, Any, list[Any] | None]:
    if average is not None and average != "macro":
        raise ValueError(f"{errors.BAD_AVERAGE}, got {average!r}")
    labels = pd.unique(np.concatenate([yt.astype(object), yp.astype(object)])).tolist()
    if average == "macro":
        if positive_label is not None:
            raise ValueError(errors.BOTH_POSITIVE_AND_AVERAGE)
        classes = sorted(labels, key=sort_key)
        return _Binarizer(None, tuple(classes)), None, classes
    if positive_label is None:
        if set(labels) <= {0, 1} or set(labels) <= {-1, 1}:
            positive_label = 1
        else:
            shown = ", ".join(repr(v) for v in labels[:6])
            raise ValueError(f"{errors.NEED_POSITIVE_LABEL} (labels found: {shown})")
    elif positive_label not in set(labels):
        shown = ", ".join(repr(v) for v in labels[:6])
        raise ValueError(f"{errors.UNKNOWN_POSITIVE_LABEL}: {positive_label!r} (labels found: {shown})")
    return _Binarizer(positive_label, None), positive_label, None


def _worst_groups(by_group: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    worst: dict[str, Any] = {}
    for name in names:
        values = by_group[name].astype(float)
        if values.notna().sum() == 0:
            continue
        higher_is_better = METRICS[name].higher_is_better if name in METRICS else True
        worst[name] = values.idxmin() if higher_is_better else values.idxmax()
    return worst


def _nanmax(values: list[float]) -> float:
    finite = [float(v) for v in values if not math.isnan(float(v))]
    return max(finite) if finite else math.nan


def _nanmin(values: list[float]) -> float:
    finite = [float(v) for v in values if not math.isnan(float(v))]
    return min(finite) if finite else math.nan


def _add_bootstrap(
    result: GroupMetricsResult,
    binarizer: _Binarizer,
    yt: np.ndarray,
    yp: np.ndarray,
    groups: pd.DataFrame,
    names: list[str],
) -> None:
    rng = np.random.default_rng(result.seed)
    features = binarizer.features(yt, yp)
    keys = _sample_keys(groups)
    labels = list(result.by_group.index)
    position = {label: i for i, label in enumerate(labels)}
    codes = np.array([position[k] for k in keys], dtype=np.int64)

    group_sums = [resampled_sums(features[codes == g], result.n_boot, rng) for g in range(len(labels))]
    per_group = [binarizer.rates(s) for s in group_sums]  # list over groups of {metric: [n_boot]}
    overall = binarizer.rates(np.sum(group_sums, axis=0))

    level = result.ci_level
    ci_cols = pd.MultiIndex.from_product([names, ["low", "high"]], names=["metric", "bound"])
    ci = pd.DataFrame(index=result.by_group.index, columns=ci_cols, dtype=float)
    diff_rows, overall_rows = {}, {}
    for name in names:
        stacked = np.stack([r[name] for r in per_group], axis=0)  # [G, n_boot]
        low, high = percentile_interval(stacked, level, axis=1)
        ci[(name, "low")] = low
        ci[(name, "high")] = high
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gap = np.nanmax(stacked, axis=0) - np.nanmin(stacked, axis=0)
        diff_rows[name] = percentile_interval(gap, level)
        overall_rows[name] = percentile_interval(overall[name], level)
    result.by_group_ci = ci
    result.difference_ci = pd.DataFrame(
        {"low": [float(v[0]) for v in diff_rows.values()], "high": [float(v[1]) for v in diff_rows.values()]},
        index=pd.Index(names, name="metric"),
    )
    result.overall_ci = pd.DataFrame(
        {"low": [float(v[0]) for v in overall_rows.values()], "high": [float(v[1]) for v in overall_rows.values()]},
        index=pd.Index(names, name="metric"),
    )


def _sample_keys(groups: pd.DataFrame) -> list[Any]:
    if groups.shape[1] == 1:
        return groups.iloc[:, 0].to_numpy(dtype=object).tolist()
    return [tuple(r) for r in groups.itertuples(index=False, name=None)]
