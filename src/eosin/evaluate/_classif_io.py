"""Prediction tables: reading ``PREDICTIONS.csv`` and aggregating tiles to slides or patients.

The CSV has one row per sample with columns ``id``, ``label`` (truth), ``pred`` (predicted class) and one
``p_<class>`` probability column per class (their order is the class order); ``patient`` and ``slide`` are
optional group columns, and any other column is kept as a string column. The csv module reads it (no pandas).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import EosinError, UsageError

__all__ = ["Predictions", "read_predictions_csv", "aggregate_predictions", "PROBA_SUM_TOLERANCE"]

REQUIRED = ("id", "label", "pred")
#: rows whose probabilities sum further than this from 1 are renormalized (with one warning per file)
PROBA_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Predictions:
    """A table of predictions, one row per sample (tile, slide or patient).

    Attributes
    ----------
    ids
        ``(n,)`` str sample ids.
    y_true, y_pred
        ``(n,)`` str labels.
    proba
        ``(n, K)`` float64 probabilities in the order of ``classes``, or None.
    classes
        Class labels (from the ``p_<class>`` columns; without them, the sorted labels seen).
    columns
        Other columns by name, each ``(n,)`` str (``patient``, ``slide``, ...).
    """

    ids: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: tuple[str, ...]
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.size)


def read_predictions_csv(path: str | os.PathLike[str]) -> Predictions:
    """Read and validate a predictions CSV.

    Parameters
    ----------
    path
        CSV file with columns ``id``, ``label``, ``pred``, ``p_<class>``... and optionally ``patient``/``slide``.

    Returns
    -------
    Predictions

    Raises
    ------
    EosinError
        The file is missing, unreadable or empty.
    UsageError
        A required column is missing (the message lists the columns seen), a ``label``/``pred`` value is not among
        the ``p_`` classes, a probability is not a number, negative, or a row's probabilities sum to 0, or an id
        is repeated (one sample counted twice inflates the evidence).

    Notes
    -----
    Rows whose probabilities sum to more than :data:`PROBA_SUM_TOLERANCE` away from 1 are divided by their sum,
    with one ``UserWarning`` naming the file and the number of rows.
    """
    path = Path(path)
    if not path.is_file():
        raise EosinError("no such predictions file.", path=path, fix="check the path")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EosinError(
            f"cannot read it as CSV ({exc}).", path=path, fix="write a UTF-8 CSV with a header"
        ) from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise EosinError(
            "the file is empty.",
            path=path,
            fix=f"write a header {','.join(REQUIRED)},p_<class>... and one row per sample",
        )
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    for name in REQUIRED:
        if name not in header:
            raise UsageError(
                f"missing column {name!r}; columns seen: {header}.",
                path=path,
                fix="name the columns id, label (truth), pred (predicted class) and p_<class> per class",
            )
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise UsageError(f"repeated columns {dup}.", path=path, fix="give each column once")
    if not body:
        raise EosinError("the file has a header but no rows.", path=path, fix="add one row per sample")
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise UsageError(
                f"row {i + 2} has {len(r)} fields, the header has {len(header)}.",
                path=path,
                fix="fix that row",
            )
    cols = {h: np.array([r[j].strip() for r in body], dtype=str) for j, h in enumerate(header)}
    p_cols = [h for h in header if h.startswith("p_")]
    classes = tuple(h[2:] for h in p_cols)
    if p_cols and any(not c for c in classes):
        raise UsageError("a probability column is named just 'p_'.", path=path, fix="name it p_<class>")
    ids = cols["id"]
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        shown = ", ".join(repr(x) for x in uniq[counts > 1][:5].tolist())
        raise UsageError(
            f"{int((counts > 1).sum())} ids appear more than once ({shown}).",
            path=path,
            fix="give every sample one row (duplicated rows count a sample twice)",
        )
    proba = None
    if p_cols:
        known = set(classes)
        for name in ("label", "pred"):
            bad = sorted(set(cols[name].tolist()) - known)
            if bad:
                raise UsageError(
                    f"column {name!r} holds {bad}, not among the classes of the p_ columns {list(classes)}.",
                    path=path,
                    fix="add a p_<class> column for every class, or correct the labels",
                )
        proba = np.empty((len(body), len(p_cols)))
        for j, h in enumerate(p_cols):
            try:
                proba[:, j] = cols[h].astype(np.float64)
            except ValueError:
                bad = next(v for v in cols[h].tolist() if not _is_float(v))
                raise UsageError(
                    f"column {h!r} holds {bad!r}, not a number.", path=path, fix="fix that value"
                ) from None
        if not np.isfinite(proba).all() or (proba < 0).any():
            raise UsageError(
                "probabilities must be finite and non-negative.", path=path, fix="fix the p_ columns"
            )
        sums = proba.sum(axis=1)
        if (sums <= 0).any():
            row = int(np.flatnonzero(sums <= 0)[0]) + 2
            raise UsageError(f"row {row}: probabilities sum to 0.", path=path, fix="fix the p_ columns")
        off = np.abs(sums - 1.0) > PROBA_SUM_TOLERANCE
        if off.any():
            warnings.warn(
                f"{path}: the probabilities of {int(off.sum())} of {len(body)} rows do not sum to 1 "
                f"(e.g. row {int(np.flatnonzero(off)[0]) + 2} sums to {sums[off][0]:.4g}); they were divided by their sum.",
                UserWarning,
                stacklevel=2,
            )
            proba[off] /= sums[off, None]
    else:
        classes = tuple(sorted(set(cols["label"].tolist()) | set(cols["pred"].tolist())))
    other = {h: cols[h] for h in header if h not in REQUIRED and h not in p_cols}
    return Predictions(
        ids=ids, y_true=cols["label"], y_pred=cols["pred"], proba=proba, classes=classes, columns=other
    )


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _as_predictions(data: Any) -> Predictions:
    """Accept a :class:`Predictions`, a mapping of columns or a pandas DataFrame (same column names as the CSV)."""
    if isinstance(data, Predictions):
        return data
    if hasattr(data, "columns") and hasattr(data, "__getitem__") and not isinstance(data, Mapping):
        data = {str(c): np.asarray(data[c]) for c in data.columns}  # a DataFrame
    if not isinstance(data, Mapping):
        raise UsageError(
            f"expected Predictions, a mapping of columns or a DataFrame, got {type(data).__name__}.",
            fix="pass read_predictions_csv(path) or a dict with id, label, pred, p_<class> columns",
        )
    for name in ("label", "pred"):
        if name not in data:
            raise UsageError(f"missing column {name!r}; columns seen: {list(data)}.", fix="add it")
    y_true = np.asarray(data["label"]).astype(str)
    n = y_true.size
    ids = np.asarray(data["id"]).astype(str) if "id" in data else np.arange(n).astype(str)
    p_cols = [c for c in data if str(c).startswith("p_")]
    proba = np.column_stack([np.asarray(data[c], dtype=np.float64) for c in p_cols]) if p_cols else None
    y_pred = np.asarray(data["pred"]).astype(str)
    classes = (
        tuple(str(c)[2:] for c in p_cols)
        if p_cols
        else tuple(sorted(set(y_true.tolist()) | set(y_pred.tolist())))
    )
    other = {
        str(c): np.asarray(data[c]).astype(str)
        for c in data
        if c not in ("id", "label", "pred") and c not in p_cols
    }
    return Predictions(ids=ids, y_true=y_true, y_pred=y_pred, proba=proba, classes=classes, columns=other)


def aggregate_predictions(data: Any, *, by: str = "patient", rule: str = "mean") -> Predictions:
    """One row per group (slide or patient) from sample-level predictions.

    Parameters
    ----------
    data
        :class:`Predictions`, a mapping of columns or a pandas DataFrame with ``label``, ``pred``, optional
        ``p_<class>`` columns and the column named by ``by``.
    by
        Group column, e.g. ``"patient"`` or ``"slide"``.
    rule
        ``"mean"``: average the probabilities of the group's samples and predict their argmax (needs
        probabilities). ``"majority"``: predict the most frequent sample prediction (ties go to the higher mean
        probability, or without probabilities to the first class in class order); the group's probabilities are
        then its vote fractions.

    Returns
    -------
    Predictions
        Ids are the group ids (sorted); other columns are kept when constant within every group (e.g. ``patient``
        when aggregating slides), with ``n_samples`` added.

    Raises
    ------
    UsageError
        Unknown rule, a missing group column, ``rule="mean"`` without probabilities, or a group whose samples
        carry different true labels (the message names the group and its labels).
    """
    rules = ("mean", "majority")
    if rule not in rules:
        raise UsageError(f"unknown aggregation rule {rule!r}; valid choices: {list(rules)}.", fix="pick one")
    pred = _as_predictions(data)
    if by not in pred.columns:
        raise UsageError(
            f"cannot aggregate by {by!r}: no such column; columns seen: {['id', 'label', 'pred', *pred.columns]}.",
            fix=f"add a {by!r} column or choose another with --by-column",
        )
    if rule == "mean" and pred.proba is None:
        raise UsageError("rule='mean' needs p_<class> probability columns.", fix="use rule='majority'")
    keys, inverse = np.unique(pred.columns[by], return_inverse=True)
    k = len(pred.classes)
    class_index = {c: i for i, c in enumerate(pred.classes)}
    truth = []
    for g, key in enumerate(keys.tolist()):
        labels = sorted(set(pred.y_true[inverse == g].tolist()))
        if len(labels) > 1:
            raise UsageError(
                f"{by} {key!r} has samples with different true labels {labels}; a {by}-level label must be unique.",
                fix=f"correct the labels of {by} {key!r}, or evaluate at a finer level",
            )
        truth.append(labels[0])
    n_groups = keys.size
    counts = np.bincount(inverse, minlength=n_groups).astype(np.float64)
    mean_p = None
    if pred.proba is not None:
        mean_p = np.zeros((n_groups, pred.proba.shape[1]))
        np.add.at(mean_p, inverse, pred.proba)
        mean_p /= counts[:, None]
    if rule == "mean":
        proba = mean_p
        group_pred = np.array([pred.classes[i] for i in mean_p.argmax(axis=1)], dtype=str)
    else:
        votes = np.zeros((n_groups, k))
        pred_idx = np.array([class_index.get(p, -1) for p in pred.y_pred.tolist()])
        if (pred_idx < 0).any():
            bad = sorted(set(pred.y_pred[pred_idx < 0].tolist()))
            raise UsageError(
                f"pred holds {bad}, not among the classes {list(pred.classes)}.", fix="correct pred"
            )
        np.add.at(votes, (inverse, pred_idx), 1.0)
        tie_break = mean_p if mean_p is not None else -np.arange(k)[None, :] * np.ones((n_groups, 1))
        best = np.where(votes == votes.max(axis=1, keepdims=True), tie_break, -np.inf).argmax(axis=1)
        group_pred = np.array([pred.classes[i] for i in best], dtype=str)
        proba = votes / counts[:, None]
    other: dict[str, np.ndarray] = {}
    for name, col in pred.columns.items():
        if name == by:
            continue
        first = np.empty(n_groups, dtype=col.dtype)
        first[inverse] = col
        if np.array_equal(first[inverse], col):
            other[name] = first
    other["n_samples"] = counts.astype(np.int64).astype(str)
    other[by] = keys.astype(str)
    return Predictions(
        ids=keys.astype(str),
        y_true=np.array(truth, dtype=str),
        y_pred=group_pred,
        proba=proba,
        classes=pred.classes,
        columns=other,
    )
