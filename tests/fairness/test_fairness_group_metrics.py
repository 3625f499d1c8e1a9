"""group_metrics against fairlearn's MetricFrame / fairness functions and sklearn, on planted disparities."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, confusion_matrix, precision_score, recall_score

from audit.fairness import errors, group_metrics

RATES = ["accuracy", "selection_rate", "tpr", "fpr", "precision"]


def planted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three groups; C gets a noisier classifier and B gets extra false positives."""
    rng = np.random.default_rng(seed)
    group = rng.choice(np.array(["A", "B", "C"]), size=n, p=[0.4, 0.35, 0.25])
    y_true = rng.integers(0, 2, size=n)
    error_rate = np.select([group == "A", group == "B", group == "C"], [0.05, 0.12, 0.35])
    y_pred = np.where(rng.random(n) < error_rate, 1 - y_true, y_true)
    extra_fp = (group == "B") & (y_true == 0) & (rng.random(n) < 0.3)
    y_pred = np.where(extra_fp, 1, y_pred)
    return y_true, y_pred, group


def fairlearn_frame(y_true, y_pred, sf) -> MetricFrame:
    return MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "precision": lambda t, p: precision_score(t, p, zero_division=0),
            "count": count,
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sf,
    )


def test_matches_fairlearn_metricframe_and_fairness_functions():
    y_true, y_pred, group = planted(3000)
    res = group_metrics(y_true, y_pred, group)
    ref = fairlearn_frame(y_true, y_pred, pd.Series(group, name="group"))

    np.testing.assert_allclose(res.by_group[RATES].to_numpy(float), ref.by_group[RATES].to_numpy(float), rtol=1e-12)
    assert res.by_group["count"].tolist() == ref.by_group["count"].astype(int).tolist()
    np.testing.assert_allclose(res.difference[RATES].to_numpy(), ref.difference()[RATES].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(res.ratio[RATES].to_numpy(), ref.ratio()[RATES].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(res.overall[RATES].to_numpy(), ref.overall[RATES].to_numpy(float), rtol=1e-12)

    kw = {"sensitive_features": group}
    assert res.demographic_parity_difference == pytest.approx(demographic_parity_difference(y_true, y_pred, **kw))
    assert res.demographic_parity_ratio == pytest.approx(demographic_parity_ratio(y_true, y_pred, **kw))
    assert res.equalized_odds_difference == pytest.approx(equalized_odds_difference(y_true, y_pred, **kw))
    assert res.equalized_odds_ratio == pytest.approx(equalized_odds_ratio(y_true, y_pred, **kw))


def test_matches_sklearn_per_group():
    y_true, y_pred, group = planted(1500, seed=3)
    res = group_metrics(y_true, y_pred, group)
    for g in ["A", "B", "C"]:
        t, p = y_true[group == g], y_pred[group == g]
        tn, fp, fn, tp = confusion_matrix(t, p, labels=[0, 1]).ravel()
        row = res.by_group.loc[g]
        assert row["accuracy"] == pytest.approx(accuracy_score(t, p))
        assert row["tpr"] == pytest.approx(recall_score(t, p))
        assert row["precision"] == pytest.approx(precision_score(t, p))
        assert row["fpr"] == pytest.approx(fp / (fp + tn))
        assert row["selection_rate"] == pytest.approx(p.mean())
        assert row["count"] == len(t)


def test_worst_group_is_the_planted_one():
    y_true, y_pred, group = planted(3000)
    res = group_metrics(y_true, y_pred, group)
    assert res.worst_group["accuracy"] == "C"
    assert res.worst_group["tpr"] == "C"
    assert res.worst_group["fpr"] == "B"  # lower is better: the group with the most false positives
    assert res.small_groups == []
    assert not res.by_group["small_group"].any()


def test_intersections_match_metricframe_and_drop_unobserved_combinations():
    y_true, y_pred, group = planted(2000, seed=1)
    rng = np.random.default_rng(7)
    age = np.where(group == "C", "old", rng.choice(np.array(["old", "young"]), size=len(group)))
    sf = pd.DataFrame({"group": group, "age": age})
    res = group_metrics(y_true, y_pred, sf)
    ref = fairlearn_frame(y_true, y_pred, sf)
    observed = ref.by_group[ref.by_group["count"].notna()]

    assert isinstance(res.by_group.index, pd.MultiIndex)
    assert list(res.by_group.index.names) == ["group", "age"]
    assert list(res.by_group.index) == list(observed.index)
    np.testing.assert_allclose(res.by_group[RATES].to_numpy(float), observed[RATES].to_numpy(float), rtol=1e-12)
    assert res.unobserved_groups == [("C", "young")]
    assert res.worst_group["accuracy"][0] == "C"
    out = res.to_dict()
    assert "C | old" in out["by_group"] and "C | young" in out["unobserved_groups"]


def test_string_labels_need_and_accept_a_positive_label():
    y_true, y_pred, group = planted(800)
    names = np.array(["deny", "grant"])
    with pytest.raises(ValueError, match=re.escape(errors.NEED_POSITIVE_LABEL)):
        group_metrics(names[y_true], names[y_pred], group)
    res = group_metrics(names[y_true], names[y_pred], group, positive_label="grant")
    ref = group_metrics(y_true, y_pred, group)
    pd.testing.assert_frame_equal(res.by_group, ref.by_group)


def test_multiclass_positive_label_is_one_vs_rest():
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 3, 900)
    y_pred = np.where(rng.random(900) < 0.7, y_true, rng.integers(0, 3, 900))
    group = rng.choice(np.array(["x", "y"]), 900)
    res = group_metrics(y_true, y_pred, group, positive_label=2)
    binary = group_metrics((y_true == 2).astype(int), (y_pred == 2).astype(int), group)
    for m in ["selection_rate", "tpr", "fpr", "precision"]:
        np.testing.assert_allclose(res.by_group[m], binary.by_group[m])
    for g in ["x", "y"]:  # accuracy stays the multi-class accuracy
        assert res.by_group.loc[g, "accuracy"] == pytest.approx(accuracy_score(y_true[group == g], y_pred[group == g]))


def test_multiclass_macro_average_matches_sklearn():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 4, 1200)
    y_pred = np.where(rng.random(1200) < 0.6, y_true, rng.integers(0, 4, 1200))
    group = rng.choice(np.array(["x", "y", "z"]), 1200)
    res = group_metrics(y_true, y_pred, group, average="macro")
    assert res.classes == [0, 1, 2, 3]
    for g in ["x", "y", "z"]:
        t, p = y_true[group == g], y_pred[group == g]
        row = res.by_group.loc[g]
        assert row["tpr"] == pytest.approx(recall_score(t, p, average="macro", labels=[0, 1, 2, 3]))
        assert row["precision"] == pytest.approx(precision_score(t, p, average="macro", labels=[0, 1, 2, 3]))
        for k in range(4):
            assert row[f"selection_rate[{k}]"] == pytest.approx(np.mean(p == k))
    expected_dp = max(res.difference[f"selection_rate[{k}]"] for k in range(4))
    assert res.demographic_parity_difference == pytest.approx(expected_dp)
    with pytest.raises(ValueError, match=re.escape(errors.BOTH_POSITIVE_AND_AVERAGE)):
        group_metrics(y_true, y_pred, group, average="macro", positive_label=1)


