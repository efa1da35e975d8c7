"""Masks to polygons and GeoJSON in QuPath's conventions, and back.

QuPath imports a GeoJSON ``FeatureCollection`` whose coordinates are level-0 pixels with the origin at the
top-left of the full image; each feature's ``properties`` carry ``objectType`` (``annotation`` or ``detection``)
and ``classification`` (``name`` and an RGB ``color``). Polygons follow pixel edges: a mask pixel ``(r, c)`` covers
level-0 ``[origin + c*dx, origin + (c+1)*dx)`` horizontally (and likewise vertically), except that a diagonal step
of a boundary is cut straight across rather than as a staircase (for a disk of radius 80 pixels the polygon's
area is 2% below the pixel count).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import UsageError

__all__ = ["features_from_masks", "mask_to_polygons", "read_geojson", "write_geojson"]


def mask_to_polygons(
    mask: np.ndarray,
    *,
    downsample: float | tuple[float, float] = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
    simplify: float = 0.0,
    min_area: float = 0.0,
):
    """Polygons (with holes) of a binary mask, in level-0 coordinates.

    Parameters
    ----------
    mask
        2-D boolean (or 0/non-zero) array.
    downsample
        Level-0 pixels per mask pixel, one value or ``(dx, dy)``.
    origin
        Level-0 position of the mask's top-left corner.
    simplify
        Douglas-Peucker tolerance in mask pixels (0: exact pixel edges).
    min_area
        Drop polygons smaller than this many mask pixels.

    Returns
    -------
    shapely.MultiPolygon
    """
    import cv2
    import shapely
    from shapely import affinity
    from shapely.geometry import MultiPolygon

    mask = np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.uint8)
    if mask.ndim != 2:
        raise UsageError(f"a mask must be 2-D, got shape {mask.shape}")
    padded = np.pad(mask, 1)
    # Filled outlines of the tissue (8-connected) and of its holes (4-connected background not reaching the
    # border); the mask is their even-odd combination, taken from the largest outline down.
    background = (1 - padded).astype(np.uint8)
    _, labels = cv2.connectedComponents(background, connectivity=4)
    holes = ((labels != labels[0, 0]) & (background > 0)).astype(np.uint8)
    outlines = _outlines(padded) + _outlines(holes)
    outlines.sort(key=lambda p: p.area, reverse=True)
    geometry = shapely.Polygon()
    for outline in outlines:
        geometry = geometry.symmetric_difference(outline)
    parts = _polygons_of(geometry)
    if simplify > 0:
        parts = [p.simplify(simplify, preserve_topology=True) for p in parts]
    parts = [p for p in parts if p.area >= max(min_area, 1e-9)]
    dx, dy = (downsample, downsample) if np.ndim(downsample) == 0 else downsample
    multi = MultiPolygon(parts) if parts else MultiPolygon()
    # contour coordinates are of the padded mask's pixel centres: centre of pixel c sits at c + 0.5 in edge units
    multi = affinity.affine_transform(
        multi, [dx, 0, 0, dy, origin[0] + (-1 + 0.5) * dx, origin[1] + (-1 + 0.5) * dy]
    )
    return multi


def _outlines(mask: np.ndarray) -> list:
    """Filled outer outline of every 8-connected component, on pixel edges (in padded pixel-centre units)."""
    import cv2
    import shapely

    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0] if hierarchy is not None else []):
        if parent != -1:  # the inside of a hole: the holes mask gives it
            continue
        points = contour.reshape(-1, 2).astype(np.float64)
        if len(points) >= 3:
            # the contour runs through the centres of the border pixels; half a pixel out (mitred) is their edge
            outline = shapely.Polygon(points).buffer(0.5, join_style="mitre")
        else:
            outline = shapely.box(*(points.min(0) - 0.5), *(points.max(0) + 0.5))
        if not outline.is_empty:
            out.append(outline)
    return out


def _polygons_of(geometry) -> list:
    if geometry.is_empty:
        return []
    if geometry.geom_type == "Polygon":
        return [geometry]
    return [g for g in getattr(geometry, "geoms", []) if g.geom_type == "Polygon" and not g.is_empty]


def features_from_masks(
    masks: Mapping[str, tuple[np.ndarray, tuple[int, int, int]]],
    *,
    downsample: float | tuple[float, float] = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
    object_type: str = "annotation",
    simplify: float = 0.5,
) -> list[dict[str, Any]]:
    """One QuPath feature per connected polygon of each named mask: ``{name: (mask, (r, g, b))}``."""
    import shapely

    features = []
    for name, (mask, color) in masks.items():
        multi = mask_to_polygons(mask, downsample=downsample, origin=origin, simplify=simplify, min_area=1.0)
        for polygon in multi.geoms:
            features.append(
                {
                    "type": "Feature",
                    "id": str(uuid.uuid4()),
                    "geometry": json.loads(shapely.to_geojson(shapely.set_precision(polygon, 0.01))),
                    "properties": {
                        "objectType": object_type,
                        "classification": {"name": name, "color": [int(c) for c in color]},
                    },
                }
            )
    return features


def write_geojson(path: str | os.PathLike[str], features: Iterable[Mapping[str, Any]]) -> None:
    """Write a FeatureCollection atomically."""
    from eosin.io._atomic import atomic_write_text

    doc = {"type": "FeatureCollection", "features": list(features)}
    atomic_write_text(path, json.dumps(doc, separators=(",", ":")))


def read_geojson(path: str | os.PathLike[str]) -> list[tuple[str | None, Any]]:
    """``(class name, shapely geometry)`` for every feature of a GeoJSON file (QuPath export or eosin's own).

    Accepts a FeatureCollection, a single Feature, or a list of features (QuPath's older exports).
    """
    import shapely

    from eosin.errors import EosinError

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EosinError(
            f"cannot read GeoJSON ({exc}).", path=path, fix="export it again from QuPath"
        ) from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        items = doc.get("features", [])
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        items = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        raise EosinError(
            "not a GeoJSON Feature or FeatureCollection.",
            path=path,
            fix="in QuPath use File > Export objects as GeoJSON",
        )
    out = []
    for feature in items:
        props = feature.get("properties") or {}
        cls = props.get("classification") or {}
        name = cls.get("name") if isinstance(cls, dict) else None
        out.append((name or props.get("name"), shapely.from_geojson(json.dumps(feature["geometry"]))))
    return out
