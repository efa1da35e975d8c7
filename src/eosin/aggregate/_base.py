"""What every aggregator shares: bag checking, label encoding, parameters and the fit/predict contract."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eosin._params import Params
from eosin.errors import NotFittedError, UsageError

__all__ = ["Aggregator", "Bags", "check_bag", "check_bags", "check_labels"]

Bags = Sequence[np.ndarray]
"""A sequence of bags, one per slide: ``(n_tiles, n_columns)`` arrays whose ``n_tiles`` may differ (ragged)."""


def check_bag(bag: Any, index: int, width: int | None = None) -> np.ndarray:
    """Bag ``index`` as a finite float32 ``(n_tiles, n_columns)`` array; ``width`` is the expected column count.

    Raises
    ------
    UsageError
        For a bag that is not 2-D, has no tiles, the wrong width or non-finite values.
    """
    arr = np.asarray(bag, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise UsageError(
            f"bag {index} has shape {arr.shape}; a bag is one slide's (n_tiles, n_columns) array with n_tiles >= 1.",
            fix="pass a list with one 2-D array per slide (per-tile probabilities or features)",
        )
    if width is not None and arr.shape[1] != width:
        raise UsageError(
            f"bag {index} has {arr.shape[1]} columns, expected {width}.",
            fix="give every bag the same columns (the classes or features the aggregator was fitted on)",
        )
    if not np.isfinite(arr).all():
        raise UsageError(f"bag {index} holds NaN or infinite values.", fix="drop or repair those tiles")
    return arr


def check_bags(bags: Any, width: int | None = None) -> list[np.ndarray]:
    """Every bag checked by :func:`check_bag` (all with one width); a list of float32 arrays."""
    if isinstance(bags, np.ndarray) and bags.ndim == 2:
        raise UsageError(
            "got one 2-D array where a sequence of bags was expected.",
            fix="wrap a single slide's bag in a list",
        )
    if len(bags) == 0:
        raise UsageError("no bags given.", fix="pass at least one bag (one slide)")
    out = [check_bag(bags[0], 0, width)]
    width = out[0].shape[1]
    out.extend(check_bag(b, i, width) for i, b in enumerate(bags) if i > 0)
    return out


def check_labels(y: Any, n_bags: int, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Slide labels as ``(classes, codes)``: the sorted (or given) class names and each bag's index into them."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n_bags:
        raise UsageError(
            f"got {len(y) if y.ndim else 'no'} labels for {n_bags} bags; give one label per bag."
        )
    found = np.unique(y)
    classes = found if classes is None else np.asarray(classes)
    unknown = np.setdiff1d(found, classes)
    if unknown.size:
        raise UsageError(
            f"labels {unknown.tolist()} are not among the classes {classes.tolist()}.",
            fix="pass classes= listing the bag columns' classes in order",
        )
    if len(found) < 2:
        raise UsageError(f"fit needs bags of at least two classes, got only {found.tolist()}.")
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    return classes, np.array([lookup[c] for c in y.tolist()], dtype=np.int64)


class Aggregator(Params):
    """Base of the slide-level aggregators: keyword-only parameters, ``fit(bags, y)``, ``predict``, ``predict_proba``.

    Subclasses set ``name`` (the registry name), ``bag_kind`` (``"probabilities"`` or ``"features"``), implement
    ``fit`` and ``predict_proba``; learned attributes end in ``_`` and ``classes_`` holds the slide classes.
    """

    name: str = ""
    bag_kind: str = "probabilities"
    _fitted: tuple[str, ...] = ("classes_",)
    _fit_hint = "call fit(bags, y) before predicting"

    def fit(self, bags: Bags, y: Any) -> Aggregator:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def predict_proba(self, bags: Bags) -> np.ndarray:  # pragma: no cover - every subclass overrides
        """``(n_slides, n_classes)`` class scores, columns in the order of ``classes_``."""
        raise NotImplementedError

    def predict(self, bags: Bags) -> np.ndarray:
        """The predicted class of each slide, ``(n_slides,)``, taken from ``classes_``."""
        proba = self.predict_proba(bags)  # checks fitted before classes_ is read
        return self.classes_[np.argmax(proba, axis=1)]

    def save(self, path: str | os.PathLike[str], *, training: dict[str, Any] | None = None) -> Path:
        """Write the fitted aggregator to the folder ``path`` (``config.json``, plus ``estimator.skops`` for a
        summary classifier); :func:`eosin.aggregate.load_aggregator` reads it back. ``training`` is recorded as
        how it was fitted."""
        from eosin.aggregate._persist import save_aggregator

        return save_aggregator(self, path, training=training)

        if not all(hasattr(self, attr) for attr in self._fitted):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet.", fix="call fit(bags, y) before predicting"
            )
