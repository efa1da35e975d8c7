"""Patient-level splits: stratified by label where possible, never putting one patient on both sides."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eosin.errors import DataError, PatientLeakError, UsageError

__all__ = ["check_no_leak", "patient_kfold", "patient_split"]


def check_no_leak(patients: Sequence[str], train: np.ndarray, test: np.ndarray) -> None:
    """Raise :class:`~eosin.errors.PatientLeakError` when a patient has rows in both ``train`` and ``test``."""
    p = np.asarray(patients)
    shared = sorted(set(p[np.asarray(train)].tolist()) & set(p[np.asarray(test)].tolist()))
    if shared:
        shown = ", ".join(shared[:5]) + (" ..." if len(shared) > 5 else "")
        raise PatientLeakError(
            f"{len(shared)} patient(s) are in both train and test: {shown}.",
            fix="split by patient (eosin.data.patient_split), not by tile or slide",
        )


def patient_kfold(
    labels: Sequence[str], patients: Sequence[str], *, k: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index pairs; every patient is in exactly one test fold, folds stratified by label.

    Uses scikit-learn's ``StratifiedGroupKFold`` (shuffled with ``seed``).

    Raises
    ------
    DataError
        Fewer patients than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y, groups = np.asarray(labels), np.asarray(patients)
    n_groups = len(set(groups.tolist()))
    if k < 2 or n_groups < k:
        raise DataError(
            f"{k}-fold cross-validation needs at least {k} patients and k >= 2; there are {n_groups}.",
            fix="lower k",
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(np.zeros(len(y)), y, groups)]
    for tr, te in folds:
        check_no_leak(groups, tr, te)
    return folds


def patient_split(
    labels: Sequence[str], patients: Sequence[str], *, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One (train, test) split by patient, stratified by label when there are enough patients.

    The test side gets about ``test_size`` of the patients: ``StratifiedGroupKFold`` with ``round(1/test_size)``
    folds (its first fold is the test set) when every class has that many patients, otherwise scikit-learn's
    ``GroupShuffleSplit`` (not stratified).

    Raises
    ------
    DataError
        Fewer than two patients.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    if not 0 < test_size < 1:
        raise UsageError(f"test_size must be between 0 and 1, got {test_size}.")
    y, groups = np.asarray(labels), np.asarray(patients)
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise DataError(
            f"a patient-level split needs at least 2 patients; there is {n_groups}.",
            fix="add data from more patients, or give each source image its own patient id",
        )
    k = max(2, round(1 / test_size))
    per_class = min(len(set(groups[y == c].tolist())) for c in set(y.tolist()))
    if per_class >= k:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        train, test = next(splitter.split(np.zeros(len(y)), y, groups))
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train, test = next(splitter.split(np.zeros(len(y)), y, groups))
    train, test = np.sort(train), np.sort(test)
    check_no_leak(groups, train, test)
    return train, test
