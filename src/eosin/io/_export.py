"""Exports of a slide store for other tools: tile tables (CSV) and tissue/pen contours (QuPath GeoJSON)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from eosin.io._keys import pick_key

__all__ = ["grid_to_csv", "tissue_to_geojson"]

CSV_COLUMNS = ("x", "y", "width", "height", "tissue_fraction", "pen_fraction", "section")
COLORS = {"Tissue": (0, 170, 0), "Pen": (0, 90, 255)}


def grid_to_csv(store: Any, path: Path, *, key: str | None = None) -> int:
    """Write the tiles of a stored grid as CSV (level-0 pixels); returns the number of rows."""
    from eosin.io._atomic import atomic_write_text
    from eosin.tiles import TileGrid

    group = store.read_group("grids", pick_key(store, "grids", key))
    grid = TileGrid.from_group(group, group.attrs)
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

    group = store.read_group("tissue", pick_key(store, "tissue", key))
    masks = {
        "Tissue": (np.asarray(group["tissue"], bool), COLORS["Tissue"]),
        "Pen": (np.asarray(group["pen"], bool), COLORS["Pen"]),
    }
    features = features_from_masks(
        masks, downsample=tuple(group.attrs["downsample"]), origin=tuple(group.attrs["origin"])
    )
    write_geojson(path, features)
    return len(features)
