"""Classification metrics with bootstrap confidence intervals, at tile, slide or patient level.

Point estimates come from scikit-learn's metric functions (specificity and NPV, which scikit-learn lacks, from its
confusion matrix); confidence intervals come from a vectorised bootstrap (:mod:`eosin.evaluate._bootstrap`) whose
formulas reproduce scikit-learn's exactly on the original sample.

Undefined values
    A metric whose denominator is zero on the data (precision of a class never predicted, recall or AUC of a class
    absent from the truth, kappa when chance agreement is 1, ...) is NaN, silently: no warning, no exception.
    Macro averages (``macro_f1``, ``roc_auc``, ``pr_auc`` for more than two classes) average the classes where the
    per-class value is defined; ``balanced_accuracy`` averages recall over the classes present in the truth
    (scikit-learn's definition). Confidence bounds are percentiles of the replicates where the metric is defined,
    and NaN when it is defined in none.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from eosin.errors import UsageError
from eosin.evaluate import _bootstrap as bs

__all__ = ["Metric", "ClassificationReport", "classification_metrics", "LEVELS"]

LEVELS = ("tile", "slide", "patient")
PER_CLASS = ("precision", "recall", "tpr", "specificity", "tnr", "ppv", "npv", "f1", "roc_auc", "pr_auc")


class Metric(NamedTuple):
    """One metric's value with its confidence interval (NaN when undefined)."""

    value: float
    ci_low: float
    ci_high: float

    def to_json(self) -> dict[str, float | None]:
        """``{value, ci_low, ci_high}`` with NaN as None (JSON null)."""
        return {k: (None if math.isnan(v) else float(v)) for k, v in self._asdict().items()}


