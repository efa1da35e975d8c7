"""Pairwise overlap of two instance label images, computed once and shared by every segmentation metric.

The overlap table comes from one :func:`numpy.bincount` over combined labels, so all the object metrics are a few
vectorised operations on a ``(n_truth + 1, n_pred + 1)`` matrix, whatever the number of objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from eosin.errors import UsageError

__all__ = ["Overlap", "label_instances", "overlap"]


def label_instances(mask: np.ndarray, *, connectivity: int = 2) -> np.ndarray:
    """Instance labels of a binary mask: its connected components.

    Parameters
    ----------
    mask
        ``(rows, columns)`` array; nonzero pixels are foreground.
    connectivity
        1: pixels touching by an edge are connected (4-connectivity); 2: by an edge or a corner (8-connectivity,
        MATLAB's ``bwlabel`` default, which the GlaS evaluation used).

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` int32, 0 for background and 1..n for the components (in raster order).

    >>> label_instances(np.array([[1, 0, 1], [0, 0, 1]])).tolist()
    [[1, 0, 2], [0, 0, 2]]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UsageError(f"a mask must be 2-D (rows, columns), got shape {mask.shape}.")
    if connectivity not in (1, 2):
        raise UsageError(f"connectivity must be 1 or 2, got {connectivity!r}.")
    structure = ndimage.generate_binary_structure(2, connectivity)
    labels, _ = ndimage.label(mask != 0, structure=structure, output=np.int32)
    return labels


def _sequential(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0 (background), 1..n in increasing order of the original labels; and n."""
    top = int(labels.max()) if labels.size else 0
    if top <= max(labels.size, 1 << 20):  # a lookup table over the label values: linear, not a sort
        present = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=top + 1) > 0
        present[0] = True  # 0 stays 0 (absent or not); the first object label becomes 1
        lut = np.cumsum(present, dtype=np.int64) - 1
        return lut[labels], int(lut[-1])
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape).astype(np.int64)
    if values[0] != 0:
        return inverse + 1, len(values)
    return inverse, len(values) - 1


def _as_labels(name: str, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise UsageError(f"{name} must be a 2-D label image (rows, columns), got shape {labels.shape}.")
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(
            f"{name} must hold integer labels (0 = background), got dtype {labels.dtype}.",
            fix="threshold probabilities first, or pass instance labels as integers",
        )
    if labels.size and labels.min() < 0:
        raise UsageError(f"{name} has negative labels; 0 is background and objects are positive.")
    return labels


@dataclass(frozen=True)
class Overlap:
    """Overlap of a predicted and a true instance label image (labels renumbered 1..n in label order).

    Attributes
    ----------
    counts
        ``(n_truth + 1, n_pred + 1)`` int64 pixel counts; row 0 and column 0 are the background, so
        ``counts[i, j]`` (i, j >= 1) is the area of true object i ∩ predicted object j.
    truth, pred
        The renumbered ``(rows, columns)`` label images (int64), kept for the distance-based metrics.
    """

    counts: np.ndarray
    truth: np.ndarray
    pred: np.ndarray

    @property
    def n_truth(self) -> int:
        return self.counts.shape[0] - 1

    @property
    def n_pred(self) -> int:
        return self.counts.shape[1] - 1

    @property
    def intersections(self) -> np.ndarray:
        """``(n_truth, n_pred)`` object intersection areas."""
        return self.counts[1:, 1:]

    @property
    def truth_areas(self) -> np.ndarray:
        return self.counts[1:].sum(axis=1)

    @property
    def pred_areas(self) -> np.ndarray:
        return self.counts[:, 1:].sum(axis=0)

    def ious(self) -> np.ndarray:
        """``(n_truth, n_pred)`` intersection over union of every pair of objects."""
        inter = self.intersections
        union = self.truth_areas[:, None] + self.pred_areas[None, :] - inter
        return inter / np.maximum(union, 1)


def overlap(truth: np.ndarray, pred: np.ndarray) -> Overlap:
    """The :class:`Overlap` of two label images of the same shape (0 = background, any positive integers)."""
    truth = _as_labels("truth", truth)
    pred = _as_labels("pred", pred)
    if pred.shape != truth.shape:
        raise UsageError(
            f"truth and pred differ in shape: {truth.shape} vs {pred.shape}.",
            fix="compare masks of the same image at the same size",
        )
    t, n_t = _sequential(truth)
    p, n_p = _sequential(pred)
    counts = np.bincount((t * (n_p + 1) + p).ravel(), minlength=(n_t + 1) * (n_p + 1))
    return Overlap(counts=counts.reshape(n_t + 1, n_p + 1), truth=t, pred=p)
