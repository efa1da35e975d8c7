"""Tissue, pen marks and cross-sections on a low-resolution image of a slide.

The method is classical and fast (a few tens of milliseconds per megapixel):

1. the glass colour is estimated (bright, low-chroma pixels) and the image white-balanced against it, so a grey or
   beige background (coverslip mountant, IHC glass) reads as white;
2. a pixel is *stained* when its chroma (max - min of the balanced channels) exceeds a threshold: Otsu's threshold on
   the chroma histogram, clipped to a fixed range so that an image that is all tissue or all glass still behaves;
   grey artefacts (dust, coverslip edges, bubbles' rims) have little chroma and are not tissue;
3. pen marks are found by colour (:mod:`eosin.tissue._pen`), cleaned up morphologically and removed from tissue;
4. tissue is closed morphologically, holes smaller than ``max_hole_area`` filled (larger holes, such as lumens and
   fat, are kept), and pieces smaller than ``min_area`` dropped;
5. pieces closer than ``section_gap`` are grouped into one cross-section; sections are numbered in reading order.

Areas and distances are in µm (µm²) when the resolution is known; otherwise they are fractions of the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eosin.errors import UsageError
from eosin.tissue._pen import colour_ink_mask, dark_mask

__all__ = ["MAX_SIDE_WITHOUT_MPP", "TissueMasks", "detect_tissue"]

#: longer side (pixels) of the working image of a slide whose mpp is unknown or implausible
MAX_SIDE_WITHOUT_MPP = 2048


@dataclass(frozen=True, eq=False)
class TissueMasks:
    """Masks of one slide at a low resolution.

    Attributes
    ----------
    tissue
        ``(rows, cols)`` bool: stained tissue, pen excluded, holes larger than ``max_hole_area`` kept.
    pen
        ``(rows, cols)`` bool: marker ink (blue, green, red, black).
    sections
        ``(rows, cols)`` int32 cross-section labels of tissue pixels, ``1..n`` in reading order (top to bottom,
        then left to right); ``0`` where there is no tissue.
    downsample
        ``(dx, dy)`` level-0 pixels per mask pixel.
    origin
        ``(x, y)`` level-0 position of mask pixel ``(0, 0)`` (the slide's bounds offset; ``(0, 0)`` for images).
    mpp
        Microns per mask pixel, or ``None`` when the slide's resolution is unknown.
    params
        The parameters of the detection.
    """

    tissue: np.ndarray
    pen: np.ndarray
    sections: np.ndarray
    downsample: tuple[float, float] = (1.0, 1.0)
    origin: tuple[float, float] = (0.0, 0.0)
    mpp: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_sections(self) -> int:
        return int(self.sections.max(initial=0))

    @property
    def shape(self) -> tuple[int, int]:
        return self.tissue.shape  # type: ignore[return-value]

    def __repr__(self) -> str:
        res = f"mpp={self.mpp:g}" if self.mpp is not None else f"downsample={self.downsample[0]:.4g}"
        return (
            f"TissueMasks(shape={self.shape}, {res}, tissue={self.tissue.mean():.1%}, pen={self.pen.mean():.1%}, "
            f"sections={self.n_sections})"
        )


def detect_tissue(
    slide_or_rgb: Any,
    *,
    mpp: float = 8.0,
    downsample: float | None = None,
    image_mpp: float | None = None,
    min_area: float = 20_000.0,
    max_hole_area: float = 5_000.0,
    section_gap: float = 100.0,
    min_chroma: float = 0.04,
    max_chroma: float = 0.05,
    min_strong_fraction: float = 0.05,
    pen: bool = True,
    min_pen_area: float = 10_000.0,
) -> TissueMasks:
    """Find tissue, pen marks and cross-sections on a slide or an RGB image.

    Parameters
    ----------
    slide_or_rgb
        An open :class:`~eosin.slide.Slide`, or a ``(rows, cols, 3)`` RGB uint8 array (a thumbnail).
    mpp
        Working resolution in µm per pixel for a slide with a trustworthy mpp. A slide whose mpp is missing or
        implausible is read at a downsample giving a longer side of about 2048 pixels, and the masks record
        ``mpp=None``.
    downsample
        Use this downsample instead (level-0 pixels per mask pixel; for an array, it is shrunk by this factor).
    image_mpp
        µm per pixel of an array input, when known (areas are then in µm²).
    min_area
        Smallest piece of tissue kept, µm² (fraction ``min_area / 2e8`` of the image when the resolution is
        unknown, i.e. 1e-4 by default).
    max_hole_area
        Holes in tissue up to this area are filled, µm² (larger ones, lumens and fat, are kept).
    section_gap
        Pieces of tissue closer than this, µm, belong to the same cross-section.
    min_chroma, max_chroma
        Range the automatic (Otsu) chroma threshold is clipped to (chroma of white-balanced RGB, 0-1).
    min_strong_fraction
        A piece of tissue is kept only when at least this fraction of it is clearly stained (chroma above
        ``2 * max_chroma``): faint coloured artefacts (mountant streaks, the glass beyond the coverslip) are not.
    pen
        Detect pen marks (and exclude them from tissue).
    min_pen_area
        Smallest pen mark kept, µm².

    Returns
    -------
    TissueMasks
        Empty masks (no error) when nothing is stained; callers decide whether that is a problem.

    Raises
    ------
    UsageError
        For a non-positive ``mpp`` or ``downsample``, or an array that is not an RGB image.
    """
    import cv2

    rgb, ds, origin, mask_mpp, source = _working_image(
        slide_or_rgb, mpp=mpp, downsample=downsample, image_mpp=image_mpp
    )
    rows, cols = rgb.shape[:2]
    # µm² per pixel, or a nominal scale making the defaults fractions of the image
    px_area = mask_mpp**2 if mask_mpp else 2e8 / (rows * cols)
    px_len = mask_mpp if mask_mpp else float(np.sqrt(px_area))

    if not getattr(slide_or_rgb, "is_brightfield", True) or _is_dark_field(rgb):
        return _dark_field_masks(rgb, ds, origin, mask_mpp, source, px_area=px_area, min_area=min_area)
    balanced, background = _white_balance(rgb)
    hsv = cv2.cvtColor(balanced, cv2.COLOR_RGB2HSV_FULL)
    # chroma (max - min of R, G, B) = saturation x value
    _, sat, val = cv2.split(hsv)
    chroma = cv2.multiply(sat, val, scale=1.0 / 255)
    thresh = _chroma_threshold(chroma, min_chroma, max_chroma)
    stained = chroma > thresh * 255

    pen_mask = halo = np.zeros((rows, cols), bool)
    if pen:
        pen_mask, halo = _pen_mask(hsv, px_area=px_area, px_len=px_len, min_pen_area=min_pen_area)

    # ink fades into paler rims: marks and rims both stay out of tissue
    no_pen = ~halo
    tissue = stained & no_pen
    close_r = max(1, round(8.0 / px_len))  # bridge gaps of ~16 µm
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close_r + 1, 2 * close_r + 1))
    tissue = cv2.morphologyEx(tissue.view(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    tissue &= no_pen
    tissue = _fill_small_holes(tissue, max_hole_area / px_area)
    strong = chroma > 2 * max_chroma * 255
    tissue = _drop_small(tissue, min_area / px_area, strong=strong, min_strong_fraction=min_strong_fraction)
    sections = _sections(tissue, gap_px=section_gap / px_len)

    params = {
        "mpp": mask_mpp,
        "downsample": [float(ds[0]), float(ds[1])],
        "source": source,
        "min_area_um2": min_area,
        "max_hole_area_um2": max_hole_area,
        "section_gap_um": section_gap,
        "chroma_range": [min_chroma, max_chroma],
        "chroma_threshold": round(float(thresh), 4),
        "min_strong_fraction": min_strong_fraction,
        "background_rgb": [int(v) for v in background],
        "pen": pen,
        "min_pen_area_um2": min_pen_area,
        "units": "um" if mask_mpp else "fraction of image area / 2e8",
    }
    return TissueMasks(
        tissue=tissue,
        pen=pen_mask,
        sections=sections,
        downsample=(float(ds[0]), float(ds[1])),
        origin=(float(origin[0]), float(origin[1])),
        mpp=mask_mpp,
        params=params,
    )


def _working_image(
    slide_or_rgb: Any, *, mpp: float, downsample: float | None, image_mpp: float | None
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float], float | None, str]:
    """The low-resolution RGB image, its downsample, origin, mpp and a word on how it was chosen."""
    import cv2

    if downsample is not None and not downsample > 0:
        raise UsageError(f"downsample must be positive, got {downsample!r}.")
    if isinstance(slide_or_rgb, np.ndarray):
        rgb = _as_rgb(slide_or_rgb)
        ds = 1.0 if downsample is None else float(downsample)
        if ds != 1.0:
            size = (max(1, round(rgb.shape[1] / ds)), max(1, round(rgb.shape[0] / ds)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if ds > 1 else cv2.INTER_LINEAR)
        dx, dy = rgb_ds = (slide_or_rgb.shape[1] / rgb.shape[1], slide_or_rgb.shape[0] / rgb.shape[0])
        mask_mpp = None if image_mpp is None else image_mpp * (dx + dy) / 2
        return rgb, rgb_ds, (0.0, 0.0), mask_mpp, "array"
    slide = slide_or_rgb
    if not (mpp > 0 and np.isfinite(mpp)):
        raise UsageError(f"mpp must be a positive number, got {mpp!r}.")
    bx, by, bw, bh = slide.bounds
    trusted = slide.mpp_problem() is None
    if downsample is not None:
        ds, source = float(downsample), "downsample"
    elif trusted:
        ds, source = mpp / slide.require_mpp(), "mpp"
    else:
        ds, source = max(1.0, max(bw, bh) / MAX_SIDE_WITHOUT_MPP), f"mpp {slide.mpp_problem()}"
    rgb = _as_rgb(slide.thumbnail(downsample=ds))
    dx, dy = bw / rgb.shape[1], bh / rgb.shape[0]
    mask_mpp = slide.require_mpp() * (dx + dy) / 2 if trusted else None
    return rgb, (dx, dy), (float(bx), float(by)), mask_mpp, source


def _as_rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise UsageError(f"expected an RGB image of shape (rows, cols, 3), got shape {a.shape}.")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.max(initial=0) <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a[..., :3])


def _white_balance(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide by the glass colour: the median of the brightest, least coloured pixels (white if none)."""
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 60_000)))
    sample = rgb[::step, ::step].reshape(-1, 3).astype(np.int16)
    bright = sample.sum(axis=1)
    spread = sample.max(axis=1) - sample.min(axis=1)
    candidates = sample[(bright >= np.percentile(bright, 90)) & (spread <= 25)]
    background = np.median(candidates, axis=0) if len(candidates) >= 50 else np.full(3, 255.0)
    background = np.clip(background, 160, 255)
    scale = 255.0 / background
    if np.allclose(scale, 1.0, atol=0.01):
        return rgb, background
    import cv2

    lut = np.stack([np.clip(np.arange(256) * s, 0, 255) for s in scale], axis=1).astype(np.uint8)
    return cv2.LUT(rgb, lut.reshape(256, 1, 3)), background


