"""Pixel-level Dice and IoU of binary masks (foreground = label > 0)."""

from __future__ import annotations

import numpy as np

from eosin.errors import UsageError

__all__ = ["pixel_counts", "pixel_dice", "pixel_iou"]


def pixel_counts(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """``(intersection, truth area, pred area)`` in pixels of the foregrounds (nonzero pixels) of two masks."""
    truth, pred = np.asarray(truth) != 0, np.asarray(pred) != 0
    if truth.shape != pred.shape:
        raise UsageError(f"truth and pred differ in shape: {truth.shape} vs {pred.shape}.")
    return int(np.count_nonzero(truth & pred)), int(np.count_nonzero(truth)), int(np.count_nonzero(pred))


def dice_from_counts(inter: int, truth_area: int, pred_area: int) -> float:
    """``2|T∩P| / (|T| + |P|)``; 1.0 when both are empty."""
    total = truth_area + pred_area
    return 1.0 if total == 0 else 2.0 * inter / total


def iou_from_counts(inter: int, truth_area: int, pred_area: int) -> float:
    """``|T∩P| / |T∪P|``; 1.0 when both are empty."""
    union = truth_area + pred_area - inter
    return 1.0 if union == 0 else inter / union


def pixel_dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice coefficient ``2|T∩P| / (|T| + |P|)`` of the foregrounds (nonzero pixels) of two masks.

    Two empty masks agree perfectly: their Dice is defined as 1.0 (it is 0/0 otherwise); one empty mask against
    a non-empty one gives 0.0.

    >>> pixel_dice(np.array([[1, 1, 0, 0]]), np.array([[0, 1, 1, 0]]))
    0.5
    """
    return dice_from_counts(*pixel_counts(truth, pred))


def pixel_iou(truth: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union (Jaccard index) of the foregrounds of two masks; 1.0 when both are empty.

    >>> round(pixel_iou(np.array([[1, 1, 0, 0]]), np.array([[0, 1, 1, 0]])), 4)
    0.3333
    """
    return iou_from_counts(*pixel_counts(truth, pred))
