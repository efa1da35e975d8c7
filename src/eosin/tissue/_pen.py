"""Pen marks: ink of the pathologist's markers (blue, green, black, red) told apart from stained tissue by colour.

Hue is on OpenCV's full scale (0-255 for 0-360°), saturation and value on 0-255. H&E sits at purple-blue
(haematoxylin, hue ~190-215) and magenta-pink (eosin, hue ~215-240, saturation mostly below ~120); DAB is brown
(hue ~10-40). Marker inks are far more saturated than stain at thumbnail resolution, and green/cyan ink has hues no
stain has. Red ink against eosin is the hard case: ink is redder (hue nearer 0) and far more saturated.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLACK_MAX_VALUE", "PEN_RULES", "colour_ink_mask", "dark_mask", "pen_colours"]

#: colour rules, each ``(hue_low, hue_high, min_saturation, min_value, max_value)``; hue ranges may wrap past 255
PEN_RULES: dict[str, tuple[int, int, int, int, int]] = {
    # green and teal ink: hues stains never take
    "green": (45, 150, 50, 30, 255),
    # blue ink: bluer and much more saturated than haematoxylin
    "blue": (145, 178, 110, 30, 255),
    # red ink: red to crimson, strongly saturated (eosin is magenta-pink and paler)
    "red": (243, 12, 150, 60, 255),
}
#: black ink (and other black artefacts): dark whatever the hue
BLACK_MAX_VALUE = 55


def _ranges(saturation_factor: float) -> dict[str, list[tuple[tuple[int, int, int], tuple[int, int, int]]]]:
    """``cv2.inRange`` bounds of each ink colour (a hue range wrapping past 255 becomes two ranges)."""
    out = {}
    for name, (lo, hi, smin, vmin, vmax) in PEN_RULES.items():
        smin = round(smin * saturation_factor)
        hues = [(lo, hi)] if lo <= hi else [(lo, 255), (0, hi)]
        out[name] = [((h0, smin, vmin), (h1, 255, vmax)) for h0, h1 in hues]
    return out


def pen_colours(hsv: np.ndarray, *, saturation_factor: float = 1.0) -> dict[str, np.ndarray]:
    """Per-colour boolean masks of pixels with the colour of marker ink.

    Parameters
    ----------
    hsv
        ``(rows, cols, 3)`` uint8 HSV image on OpenCV's full hue scale (``cv2.COLOR_RGB2HSV_FULL``).
    saturation_factor
        Scales the minimum saturations of :data:`PEN_RULES` (below 1: the paler rims of marks).

    Returns
    -------
    dict
        ``{"green", "blue", "red", "black"}`` → ``(rows, cols)`` bool.
    """
    import cv2

    out = {}
    for name, bounds in _ranges(saturation_factor).items():
        mask = np.zeros(hsv.shape[:2], np.uint8)
        for lo, hi in bounds:
            mask |= cv2.inRange(hsv, lo, hi)
        out[name] = mask > 0
    out["black"] = dark_mask(hsv) > 0
    return out


def colour_ink_mask(hsv: np.ndarray, *, saturation_factor: float = 1.0) -> np.ndarray:
    """Pixels of any coloured ink (green, blue, red) as a uint8 0/255 mask (fast path of :func:`pen_colours`)."""
    import cv2

    mask = np.zeros(hsv.shape[:2], np.uint8)
    for bounds in _ranges(saturation_factor).values():
        for lo, hi in bounds:
            cv2.bitwise_or(mask, cv2.inRange(hsv, lo, hi), dst=mask)
    return mask


def dark_mask(hsv: np.ndarray) -> np.ndarray:
    """Pixels dark enough to be black ink, as a uint8 0/255 mask."""
    import cv2

    return cv2.inRange(hsv, (0, 0, 0), (255, 255, BLACK_MAX_VALUE))