def _denominators(t: np.ndarray, p: np.ndarray) -> dict[str, int]:
    """How many samples each rate is a proportion of (its binomial n)."""
    return {"accuracy": len(t), "selection_rate": len(t), "tpr": int((t == 1).sum()), "fpr": int((t == 0).sum()),
            "precision": int((p == 1).sum())}


def test_bootstrap_intervals_match_binomial_intervals():
    y_true, y_pred, group = planted(4000)
    res = group_metrics(y_true, y_pred, group, n_boot=2000, seed=0)
    ci = res.by_group_ci
    z = 1.959964
    for g in res.by_group.index:
        n_of = _denominators(y_true[group == g], y_pred[group == g])
        for m in RATES:
            # Each rate is a proportion of n_of[m] samples: the interval is about rate +- z * sqrt(r(1-r)/n).
            r, n = res.by_group.loc[g, m], n_of[m]
            half = z * np.sqrt(r * (1 - r) / n)
            low, high = ci.loc[g, (m, "low")], ci.loc[g, (m, "high")]
            assert high - low == pytest.approx(2 * half, rel=0.2), (g, m)
            assert (low + high) / 2 == pytest.approx(r, abs=0.25 * half), (g, m)
    # Overall accuracy under group-stratified resampling: variance sum_g (n_g / N)^2 p_g (1 - p_g) / n_g.
    n_total = len(y_true)
    var = sum((row["count"] / n_total) ** 2 * row["accuracy"] * (1 - row["accuracy"]) / row["count"]
              for _, row in res.by_group.iterrows())
    width = res.overall_ci.loc["accuracy", "high"] - res.overall_ci.loc["accuracy", "low"]
    assert width == pytest.approx(2 * z * np.sqrt(var), rel=0.2)
    # The accuracy gap is A - C (far apart): its interval is the normal one of a difference of two proportions.
    a, c = res.by_group.loc["A"], res.by_group.loc["C"]
    se = np.sqrt(a["accuracy"] * (1 - a["accuracy"]) / a["count"] + c["accuracy"] * (1 - c["accuracy"]) / c["count"])
    assert res.difference["accuracy"] == pytest.approx(a["accuracy"] - c["accuracy"])
    gap_low, gap_high = res.difference_ci.loc["accuracy", "low"], res.difference_ci.loc["accuracy", "high"]
    assert gap_high - gap_low == pytest.approx(2 * z * se, rel=0.2)
    assert (gap_low + gap_high) / 2 == pytest.approx(res.difference["accuracy"], abs=0.25 * z * se)


