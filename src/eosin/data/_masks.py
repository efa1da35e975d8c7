"""Labelled tiles cut from image/mask pairs: a tile's label follows the fraction of its pixels in the mask."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eosin.data._table import TileTable
from eosin.errors import DataError, UsageError

__all__ = ["EBHI_PALETTE", "binary_mask", "mask_fractions", "tiles_from_masks"]

#: EBHI-SEG mask colours (RGB): background, then one colour per class
EBHI_PALETTE = {
    "background": (0, 0, 0),
    "Adenocarcinoma": (110, 80, 50),
    "High-grade_IN": (240, 130, 240),
    "Low-grade_IN": (255, 255, 0),
    "Normal": (255, 255, 255),
    "Polyp": (0, 255, 0),
    "Serrated_adenoma": (0, 0, 255),
}


def binary_mask(
    mask: np.ndarray,
    *,
    threshold: int = 127,
    palette: Sequence[Sequence[int]] | None = None,
    foreground: Sequence[int] | None = None,
) -> np.ndarray:
    """Foreground of a mask image as ``(rows, cols)`` bool.

    Parameters
    ----------
    mask
        ``(rows, cols)`` or ``(rows, cols, 3)`` uint8 mask image (JPEG masks carry compression noise).
    threshold
        Without a palette: foreground is grey value (mean of the channels) > ``threshold``.
    palette, foreground
        Colour-coded masks: every pixel takes the index of its nearest ``palette`` colour (RGB), and foreground is
        the indices listed in ``foreground`` (default: every index but 0).
    """
    m = np.asarray(mask)
    if palette is None:
        grey = m if m.ndim == 2 else m[..., :3].mean(axis=-1)
        return grey > threshold
    colours = np.asarray(palette, dtype=np.int32).reshape(-1, 3)
    rgb = m if m.ndim == 3 else np.repeat(m[..., None], 3, axis=-1)
    dist = ((rgb[..., None, :3].astype(np.int32) - colours) ** 2).sum(axis=-1)
    index = dist.argmin(axis=-1)
    fg = list(range(1, len(colours))) if foreground is None else list(foreground)
    return np.isin(index, fg)


def mask_fractions(
    fg: np.ndarray, *, tile_size: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners ``(n, 2)`` (x, y) of the whole tiles of a grid over ``fg`` and their foreground fractions.

    Computed exactly from an integral image, so a tile's fraction is the share of its pixels in the mask.
    """
    stride = stride or tile_size
    rows, cols = fg.shape
    if rows < tile_size or cols < tile_size:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    integral = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(fg, axis=0, dtype=np.int64), axis=1)
    ys = np.arange(0, rows - tile_size + 1, stride)
    xs = np.arange(0, cols - tile_size + 1, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    yy, xx = yy.ravel(), xx.ravel()
    s = tile_size
    total = integral[yy + s, xx + s] - integral[yy, xx + s] - integral[yy + s, xx] + integral[yy, xx]
    return np.stack([xx, yy], axis=1).astype(np.int64), total / float(s * s)


def tiles_from_masks(
    images: Sequence[str | os.PathLike[str]],
    masks: Sequence[str | os.PathLike[str]],
    *,
    tile_size: int = 224,
    stride: int | None = None,
    hi: float = 0.5,
    lo: float = 0.05,
    positive: str | Sequence[str] = "tumour",
    negative: str | None = "normal",
    patients: Sequence[str] | None = None,
    threshold: int = 127,
    palette: Sequence[Sequence[int]] | None = None,
    foreground: Sequence[int] | None = None,
) -> TileTable:
    """Cut labelled tiles from image/mask pairs.

    A tile is ``positive`` when its mask fraction exceeds ``hi``, ``negative`` when it is below ``lo``; tiles in
    between are ambiguous and dropped (``negative=None`` drops the negatives too).

    Parameters
    ----------
    images, masks
        Paired files (same pixel size).
    positive
        One label for all positive tiles, or one per image (e.g. the image's class, for EBHI).
    patients
        Patient (or source) id per image; default the image path.
    threshold, palette, foreground
        How a mask becomes foreground: see :func:`binary_mask`.

    Returns
    -------
    TileTable
        With ``boxes`` (x, y, w, h in the image) and ``extra["fraction"]``.
    """
    from eosin.data._table import _decode

    if len(images) != len(masks):
        raise UsageError(f"{len(images)} images but {len(masks)} masks.")
    if not 0 <= lo <= hi <= 1:
        raise UsageError(f"need 0 <= lo <= hi <= 1, got lo={lo}, hi={hi}.")
    labels_pos = [positive] * len(images) if isinstance(positive, str) else list(positive)
    ids = [str(p) for p in images] if patients is None else [str(p) for p in patients]
    paths, labels, pats, boxes, fracs = [], [], [], [], []
    for i, (image, mask_path) in enumerate(zip(images, masks, strict=True)):
        mask = _decode(str(mask_path))
        shape = _image_shape(Path(image))
        if shape != mask.shape[:2]:
            raise DataError(f"mask is {mask.shape[:2]} px but its image is {shape}.", path=mask_path)
        corners, frac = mask_fractions(
            binary_mask(mask, threshold=threshold, palette=palette, foreground=foreground),
            tile_size=tile_size,
            stride=stride,
        )
        keep_pos = frac > hi
        keep_neg = (frac < lo) if negative is not None else np.zeros_like(keep_pos)
        for keep, label in ((keep_pos, labels_pos[i]), (keep_neg, negative)):
            n = int(keep.sum())
            paths += [str(image)] * n
            labels += [label] * n
            pats += [ids[i]] * n
            boxes.append(np.column_stack([corners[keep], np.full((n, 2), tile_size)]))
            fracs.append(frac[keep])
    if not paths:
        raise DataError(
            f"no tile of {tile_size} px has a mask fraction > {hi} or < {lo}.",
            fix="lower the tile size or widen the thresholds",
        )
    return TileTable.from_rows(
        paths, labels, pats, boxes=np.concatenate(boxes), extra={"fraction": np.concatenate(fracs)}
    )


def _image_shape(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as exc:
        raise DataError(f"cannot read the image ({exc}).", path=path) from None
