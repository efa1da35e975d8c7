"""Evaluation: classification metrics with bootstrap confidence intervals, reports, and segmentation metrics.

Plain arrays (or a predictions CSV) in, dataclasses out. Names are loaded on first use, so importing
:mod:`eosin.evaluate` loads neither numpy nor scikit-learn.

>>> from eosin.evaluate import read_predictions_csv, aggregate_predictions, classification_metrics
>>> tiles = read_predictions_csv("predictions.csv")  # doctest: +SKIP
>>> patients = aggregate_predictions(tiles, by="patient", rule="mean")  # doctest: +SKIP
>>> report = classification_metrics(patients.y_true, patients.y_pred, patients.proba,
...                                 classes=patients.classes, level="patient")  # doctest: +SKIP
>>> report["balanced_accuracy"]  # doctest: +SKIP
Metric(value=0.83, ci_low=0.71, ci_high=0.93)
>>> write_report(report, "report/")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY = {
    "classification_metrics": "eosin.evaluate._classification",
    "ClassificationReport": "eosin.evaluate._classification",
    "Metric": "eosin.evaluate._classification",
    "evaluate_predictions": "eosin.evaluate._classif_api",
    "Predictions": "eosin.evaluate._classif_io",
    "read_predictions_csv": "eosin.evaluate._classif_io",
    "aggregate_predictions": "eosin.evaluate._classif_io",
    "write_report": "eosin.evaluate._report",
    "metrics_table": "eosin.evaluate._report",
    "caveats": "eosin.evaluate._report",
    "read_mask": "eosin.evaluate._seg_io",
    "mask_separates_instances": "eosin.evaluate._seg_io",
    "read_aperio_xml": "eosin.evaluate._seg_io",
    "evaluate_robustness": "eosin.evaluate._robustness",
    "plot_robustness": "eosin.evaluate._robustness",
    "perturb": "eosin.evaluate._robustness",
}

# Segmentation metrics live in eosin.evaluate._segmentation (built separately). When that module exists, its public
# names (its ``__all__``: segmentation_metrics, evaluate_segmentation_dirs and per-metric functions) are re-exported
# here, imported on first use like the names above.
_SEGMENTATION_MODULE = "eosin.evaluate._segmentation"
_SEGMENTATION_NAMES = ("segmentation_metrics", "evaluate_segmentation_dirs")


def _has_segmentation() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(_SEGMENTATION_MODULE) is not None
    except (ImportError, ValueError):
        return False


def _segmentation_public() -> tuple[str, ...]:
    """The segmentation module's public names (imports it), or () when it is absent or broken."""
    if not _has_segmentation():
        return ()
    try:
        module = importlib.import_module(_SEGMENTATION_MODULE)
    except ImportError:
        return ()
    return tuple(getattr(module, "__all__", _SEGMENTATION_NAMES))


__all__ = [*_LAZY, *(_SEGMENTATION_NAMES if _has_segmentation() else ())]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("_") and name in _segmentation_public():
        value = getattr(importlib.import_module(_SEGMENTATION_MODULE), name)
    else:
        raise AttributeError(f"module 'eosin.evaluate' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*_LAZY, *_segmentation_public()})


if TYPE_CHECKING:  # pragma: no cover
    from eosin.evaluate._classif_api import evaluate_predictions
    from eosin.evaluate._classif_io import Predictions, aggregate_predictions, read_predictions_csv
    from eosin.evaluate._classification import ClassificationReport, Metric, classification_metrics
    from eosin.evaluate._report import caveats, metrics_table, write_report
    from eosin.evaluate._robustness import evaluate_robustness, perturb, plot_robustness
    from eosin.evaluate._seg_io import read_aperio_xml, read_mask