def _is_dark_field(rgb: np.ndarray) -> bool:
    """A dark frame around the image: fluorescence, not brightfield (whose glass, or tissue, is bright)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return bool(np.median(border.max(axis=1)) < 60)


def _dark_field_masks(
    rgb: np.ndarray,
    ds: tuple[float, float],
    origin: tuple[float, float],
    mask_mpp: float | None,
    source: str,
    *,
    px_area: float,
    min_area: float,
) -> TissueMasks:
    """Fluorescence (dark background): tissue is where any channel shines above Otsu's threshold; no pen."""
    import cv2

    bright = cv2.GaussianBlur(rgb.max(axis=2), (5, 5), 0)
    t, _ = cv2.threshold(bright, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    tissue = _drop_small(bright > max(t, 10), min_area / px_area)
    params = {
        "mpp": mask_mpp,
        "downsample": list(ds),
        "source": source,
        "mode": "dark-field",
        "threshold": float(t),
    }
    return TissueMasks(
        tissue=tissue,
        pen=np.zeros_like(tissue),
        sections=_sections(tissue, gap_px=0),
        downsample=ds,
        origin=origin,
        mpp=mask_mpp,
        params=params,
    )


def _chroma_threshold(chroma: np.ndarray, lo: float, hi: float) -> float:
    """Otsu's threshold of the chroma histogram, clipped to ``[lo, hi]`` (fractions of 255)."""
    import cv2

    t, _ = cv2.threshold(chroma, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(np.clip(t / 255.0, lo, hi))


def _pen_mask(
    hsv: np.ndarray, *, px_area: float, px_len: float, min_pen_area: float
) -> tuple[np.ndarray, np.ndarray]:
    """Marker ink as marks of a real size, and the marks with their paler rims (kept out of tissue).

    Ink-coloured pixels are grown into connected paler pixels of the same colour (hysteresis): mildly for the
    marks themselves, generously for the rims, which are neither ink enough to call pen nor tissue.
    """
    import cv2

    # black ink: dark blobs thick enough to survive an opening (thin dark lines are edges and dust)
    r = max(1, round(12.0 / px_len))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    ink = cv2.morphologyEx(dark_mask(hsv), cv2.MORPH_OPEN, k)
    cv2.bitwise_or(ink, colour_ink_mask(hsv), dst=ink)
    # seeds: inked pieces of at least a quarter of the smallest mark (specks, e.g. red cells, seed nothing)
    seeds = _drop_small(ink > 0, 0.25 * min_pen_area / px_area)
    if not seeds.any():
        return seeds, seeds
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    grown = []
    for factor in (0.75, 0.35):
        rims = cv2.bitwise_or(colour_ink_mask(hsv, saturation_factor=factor), ink)
        n, labels = cv2.connectedComponents(rims, connectivity=8)
        inked = np.zeros(n, np.uint8)
        inked[labels[seeds]] = 1
        inked[0] = 0
        grown.append(cv2.morphologyEx(np.take(inked, labels), cv2.MORPH_CLOSE, k3) > 0)
    marks = _drop_small(grown[0], min_pen_area / px_area)
    halo = cv2.dilate((grown[1] & _grow_within(marks, grown[1])).view(np.uint8), k3) > 0
    return marks, halo | marks


def _grow_within(seed: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The pieces of ``region`` that touch ``seed``."""
    import cv2

    if not seed.any():
        return seed
    n, labels = cv2.connectedComponents(region.view(np.uint8), connectivity=8)
    hit = np.zeros(n, np.uint8)
    hit[labels[seed & region]] = 1
    hit[0] = 0
    return np.take(hit, labels).view(bool)


def _drop_small(
    mask: np.ndarray, min_pixels: float, *, strong: np.ndarray | None = None, min_strong_fraction: float = 0.0
) -> np.ndarray:
    """Remove 8-connected pieces smaller than ``min_pixels`` (or with too small a share of ``strong`` pixels)."""
    import cv2

    if (min_pixels <= 1 and strong is None) or not mask.any():
        return mask
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n)
    keep = area >= min_pixels
    if strong is not None and min_strong_fraction > 0:
        n_strong = np.bincount(flat * strong.ravel(), minlength=n)  # label 0 collects the rest
        keep &= n_strong >= min_strong_fraction * area
    keep = keep.astype(np.uint8)
    keep[0] = 0
    return np.take(keep, labels).view(bool)


def _fill_small_holes(mask: np.ndarray, max_pixels: float) -> np.ndarray:
    """Fill holes (background not connected to the border) of at most ``max_pixels``."""
    import cv2

    if max_pixels < 1 or not mask.any():
        return mask
    background = np.pad(~mask, 1, constant_values=True)
    n, labels = cv2.connectedComponents(background.view(np.uint8), connectivity=4)
    fill = (np.bincount(labels.ravel(), minlength=n) <= max_pixels).astype(np.uint8)
    fill[labels[0, 0]] = 0  # the outside (the padding touches every border)
    fill[0] = 0
    return mask | np.take(fill, labels[1:-1, 1:-1]).view(bool)


def _sections(tissue: np.ndarray, *, gap_px: float) -> np.ndarray:
    """Label tissue by cross-section: pieces within ``gap_px`` of each other share a label, in reading order."""
    import cv2

    if not tissue.any():
        return np.zeros(tissue.shape, np.int32)
    r = max(0, round(gap_px / 2))
    grown = tissue.view(np.uint8)
    if r:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        grown = cv2.dilate(grown, k)
    n, labels = cv2.connectedComponents(grown, connectivity=8)
    # centroids and sizes for the ordering, from every step-th pixel (sections are far larger than a step)
    step = max(1, int(np.sqrt(labels.size / 100_000)))
    sub = labels[::step, ::step]
    ys, xs = np.indices(sub.shape)
    flat = sub.ravel()
    area = np.bincount(flat, minlength=n).astype(float)
    missing = np.flatnonzero(area[1:] == 0) + 1
    if missing.size:  # a piece between the sampled pixels: sample it at full resolution
        ys_m, xs_m = np.nonzero(np.isin(labels, missing))
        flat = np.concatenate([flat, labels[ys_m, xs_m]])
        ys = np.concatenate([ys.ravel(), ys_m / step])
        xs = np.concatenate([xs.ravel(), xs_m / step])
        area = np.bincount(flat, minlength=n).astype(float)
    cx = np.bincount(flat, xs.ravel(), minlength=n) / np.maximum(area, 1)
    cy = np.bincount(flat, ys.ravel(), minlength=n) / np.maximum(area, 1)
    order = _reading_order(np.arange(1, n), cx, cy, np.sqrt(area))
    relabel = np.zeros(n, np.int32)
    relabel[order] = np.arange(1, n, dtype=np.int32)
    out = np.take(relabel, labels)
    out[~tissue] = 0
    return out


def _reading_order(index: np.ndarray, cx: np.ndarray, cy: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``index`` sorted in reading order: rows by centroid (a row spans half the median piece size), then x."""
    if len(index) == 0:
        return index
    band = 0.5 * float(np.median(size[index]))
    rows: list[list[int]] = []
    row_y = -np.inf
    for i in index[np.argsort(cy[index], kind="stable")]:
        if cy[i] - row_y > band:
            rows.append([])
            row_y = cy[i]
        rows[-1].append(int(i))
    return np.array([i for row in rows for i in sorted(row, key=lambda j: cx[j])], np.int64)