def test_bootstrap_intervals_shrink_with_more_data_and_are_seeded():
    small = group_metrics(*planted(400), n_boot=500, seed=1)
    large = group_metrics(*planted(8000), n_boot=500, seed=1)

    def width(res):
        ci = res.by_group_ci
        return (ci.xs("high", axis=1, level="bound") - ci.xs("low", axis=1, level="bound"))[RATES]

    ratio = (width(small) / width(large)).to_numpy()
    assert np.all(ratio > 2.5)  # about sqrt(20) = 4.5 expected
    again = group_metrics(*planted(400), n_boot=500, seed=1)
    pd.testing.assert_frame_equal(small.by_group_ci, again.by_group_ci)
    other = group_metrics(*planted(400), n_boot=500, seed=2)
    assert not small.by_group_ci.equals(other.by_group_ci)


def test_small_groups_are_flagged_not_hidden():
    y_true, y_pred, group = planted(600)
    group = group.astype(object)
    group[:12] = "D"
    res = group_metrics(y_true, y_pred, group, min_group_size=30)
    assert res.small_groups == ["D"]
    assert bool(res.by_group.loc["D", "small_group"]) and res.by_group.loc["D", "count"] == 12
    assert any("fewer than 30" in w for w in res.warnings)
    assert res.to_dict()["small_groups"] == ["D"]


def test_accepts_tensors_and_is_json_serialisable():
    y_true, y_pred, group = planted(500)
    res = group_metrics(torch.tensor(y_true), torch.tensor(y_pred), list(group), n_boot=50)
    ref = group_metrics(y_true, y_pred, group, n_boot=50)
    pd.testing.assert_frame_equal(res.by_group, ref.by_group)
    text = json.dumps(res.to_dict(), allow_nan=False)
    low, high = json.loads(text)["by_group"]["A"]["ci"]["accuracy"]
    assert [low, high] == pytest.approx([res.by_group_ci.loc["A", ("accuracy", "low")],
                                         res.by_group_ci.loc["A", ("accuracy", "high")]])
    assert json.loads(text)["by_group"]["A"]["accuracy"] == pytest.approx(res.by_group.loc["A", "accuracy"])


def test_undefined_rates_are_nan_not_zero():
    # Group "b" has no actual positives: its TPR is undefined.
    res = group_metrics([1, 0, 1, 0, 0, 0], [1, 0, 0, 1, 0, 1], ["a", "a", "a", "a", "b", "b"])
    assert np.isnan(res.by_group.loc["b", "tpr"])
    assert res.worst_group["tpr"] == "a"
    assert res.to_dict()["by_group"]["b"]["tpr"] is None


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([0, 1, 1], [0, 1], ["a", "b", "a"]), {}, errors.LENGTH_MISMATCH),
        (([0, 1], [0, 1], ["a", "b", "a"]), {}, errors.LENGTH_MISMATCH),
        (([], [], []), {}, errors.EMPTY_INPUT),
        (([0, np.nan, 1], [0, 1, 1], ["a", "b", "a"]), {}, errors.NAN_LABELS),
        (([0, 1, 1], [0, None, 1], ["a", "b", "a"]), {}, errors.NAN_LABELS),
        (([0, 1, 1], [0, 1, 1], ["a", None, "a"]), {}, errors.NAN_GROUPS),
        (([0, 1, 1], [0, 1, 1], ["a", "b", "a"]), {"positive_label": 5}, errors.UNKNOWN_POSITIVE_LABEL),
        (([0, 1, 2], [0, 1, 2], ["a", "b", "a"]), {}, errors.NEED_POSITIVE_LABEL),
        (([0, 1, 1], [0, 1, 1], ["a", "b", "a"]), {"n_boot": -1}, errors.BAD_N_BOOT),
        (([0, 1, 1], [0, 1, 1], ["a", "b", "a"]), {"ci_level": 1.5}, errors.BAD_CI_LEVEL),
        (([0, 1, 1], [0, 1, 1], ["a", "b", "a"]), {"average": "micro"}, errors.BAD_AVERAGE),
        (([0, 1, 1], [0, 1, 1], ["a", "b", "a"]), {"min_group_size": 0}, errors.BAD_MIN_GROUP_SIZE),
    ],
)
def test_bad_input_raises_module_constant(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        group_metrics(*args, **kwargs)


def test_group_with_zero_members_raises():
    groups = pd.Categorical(["a", "b", "a", "b"], categories=["a", "b", "c"])
    with pytest.raises(ValueError, match=re.escape(errors.EMPTY_GROUP)) as info:
        group_metrics([0, 1, 1, 0], [0, 1, 0, 0], pd.Series(groups, name="site"))
    assert "'c'" in str(info.value)
