"""Tissue and pen masks drawn over a thumbnail, for people to check a detection at a glance."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["overlay"]

TISSUE_COLOUR = (0, 200, 0)
PEN_COLOUR = (0, 90, 255)


def overlay(rgb: np.ndarray, masks: Any, *, numbers: bool = True) -> np.ndarray:
    """Draw ``masks`` over ``rgb``: tissue outlined in green, pen shaded and outlined in blue, sections numbered.

    Parameters
    ----------
    rgb
        ``(rows, cols, 3)`` uint8 thumbnail; resized to the masks' shape when it differs.
    masks
        :class:`~eosin.tissue.TissueMasks` (``tissue``, ``pen`` and ``sections`` are read).
    numbers
        Write each cross-section's number at its centre.

    Returns
    -------
    numpy.ndarray
        A new ``(rows, cols, 3)`` RGB uint8 image at the masks' resolution.
    """
    import cv2

    rows, cols = masks.tissue.shape
    out = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
    if out.shape[:2] != (rows, cols):
        out = cv2.resize(out, (cols, rows), interpolation=cv2.INTER_AREA)
    else:
        out = out.copy()
    width = max(1, round(max(rows, cols) / 700))
    pen = masks.pen.astype(np.uint8)
    if pen.any():
        shade = out.copy()
        shade[pen > 0] = PEN_COLOUR
        out = cv2.addWeighted(out, 0.55, shade, 0.45, 0)
        contours, _ = cv2.findContours(pen, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, PEN_COLOUR, width)
    contours, _ = cv2.findContours(masks.tissue.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, TISSUE_COLOUR, width)
    if numbers:
        _draw_numbers(out, np.asarray(masks.sections))
    return out


def _draw_numbers(out: np.ndarray, sections: np.ndarray) -> None:
    import cv2

    n = int(sections.max(initial=0))
    if n == 0:
        return
    ys, xs = np.nonzero(sections)
    labels = sections[ys, xs]
    count = np.bincount(labels, minlength=n + 1)
    cx = np.bincount(labels, xs, minlength=n + 1) / np.maximum(count, 1)
    cy = np.bincount(labels, ys, minlength=n + 1) / np.maximum(count, 1)
    scale = max(0.3, float(np.sqrt(out.shape[0] * out.shape[1])) / 2500)
    thick = max(1, round(scale * 2))
    for i in range(1, n + 1):
        if count[i] == 0:
            continue
        text = str(i)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        org = (int(cx[i] - tw / 2), int(cy[i] + th / 2))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
