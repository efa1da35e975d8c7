"""Exports of a slide store for other tools: tile tables (CSV) and tissue/pen contours (QuPath GeoJSON)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import StoreError, UnknownNameError

__all__ = ["grid_to_csv", "pick_key", "tissue_to_geojson"]

CSV_COLUMNS = ("x", "y", "width", "height", "tissue_fraction", "pen_fraction", "section")
COLORS = {"Tissue": (0, 170, 0), "Pen": (0, 90, 255)}


def pick_key(store: Any, kind: str, key: str | None) -> str:
    """``key`` if the store has it, else the one key it begins (``mpp0.5_224px`` matches ``mpp0.5_224px_o0_...``);
    the only key of ``kind`` when ``key`` is None; a clear error otherwise."""
    keys = store.keys(kind) if kind in store.kinds() else []
    if not keys:
        stage = {"grids": "eosin tile", "tissue": "eosin tissue", "annotations": "eosin import geojson"}.get(
            kind, "the stage"
        )
        raise StoreError(f"the store holds no {kind}.", path=store.path, fix=f"run {stage} first")
    if key is None:
        if len(keys) > 1:
            raise StoreError(
                f"the store holds {len(keys)} {kind}: {', '.join(keys)}.",
                path=store.path,
                fix="choose one with --key",
            )
        return keys[0]
    if key in keys:
        return key
    # the readable, parameter part of a key (``mpp0.5_224px`` of ``mpp0.5_224px_o0_t0.5_1a2b3c``) is matched in
    # each store: the digest also covers the slide's own mpp, so one full key does not fit every store
    matches = [k for k in keys if k.startswith(key + "_")]
    if len(matches) > 1:
        raise StoreError(
            f"{len(matches)} {kind} match {key!r}: {', '.join(matches)}.",
            path=store.path,
            fix="give more of the key (e.g. with _o<overlap>_t<min tissue>)",
        )
    if not matches:
        raise UnknownNameError(f"{kind} key", key, keys)
    return matches[0]


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
