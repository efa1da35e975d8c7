"""Handcrafted colour and texture features of tiles: a pretrained-free baseline for probes."""

from __future__ import annotations

import numpy as np

__all__ = ["colour_texture_features"]


def colour_texture_features(tiles: np.ndarray) -> np.ndarray:
    """``(n, 40)`` float32 features of ``(n, rows, cols, 3)`` uint8 RGB tiles.

    Per tile: RGB mean and standard deviation (6); haematoxylin, eosin and DAB optical-density mean and standard
    deviation (scikit-image ``rgb2hed``, 6); an 8-bin hue and 4-bin saturation histogram of HSV (12); a 10-bin
    histogram of rotation-invariant uniform local binary patterns (P=8, R=1) of the grey image (10); and grey-level
    co-occurrence contrast, dissimilarity, homogeneity, energy, correlation and ASM (distance 1, four angles,
    averaged, 32 grey levels) (6).
    """
    import cv2
    from skimage.color import rgb2hed
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    out = np.empty((len(tiles), 40), dtype=np.float32)
    for i, tile in enumerate(np.asarray(tiles)):
        rgb = tile.reshape(-1, 3).astype(np.float32)
        hed = rgb2hed(tile).reshape(-1, 3)
        hsv = cv2.cvtColor(tile, cv2.COLOR_RGB2HSV)
        hue = np.histogram(hsv[..., 0], bins=8, range=(0, 180))[0]
        sat = np.histogram(hsv[..., 1], bins=4, range=(0, 256))[0]
        grey = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY)
        lbp = local_binary_pattern(grey, 8, 1, method="uniform")
        lbp_hist = np.histogram(lbp, bins=10, range=(0, 10))[0]
        glcm = graycomatrix(
            (grey // 8).astype(np.uint8),
            [1],
            [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
            levels=32,
            normed=True,
        )
        props = [
            graycoprops(glcm, p).mean()
            for p in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
        ]
        n_px = grey.size
        out[i] = np.concatenate(
            [
                rgb.mean(0) / 255,
                rgb.std(0) / 255,
                hed.mean(0) * 10,
                hed.std(0) * 10,
                hue / n_px,
                sat / n_px,
                lbp_hist / n_px,
                props,
            ]
        )
    return out
