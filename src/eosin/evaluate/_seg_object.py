"""The GlaS challenge's object-level metrics: object F1, object Dice and object Hausdorff.

These follow the challenge's official MATLAB evaluation code (``F1score.m``, ``ObjectDice.m``,
``ObjectHausdorff.m``, Sirinukunwattana et al. 2017, Medical Image Analysis 35:489-502), including its corner
cases:

* The ground-truth object of a segmented object S is the one it overlaps most (ties: the lowest label, like
  MATLAB's ``max``/``mode``). S is a true positive when that overlap covers **more than 50% of the ground-truth
  object's area** (``areaOverlap / areaGTObj > 0.5`` in ``F1score.m``; the paper's text reads "intersects with at
  least 50% of its ground truth object"). Two segmented objects cannot both cover more than half of one
  ground-truth object, so the matching is one to one; ``FN = n_truth - TP``.
* Object Dice and object Hausdorff pair every object, in both directions, with the object of the other image it
  overlaps most, and weight by object area: ``½[Σ_i γ_i D(G_i, S*(G_i)) + Σ_j σ_j D(G*(S_j), S_j)]`` with
  ``γ_i = |G_i| / Σ|G|`` and ``σ_j = |S_j| / Σ|S|``. An object that overlaps nothing has Dice 0 with the empty set;
  for the Hausdorff distance it is paired with the object of the other image nearest in Hausdorff distance.
* Both images empty: F1 = Dice = 1, Hausdorff = 0. One empty: F1 = Dice = 0, Hausdorff = inf. F1 without any
  true positive is 0.

Speed: distances are exact, but most pixels never reach a search tree. A pixel's distance to an object lies
between its distance to the object's bounding box and that plus the box's diagonal, so only pixels whose upper
bound reaches the largest lower bound can be the farthest one (a 3-pixel false positive far from a gland makes
the gland's far rim the only candidates, not its whole area); and the nearest-object search for an object that
overlaps nothing is bounded from both sides (its boundary to each box, each object's convex-hull corners to its
box). A 4096 x 2048 mask with 2,951 small false positives took 249 s before (issue 13); see docs/benchmarks.md.

Label images are ``(rows, columns)`` integer arrays, 0 for background; pass instance labels (for a binary mask,
its connected components: :func:`~eosin.evaluate._seg_overlap.label_instances`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from eosin.evaluate._seg_overlap import Overlap, overlap

__all__ = ["ObjectCounts", "object_counts", "object_dice", "object_f1", "object_hausdorff"]


class ObjectCounts(NamedTuple):
    """Object detection counts of the GlaS F1 score."""

    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float:
        """``2TP / (2TP + FP + FN)``; 1.0 when there are no objects at all."""
        total = 2 * self.tp + self.fp + self.fn
        return 1.0 if total == 0 else 2 * self.tp / total


def _counts(ov: Overlap) -> ObjectCounts:
    if ov.n_truth == 0 or ov.n_pred == 0:
        return ObjectCounts(0, ov.n_pred, ov.n_truth)
    inter = ov.intersections
    best = inter.argmax(
        axis=0
    )  # per predicted object: the true object it overlaps most (first = lowest label)
    covered = inter[best, np.arange(ov.n_pred)] / ov.truth_areas[best]
    tp = int(np.count_nonzero(covered > 0.5))
    return ObjectCounts(tp, ov.n_pred - tp, ov.n_truth - tp)


def object_counts(truth: np.ndarray, pred: np.ndarray) -> ObjectCounts:
    """True positive, false positive and false negative objects by the GlaS rule (see the module docstring)."""
    return _counts(overlap(truth, pred))


def object_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """The GlaS object-level F1 score of predicted instance labels against true ones.

    >>> truth = np.array([[1, 1, 0, 2, 2]])
    >>> object_f1(truth, np.array([[3, 3, 0, 0, 4]]))  # object 3 is a TP; 4 covers only half of object 2
    0.5
    """
    return _counts(overlap(truth, pred)).f1


def _weighted_both_ways(ov: Overlap, pair_value) -> float:
    """``½[Σ_i γ_i f(G_i, S*(G_i)) + Σ_j σ_j f(G*(S_j), S_j)]`` with ``pair_value(truth_idx, pred_idx)``."""
    inter = ov.intersections
    t_area, p_area = ov.truth_areas, ov.pred_areas
    best_pred = inter.argmax(axis=1)
    best_truth = inter.argmax(axis=0)
    hits_t = inter[np.arange(ov.n_truth), best_pred] > 0
    hits_p = inter[best_truth, np.arange(ov.n_pred)] > 0
    from_truth = pair_value(np.arange(ov.n_truth), best_pred, hits_t, "truth")
    from_pred = pair_value(best_truth, np.arange(ov.n_pred), hits_p, "pred")
    return 0.5 * (
        float(t_area @ from_truth) / float(t_area.sum()) + float(p_area @ from_pred) / float(p_area.sum())
    )


def _object_dice(ov: Overlap) -> float:
    if ov.n_truth == 0 and ov.n_pred == 0:
        return 1.0
    if ov.n_truth == 0 or ov.n_pred == 0:
        return 0.0
    inter, t_area, p_area = ov.intersections, ov.truth_areas, ov.pred_areas

    def dice(ti, pi, hit, _side):  # no overlap: Dice with the empty set, 0
        return np.where(hit, 2 * inter[ti, pi] / (t_area[ti] + p_area[pi]), 0.0)

    return _weighted_both_ways(ov, dice)


def object_dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """The GlaS object-level Dice index (area-weighted, both directions; see the module docstring).

    >>> truth = np.array([[1, 1, 0, 2, 2]])
    >>> object_dice(truth, np.array([[1, 1, 0, 0, 2]]))  # ½[(2·1 + 2·⅔)/4 + (2·1 + 1·⅔)/3]
    0.861111111111111
    """
    return _object_dice(overlap(truth, pred))


class _Shapes:
    """Pixel coordinates and boundary search trees of the objects of one renumbered label image."""

    _four = ndimage.generate_binary_structure(2, 1)

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.slices = ndimage.find_objects(labels)
        self._points: dict[int, np.ndarray] = {}
        self._edges: dict[int, np.ndarray] = {}
        self._trees: dict[int, cKDTree] = {}
        self._boxes: np.ndarray | None = None
        self._hulls: tuple[np.ndarray, np.ndarray] | None = None

    def _load(self, k: int) -> None:
        sl = self.slices[k - 1]
        local = self.labels[sl] == k
        offset = np.array([sl[0].start, sl[1].start])
        self._points[k] = np.argwhere(local) + offset
        inner = local & ~ndimage.binary_erosion(local, self._four, border_value=0)
        self._edges[k] = np.argwhere(inner) + offset

    def points(self, k: int) -> np.ndarray:
        if k not in self._points:
            self._load(k)
        return self._points[k]

    def edges(self, k: int) -> np.ndarray:
        if k not in self._edges:
            self._load(k)
        return self._edges[k]

    def tree(self, k: int) -> cKDTree:
        # the pixel of an object nearest to an outside pixel is on its inner 4-connected boundary
        if k not in self._trees:
            self._trees[k] = cKDTree(self.edges(k))
        return self._trees[k]

    def boxes(self) -> np.ndarray:
        """``(n, 4)`` first row, last row, first column, last column of each object."""
        if self._boxes is None:
            self._boxes = np.array(
                [[s[0].start, s[0].stop - 1, s[1].start, s[1].stop - 1] for s in self.slices], float
            ).reshape(-1, 4)
        return self._boxes

    def hulls(self) -> tuple[np.ndarray, np.ndarray]:
        """Convex-hull corners of every object, concatenated, and the index of each object's first corner."""
        if self._hulls is None:
            import cv2

            parts = []
            for k in range(1, len(self.slices) + 1):
                edges = self.edges(k)
                hull = cv2.convexHull(edges[:, ::-1].astype(np.int32).reshape(-1, 1, 2)).reshape(-1, 2)[
                    :, ::-1
                ]
                parts.append(hull.astype(float))
            starts = np.cumsum([0] + [len(h) for h in parts[:-1]])
            self._hulls = (np.concatenate(parts), starts)
        return self._hulls


