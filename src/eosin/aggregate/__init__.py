"""Slide-level aggregation: one fit/predict interface from majority vote to attention MIL.

A *bag* is one slide: an ``(n_tiles, n_columns)`` array of per-tile class probabilities (``majority``, ``mean``,
``thresholds``, ``summary``) or per-tile features (``summary`` with ``bag_kind="features"``, and the attention-MIL
models ``abmil``, ``clam_sb``, ``clam_mb``, ``transmil``). Bags are passed as a list (they may differ in length).

>>> from eosin.aggregate import get_aggregator
>>> agg = get_aggregator("abmil", epochs=10).fit(train_bags, train_labels)  # doctest: +SKIP
>>> agg.predict_proba(test_bags)  # (n_slides, n_classes)  # doctest: +SKIP
>>> agg.attention(test_bags[0])  # (n_tiles,) for a heatmap  # doctest: +SKIP

The attention-MIL classes need PyTorch and load it on first use; the others do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eosin._lazy import lazy_getattr
from eosin.errors import UnknownNameError

__all__ = [
    "ABMIL",
    "CLAMMB",
    "CLAMSB",
    "Aggregator",
    "MILAggregator",
    "MajorityVote",
    "MeanProbability",
    "SummaryClassifier",
    "Thresholds",
    "TransMIL",
    "get_aggregator",
    "list_aggregators",
    "load_aggregator",
    "CohortBags",
    "predictions_csv",
    "train_cohort",
    "write_attention",
]

# public name -> module that defines it (loaded on first use, so PyTorch stays out until a MIL class is asked for)
_LAZY = {
    "Aggregator": "eosin.aggregate._base",
    "MajorityVote": "eosin.aggregate._rules",
    "MeanProbability": "eosin.aggregate._rules",
    "Thresholds": "eosin.aggregate._rules",
    "SummaryClassifier": "eosin.aggregate._summary",
    "MILAggregator": "eosin.aggregate._mil",
    "ABMIL": "eosin.aggregate._mil",
    "CLAMSB": "eosin.aggregate._mil",
    "CLAMMB": "eosin.aggregate._mil",
    "TransMIL": "eosin.aggregate._mil",
    "load_aggregator": "eosin.aggregate._persist",
    "CohortBags": "eosin.aggregate._cohort_train",
    "predictions_csv": "eosin.aggregate._cohort_train",
    "train_cohort": "eosin.aggregate._cohort_train",
    "write_attention": "eosin.aggregate._attention",
}

# registry name -> class name
_REGISTRY = {
    "majority": "MajorityVote",
    "mean": "MeanProbability",
    "thresholds": "Thresholds",
    "summary": "SummaryClassifier",
    "abmil": "ABMIL",
    "clam_sb": "CLAMSB",
    "clam_mb": "CLAMMB",
    "transmil": "TransMIL",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)


def list_aggregators() -> list[str]:
    """Registry names of the aggregators, sorted."""
    return sorted(_REGISTRY)


def get_aggregator(name: str | Aggregator, **params: Any) -> Aggregator:
    """A new, unfitted aggregator by registry name, with keyword parameters.

    A ready aggregator is returned as it is (with ``params`` set on it).

    Raises
    ------
    UnknownNameError
        For a name that is not registered, with close matches.
    """
    if not isinstance(name, str):
        return name.set_params(**params)
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise UnknownNameError("aggregator", name, _REGISTRY, fix="see eosin.aggregate.list_aggregators()")
    return __getattr__(_REGISTRY[key])(**params)


if TYPE_CHECKING:  # pragma: no cover
    from eosin.aggregate._base import Aggregator
    from eosin.aggregate._mil import ABMIL, CLAMMB, CLAMSB, MILAggregator, TransMIL
    from eosin.aggregate._persist import load_aggregator
    from eosin.aggregate._rules import MajorityVote, MeanProbability, Thresholds
    from eosin.aggregate._summary import SummaryClassifier
