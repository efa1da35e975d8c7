"""Annotations (QuPath GeoJSON features) kept in a slide store, for ``eosin import geojson`` / ``export geojson``
and the viewer.

A group ``annotations/<key>`` holds one array ``geojson``: the UTF-8 bytes of a GeoJSON FeatureCollection whose
features are exactly those imported (every member and property kept), so that export → import → export gives
the same features. Any zarr reader gets the text back with ``bytes(array[:]).decode()``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ANNOTATIONS_KIND",
    "export_annotations",
    "import_annotations",
    "read_annotations",
    "write_annotations",
]

ANNOTATIONS_KIND = "annotations"
_BAD = re.compile(r"[^A-Za-z0-9._+=-]+")


def write_annotations(
    store: Any, key: str, features: Iterable[Mapping[str, Any]], *, source: str | None = None
) -> str:
    """Store ``features`` (checked with :func:`~eosin.io.parse_geojson`) as ``annotations/<key>``; returns the key.

    An existing group of that key is replaced.
    """
    from eosin.io._geojson import parse_geojson

    features = list(features)
    text = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
    parse_geojson(text, source=source)
    classes = Counter(_class_name(f) or "(none)" for f in features)
    attrs = {
        "n_features": len(features),
        "classes": dict(sorted(classes.items())),
        "source": source,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "encoding": "utf-8 GeoJSON FeatureCollection",
    }
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    store.write_group(ANNOTATIONS_KIND, key, {"geojson": data}, attrs, overwrite=True)
    return key


def read_annotations(store: Any, key: str | None = None) -> list[dict[str, Any]]:
    """The features of ``annotations/<key>`` (the only group when ``key`` is None)."""
    from eosin.io._keys import pick_key

    group = store.read_group(ANNOTATIONS_KIND, pick_key(store, ANNOTATIONS_KIND, key))
    doc = json.loads(np.asarray(group["geojson"]).tobytes().decode("utf-8"))
    return doc["features"]


def import_annotations(
    store: Any, path: str | os.PathLike[str], *, key: str | None = None
) -> tuple[str, int]:
    """A GeoJSON file (a QuPath export) into ``annotations/<key>`` (default: the file's stem); ``(key, n)``."""
    from eosin.io._geojson import load_geojson

    path = Path(path)
    features = load_geojson(path)
    key = key or (_BAD.sub("-", path.stem).strip("-.") or "imported")
    write_annotations(store, key, features, source=str(path))
    return key, len(features)


def export_annotations(store: Any, path: str | os.PathLike[str], *, key: str | None = None) -> int:
    """Write ``annotations/<key>`` as a GeoJSON FeatureCollection QuPath imports; returns the number of features."""
    from eosin.io._geojson import write_geojson

    features = read_annotations(store, key)
    write_geojson(path, features)
    return len(features)


def _class_name(feature: Mapping[str, Any]) -> str | None:
    props = feature.get("properties") or {}
    cls = props.get("classification")
    return cls.get("name") if isinstance(cls, dict) else None