def _directed(a: _Shapes, ka: int, b: _Shapes, kb: int) -> float:
    """``max over pixels p of object ka of the distance from p to object kb`` (Euclidean, in pixels)."""
    pts = a.points(ka)
    outside = pts[b.labels[pts[:, 0], pts[:, 1]] != kb]
    if len(outside) == 0:
        return 0.0
    if len(outside) > 32:
        # d(p, B) is at least p's distance to B's box and at most that plus the box diagonal: only the pixels
        # whose upper bound reaches the largest lower bound can be the farthest one (exact, not an estimate)
        r0, r1, c0, c1 = b.boxes()[kb - 1]
        near = _box_distance(outside, (r0, r1, c0, c1))
        reach = near + np.hypot(r1 - r0, c1 - c0)
        outside = outside[reach >= near.max() - 1e-9]
    return float(b.tree(kb).query(outside)[0].max())


def _box_distance(points: np.ndarray, box) -> np.ndarray:
    """Euclidean distance of each ``(row, column)`` point to the box ``(r0, r1, c0, c1)`` (0 inside)."""
    r0, r1, c0, c1 = box
    dr = np.maximum(np.maximum(r0 - points[:, 0], points[:, 0] - r1), 0)
    dc = np.maximum(np.maximum(c0 - points[:, 1], points[:, 1] - c1), 0)
    return np.hypot(dr, dc)


