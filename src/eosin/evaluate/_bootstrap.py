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

import numpy as np

__all__ = [
    "bootstrap_weights",
    "confusion_from_weights",
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
        Replicates per block; by default chosen to keep a block near 4 million weights.
    """
    y_index = np.asarray(y_index)
    n = y_index.size
    if chunk is None:
        chunk = max(1, min(n_bootstrap, 4_000_000 // max(n, 1)))
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
            [members_of[rng.integers(0, members_of.size, size=(b, members_of.size))] for members_of in strata],
            axis=1,
        )
        offsets = (np.arange(b) * n_units)[:, None]
        unit_counts = np.bincount((drawn + offsets).ravel(), minlength=b * n_units).reshape(b, n_units)
        weights = unit_counts if members is None else unit_counts[:, members]
        yield weights.astype(np.float64)
        done += b


def confusion_from_weights(y_index: np.ndarray, p_index: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Weighted confusion matrices ``(B, K, K)`` (rows: true class, columns: predicted class).

    ``weights`` is ``(B, n)``; a row of ones gives the ordinary confusion matrix of the sample.
    """
    cells = np.asarray(y_index) * k + np.asarray(p_index)
    onehot = np.zeros((cells.size, k * k))
    onehot[np.arange(cells.size), cells] = 1.0
    return (np.asarray(weights, dtype=np.float64) @ onehot).reshape(-1, k, k)


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


def _score_blocks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order samples by descending score and return (order, start index of each block of tied scores)."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, starts


def _block_sums(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positive and negative counts per distinct score, descending: two ``(B, U)`` arrays."""
    order, starts = _score_blocks(scores)
    w = weights[:, order]
    pos = positive[order]
    pos_w = np.add.reduceat(w * pos, starts, axis=1)
    neg_w = np.add.reduceat(w * ~pos, starts, axis=1)
    return pos_w, neg_w


def weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of each weighted replicate (Mann-Whitney with ties counted one half).

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
    positive = np.asarray(positive, dtype=bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if positive.size == 0:
        return np.full(weights.shape[0], np.nan)
    pos_w, neg_w = _block_sums(positive, np.asarray(scores, dtype=np.float64), weights)
    # negatives strictly below each block = total negatives minus those at or above it (descending order)
    neg_above_incl = np.cumsum(neg_w, axis=1)
    neg_total = neg_above_incl[:, -1:]
    neg_below = neg_total - neg_above_incl
    num = (pos_w * (neg_below + 0.5 * neg_w)).sum(axis=1)
    return _safe_div(num, pos_w.sum(axis=1) * neg_total[:, 0])


def weighted_average_precision(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's step-wise PR-AUC) of each weighted replicate, ``(B,)``; NaN without positives."""
    positive = np.asarray(positive, dtype=bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if positive.size == 0:
        return np.full(weights.shape[0], np.nan)
    pos_w, neg_w = _block_sums(positive, np.asarray(scores, dtype=np.float64), weights)
    tp = np.cumsum(pos_w, axis=1)
    fp = np.cumsum(neg_w, axis=1)
    precision = _safe_div(tp, tp + fp)
    total = tp[:, -1]
    num = (pos_w * np.nan_to_num(precision)).sum(axis=1)
    return _safe_div(num, total)


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
