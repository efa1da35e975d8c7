"""Aggregators over per-tile class probabilities: majority vote, mean probability and DeepSlide's thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eosin.aggregate._base import Aggregator, Bags, check_bags, check_labels
from eosin.errors import UsageError

__all__ = ["MajorityVote", "MeanProbability", "Thresholds"]


class _ProbabilityAggregator(Aggregator):
    """Bags of per-tile class probabilities ``(n_tiles, n_classes)``, the columns being the slide classes."""

    bag_kind = "probabilities"

    def __init__(self, *, classes: Sequence[Any] | None = None):
        self.classes = classes

    def fit(self, bags: Bags, y: Any) -> _ProbabilityAggregator:
        """Learn the classes (``classes`` or the sorted labels, one per bag column); returns ``self``."""
        checked = check_bags(bags)
        classes, codes = check_labels(y, len(checked), self.classes)
        if checked[0].shape[1] != len(classes):
            raise UsageError(
                f"bags have {checked[0].shape[1]} probability columns but there are {len(classes)} classes "
                f"{classes.tolist()}.",
                fix="pass classes= naming every bag column in order, or aggregate with SummaryClassifier",
            )
        self.classes_ = classes
        self._fit_checked(checked, codes)
        return self

    def _fit_checked(self, bags: list[np.ndarray], codes: np.ndarray) -> None:
        """Learn anything beyond the classes (nothing for the fixed rules)."""

    def _bags(self, bags: Bags) -> list[np.ndarray]:
        self._check_fitted()
        return check_bags(bags, len(self.classes_))


class MajorityVote(_ProbabilityAggregator):
    """Each tile votes for its most probable class; the slide takes the class with most votes.

    Ties between classes are broken by the highest mean probability among the tied classes.
    ``predict_proba`` returns the vote fractions.

    Parameters
    ----------
    classes
        The class of each probability column, in order; default: the sorted labels seen in ``fit``.
    """

    name = "majority"

    def predict_proba(self, bags: Bags) -> np.ndarray:
        """Fraction of tiles voting for each class, ``(n_slides, n_classes)``."""
        return np.stack([_votes(b) for b in self._bags(bags)])

    def predict(self, bags: Bags) -> np.ndarray:
        """The majority class of each slide (ties: highest mean probability among the tied classes)."""
        picks = []
        for bag in self._bags(bags):
            votes = _votes(bag)
            tied = votes == votes.max()
            picks.append(int(np.argmax(np.where(tied, bag.mean(axis=0), -np.inf))))
        return self.classes_[np.array(picks, dtype=np.int64)]


class MeanProbability(_ProbabilityAggregator):
    """The slide's class probabilities are the mean of its tiles' probabilities.

    Parameters
    ----------
    classes
        The class of each probability column, in order; default: the sorted labels seen in ``fit``.
    """

    name = "mean"

    def predict_proba(self, bags: Bags) -> np.ndarray:
        """Mean tile probability per class, rows renormalised to sum to 1, ``(n_slides, n_classes)``."""
        means = np.stack([b.mean(axis=0) for b in self._bags(bags)]).astype(np.float64)
        return means / np.maximum(means.sum(axis=1, keepdims=True), 1e-12)


class Thresholds(_ProbabilityAggregator):
    """DeepSlide's slide rule with per-class confidence thresholds, grid-searched for balanced accuracy.

    The rule (Wei et al. 2019, DeepSlide ``utils_evaluation.get_prediction``): a tile counts for its most probable
    class ``c`` only when that probability exceeds the class's threshold ``t_c``; the slide's class fractions are
    the counts divided by the number of counted tiles, and the slide takes the class with the largest fraction
    (ties: the first class). A slide where no tile is counted falls back to its mean tile probability (DeepSlide
    would return the first class).

    The search (``fit``) maximises balanced accuracy (DeepSlide's "average class accuracy") on the fitting bags,
    which should be validation slides. It starts as DeepSlide does, with one threshold shared by all classes taken
    from ``grid``, then improves each class's threshold in turn over ``grid`` (coordinate ascent, at most
    ``rounds`` passes); ties keep the lower threshold.

    Parameters
    ----------
    classes
        The class of each probability column, in order; default: the sorted labels seen in ``fit``.
    grid
        Candidate thresholds; default DeepSlide's ``0.0, 0.1, ..., 0.9``.
    rounds
        Passes of per-class coordinate ascent after the shared-threshold search; 0 keeps DeepSlide's shared one.

    Attributes
    ----------
    thresholds_
        ``(n_classes,)`` the chosen thresholds.
    score_
        Balanced accuracy of the chosen thresholds on the fitting bags.
    """

    name = "thresholds"
    _fitted = ("classes_", "thresholds_")

    def __init__(
        self,
        *,
        classes: Sequence[Any] | None = None,
        grid: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        rounds: int = 3,
    ):
        super().__init__(classes=classes)
        self.grid = grid
        self.rounds = rounds

    def _fit_checked(self, bags: list[np.ndarray], codes: np.ndarray) -> None:
        grid = np.sort(np.asarray(self.grid, dtype=np.float64))
        if grid.size == 0:
            raise UsageError("Thresholds needs a non-empty grid of candidate thresholds.")
        n_classes = len(self.classes_)
        tops = [(b.argmax(axis=1), b.max(axis=1), b.mean(axis=0)) for b in bags]

        def score(thresholds: np.ndarray) -> float:
            pred = np.array([np.argmax(_fractions(*t, thresholds)) for t in tops])
            return _balanced_accuracy(codes, pred, n_classes)

        best_t, best = np.full(n_classes, grid[0]), -1.0
        for value in grid:
            s = score(np.full(n_classes, value))
            if s > best:
                best_t, best = np.full(n_classes, value), s
        for _ in range(self.rounds):
            improved = False
            for c in range(n_classes):
                for value in grid:
                    trial = best_t.copy()
                    trial[c] = value
                    s = score(trial)
                    if s > best or (s == best and value < best_t[c]):
                        improved |= s > best
                        best_t, best = trial, s
            if not improved:
                break
        self.thresholds_, self.score_ = best_t, best

    def predict_proba(self, bags: Bags) -> np.ndarray:
        """The counted-tile class fractions of each slide (mean probability when no tile is counted)."""
        out = [
            _fractions(b.argmax(axis=1), b.max(axis=1), b.mean(axis=0), self.thresholds_)
            for b in self._bags(bags)
        ]
        return np.stack(out)


def _votes(bag: np.ndarray) -> np.ndarray:
    return np.bincount(bag.argmax(axis=1), minlength=bag.shape[1]) / bag.shape[0]


def _fractions(top: np.ndarray, conf: np.ndarray, mean: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    counted = top[conf > thresholds[top]]
    if counted.size == 0:
        return mean / max(float(mean.sum()), 1e-12)
    return np.bincount(counted, minlength=len(thresholds)) / counted.size


def _balanced_accuracy(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    recalls = [np.mean(pred[truth == c] == c) for c in range(n_classes) if np.any(truth == c)]
    return float(np.mean(recalls))