def _hausdorff(t: _Shapes, kt: int, p: _Shapes, kp: int) -> float:
    return max(_directed(t, kt, p, kp), _directed(p, kp, t, kt))


def _nearest_hausdorff(a: _Shapes, ka: int, b: _Shapes, b_boxes: np.ndarray, a_is_truth: bool) -> float:
    """Hausdorff distance from object ka of ``a`` to the nearest object of ``b`` (exact, pruned by a bound)."""
    edges = a.edges(ka).astype(float)
    # lower bound of H(A, B): the farthest pixel of A from B's bounding box (convex, so A's boundary suffices)
    dr = np.maximum(
        np.maximum(b_boxes[None, :, 0] - edges[:, None, 0], edges[:, None, 0] - b_boxes[None, :, 1]), 0
    )
    dc = np.maximum(
        np.maximum(b_boxes[None, :, 2] - edges[:, None, 1], edges[:, None, 1] - b_boxes[None, :, 3]), 0
    )
    bound = np.sqrt(dr**2 + dc**2).max(axis=0)
    # and the farthest corner of each object of B from A's box (the distance to a box is convex, so the maximum
    # over an object is at a corner of its convex hull): H(A, B_j) is at least both
    corners, starts = b.hulls()
    own = a.boxes()[ka - 1]
    bound = np.maximum(bound, np.maximum.reduceat(_box_distance(corners, own), starts))
    best = np.inf
    for j in np.argsort(bound, kind="stable"):
        if bound[j] >= best:
            break
        h = _hausdorff(a, ka, b, j + 1) if a_is_truth else _hausdorff(b, j + 1, a, ka)
        best = min(best, h)
    return best


def _object_hausdorff(ov: Overlap) -> float:
    if ov.n_truth == 0 and ov.n_pred == 0:
        return 0.0
    if ov.n_truth == 0 or ov.n_pred == 0:
        return float("inf")
    t, p = _Shapes(ov.truth), _Shapes(ov.pred)
    boxes = {"truth": None, "pred": None}

    def distance(ti, pi, hit, side):
        out = np.empty(len(ti))
        for n, (kt, kp, h) in enumerate(zip(ti + 1, pi + 1, hit, strict=True)):
            if h:
                out[n] = _hausdorff(t, kt, p, kp)
            elif side == "truth":  # a true object overlapping nothing: the nearest predicted object
                boxes["pred"] = p.boxes() if boxes["pred"] is None else boxes["pred"]
                out[n] = _nearest_hausdorff(t, kt, p, boxes["pred"], a_is_truth=True)
            else:
                boxes["truth"] = t.boxes() if boxes["truth"] is None else boxes["truth"]
                out[n] = _nearest_hausdorff(p, kp, t, boxes["truth"], a_is_truth=False)
        return out

    return _weighted_both_ways(ov, distance)


def object_hausdorff(truth: np.ndarray, pred: np.ndarray) -> float:
    """The GlaS object-level Hausdorff distance in pixels (area-weighted, both directions; see the module docstring).

    >>> truth = np.zeros((1, 9), int); truth[0, :3] = 1
    >>> pred = np.zeros((1, 9), int); pred[0, :2] = 1; pred[0, 8] = 2  # object 2 overlaps nothing
    >>> object_hausdorff(truth, pred)  # ½[(3·1)/3 + (2·1 + 1·8)/3]
    2.166666666666667
    """
    return _object_hausdorff(overlap(truth, pred))
