"""Segmentation metrics: pixel Dice and IoU, the GlaS object metrics, AJI and PQ; and folders of masks evaluated.

>>> from eosin.evaluate import segmentation_metrics, evaluate_segmentation_dirs
>>> segmentation_metrics(truth_labels, pred_labels)["object_f1"]  # doctest: +SKIP
>>> result = evaluate_segmentation_dirs("pred/", "truth/")  # doctest: +SKIP
>>> result.overall["aji"]  # doctest: +SKIP

Per image, every metric compares instance label images (a binary mask's instances are its connected
components). Over a folder (:attr:`SegmentationEvaluation.overall`): pixel Dice and IoU are computed on the
pixels of all images pooled (each image weighs by its area), the object and instance metrics are the mean of the
per-image values (as the GlaS and MoNuSeg challenges report them). Conventions for empty images are in
:mod:`eosin.evaluate._seg_object` and :mod:`eosin.evaluate._seg_nuclei` (both empty: a perfect score).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import EosinError, UsageError
from eosin.evaluate._seg_io import pair_masks, read_aperio_xml, read_mask
from eosin.evaluate._seg_nuclei import PanopticQuality, _aji, _panoptic, aji, panoptic_quality
from eosin.evaluate._seg_object import (
    ObjectCounts,
    _counts,
    _object_dice,
    _object_hausdorff,
    object_counts,
    object_dice,
    object_f1,
    object_hausdorff,
)
from eosin.evaluate._seg_overlap import label_instances, overlap
from eosin.evaluate._seg_pixel import dice_from_counts, iou_from_counts, pixel_dice, pixel_iou

__all__ = [
    "SEGMENTATION_METRICS",
    "ObjectCounts",
    "PanopticQuality",
    "SegmentationEvaluation",
    "aji",
    "evaluate_segmentation_dirs",
    "image_bootstrap",
    "label_instances",
    "object_counts",
    "object_dice",
    "object_f1",
    "object_hausdorff",
    "pair_masks",
    "panoptic_quality",
    "pixel_dice",
    "pixel_iou",
    "read_aperio_xml",
    "read_mask",
    "segmentation_metrics",
]

#: The headline metrics, in the order they are printed.
SEGMENTATION_METRICS = (
    "pixel_dice",
    "pixel_iou",
    "object_f1",
    "object_dice",
    "object_hausdorff",
    "aji",
    "pq",
)
_MEAN_OVER_IMAGES = ("object_f1", "object_dice", "object_hausdorff", "aji", "pq", "dq", "sq")


def segmentation_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float | int]:
    """Every segmentation metric of predicted instance labels against true ones, from one overlap table.

    Parameters
    ----------
    truth, pred
        ``(rows, columns)`` integer label images of the same shape, 0 for background (a binary mask is one
        object; pass :func:`label_instances` of it to count its connected components).

    Returns
    -------
    dict
        ``pixel_dice``, ``pixel_iou``, ``object_f1``, ``object_dice``, ``object_hausdorff`` (pixels), ``aji``,
        ``pq``, ``dq``, ``sq``; and the counts ``n_truth``, ``n_pred`` (objects), ``tp``, ``fp``, ``fn`` (GlaS
        rule), ``truth_pixels``, ``pred_pixels``, ``overlap_pixels``.

    >>> m = segmentation_metrics(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 0, 0]]))
    >>> m["pixel_dice"], m["object_f1"], m["aji"]
    (0.8, 0.6666666666666666, 0.6666666666666666)
    """
    ov = overlap(truth, pred)
    inter, t_px, p_px = int(ov.counts[1:, 1:].sum()), int(ov.counts[1:].sum()), int(ov.counts[:, 1:].sum())
    counts, pq = _counts(ov), _panoptic(ov)
    return {
        "pixel_dice": dice_from_counts(inter, t_px, p_px),
        "pixel_iou": iou_from_counts(inter, t_px, p_px),
        "object_f1": counts.f1,
        "object_dice": _object_dice(ov),
        "object_hausdorff": _object_hausdorff(ov),
        "aji": _aji(ov),
        "pq": pq.pq,
        "dq": pq.dq,
        "sq": pq.sq,
        "n_truth": ov.n_truth,
        "n_pred": ov.n_pred,
        "tp": counts.tp,
        "fp": counts.fp,
        "fn": counts.fn,
        "truth_pixels": t_px,
        "pred_pixels": p_px,
        "overlap_pixels": inter,
    }


@dataclass(frozen=True)
class SegmentationEvaluation:
    """The result of :func:`evaluate_segmentation_dirs`.

    Attributes
    ----------
    per_image
        One dict per evaluated image: ``id`` (the file stem), then :func:`segmentation_metrics`' keys.
    overall
        ``n_images``; pixel metrics over the pooled pixels; object metrics, AJI, PQ, DQ and SQ averaged over
        images (empty when no image could be evaluated).
    pred_only, truth_only
        Files without a partner of the same stem.
    errors
        ``(id, message)`` of the pairs that could not be evaluated (unreadable mask, shapes that differ).
    ci
        ``{metric: [low, high]}``, the 95 % bootstrap interval of each ``overall`` metric over images
        (:func:`image_bootstrap`); empty with fewer than two images.
    """

    per_image: list[dict[str, Any]]
    overall: dict[str, float | int]
    pred_only: list[Path] = field(default_factory=list)
    truth_only: list[Path] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    ci: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``per_image``, ``overall``, ``ci``, ``ci_method``, ``unpaired`` and ``errors``; inf
        and NaN become None."""
        return {
            "per_image": [{k: _finite(v) for k, v in row.items()} for row in self.per_image],
            "overall": {k: _finite(v) for k, v in self.overall.items()},
            "ci": {k: [_finite(v) for v in pair] for k, pair in self.ci.items()},
            "ci_method": {**CI_METHOD, "unit": "image", "method": "percentile"},
            "aggregation": "pixel metrics over pooled pixels; object metrics, aji and pq: mean over images",
            "unpaired": {
                "pred": [str(p) for p in self.pred_only],
                "truth": [str(p) for p in self.truth_only],
            },
            "errors": [{"id": i, "message": m} for i, m in self.errors],
        }


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def aggregate(per_image: list[dict[str, Any]]) -> dict[str, float | int]:
    """The ``overall`` dict of :class:`SegmentationEvaluation` from per-image metric dicts."""
    if not per_image:
        return {}
    inter = sum(r["overlap_pixels"] for r in per_image)
    t_px, p_px = sum(r["truth_pixels"] for r in per_image), sum(r["pred_pixels"] for r in per_image)
    out: dict[str, float | int] = {
        "n_images": len(per_image),
        "pixel_dice": dice_from_counts(inter, t_px, p_px),
        "pixel_iou": iou_from_counts(inter, t_px, p_px),
    }
    for name in _MEAN_OVER_IMAGES:
        out[name] = float(np.mean([r[name] for r in per_image]))
    for name in ("n_truth", "n_pred", "tp", "fp", "fn"):
        out[name] = int(sum(r[name] for r in per_image))
    return out


