"""Classification metrics: scikit-learn oracles on random inputs, hand-computed cases, bootstrap sanity."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from eosin.errors import UsageError
from eosin.evaluate import _bootstrap as bs
from eosin.evaluate import classification_metrics


def _random_case(seed: int, k: int, n: int, *, drop_true: int | None = None, drop_pred: int | None = None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    if drop_true is not None:
        y[y == drop_true] = (drop_true + 1) % k
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # quantize to twentieths (ties in the scores, as real classifiers produce) keeping rows summing to 1
    q = np.floor(proba * 20)
    q[np.arange(n), proba.argmax(axis=1)] += 20 - q.sum(axis=1)
    proba = q / 20
    pred = rng.integers(0, k, n)
    good = rng.random(n) < 0.6
    pred[good] = y[good]
    if drop_pred is not None:
        pred[pred == drop_pred] = (drop_pred + 1) % k
    return y, pred, proba


def _sklearn_oracle(y, pred, proba, k):
    """Every metric that scikit-learn defines, by the names classification_metrics uses."""
    labels = np.arange(k)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["accuracy"] = skm.accuracy_score(y, pred)
        out["balanced_accuracy"] = skm.balanced_accuracy_score(y, pred)
        out["cohen_kappa"] = skm.cohen_kappa_score(y, pred, labels=labels)
        out["macro_f1"] = skm.f1_score(y, pred, labels=labels, average="macro", zero_division=np.nan)
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=np.nan)
        for c in range(k):
            out[f"precision[{c}]"] = out[f"ppv[{c}]"] = p[c]
            out[f"recall[{c}]"] = out[f"tpr[{c}]"] = r[c]
            out[f"f1[{c}]"] = f[c]
            # specificity and NPV are recall and precision of the "not c" class
            out[f"specificity[{c}]"] = skm.recall_score(y != c, pred != c, zero_division=np.nan)
            out[f"npv[{c}]"] = skm.precision_score(y != c, pred != c, zero_division=np.nan)
            if 0 < (y == c).sum() < y.size:
                out[f"roc_auc[{c}]"] = skm.roc_auc_score(y == c, proba[:, c])
            if (y == c).any():
                out[f"pr_auc[{c}]"] = skm.average_precision_score(y == c, proba[:, c])
        if k == 2:
            out["roc_auc"] = skm.roc_auc_score(y, proba[:, 1])
            out["pr_auc"] = skm.average_precision_score(y, proba[:, 1])
        elif len(np.unique(y)) == k:
            out["roc_auc"] = skm.roc_auc_score(y, proba, multi_class="ovr", labels=labels)
            out["pr_auc"] = skm.average_precision_score(np.eye(k)[y], proba, average="macro")
    return out


CASES = [
    # (k, n, drop_true, drop_pred)
    (2, 60, None, None),
    (2, 200, None, None),
    (3, 90, None, None),
    (5, 300, None, None),
    (4, 120, 2, None),  # a class never true
    (4, 120, None, 3),  # a class never predicted
    (4, 120, 1, 1),  # a class neither true nor predicted
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", CASES)
def test_point_estimates_equal_sklearn(case, seed):
    k, n, drop_true, drop_pred = case
    y, pred, proba = _random_case(seed, k, n, drop_true=drop_true, drop_pred=drop_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undefined values are NaN silently
        report = classification_metrics(y, pred, proba, classes=range(k), n_bootstrap=0)
    oracle = _sklearn_oracle(y, pred, proba, k)
    for name, expected in oracle.items():
        got = report[name].value
        if math.isnan(expected):
            assert math.isnan(got), name
        else:
            assert got == pytest.approx(expected, abs=1e-12), name
    assert np.array_equal(report.confusion_matrix, skm.confusion_matrix(y, pred, labels=range(k)))
    if drop_true is not None:  # undefined where the class is absent from the truth
        for name in (f"recall[{drop_true}]", f"roc_auc[{drop_true}]", f"pr_auc[{drop_true}]"):
            assert math.isnan(report[name].value), name
    if drop_pred is not None:
        assert math.isnan(report[f"precision[{drop_pred}]"].value)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", CASES)
def test_bootstrap_engine_equals_sklearn_on_resampled_data(case, seed):
    """The vectorised replicate formulas, on weights from real resamples, equal sklearn on the resampled arrays."""
    k, n, drop_true, drop_pred = case
    y, pred, proba = _random_case(seed, k, n, drop_true=drop_true, drop_pred=drop_pred)
    rng = np.random.default_rng(seed + 100)
    draws = [np.arange(n)] + [rng.integers(0, n, n) for _ in range(3)]  # identity, then three resamples
    weights = np.stack([np.bincount(d, minlength=n) for d in draws]).astype(float)
    cm = bs.confusion_from_weights(y, pred, weights, k)
    d = bs.metrics_from_confusion(cm)
    for b, idx in enumerate(draws):
        oracle = _sklearn_oracle(y[idx], pred[idx], proba[idx], k)
        got = {m: d[m][b] for m in ("accuracy", "balanced_accuracy", "cohen_kappa", "macro_f1")}
        for c in range(k):
            for m, key in (
                ("precision", "precision"),
                ("recall", "recall"),
                ("specificity", "specificity"),
                ("npv", "npv"),
                ("f1", "f1"),
            ):
                got[f"{key}[{c}]"] = d[m][b, c]
            got[f"roc_auc[{c}]"] = bs.weighted_auc(y == c, proba[:, c], weights[b : b + 1])[0]
            got[f"pr_auc[{c}]"] = bs.weighted_average_precision(y == c, proba[:, c], weights[b : b + 1])[0]
        for name, value in got.items():
            expected = oracle.get(name, math.nan)
            if math.isnan(expected):
                assert math.isnan(value), (b, name)
            else:
                assert value == pytest.approx(expected, abs=1e-12), (b, name)


def test_hand_computed_binary():
    # TP=3 FN=1 FP=2 TN=4 (n=10), positive class "pos"; predictions = scores >= 0.55
    pos_scores = [0.9, 0.8, 0.6, 0.3]
    neg_scores = [0.7, 0.6, 0.5, 0.4, 0.2, 0.1]
    scores = np.array(pos_scores + neg_scores)
    y = np.array(["pos"] * 4 + ["neg"] * 6)
    pred = np.where(scores >= 0.55, "pos", "neg")
    proba = np.column_stack([1 - scores, scores])
    r = classification_metrics(y, pred, proba, classes=["neg", "pos"], n_bootstrap=0)
    v = {name: m.value for name, m in r.metrics.items()}
    assert r.confusion_matrix.tolist() == [[4, 2], [1, 3]]
    assert v["accuracy"] == pytest.approx(0.7)  # (3 + 4) / 10
    assert v["tpr[pos]"] == pytest.approx(0.75)  # 3 / (3 + 1)
    assert v["tnr[pos]"] == pytest.approx(4 / 6)  # 4 / (4 + 2)
    assert v["ppv[pos]"] == pytest.approx(0.6)  # 3 / (3 + 2)
    assert v["npv[pos]"] == pytest.approx(0.8)  # 4 / (4 + 1)
    assert v["f1[pos]"] == pytest.approx(2 / 3)  # 2*3 / (2*3 + 2 + 1)
    assert v["f1[neg]"] == pytest.approx(8 / 11)  # 2*4 / (2*4 + 1 + 2)
    assert v["balanced_accuracy"] == pytest.approx(17 / 24)  # (3/4 + 4/6) / 2
    assert v["cohen_kappa"] == pytest.approx(0.4)  # po 0.7, pe (4*5 + 6*5)/100 = 0.5 -> 0.2/0.5
    assert v["macro_f1"] == pytest.approx(23 / 33)  # (2/3 + 8/11) / 2
    # AUC: pairs (pos > neg) over 24: 0.9 -> 6, 0.8 -> 6, 0.6 -> 4 + tie 0.5, 0.3 -> 2  => 18.5 / 24
    assert v["roc_auc"] == pytest.approx(18.5 / 24)
    assert v["roc_auc[pos]"] == pytest.approx(18.5 / 24)
    # AP: recall steps of 1/4 at precisions 1 (0.9), 1 (0.8), 3/5 (0.6 with its tied negative), 4/8 (0.3)
    assert v["pr_auc"] == pytest.approx(0.25 * (1 + 1 + 0.6 + 0.5))


def test_hand_computed_three_classes():
    # confusion matrix, rows true A, B, C; columns predicted A, B, C (n = 16)
    cm = [[5, 1, 0], [2, 3, 1], [0, 1, 3]]
    y, pred = [], []
    for i, row in enumerate(cm):
        for j, count in enumerate(row):
            y += ["ABC"[i]] * count
            pred += ["ABC"[j]] * count
    r = classification_metrics(y, pred, n_bootstrap=0)
    v = {name: m.value for name, m in r.metrics.items()}
    assert r.classes == ("A", "B", "C")
    assert r.confusion_matrix.tolist() == cm
    assert "roc_auc" not in v  # no probabilities, no AUC
    assert v["accuracy"] == pytest.approx(11 / 16)
    assert [v[f"recall[{c}]"] for c in "ABC"] == pytest.approx([5 / 6, 3 / 6, 3 / 4])
    assert [v[f"precision[{c}]"] for c in "ABC"] == pytest.approx([5 / 7, 3 / 5, 3 / 4])
    # TN: A 16-5-1-2 = 8, B 16-3-3-2 = 8, C 16-3-1-1 = 11; FP: A 2, B 2, C 1; FN: A 1, B 3, C 1
    assert [v[f"specificity[{c}]"] for c in "ABC"] == pytest.approx([8 / 10, 8 / 10, 11 / 12])
    assert [v[f"npv[{c}]"] for c in "ABC"] == pytest.approx([8 / 9, 8 / 11, 11 / 12])
    assert [v[f"f1[{c}]"] for c in "ABC"] == pytest.approx([10 / 13, 6 / 11, 6 / 8])
    assert v["balanced_accuracy"] == pytest.approx(25 / 36)  # (5/6 + 1/2 + 3/4) / 3
    # pe = (6*7 + 6*5 + 4*4) / 16^2 = 11/32; kappa = (11/16 - 11/32) / (1 - 11/32) = 11/21
    assert v["cohen_kappa"] == pytest.approx(11 / 21)
    assert v["macro_f1"] == pytest.approx((10 / 13 + 6 / 11 + 6 / 8) / 3)


def test_undefined_values_are_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # every prediction "a": PPV of "b" undefined; one class only in the truth: kappa's chance agreement is 1
        r = classification_metrics(
            ["a", "a", "a"], ["a", "a", "a"], np.array([[0.9, 0.1]] * 3), classes=["a", "b"]
        )
    assert r["accuracy"].value == 1.0
    for name in (
        "precision[b]",
        "recall[b]",
        "f1[b]",
        "roc_auc[a]",
        "roc_auc[b]",
        "roc_auc",
        "pr_auc[b]",
        "cohen_kappa",
    ):
        assert math.isnan(r[name].value), name
        assert math.isnan(r[name].ci_low) and math.isnan(r[name].ci_high), name
    assert r.to_json()["roc_auc"] == {"value": None, "ci_low": None, "ci_high": None}


def _noisy(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, n), 0, 1)
    return y, (score > 0.5).astype(int), np.column_stack([1 - score, score])


def test_ci_contains_point_estimate_and_is_reproducible():
    y, pred, proba = _noisy(400, 0)
    r = classification_metrics(y, pred, proba, n_bootstrap=500, seed=3)
    for name, m in r.metrics.items():
        assert m.ci_low <= m.value <= m.ci_high, name
        assert m.ci_low < m.ci_high, name
    again = classification_metrics(y, pred, proba, n_bootstrap=500, seed=3)
    assert again.metrics == r.metrics
    other = classification_metrics(y, pred, proba, n_bootstrap=500, seed=4)
    assert other["accuracy"].value == r["accuracy"].value and other["accuracy"].ci_low != r["accuracy"].ci_low


def test_ci_width_shrinks_with_n():
    names = ("accuracy", "roc_auc", "tpr[1]", "npv[1]")
    widths = {}
    for n in (100, 1600):
        per_seed = []
        for seed in range(3):  # average over samples: one small sample can be lucky
            y, pred, proba = _noisy(n, seed)
            r = classification_metrics(y, pred, proba, n_bootstrap=400)
            per_seed.append([r[m].ci_high - r[m].ci_low for m in names])
        widths[n] = dict(zip(names, np.mean(per_seed, axis=0)))
    for m in names:
        # standard errors scale as 1/sqrt(n): 16x the samples, about a quarter of the width
        assert 2.5 < widths[100][m] / widths[1600][m] < 6.5, (m, widths)


def test_stratified_bootstrap_keeps_class_support():
    y = np.array([0] * 5 + [1] * 95)
    weights = np.concatenate(list(bs.bootstrap_weights(y, n_bootstrap=50, rng=np.random.default_rng(0))))
    assert weights.shape == (50, 100)
    assert np.all(weights[:, y == 0].sum(axis=1) == 5) and np.all(weights[:, y == 1].sum(axis=1) == 95)


def test_cluster_bootstrap_is_wider_for_correlated_tiles():
    # 40 patients x 25 tiles; each patient is either easy (tiles 95% right) or hard (40% right): tiles of one
    # patient are correlated, so resampling tiles understates the uncertainty
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(40), 25)
    y = np.repeat(rng.integers(0, 2, 40), 25)
    p_right = np.repeat(np.where(rng.random(40) < 0.5, 0.95, 0.4), 25)
    pred = np.where(rng.random(y.size) < p_right, y, 1 - y)
    tile = classification_metrics(y, pred, n_bootstrap=800)
    cluster = classification_metrics(y, pred, groups=patients, n_bootstrap=800)
    assert tile.bootstrap == "stratified" and cluster.bootstrap == "cluster"
    assert cluster.counts["n_groups"] == 40
    for m in ("accuracy", "balanced_accuracy", "recall[1]"):
        assert cluster[m].value == tile[m].value
        w_tile = tile[m].ci_high - tile[m].ci_low
        w_cluster = cluster[m].ci_high - cluster[m].ci_low
        assert w_cluster > 1.8 * w_tile, (m, w_tile, w_cluster)
    # with independent tiles the two agree roughly
    pred_iid = np.where(rng.random(y.size) < 0.675, y, 1 - y)
    a = classification_metrics(y, pred_iid, n_bootstrap=800)["accuracy"]
    b = classification_metrics(y, pred_iid, groups=patients, n_bootstrap=800)["accuracy"]
    assert 0.6 < (b.ci_high - b.ci_low) / (a.ci_high - a.ci_low) < 1.6


def test_percentile_ci_ignores_undefined_replicates():
    reps = np.array([[np.nan, 1.0], [0.2, 2.0], [0.4, 3.0], [np.nan, 4.0]])
    low, high = bs.percentile_ci(reps, 0.5)
    assert low[0] == pytest.approx(0.25) and high[0] == pytest.approx(0.35)
    assert low[1] == pytest.approx(1.75) and high[1] == pytest.approx(3.25)
    low, high = bs.percentile_ci(np.full((3, 1), np.nan), 0.95)
    assert np.isnan(low[0]) and np.isnan(high[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y_true": [], "y_pred": []}, "no samples"),
        ({"y_true": ["a", "b"], "y_pred": ["a"]}, "same length"),
        ({"y_true": ["a", "b"], "y_pred": ["a", "c"], "classes": ["a", "b"]}, "'c'"),
        ({"y_true": ["a", "b"], "y_pred": ["a", "b"], "proba": np.ones((2, 3))}, "proba"),
        ({"y_true": ["a", "b"], "y_pred": ["a", "b"], "level": "slides"}, "level"),
        ({"y_true": ["a", "b"], "y_pred": ["a", "b"], "ci": 95}, "ci"),
        ({"y_true": ["a", "a"], "y_pred": ["a", "a"]}, "two classes"),
    ],
)
def test_bad_arguments_raise_usage_error(kwargs, match):
    with pytest.raises(UsageError, match=match):
        classification_metrics(**kwargs)


def test_tpr_tnr_ppv_are_aliases():
    y, pred, proba = _random_case(0, 3, 50)
    r = classification_metrics(y, pred, proba, n_bootstrap=50)
    for c in range(3):
        assert r[f"tpr[{c}]"] == r[f"recall[{c}]"]
        assert r[f"tnr[{c}]"] == r[f"specificity[{c}]"]
        assert r[f"ppv[{c}]"] == r[f"precision[{c}]"]


def test_cluster_bootstrap_strata():
    rng = np.random.default_rng(0)
    # pure groups (one class per patient): each class keeps its number of patients in every replicate
    groups = np.repeat(np.arange(10), 3)
    y = np.repeat([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], 3)
    w = np.concatenate(list(bs.bootstrap_weights(y, n_bootstrap=40, rng=rng, groups=groups)))
    assert np.all(w[:, y == 0].sum(axis=1) == 9) and np.all(w[:, y == 1].sum(axis=1) == 21)
    assert np.all(w[:, groups == 4] == w[:, [12]])  # a group's samples share its weight
    # mixed groups (slides with several classes) are drawn from one pool of ten groups
    y_mixed = np.tile([0, 1, 1], 10)
    w = np.concatenate(list(bs.bootstrap_weights(y_mixed, n_bootstrap=40, rng=rng, groups=groups)))
    assert np.all(w.sum(axis=1) == 30) and np.all(w[:, y_mixed == 0].sum(axis=1) == 10)
    counts_per_group = w[:, ::3]
    assert counts_per_group.std() > 0.5  # groups really are resampled


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, eosin.evaluate, eosin.cli._evaluate; "
        "print(any(m in sys.modules for m in ('numpy', 'sklearn', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_interval_coverage_by_simulation():
    """95% intervals cover the population value about 95% of the time; with correlated tiles only the cluster
    bootstrap does, the tile bootstrap under-covers (the reason to pass patient ids)."""
    rng = np.random.default_rng(0)
    trials = 150
    covered = {"iid": 0, "tile": 0, "cluster": 0}
    for t in range(trials):
        # independent samples, true accuracy 0.8
        y = rng.integers(0, 2, 200)
        pred = np.where(rng.random(200) < 0.8, y, 1 - y)
        m = classification_metrics(y, pred, n_bootstrap=400, seed=t)["accuracy"]
        covered["iid"] += m.ci_low <= 0.8 <= m.ci_high
        # 30 patients x 20 tiles; a patient's tiles share its accuracy, drawn from Beta(4, 1) (mean 0.8)
        patients = np.repeat(np.arange(30), 20)
        y = np.repeat(rng.integers(0, 2, 30), 20)
        p_right = np.repeat(rng.beta(4, 1, 30), 20)
        pred = np.where(rng.random(600) < p_right, y, 1 - y)
        tile = classification_metrics(y, pred, n_bootstrap=400, seed=t)["accuracy"]
        cluster = classification_metrics(y, pred, groups=patients, n_bootstrap=400, seed=t)["accuracy"]
        covered["tile"] += tile.ci_low <= 0.8 <= tile.ci_high
        covered["cluster"] += cluster.ci_low <= 0.8 <= cluster.ci_high
    rate = {k: v / trials for k, v in covered.items()}
    assert 0.88 <= rate["iid"] <= 0.99, rate
    assert 0.85 <= rate["cluster"] <= 0.99, rate
    assert rate["tile"] < rate["cluster"] - 0.15, rate
