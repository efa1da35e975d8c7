"""Per-tile QC flags aligned with a tile grid: a blur score and a bitmask of the artefacts each tile touches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FLAGS", "TileQC", "tile_qc"]

#: bit of each detector in :attr:`TileQC.flags`
FLAGS: dict[str, int] = {"blur": 1, "pen": 2, "dark": 4, "edge": 8, "stain": 16, "learned_artefact": 32}


@dataclass(frozen=True, eq=False)
class TileQC:
    """QC of every tile of a grid, in the grid's order.

    Attributes
    ----------
    blur_score
        ``(n,)`` float32 focus score (:func:`~eosin.qc.focus_score`; higher is sharper, NaN when not measured).
    fractions
        Detector name → ``(n,)`` float32 fraction of the tile covered by that artefact mask (``pen``, ``dark``,
        ``edge``, ``stain``; ``learned_artefact`` where a learned detector ran: the share of the tile its map
        puts at or above its threshold).
    flags
        ``(n,)`` uint8 bitmask (:data:`FLAGS`): ``blur`` when ``blur_score < blur_threshold``, another bit when
        its fraction reaches ``min_fraction``.
    probabilities
        Detector name → ``(n,)`` float32 mean probability over the tile of a learned detector's map
        (``learned_artefact``); empty when none ran.
    """

    blur_score: np.ndarray
    fractions: dict[str, np.ndarray]
    flags: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.flags.shape[0])

    def flagged(self, name: str) -> np.ndarray:
        """``(n,)`` bool: tiles carrying the flag ``name``."""
        return (self.flags & FLAGS[name]) > 0

    @property
    def ok(self) -> np.ndarray:
        """``(n,)`` bool: tiles without any flag (the ones later stages keep)."""
        return self.flags == 0

    def to_group(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and attributes of the store group ``qc/<grid key>`` (docs/format.md)."""
        arrays = {"blur_score": self.blur_score.astype(np.float32), "flags": self.flags.astype(np.uint8)}
        arrays.update({f"{k}_fraction": v.astype(np.float32) for k, v in self.fractions.items()})
        arrays.update({f"{k}_probability": v.astype(np.float32) for k, v in self.probabilities.items()})
        attrs = {"n_tiles": len(self), "bits": FLAGS, "params": self.params}
        return arrays, attrs

    @classmethod
    def from_group(cls, arrays: Any, attrs: dict[str, Any]) -> TileQC:
        fractions = {
            name[: -len("_fraction")]: np.asarray(arrays[name], np.float32)
            for name in arrays
            if name.endswith("_fraction")
        }
        probabilities = {
            name[: -len("_probability")]: np.asarray(arrays[name], np.float32)
            for name in arrays
            if name.endswith("_probability")
        }
        return cls(
            blur_score=np.asarray(arrays["blur_score"], np.float32),
            fractions=fractions,
            flags=np.asarray(arrays["flags"], np.uint8),
            params=dict(attrs.get("params", {})),
            probabilities=probabilities,
        )


def tile_qc(
    grid: Any,
    artefacts: dict[str, np.ndarray],
    *,
    downsample: float | tuple[float, float],
    origin: tuple[float, float] = (0.0, 0.0),
    blur_score: np.ndarray | None = None,
    blur_threshold: float = 8.0,
    min_fraction: float = 0.25,
    probabilities: dict[str, np.ndarray] | None = None,
) -> TileQC:
    """Flag the tiles of ``grid`` from artefact masks and focus scores.

    Parameters
    ----------
    grid
        The :class:`~eosin.tiles.TileGrid`.
    artefacts
        Name → ``(rows, cols)`` mask of a low-resolution image of the slide, bool or the float coverage of each
        pixel (e.g. ``dark``, ``edge``, ``stain``); ``pen`` is taken from ``grid.pen_fraction``.
    downsample, origin
        Level-0 pixels per mask pixel (``(dx, dy)`` or one number) and the level-0 position of mask pixel
        ``(0, 0)``, as in :class:`~eosin.tissue.TissueMasks`.
    blur_score
        ``(n,)`` focus scores, or ``None`` (no blur flags; scores stored as NaN).
    blur_threshold, min_fraction
        A tile is blurry below ``blur_threshold``; it carries an artefact flag when that artefact covers at
        least ``min_fraction`` of it.
    probabilities
        Name → ``(rows, cols)`` float probability map of a learned detector on the same image as ``artefacts``
        (e.g. ``learned_artefact``, :func:`~eosin.qc.artefact_map`): each tile gets its mean over the tile.
    """
    from eosin.tiles import box_fractions

    n = len(grid)
    dx, dy = _pair(downsample)
    ox, oy = _pair(origin)
    mx, my = (grid.x - ox) / dx, (grid.y - oy) / dy
    fractions = {"pen": np.asarray(grid.pen_fraction, np.float32)}
    for name, mask in artefacts.items():
        fractions[name] = box_fractions(
            np.asarray(mask, np.float32), mx, my, grid.extent / dx, grid.extent / dy
        )
    flags = np.zeros(n, np.uint8)
    score = np.full(n, np.nan, np.float32) if blur_score is None else np.asarray(blur_score, np.float32)
    if score.shape != (n,):
        raise ValueError(f"blur_score has shape {score.shape}; the grid has {n} tiles")
    flags[score < blur_threshold] |= FLAGS["blur"]
    for name, frac in fractions.items():
        if name in FLAGS:
            flags[frac >= min_fraction] |= FLAGS[name]
    means = {
        name: box_fractions(np.asarray(prob, np.float32), mx, my, grid.extent / dx, grid.extent / dy)
        for name, prob in (probabilities or {}).items()
    }
    params = {"blur_threshold": blur_threshold, "min_fraction": min_fraction, "grid": grid.key}
    return TileQC(blur_score=score, fractions=fractions, flags=flags, params=params, probabilities=means)


def _pair(value: Any) -> tuple[float, float]:
    if np.ndim(value) == 0:
        return float(value), float(value)
    return float(value[0]), float(value[1])
