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

__all__ = [
    "features_from_masks",
    "load_geojson",
    "mask_to_polygons",
    "parse_geojson",
    "read_geojson",
    "write_geojson",
]


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

    Accepts a FeatureCollection, a single Feature, or a list of features (QuPath's older exports); a malformed file
    raises :class:`~eosin.errors.GeoJSONError` with the line and the reason.
    """
    import shapely

    out = []
    for feature in load_geojson(path):
        props = feature.get("properties") or {}
        cls = props.get("classification") or {}
        name = cls.get("name") if isinstance(cls, dict) else None
        out.append((name or props.get("name"), shapely.from_geojson(json.dumps(feature["geometry"]))))
    return out


def load_geojson(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The features of a GeoJSON file, checked and otherwise untouched (every property kept), see :func:`parse_geojson`."""
    from eosin.errors import GeoJSONError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GeoJSONError(f"cannot read the file ({exc}).", path=path, fix="give a GeoJSON file") from None
    return parse_geojson(text, source=path)


GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")


def parse_geojson(text: str, *, source: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Check a GeoJSON text and return its features as dicts, unchanged.

    Accepts a FeatureCollection, a single Feature, or a JSON list of features (QuPath's older exports). Each
    feature must have a valid geometry (Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon,
    GeometryCollection; polygon rings closed with at least 4 positions); ``properties`` (QuPath's
    ``objectType``, ``classification`` {name, color}, measurements...) and any other member are kept as they are.

    Raises
    ------
    GeoJSONError
        Invalid JSON or an invalid feature, naming ``source``, the line and the reason.
    """
    from eosin.errors import GeoJSONError

    fix = "export the objects again (QuPath: File > Export objects as GeoJSON), or correct that line"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GeoJSONError(
            f"line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}).", path=source, fix=fix
        ) from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        items = doc.get("features")
        if not isinstance(items, list):
            raise GeoJSONError("line 1: a FeatureCollection without a 'features' list.", path=source, fix=fix)
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        items = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise GeoJSONError(
            f"line 1: not a GeoJSON Feature or FeatureCollection (found {kind!r}).", path=source, fix=fix
        )
    lines = None
    for i, feature in enumerate(items):
        reason = _feature_problem(feature)
        if reason:
            if lines is None:
                lines = _item_lines(text)
            where = f"line {lines[i]}" if i < len(lines) else "a feature"
            raise GeoJSONError(f"{where} (feature {i + 1}): {reason}.", path=source, fix=fix)
    return items


def _feature_problem(feature: Any) -> str | None:
    """Why ``feature`` is not a valid GeoJSON feature, or None."""
    import shapely

    if not isinstance(feature, dict):
        return f"a feature must be an object, found {type(feature).__name__}"
    if feature.get("type") != "Feature":
        return f"'type' must be 'Feature', found {feature.get('type')!r}"
    props = feature.get("properties")
    if props is not None and not isinstance(props, dict):
        return "'properties' must be an object or null"
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        return "no 'geometry' object"
    problem = _geometry_problem(geometry)
    if problem:
        return problem
    try:
        shapely.from_geojson(json.dumps(geometry))
    except Exception as exc:  # noqa: BLE001 - GEOS names the defect
        return f"invalid geometry ({str(exc).strip().splitlines()[0]})"
    return None


def _geometry_problem(geometry: dict[str, Any]) -> str | None:
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            return "a GeometryCollection needs a 'geometries' list"
        for part in parts:
            problem = _geometry_problem(part) if isinstance(part, dict) else "a geometry must be an object"
            if problem:
                return problem
        return None
    if kind not in GEOMETRY_TYPES:
        return f"unknown geometry type {kind!r} (valid: {', '.join(GEOMETRY_TYPES)}, GeometryCollection)"
    depth = {
        "Point": 0,
        "MultiPoint": 1,
        "LineString": 1,
        "MultiLineString": 2,
        "Polygon": 2,
        "MultiPolygon": 3,
    }
    coords = geometry.get("coordinates")
    if not _nested(coords, depth[kind]):
        return f"{kind} 'coordinates' must be {'a list of ' * depth[kind]}[x, y] positions"
    rings = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
    for polygon in rings:
        if not polygon:
            return f"a {kind} with an empty polygon"
        for ring in polygon:
            if len(ring) < 4:
                return f"a {kind} ring has {len(ring)} positions; a closed ring needs at least 4"
            if list(ring[0][:2]) != list(ring[-1][:2]):
                return f"a {kind} ring is not closed (first position {ring[0]}, last {ring[-1]})"
    return None


def _nested(value: Any, depth: int) -> bool:
    if depth == 0:
        return (
            isinstance(value, list)
            and len(value) >= 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and all(np.isfinite(v) for v in value)
        )
    return isinstance(value, list) and all(_nested(v, depth - 1) for v in value)


def _item_lines(text: str) -> list[int]:
    """1-based line where each feature of the text starts (the features list, or the top-level list)."""
    decoder = json.JSONDecoder()
    start = text.find('"features"')
    pos = text.find("[", start) if start >= 0 else text.find("[")
    if pos < 0:
        return [1]
    pos += 1
    lines = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        lines.append(text.count("\n", 0, pos) + 1)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return lines