@dataclass(frozen=True)
class ClassificationReport:
    """The result of :func:`classification_metrics`.

    Attributes
    ----------
    metrics
        Metric name → :class:`Metric`. Overall names: ``accuracy``, ``balanced_accuracy``, ``cohen_kappa``,
        ``macro_f1``, ``roc_auc``, ``pr_auc``; per class ``c``: ``precision[c]``, ``recall[c]`` (= ``tpr[c]``),
        ``specificity[c]`` (= ``tnr[c]``), ``ppv[c]`` (= ``precision[c]``), ``npv[c]``, ``f1[c]``,
        ``roc_auc[c]``, ``pr_auc[c]``. AUC metrics are present only when probabilities were given.
    classes
        Class labels, in the order of the confusion matrix rows and columns and of the probability columns.
    confusion_matrix
        ``(K, K)`` int counts, rows true class, columns predicted class.
    counts
        ``n`` (samples), ``support`` (class → true count), ``predicted`` (class → predicted count) and
        ``n_groups`` (number of bootstrap clusters, or None).
    level, n_bootstrap, ci, seed
        How the report was made; ``bootstrap`` is ``"stratified"`` or ``"cluster"``.
    y_true, y_pred, proba
        The evaluated data as class indices ``(n,)`` and probabilities ``(n, K)`` or None (for plots).
    """

    metrics: dict[str, Metric]
    classes: tuple[str, ...]
    confusion_matrix: np.ndarray
    counts: dict[str, Any]
    level: str = "tile"
    n_bootstrap: int = 1000
    ci: float = 0.95
    seed: int | None = 0
    bootstrap: str = "stratified"
    y_true: np.ndarray = field(default=None, repr=False)
    y_pred: np.ndarray = field(default=None, repr=False)
    proba: np.ndarray | None = field(default=None, repr=False)

    def __getitem__(self, name: str) -> Metric:
        return self.metrics[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def to_json(self) -> dict[str, dict[str, float | None]]:
        """Metric name → ``{value, ci_low, ci_high}`` (NaN as None): what ``eosin evaluate --json`` prints."""
        return {name: m.to_json() for name, m in self.metrics.items()}

    def summary(self) -> dict[str, Any]:
        """Everything but the per-sample arrays, JSON-ready (metrics, classes, confusion matrix, counts, settings)."""
        return {
            "level": self.level,
            "bootstrap": self.bootstrap,
            "n_bootstrap": self.n_bootstrap,
            "ci": self.ci,
            "seed": self.seed,
            "classes": list(self.classes),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "counts": self.counts,
            "metrics": self.to_json(),
        }


def _encode(
    y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any] | None, n_proba_cols: int | None
) -> tuple[tuple[Any, ...], np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape:
        raise UsageError(
            f"y_true and y_pred must be 1-D of the same length; got shapes {y_true.shape} and {y_pred.shape}.",
            fix="pass one true and one predicted label per sample",
        )
    if y_true.size == 0:
        raise UsageError("no samples to evaluate (y_true is empty).", fix="pass at least one prediction")
    if classes is None:
        classes = sorted(set(y_true.tolist()) | set(y_pred.tolist()), key=lambda c: (str(type(c)), c))
        if n_proba_cols is not None and n_proba_cols != len(classes):
            raise UsageError(
                f"proba has {n_proba_cols} columns but the labels hold {len(classes)} classes {classes}.",
                fix="pass classes= in the order of the probability columns",
            )
    classes = tuple(classes)
    if len(set(classes)) != len(classes):
        raise UsageError(f"classes has duplicates: {list(classes)}.", fix="list each class once")
    if len(classes) < 2:
        raise UsageError(
            f"need at least two classes, got {list(classes)}.", fix="pass classes= with every class"
        )
    lookup = {c: i for i, c in enumerate(classes)}
    # also accept labels given as strings of the classes (CSV round trips)
    lookup_str = {str(c): i for i, c in enumerate(classes)}
    out = []
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        idx = np.empty(arr.size, dtype=np.int64)
        for i, v in enumerate(arr.tolist()):
            j = lookup.get(v, lookup_str.get(str(v)))
            if j is None:
                raise UsageError(
                    f"{name} holds the label {v!r}, which is not among the classes {[str(c) for c in classes]}.",
                    fix="pass classes= with every label, or correct the labels",
                )
            idx[i] = j
        out.append(idx)
    return classes, out[0], out[1]


def classification_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: np.ndarray | None = None,
    *,
    classes: Sequence[Any] | None = None,
    groups: Sequence[Any] | None = None,
    level: str = "tile",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int | None = 0,
) -> ClassificationReport:
    """Accuracy, balanced accuracy, kappa, per-class TPR/TNR/PPV/NPV/F1, ROC-AUC and PR-AUC with bootstrap CIs.

    Parameters
    ----------
    y_true, y_pred
        ``(n,)`` true and predicted labels (any hashable values).
    proba
        ``(n, K)`` class probabilities (or scores), columns in the order of ``classes``; enables ROC-AUC and PR-AUC
        (average precision). For two classes the overall ``roc_auc``/``pr_auc`` score the second class as positive;
        for more, they are the macro one-vs-rest average over classes where they are defined.
    classes
        Class order; by default the sorted labels seen. Must be given when some class appears in neither label
        array but has a probability column.
    groups
        ``(n,)`` cluster ids (patients). When given, the bootstrap resamples whole groups (stratified by class
        when each group has one true class), so the intervals honour correlation between a patient's samples.
        With few groups (under ~20) any bootstrap interval is unreliable; the report states the group count.
        Otherwise the bootstrap resamples samples within each true class.
    level
        ``"tile"``, ``"slide"`` or ``"patient"``: recorded in the report (aggregate first with
        :func:`aggregate_predictions`).
    n_bootstrap
        Replicates (0 disables intervals: bounds are NaN).
    ci
        Interval coverage in (0, 1).
    seed
        Seed of the bootstrap's random generator.

    Returns
    -------
    ClassificationReport
        See its attributes; the module docstring describes undefined values (NaN, never an exception).

    Examples
    --------
    >>> r = classification_metrics(["a", "b", "b"], ["a", "b", "a"], n_bootstrap=0)
    >>> r["accuracy"].value
    0.6666666666666666
    """
    from sklearn import metrics as skm

    if level not in LEVELS:
        raise UsageError(f"level must be one of {list(LEVELS)}, got {level!r}.", fix="pick one of them")
    if not 0 < ci < 1:
        raise UsageError(
            f"ci must be between 0 and 1 (e.g. 0.95), got {ci!r}.", fix="pass a coverage like 0.95"
        )
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise UsageError(
            f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}.", fix="pass e.g. 1000"
        )
    n_bootstrap = int(n_bootstrap)
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2:
            raise UsageError(f"proba must be (n, K), got shape {proba.shape}.", fix="one column per class")
        if not np.all(np.isfinite(proba)):
            raise UsageError("proba holds NaN or infinite values.", fix="pass finite probabilities")
    classes, yt, yp = _encode(y_true, y_pred, classes, None if proba is None else proba.shape[1])
    k = len(classes)
    n = yt.size
    if proba is not None and proba.shape != (n, k):
        raise UsageError(
            f"proba has shape {proba.shape}; expected ({n}, {k}) for {n} samples and classes {list(classes)}.",
            fix="pass one probability column per class, in the order of classes",
        )
    group_codes = None
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise UsageError(f"groups must have one id per sample ({n}), got shape {groups.shape}.", fix="")
        _, group_codes = np.unique(groups.astype(str), return_inverse=True)

    labels = np.arange(k)
    cm = skm.confusion_matrix(yt, yp, labels=labels)
    point: dict[str, float | np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined values become NaN below, by our own rules
        point["accuracy"] = skm.accuracy_score(yt, yp)
        point["balanced_accuracy"] = skm.balanced_accuracy_score(yt, yp)
        kappa = skm.cohen_kappa_score(yt, yp, labels=labels)
        point["cohen_kappa"] = kappa
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            yt, yp, labels=labels, average=None, zero_division=np.nan
        )
        point["macro_f1"] = skm.f1_score(yt, yp, labels=labels, average="macro", zero_division=np.nan)
    derived = bs.metrics_from_confusion(cm[None])
    point["cohen_kappa"] = derived["cohen_kappa"][0] if not np.isfinite(kappa) else kappa
    point.update(precision=precision, recall=recall, f1=f1)
    point["specificity"] = derived["specificity"][0]
    point["npv"] = derived["npv"][0]
    if proba is not None:
        roc = np.full(k, np.nan)
        ap = np.full(k, np.nan)
        for j in range(k):
            pos = yt == j
            if pos.any():
                ap[j] = skm.average_precision_score(pos, proba[:, j])
                if not pos.all():
                    roc[j] = skm.roc_auc_score(pos, proba[:, j])
        point["roc_auc_k"], point["pr_auc_k"] = roc, ap
        point["roc_auc"] = roc[1] if k == 2 else _nanmean(roc)
        point["pr_auc"] = ap[1] if k == 2 else _nanmean(ap)

    names, values, low, high = _names_and_values(point, classes, proba is not None)
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        cm_index = bs.confusion_index(yt, yp, k)
        score_indices = None if proba is None else [bs.score_index(yt == j, proba[:, j]) for j in range(k)]
        reps = []
        for weights in bs.bootstrap_weights(yt, n_bootstrap=n_bootstrap, rng=rng, groups=group_codes):
            reps.append(_replicate_values(cm_index, score_indices, weights, k))
        low, high = bs.percentile_ci(np.concatenate(reps, axis=0), ci)
    metrics = {
        name: Metric(float(v), float(lo), float(hi)) for name, v, lo, hi in zip(names, values, low, high)
    }
    metrics = _add_aliases(metrics, classes)
    counts = {
        "n": int(n),
        "support": {str(c): int(cm[i].sum()) for i, c in enumerate(classes)},
        "predicted": {str(c): int(cm[:, i].sum()) for i, c in enumerate(classes)},
        "n_groups": None if group_codes is None else int(group_codes.max()) + 1,
    }
    return ClassificationReport(
        metrics=metrics,
        classes=tuple(str(c) for c in classes),
        confusion_matrix=cm,
        counts=counts,
        level=level,
        n_bootstrap=n_bootstrap,
        ci=ci,
        seed=seed,
        bootstrap="cluster" if group_codes is not None else "stratified",
        y_true=yt,
        y_pred=yp,
        proba=proba,
    )


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


