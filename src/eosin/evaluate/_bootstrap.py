"""Fast bootstrap of classification metrics: resampling weights, batched confusion matrices, weighted AUCs.

A bootstrap replicate is represented by a row of sample weights (how many times each sample was drawn), so a
batch of ``B`` replicates is a ``(B, n)`` weight matrix. From it every confusion-matrix metric follows from a
``(B, K, K)`` tensor of counts, and ROC-AUC / average precision follow from per-score weighted counts, all with
numpy in one go. Weights of all ones reproduce the metrics of the original sample exactly (tests check this
against scikit-learn to 1e-12).

Undefined values (zero denominators, a class absent from a replicate) are NaN; no warnings are emitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

__all__ = [
    "bootstrap_weights",
    "confusion_index",
    "confusion_from_weights",
    "score_index",
    "ranking_metrics",
    "metrics_from_confusion",
    "weighted_auc",
    "weighted_average_precision",
    "percentile_ci",
]


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def bootstrap_weights(
    y_index: np.ndarray,
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
    groups: np.ndarray | None = None,
    chunk: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield blocks of bootstrap weights, each ``(b, n)`` float64, ``n_bootstrap`` rows in all.

    Without ``groups`` the bootstrap is stratified by true class: each replicate draws, with replacement, as many
    samples of each class as the class has, so every class keeps its support. With ``groups`` (patient ids,
    integer codes ``0..G-1``) it is a cluster bootstrap: whole groups are drawn with replacement, and a sample's
    weight is the number of times its group was drawn. When every group holds a single true class the draw is
    stratified by that class (each class keeps its number of groups); groups that mix classes are drawn from one
    pool. Few groups (under ~20) give unreliable intervals whatever the method.

    Parameters
    ----------
    y_index
        ``(n,)`` true class index of each sample.
    n_bootstrap
        Number of replicates.
    rng
        Random generator (the caller seeds it).
    groups
        ``(n,)`` integer group code of each sample, or None.
    chunk
        Replicates per block; by default chosen to keep a block near 1 million weights.
    """
    y_index = np.asarray(y_index)
    n = y_index.size
    if chunk is None:
        chunk = max(1, min(n_bootstrap, 1_000_000 // max(n, 1)))
    if groups is None:
        units = y_index
        n_units = n
        members = None
    else:
        groups = np.asarray(groups)
        n_units = int(groups.max()) + 1 if n else 0
        # when every group holds one true class (patient-level labels), that class is the group's stratum;
        # groups mixing classes (slides with several tissue types) are resampled as one stratum
        k = int(y_index.max()) + 1 if n else 1
        table = np.zeros((n_units, k), dtype=np.int64)
        np.add.at(table, (groups, y_index), 1)
        pure = bool(np.all((table > 0).sum(axis=1) <= 1))
        units = table.argmax(axis=1) if pure else np.zeros(n_units, dtype=np.int64)
        members = groups
    strata = [np.flatnonzero(units == s) for s in np.unique(units)]
    done = 0
    while done < n_bootstrap:
        b = min(chunk, n_bootstrap - done)
        drawn = np.concatenate(
            [
                members_of[rng.integers(0, members_of.size, size=(b, members_of.size))]
                for members_of in strata
            ],
            axis=1,
        )
        offsets = (np.arange(b) * n_units)[:, None]
        unit_counts = np.bincount((drawn + offsets).ravel(), minlength=b * n_units).reshape(b, n_units)
        weights = unit_counts if members is None else unit_counts[:, members]
        yield weights.astype(np.float64)
        done += b


class _RowIndex(NamedTuple):
    """Which of ``n_rows`` output rows each sample adds its weight to: ``(n,)`` int ``rows``."""

    rows: np.ndarray
    n_rows: int


def _weighted_sums(index: _RowIndex, weights: np.ndarray) -> np.ndarray:
    """``(B, R)`` per-row sums of each replicate's weights (one bincount over all replicates, O(B n))."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    b = weights.shape[0]
    if index.n_rows == 0:
        return np.zeros((b, 0))
    flat = (index.rows[None, :] + (np.arange(b) * index.n_rows)[:, None]).ravel()
    return np.bincount(flat, weights=weights.ravel(), minlength=b * index.n_rows).reshape(b, index.n_rows)


def confusion_index(y_index: np.ndarray, p_index: np.ndarray, k: int) -> _RowIndex:
    """Each sample's confusion-matrix cell (row-major: true * K + predicted), for :func:`confusion_from_weights`."""
    return _RowIndex(np.asarray(y_index, dtype=np.int64) * k + np.asarray(p_index, dtype=np.int64), k * k)


def confusion_from_weights(
    y_index: np.ndarray, p_index: np.ndarray, weights: np.ndarray, k: int, *, index=None
):
    """Weighted confusion matrices ``(B, K, K)`` (rows: true class, columns: predicted class).

    ``weights`` is ``(B, n)``; a row of ones gives the ordinary confusion matrix of the sample. ``index`` is
    :func:`confusion_index` of the same labels, to reuse across blocks of replicates.
    """
    if index is None:
        index = confusion_index(y_index, p_index, k)
    return _weighted_sums(index, weights).reshape(-1, k, k)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Every confusion-matrix metric for a batch of confusion matrices.

    Parameters
    ----------
    cm
        ``(B, K, K)`` counts, rows true class, columns predicted class.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``cohen_kappa``, ``macro_f1``: ``(B,)``; ``precision``, ``recall``,
        ``specificity``, ``npv``, ``f1``: ``(B, K)``. Definitions follow scikit-learn: balanced accuracy is the
        mean recall over classes present in the truth; macro F1 is the mean F1 over classes whose F1 is defined
        (``f1_score(average="macro", zero_division=np.nan)``); per-class values with a zero denominator are NaN.
    """
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum(axis=(1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(axis=2)  # true counts per class
    predicted = cm.sum(axis=1)
    fn = support - tp
    fp = predicted - tp
    tn = total[:, None] - tp - fn - fp
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, support)
    specificity = _safe_div(tn, tn + fp)
    npv = _safe_div(tn, tn + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    accuracy = _safe_div(tp.sum(axis=1), total)
    present = support > 0
    balanced = _safe_div(np.where(present, np.nan_to_num(recall), 0.0).sum(axis=1), present.sum(axis=1))
    defined_f1 = ~np.isnan(f1)
    macro_f1 = _safe_div(np.where(defined_f1, f1, 0.0).sum(axis=1), defined_f1.sum(axis=1))
    p_observed = accuracy
    p_expected = _safe_div((support * predicted).sum(axis=1), total**2)
    kappa = _safe_div(p_observed - p_expected, 1.0 - p_expected)
    return {
        "accuracy": accuracy,
        "balanced_accuracy": balanced,
        "cohen_kappa": kappa,
        "macro_f1": macro_f1,
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "npv": npv,
        "f1": f1,
    }


def score_index(positive: np.ndarray, scores: np.ndarray) -> _RowIndex:
    """Rows for the weighted ROC/PR formulas of one binary problem, for :func:`ranking_metrics`.

    With ``U`` distinct scores in descending order, a positive sample with the ``u``-th highest score goes to row
    ``u`` and a negative one to row ``U + u``.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    new_block = np.r_[True, s[1:] != s[:-1]] if s.size else np.zeros(0, dtype=bool)
    block = np.empty(s.size, dtype=np.int64)
    block[order] = np.cumsum(new_block) - 1
    u = int(new_block.sum())
    return _RowIndex(block + u * (~positive), 2 * u)


def ranking_metrics(index, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision of each weighted replicate, from a :func:`score_index`.

    ROC-AUC is the Mann-Whitney statistic with ties counted one half; average precision is scikit-learn's
    step-wise PR-AUC, ``sum over thresholds of (R_t - R_t-1) P_t``. Both ``(B,)``; AUC is NaN where a replicate has
    no positive or no negative weight, AP where it has no positive weight.
    """
    sums = _weighted_sums(index, weights)  # (B, 2U)
    u = sums.shape[1] // 2
    if u == 0:
        nan = np.full(sums.shape[0], np.nan)
        return nan, nan.copy()
    pos_w, neg_w = sums[:, :u], sums[:, u:]
    tp = np.cumsum(pos_w, axis=1)
    fp = np.cumsum(neg_w, axis=1)
    pos_total, neg_total = tp[:, -1], fp[:, -1]
    # sum_u pos_u * (negatives strictly below u + half the tied negatives), in row-wise dot products
    auc_num = (
        pos_total * neg_total - np.einsum("bu,bu->b", pos_w, fp) + 0.5 * np.einsum("bu,bu->b", pos_w, neg_w)
    )
    auc = _safe_div(auc_num, pos_total * neg_total)
    precision = np.add(tp, fp, out=fp)  # tp + fp, reusing fp's memory
    np.maximum(precision, np.finfo(np.float64).tiny, out=precision)  # 0 only where tp = 0 too: precision 0
    np.divide(tp, precision, out=precision)
    ap = _safe_div(np.einsum("bu,bu->b", pos_w, precision), pos_total)
    return auc, ap


def weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of each weighted replicate.

    Parameters
    ----------
    positive
        ``(n,)`` bool, the positive class.
    scores
        ``(n,)`` scores, higher meaning more positive.
    weights
        ``(B, n)`` sample weights.

    Returns
    -------
    numpy.ndarray
        ``(B,)``; NaN where a replicate has no positive or no negative weight.
    """
    return ranking_metrics(score_index(positive, scores), weights)[0]


def weighted_average_precision(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's step-wise PR-AUC) of each weighted replicate, ``(B,)``; NaN without positives."""
    return ranking_metrics(score_index(positive, scores), weights)[1]


def percentile_ci(replicates: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the defined (non-NaN) replicates of each column.

    Parameters
    ----------
    replicates
        ``(B, M)`` bootstrap values of ``M`` metrics.
    ci
        Coverage, e.g. 0.95.

    Returns
    -------
    tuple of numpy.ndarray
        ``(M,)`` lower and upper bounds; NaN for a metric with no defined replicate.
    """
    replicates = np.atleast_2d(replicates)
    alpha = (1.0 - ci) / 2.0
    low = np.full(replicates.shape[1], np.nan)
    high = np.full(replicates.shape[1], np.nan)
    for j in range(replicates.shape[1]):
        col = replicates[:, j]
        col = col[~np.isnan(col)]
        if col.size:
            low[j], high[j] = np.quantile(col, [alpha, 1.0 - alpha])
    return low, high
