"""Instance metrics for nuclei: aggregated Jaccard index (AJI) and panoptic quality (PQ).

* AJI (Kumar et al. 2017, IEEE TMI 36:1550): every true nucleus G_i is paired with the predicted nucleus S_j of
  highest IoU (ties: the lowest label); ``AJI = Σ|G_i ∩ S_j| / (Σ|G_i ∪ S_j| + Σ|S_k unused|)``. A predicted
  nucleus may be paired with several true ones (the original definition, not AJI+); a true nucleus that overlaps
  nothing adds its area to the denominator only.
* PQ (Kirillov et al. 2019, CVPR): pairs with IoU > 0.5, which are unique; ``SQ`` is their mean IoU (0 without
  pairs), ``DQ = TP / (TP + ½FP + ½FN)`` and ``PQ = DQ × SQ``.

Both images empty: AJI = PQ = DQ = SQ = 1 (perfect agreement; the formulas are 0/0).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from eosin.evaluate._seg_overlap import Overlap, overlap

__all__ = ["PanopticQuality", "aji", "panoptic_quality"]


class PanopticQuality(NamedTuple):
    """Panoptic quality and its factors, with the matched counts."""

    pq: float
    dq: float
    sq: float
    tp: int
    fp: int
    fn: int


def _aji(ov: Overlap) -> float:
    if ov.n_truth == 0 and ov.n_pred == 0:
        return 1.0
    if ov.n_truth == 0 or ov.n_pred == 0:
        return 0.0
    inter, t_area, p_area = ov.intersections, ov.truth_areas, ov.pred_areas
    ious = ov.ious()
    best = ious.argmax(axis=1)
    rows = np.arange(ov.n_truth)
    paired = ious[rows, best] > 0
    c = inter[rows, best][paired].sum()
    u = (t_area + p_area[best] - inter[rows, best])[paired].sum() + t_area[~paired].sum()
    used = np.zeros(ov.n_pred, bool)
    used[best[paired]] = True
    u += p_area[~used].sum()
    return float(c) / float(u)


def aji(truth: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard index of predicted instance labels against true ones (see the module docstring).

    >>> truth = np.array([[1, 1, 1, 1, 0, 0]])
    >>> aji(truth, np.array([[2, 2, 0, 0, 0, 3]]))  # C = 2, U = 4 + 1 (unused object 3)
    0.4
    """
    return _aji(overlap(truth, pred))


def _panoptic(ov: Overlap) -> PanopticQuality:
    if ov.n_truth == 0 and ov.n_pred == 0:
        return PanopticQuality(1.0, 1.0, 1.0, 0, 0, 0)
    ious = ov.ious()
    matched = ious[ious > 0.5]
    tp = len(matched)
    fp, fn = ov.n_pred - tp, ov.n_truth - tp
    sq = float(matched.mean()) if tp else 0.0
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return PanopticQuality(dq * sq, dq, sq, tp, fp, fn)


def panoptic_quality(truth: np.ndarray, pred: np.ndarray) -> PanopticQuality:
    """Panoptic quality ``PQ = DQ × SQ`` of predicted instance labels against true ones (see the module docstring).

    >>> truth = np.array([[1, 1, 1, 1, 0, 2]])
    >>> panoptic_quality(truth, np.array([[5, 5, 5, 0, 0, 0]])).pq  # one pair, IoU ¾; DQ = 1 / (1 + ½·1)
    0.5
    """
    return _panoptic(overlap(truth, pred))
