"""Classical machine learning on slide summaries: pooled tile statistics into a scikit-learn classifier."""

from __future__ import annotations

from typing import Any

import numpy as np

from eosin.aggregate._base import Aggregator, Bags, check_bags, check_labels
from eosin.errors import UnknownNameError

__all__ = ["SummaryClassifier", "summarize"]

_MODELS = ("logistic", "forest")
_KINDS = ("probabilities", "features")


def summarize(bag: np.ndarray, kind: str) -> np.ndarray:
    """One slide's summary vector.

    ``kind="probabilities"``: the histogram of the tiles' predicted classes (fractions), then the mean and the
    max of each class probability (``3 * n_classes`` values). ``kind="features"``: the mean- and max-pooled tile
    features (``2 * d`` values).
    """
    if kind == "probabilities":
        hist = np.bincount(bag.argmax(axis=1), minlength=bag.shape[1]) / bag.shape[0]
        return np.concatenate([hist, bag.mean(axis=0), bag.max(axis=0)])
    return np.concatenate([bag.mean(axis=0), bag.max(axis=0)])


class SummaryClassifier(Aggregator):
    """Summaries of each slide's tiles (:func:`summarize`) classified by logistic regression or a random forest.

    Unlike the vote and mean rules, the bag columns need not be the slide classes: an 8-class tile classifier's
    probabilities (or any tile features) can predict a binary slide label.

    Parameters
    ----------
    model
        ``"logistic"`` (standardized summaries, L2 logistic regression) or ``"forest"`` (random forest).
    bag_kind
        ``"probabilities"`` (per-tile class probabilities) or ``"features"`` (per-tile embeddings).
    C
        Inverse regularization strength of the logistic regression.
    n_estimators
        Trees in the forest.
    class_weight
        ``"balanced"`` (weights inverse to class frequency) or ``None``.
    random_state
        Seed of the forest (and of the solver where it matters).

    Attributes
    ----------
    estimator_
        The fitted scikit-learn estimator (a pipeline for ``"logistic"``).
    """

    name = "summary"
    _fitted = ("classes_", "estimator_")

    def __init__(
        self,
        *,
        model: str = "logistic",
        bag_kind: str = "probabilities",
        C: float = 1.0,
        n_estimators: int = 300,
        class_weight: str | None = "balanced",
        random_state: int = 0,
    ):
        self.model = model
        self.bag_kind = bag_kind
        self.C = C
        self.n_estimators = n_estimators
        self.class_weight = class_weight
        self.random_state = random_state

    def fit(self, bags: Bags, y: Any) -> SummaryClassifier:
        """Summarize each bag and fit the classifier on the slide labels; returns ``self``."""
        if self.model not in _MODELS:
            raise UnknownNameError("summary model", self.model, _MODELS)
        if self.bag_kind not in _KINDS:
            raise UnknownNameError("bag kind", self.bag_kind, _KINDS)
        checked = check_bags(bags)
        classes, codes = check_labels(y, len(checked))
        x = np.stack([summarize(b, self.bag_kind) for b in checked])
        self.estimator_ = self._estimator().fit(x, codes)
        self.classes_ = classes
        self.n_columns_ = checked[0].shape[1]
        return self

    def predict_proba(self, bags: Bags) -> np.ndarray:
        """Class probabilities of the fitted classifier, ``(n_slides, n_classes)``."""
        self._check_fitted()
        x = np.stack([summarize(b, self.bag_kind) for b in check_bags(bags, self.n_columns_)])
        return self.estimator_.predict_proba(x)

    def _estimator(self) -> Any:
        if self.model == "logistic":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            return make_pipeline(
                StandardScaler(),
                LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=5000),
            )
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(
            n_estimators=self.n_estimators, class_weight=self.class_weight, random_state=self.random_state
        )
