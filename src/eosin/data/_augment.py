"""Training augmentation of uint8 tiles: flips, 90° rotations, HED stain jitter, blur; and resizing."""

from __future__ import annotations

import numpy as np

__all__ = ["Augment", "resize_tile"]


def resize_tile(tile: np.ndarray, size: int) -> np.ndarray:
    """``tile`` as ``size`` x ``size`` (area interpolation when shrinking, cubic when enlarging)."""
    if tile.shape[:2] == (size, size):
        return tile
    import cv2

    method = cv2.INTER_AREA if tile.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(tile, (size, size), interpolation=method)


class Augment:
    """Random augmentation of one ``(rows, cols, 3)`` uint8 tile, picklable for DataLoader workers.

    Parameters
    ----------
    flips, rotations
        Random horizontal/vertical flips; random multiples of 90° (histology has no up).
    hed_sigma, hed_bias
        Stain jitter (:class:`eosin.stain.HEDJitter`); ``hed_sigma=0`` turns it off.
    blur_p, blur_sigma
        Probability of a Gaussian blur and the largest sigma (px), drawn uniformly.
    seed
        Seed of the draws; DataLoader workers reseed with :meth:`reseed` so they do not repeat each other.
    """

    def __init__(
        self,
        *,
        flips: bool = True,
        rotations: bool = True,
        hed_sigma: float = 0.05,
        hed_bias: float = 0.01,
        blur_p: float = 0.2,
        blur_sigma: float = 1.0,
        seed: int | None = 0,
    ):
        self.flips = flips
        self.rotations = rotations
        self.hed_sigma = hed_sigma
        self.hed_bias = hed_bias
        self.blur_p = blur_p
        self.blur_sigma = blur_sigma
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Restart the random draws from ``seed``."""
        from eosin.stain import HEDJitter

        self.rng = np.random.default_rng(seed)
        self.jitter = (
            HEDJitter(sigma=self.hed_sigma, bias=self.hed_bias, seed=self.rng) if self.hed_sigma > 0 else None
        )

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        rng = self.rng
        out = tile
        if self.flips and rng.random() < 0.5:
            out = out[:, ::-1]
        if self.rotations:
            out = np.rot90(out, int(rng.integers(4)))
        out = np.ascontiguousarray(out)
        if self.jitter is not None:
            out = self.jitter.transform(out)
        if self.blur_p > 0 and rng.random() < self.blur_p:
            import cv2

            out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(rng.uniform(0.1, self.blur_sigma)))
        return out

    def __repr__(self) -> str:
        return (
            f"Augment(flips={self.flips}, rotations={self.rotations}, hed_sigma={self.hed_sigma}, "
            f"hed_bias={self.hed_bias}, blur_p={self.blur_p}, blur_sigma={self.blur_sigma})"
        )
