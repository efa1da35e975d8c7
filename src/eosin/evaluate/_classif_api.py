"""One call from a prediction table to a report at tile, slide or patient level."""

from __future__ import annotations

from typing import Any

from eosin.errors import UsageError
from eosin.evaluate._classif_io import Predictions, _as_predictions, aggregate_predictions
from eosin.evaluate._classification import LEVELS, ClassificationReport, classification_metrics

__all__ = ["evaluate_predictions"]


def evaluate_predictions(
    data: Predictions | Any,
    *,
    level: str = "tile",
    by: str | None = None,
    rule: str = "mean",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int | None = 0,
) -> ClassificationReport:
    """Evaluate a prediction table at one level, with the honest bootstrap for that level.

    Parameters
    ----------
    data
        :class:`Predictions` (e.g. from :func:`read_predictions_csv`), a mapping of columns or a DataFrame.
    level
        ``"tile"``: every row is a sample; when a ``patient`` column exists the bootstrap resamples patients
        (cluster bootstrap), since tiles of one patient are not independent. ``"slide"``/``"patient"``: rows are
        first aggregated by the ``by`` column with ``rule`` (see :func:`aggregate_predictions`); at slide level a
        ``patient`` column (constant per slide) again makes the bootstrap resample patients.
    by
        At slide/patient level, the column to aggregate by (default the level's name); at tile level, the column of
        patient ids for the cluster bootstrap (default ``"patient"`` when present).
    rule, n_bootstrap, ci, seed
        Passed to :func:`aggregate_predictions` and :func:`classification_metrics`.
    """
    if level not in LEVELS:
        raise UsageError(f"level must be one of {list(LEVELS)}, got {level!r}.", fix="pick one of them")
    table = _as_predictions(data)
    if level == "tile":
        if by is not None and by not in table.columns:
            raise UsageError(
                f"no column {by!r} to resample by; columns seen: {['id', 'label', 'pred', *table.columns]}.",
                fix="name an existing patient column, or leave the option out",
            )
        groups = table.columns.get(by or "patient")
    else:
        table = aggregate_predictions(table, by=by or level, rule=rule)
        groups = table.columns.get("patient") if (by or level) != "patient" else None
    return classification_metrics(
        table.y_true,
        table.y_pred,
        table.proba,
        classes=table.classes,
        groups=groups,
        level=level,
        n_bootstrap=n_bootstrap,
        ci=ci,
        seed=seed,
    )
