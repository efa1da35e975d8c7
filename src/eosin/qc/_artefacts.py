"""Artefacts found on a low-resolution image (a thumbnail) of a slide: folds and dark regions, coverslip edges and
bubble rims, and over/under-staining.

Every detector is a small function: an ``(rows, cols, 3)`` RGB uint8 image and the slide's tissue mask in, a
boolean mask (or a dict of numbers) out. Sizes are fractions of the image's longer side, so the detectors work on
thumbnails of any resolution (they were tuned at 600-2000 pixels a side). docs/qc.md gives the measured
agreement with hand-drawn masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["coverslip_edges", "dark_regions", "optical_density", "stain_masks", "stain_stats"]


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2HSV)
    return hsv[..., 1].astype(np.float32) / 255.0, hsv[..., 2].astype(np.float32) / 255.0


def dark_regions(
    rgb: np.ndarray,
    tissue: np.ndarray,
    *,
    max_od: float = 0.8,
    min_fold_excess: float = 0.4,
    smooth: float = 0.004,
    min_area: float = 2e-4,
) -> np.ndarray:
    """Tissue folds and dark regions inside tissue.

    HistoQC's approach, on regions rather than pixels: the mean optical density and the HSV saturation and
    value (0-1) are smoothed with a Gaussian of σ = ``smooth`` of the image's longer side (nuclei and thin
    dark strands vanish; a fold, a thick or overlapping piece of tissue stays), then tissue is flagged where it
    is nearly opaque (mean OD above ``max_od``; 0.8 is HistoQC's dark-tissue grey level of 0.15), or saturated
    at low value, the signature of folded tissue where two layers of stain overlap
    (``saturation - value > min_fold_excess``, after Bautista & Yagi).

    Parameters
    ----------
    rgb
        ``(rows, cols, 3)`` RGB uint8 image.
    tissue
        ``(rows, cols)`` bool tissue mask; only tissue pixels can be flagged.
    min_area
        Pieces smaller than this fraction of the image are dropped.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` bool.
    """
    import cv2

    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3])
    sat, val = _hsv(rgb)
    sigma = max(0.5, smooth * max(rgb.shape[:2]))
    od = cv2.GaussianBlur(_mean_od(rgb), (0, 0), sigma)
    excess = cv2.GaussianBlur(sat - val, (0, 0), sigma)
    mask = tissue & ((od > max_od) | (excess > min_fold_excess))
    return _drop_small(mask, min_area * mask.size)


def coverslip_edges(
    rgb: np.ndarray,
    tissue: np.ndarray,
    *,
    width: float = 0.006,
    min_darkening: float = 0.08,
    max_grey: float = 0.35,
    max_chroma: float = 0.15,
    min_length: float = 0.12,
    max_thickness: float = 0.02,
    bubble_area: float = 5e-4,
) -> np.ndarray:
    """Coverslip edges and bubble rims: thin, grey, dark lines on the glass.

    Pixels darker than their surroundings by ``min_darkening`` (a morphological black top-hat of structuring
    element ``2 * width`` of the longer side: lines thinner than that stand out) or dark outright (grey level
    below ``max_grey``: the core of a thick edge), nearly grey (chroma below ``max_chroma``) and outside tissue are grouped into connected pieces. A piece is kept when it is a long line
    (its bounding-box diagonal reaches ``min_length`` of the longer side and its mean thickness, area over
    length, stays below ``max_thickness``) or a ring (a closed rim whose filled area is at least three times its
    own and at least ``bubble_area`` of the image: an air bubble).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` bool.
    """
    import cv2

    rgb = np.ascontiguousarray(rgb[..., :3])
    rows, cols = rgb.shape[:2]
    side = max(rows, cols)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    r = max(2, round(width * side))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    darker = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)
    chroma = (rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)) / 255.0
    candidates = (((darker > min_darkening) | (grey < max_grey)) & (chroma < max_chroma) & ~tissue).astype(
        np.uint8
    )
    n, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    keep = np.zeros(n, bool)
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        length = float(np.hypot(w, h))
        if length >= min_length * side and area / length <= max_thickness * side:
            keep[i] = True
        elif w * h >= 3 * area and w * h >= bubble_area * rows * cols:
            piece = (labels[y : y + h, x : x + w] == i).astype(np.uint8)
            contours, _ = cv2.findContours(piece, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            filled = np.zeros_like(piece)
            cv2.drawContours(filled, contours, -1, 1, -1)
            keep[i] = filled.sum() >= max(3 * area, bubble_area * rows * cols)
    return keep[labels]


def optical_density(rgb: np.ndarray, *, background: float = 255.0) -> np.ndarray:
    """Optical density ``-log10(I / I0)`` per channel, ``(rows, cols, 3)`` float32 (0 for glass, ~2.4 for black)."""
    a = np.asarray(rgb[..., :3], np.float32)
    return -np.log10(np.clip(a + 1.0, 1.0, background + 1.0) / (background + 1.0))


def stain_masks(
    rgb: np.ndarray, tissue: np.ndarray, *, over_od: float = 1.0, under_od: float = 0.1, clip: int = 3
) -> dict[str, np.ndarray]:
    """Over-stained, under-stained and clipped tissue pixels.

    Over-stained: mean optical density of the three channels above ``over_od`` (nearly opaque); under-stained:
    below ``under_od`` (barely tinted, though inside the tissue outline: on a well-stained slide this is mostly
    glass between fibres and in fat, so judge under-staining from ``under_fraction`` and ``od_mean`` across a
    cohort rather than pixel by pixel); clipped: a channel at or below ``clip`` (the scanner's sensor saturated
    on the dark side) or all channels at or above ``255 - clip``.

    Returns
    -------
    dict
        ``over``, ``under``, ``clipped`` → ``(rows, cols)`` bool, all inside ``tissue``.
    """
    import cv2

    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3])
    od = _mean_od(rgb)
    r, g, b = cv2.split(rgb)
    lowest = cv2.min(cv2.min(r, g), b)
    clipped = (lowest <= clip) | (lowest >= 255 - clip)
    return {"over": tissue & (od > over_od), "under": tissue & (od < under_od), "clipped": tissue & clipped}


def _mean_od(rgb: np.ndarray) -> np.ndarray:
    """Mean optical density of the three channels, through a lookup table (uint8 input)."""
    lut = np.float32(np.log10(256.0)) - np.log10(np.arange(1, 257, dtype=np.float32))
    return (lut[rgb[..., 0]] + lut[rgb[..., 1]] + lut[rgb[..., 2]]) / 3.0


def stain_stats(
    rgb: np.ndarray,
    tissue: np.ndarray,
    *,
    masks: dict[str, np.ndarray] | None = None,
    max_pixels: int = 250_000,
    **thresholds: Any,
) -> dict[str, float | None]:
    """Summary of staining over the tissue: optical density, haematoxylin and eosin, and artefact fractions.

    Returns a dict of ``od_mean``, ``od_p95`` (mean-channel OD), ``hematoxylin``, ``eosin`` (mean of the
    colour-deconvolved channels, scikit-image's ``rgb2hed``), ``saturation`` (mean HSV saturation), and
    ``over_fraction``, ``under_fraction``, ``clipped_fraction`` (fractions of tissue pixels, see
    :func:`stain_masks`, whose result can be passed as ``masks``). The averages use at most ``max_pixels``
    tissue pixels, evenly spaced. Values are ``None`` when there is no tissue.
    """
    from skimage.color import rgb2hed

    keys = ("od_mean", "od_p95", "hematoxylin", "eosin", "saturation")
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3])
    masks = stain_masks(rgb, tissue, **thresholds) if masks is None else masks
    n = int(np.count_nonzero(tissue))
    if n == 0:
        return {**dict.fromkeys(keys), **{f"{k}_fraction": None for k in masks}}
    pixels = rgb[tissue][:: max(1, n // max_pixels)]
    od = _mean_od(pixels)
    hed = rgb2hed(pixels[None])[0]
    sat, _ = _hsv(pixels[None])
    out: dict[str, float | None] = {
        "od_mean": float(od.mean()),
        "od_p95": float(np.percentile(od, 95)),
        "hematoxylin": float(hed[:, 0].mean()),
        "eosin": float(hed[:, 1].mean()),
        "saturation": float(sat.mean()),
    }
    out.update({f"{k}_fraction": float(np.count_nonzero(m) / n) for k, m in masks.items()})
    return {k: (None if v is None else round(v, 5)) for k, v in out.items()}


def _drop_small(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    import cv2

    if not mask.any():
        return mask
    _n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    keep[0] = False
    return keep[labels]
