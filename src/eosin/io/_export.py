"""Exports of a slide store for other tools: tile tables (CSV) and tissue/pen contours (QuPath GeoJSON)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

__all__ = ["grid_to_csv", "tissue_to_geojson"]

CSV_COLUMNS = ("x", "y", "width", "height", "tissue_fraction", "pen_fraction", "section")
COLORS = {"Tissue": (0, 170, 0), "Pen": (0, 90, 255)}


def grid_to_csv(store: Any, path: Path, *, key: str | None = None) -> int:
    """Write the tiles of a stored grid as CSV (level-0 pixels); returns the number of rows."""
    from eosin.io._atomic import atomic_write_text

    grid = store.grid(key)
    side = int(round(grid.extent))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for x, y, t, p, s in zip(grid.x, grid.y, grid.tissue_fraction, grid.pen_fraction, grid.section):
        writer.writerow((int(x), int(y), side, side, f"{t:.4f}", f"{p:.4f}", int(s)))
    atomic_write_text(path, buf.getvalue())
    return len(grid)


def tissue_to_geojson(store: Any, path: Path, *, key: str | None = None) -> int:
    """Write tissue and pen contours as a QuPath GeoJSON FeatureCollection; returns the number of features."""
    from eosin.io._geojson import features_from_masks, write_geojson

    tissue = store.tissue(key)
    masks = {"Tissue": (tissue.tissue, COLORS["Tissue"]), "Pen": (tissue.pen, COLORS["Pen"])}
    features = features_from_masks(masks, downsample=tissue.downsample, origin=tissue.origin)
    write_geojson(path, features)
    return len(features)