_OVERALL = ("accuracy", "balanced_accuracy", "cohen_kappa", "macro_f1")
_CLASS_KEYS = ("precision", "recall", "specificity", "npv", "f1")


def _names_and_values(point, classes, with_proba):
    names, values = list(_OVERALL), [point[m] for m in _OVERALL]
    if with_proba:
        names += ["roc_auc", "pr_auc"]
        values += [point["roc_auc"], point["pr_auc"]]
    for j, c in enumerate(classes):
        for m in _CLASS_KEYS:
            names.append(f"{m}[{c}]")
            values.append(point[m][j])
        if with_proba:
            names += [f"roc_auc[{c}]", f"pr_auc[{c}]"]
            values += [point["roc_auc_k"][j], point["pr_auc_k"][j]]
    nan = np.full(len(names), np.nan)
    return names, np.asarray(values, dtype=np.float64), nan, nan.copy()


def _replicate_values(cm_index, score_indices, weights, k) -> np.ndarray:
    """``(b, M)`` metric values of a block of replicates, columns in the order of :func:`_names_and_values`."""
    d = bs.metrics_from_confusion(bs.confusion_from_weights(None, None, weights, k, index=cm_index))
    cols = [d[m] for m in _OVERALL]
    if score_indices is not None:
        ranked = [bs.ranking_metrics(index, weights) for index in score_indices]
        roc = np.stack([r[0] for r in ranked], axis=1)
        ap = np.stack([r[1] for r in ranked], axis=1)
        if k == 2:
            cols += [roc[:, 1], ap[:, 1]]
        else:
            cols += [_row_nanmean(roc), _row_nanmean(ap)]
    for j in range(k):
        cols += [d[m][:, j] for m in _CLASS_KEYS]
        if score_indices is not None:
            cols += [roc[:, j], ap[:, j]]
    return np.stack(cols, axis=1)


def _row_nanmean(x: np.ndarray) -> np.ndarray:
    defined = ~np.isnan(x)
    return bs._safe_div(np.where(defined, x, 0.0).sum(axis=1), defined.sum(axis=1))


def _add_aliases(metrics: Mapping[str, Metric], classes) -> dict[str, Metric]:
    """Insert ``tpr``, ``tnr`` and ``ppv`` per class next to ``recall``, ``specificity`` and ``precision``."""
    out: dict[str, Metric] = {}
    alias = {"recall": "tpr", "specificity": "tnr", "precision": "ppv"}
    for name, m in metrics.items():
        out[name] = m
        base = name.split("[", 1)[0]
        if base in alias and "[" in name:
            out[alias[base] + name[len(base) :]] = m
    return out