#: How :func:`evaluate_segmentation_dirs` bootstraps its intervals.
CI_METHOD = {"level": 0.95, "n_bootstrap": 2000, "seed": 0}


def image_bootstrap(
    per_image: list[dict[str, Any]], *, n_bootstrap: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of the ``overall`` metrics, resampling whole images with replacement.

    The image is the unit because pixels and nuclei of one image are not independent (one stain, one organ, one
    annotator's habit): an interval over pixels would be far too narrow. Each replicate draws as many images as
    there are and aggregates them exactly as :func:`aggregate` does (pixel metrics from the pooled counts of the
    drawn images, the others as their mean), so with few images the interval is wide, as it should be.

    Parameters
    ----------
    per_image
        Rows of :func:`segmentation_metrics` (with ``overlap_pixels``, ``truth_pixels``, ``pred_pixels``).
    n_bootstrap, level, seed
        Replicates, coverage and the seed of the draws (``numpy.random.default_rng(seed).integers(0, n,
        (n_bootstrap, n))``).

    Returns
    -------
    dict
        ``{metric: [low, high]}`` for ``pixel_dice``, ``pixel_iou`` and the mean-over-image metrics; empty with
        fewer than two images.
    """
    n = len(per_image)
    if n < 2:
        return {}
    draws = np.random.default_rng(seed).integers(0, n, (n_bootstrap, n))
    # how often each replicate drew each image (one bincount over replicate-offset indices)
    offsets = draws + n * np.arange(n_bootstrap)[:, None]
    weights = np.bincount(offsets.ravel(), minlength=n_bootstrap * n).reshape(n_bootstrap, n).astype(float)

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in per_image])

    inter, t_px, p_px = (weights @ column(k) for k in ("overlap_pixels", "truth_pixels", "pred_pixels"))
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = {
            "pixel_dice": np.where(t_px + p_px == 0, 1.0, 2 * inter / (t_px + p_px)),
            "pixel_iou": np.where(t_px + p_px - inter == 0, 1.0, inter / (t_px + p_px - inter)),
        }
        for name in _MEAN_OVER_IMAGES:
            values = column(name)
            # an infinite value (a missed object's Hausdorff) makes every replicate that draws it infinite
            finite = np.where(np.isfinite(values), values, 0.0)
            mean = weights @ finite / n
            drew_inf = weights[:, ~np.isfinite(values)].sum(axis=1) > 0
            replicates[name] = np.where(drew_inf, np.inf, mean)
    tail = (1 - level) / 2 * 100
    out = {}
    for name, r in replicates.items():
        top = r[np.isfinite(r)].max(initial=0.0)
        q = np.percentile(np.where(np.isinf(r), np.finfo(float).max, r), [tail, 100 - tail])
        out[name] = [float(v) if v <= top else math.inf for v in q]  # a bound among the infinite replicates
    return out


def _read_pair(pred_path: Path, truth_path: Path, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    pred = read_mask(pred_path, threshold=threshold)
    if truth_path.suffix.lower() == ".xml":
        truth = read_aperio_xml(truth_path, pred.shape)
    else:
        truth = read_mask(truth_path, threshold=threshold)
    if truth.shape != pred.shape:
        raise UsageError(
            f"the prediction is {pred.shape[1]}x{pred.shape[0]} but the truth {truth_path.name} is "
            f"{truth.shape[1]}x{truth.shape[0]} pixels.",
            path=pred_path,
            fix="predict masks at the size of the truth",
        )
    return truth, pred


def evaluate_segmentation_dirs(
    pred_dir: str | os.PathLike[str], truth_dir: str | os.PathLike[str], *, threshold: int = 127
) -> SegmentationEvaluation:
    """Segmentation metrics of the masks of ``pred_dir`` against those of ``truth_dir``, paired by file stem.

    Parameters
    ----------
    pred_dir
        Predicted masks (PNG, JPEG, TIFF), or one folder per image holding ``instances.png`` or ``mask.png``.
    truth_dir
        True masks (PNG, JPEG, TIFF) or Aperio XML polygons (MoNuSeg).
    threshold
        Grey level above which an 8-bit mask pixel is foreground (see :func:`read_mask`).

    Returns
    -------
    SegmentationEvaluation

    Raises
    ------
    UsageError
        When a folder is missing or no file pairs with another.
    """
    pairs, pred_only, truth_only = pair_masks(pred_dir, truth_dir)
    if not pairs:
        raise UsageError(
            f"no prediction in {pred_dir} has a truth of the same file stem in {truth_dir}.",
            fix="name each predicted mask like its true mask (e.g. img1.png and img1.jpg)",
        )
    per_image, errors = [], []
    for stem, pred_path, truth_path in pairs:
        try:
            truth, pred = _read_pair(pred_path, truth_path, threshold)
        except (EosinError, OSError) as exc:
            errors.append((stem, str(exc)))
            continue
        per_image.append({"id": stem, **segmentation_metrics(truth, pred)})
    ci = image_bootstrap(per_image, **CI_METHOD)
    return SegmentationEvaluation(per_image, aggregate(per_image), pred_only, truth_only, errors, ci)
