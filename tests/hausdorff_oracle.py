"""The object Hausdorff of eosin before issue 13 (one KD-tree query per pixel of every paired object), kept
verbatim as the oracle of the faster implementation: same pairing rule, exact distances."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from eosin.evaluate._seg_object import _weighted_both_ways
from eosin.evaluate._seg_overlap import Overlap, overlap


class _Shapes:
    """Pixel coordinates and boundary search trees of the objects of one renumbered label image."""

    _four = ndimage.generate_binary_structure(2, 1)

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.slices = ndimage.find_objects(labels)
        self._points: dict[int, np.ndarray] = {}
        self._edges: dict[int, np.ndarray] = {}
        self._trees: dict[int, cKDTree] = {}

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
        return np.array([[s[0].start, s[0].stop - 1, s[1].start, s[1].stop - 1] for s in self.slices], float)


def _directed(a: _Shapes, ka: int, b: _Shapes, kb: int) -> float:
    """``max over pixels p of object ka of the distance from p to object kb`` (Euclidean, in pixels)."""
    pts = a.points(ka)
    outside = pts[b.labels[pts[:, 0], pts[:, 1]] != kb]
    if len(outside) == 0:
        return 0.0
    return float(b.tree(kb).query(outside)[0].max())


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


def old_object_hausdorff(truth: np.ndarray, pred: np.ndarray) -> float:
    return _object_hausdorff(overlap(truth, pred))
