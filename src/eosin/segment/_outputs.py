"""Files of a segmentation for people and other tools: mask and instance PNGs, an overlay, QuPath GeoJSON."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["instance_features", "instance_overlay", "write_segmentation"]

OUTLINE = (255, 230, 0)
FILL = (0, 200, 255)


def instance_features(
    instances: np.ndarray,
    *,
    downsample: float = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
    name: str = "object",
    color: tuple[int, int, int] = (0, 200, 255),
) -> list[dict[str, Any]]:
    """One QuPath ``detection`` feature per labelled object, in level-0 coordinates."""
    import shapely
    from scipy import ndimage

    from eosin.io import mask_to_polygons

    features = []
    for label, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is None:
            continue
        r, c = box
        crop = instances[r.start : r.stop, c.start : c.stop] == label
        multi = mask_to_polygons(
            crop,
            downsample=downsample,
            origin=(origin[0] + c.start * downsample, origin[1] + r.start * downsample),
            simplify=0.5,
        )
        if multi.is_empty:
            continue
        geometry = max(multi.geoms, key=lambda g: g.area)  # one polygon per object
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid4()),
                "geometry": json.loads(shapely.to_geojson(shapely.set_precision(geometry, 0.01))),
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": name, "color": list(color)},
                    "measurements": {"label": label},
                },
            }
        )
    return features


def instance_overlay(rgb: np.ndarray, instances: np.ndarray, *, max_side: int = 4096) -> np.ndarray:
    """The image with objects tinted and outlined, shrunk so its longer side is at most ``max_side``."""
    import cv2
    from skimage.segmentation import find_boundaries

    rgb = np.asarray(rgb)[..., :3]
    rows, cols = instances.shape
    scale = min(1.0, max_side / max(rows, cols))
    if rgb.shape[:2] != (rows, cols) or scale < 1:
        size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        instances = cv2.resize(instances.astype(np.float32), size, interpolation=cv2.INTER_NEAREST).astype(
            np.int32
        )
    out = rgb.copy()
    inside = instances > 0
    out[inside] = (0.65 * out[inside] + 0.35 * np.asarray(FILL)).astype(np.uint8)
    out[find_boundaries(instances, mode="inner")] = OUTLINE
    return out


def write_segmentation(
    folder: str | os.PathLike[str],
    seg: Any,
    rgb: np.ndarray,
    *,
    name: str = "object",
) -> dict[str, str]:
    """Write ``mask.png`` (0/255), ``instances.png`` (16-bit labels), ``overlay.png`` and ``instances.geojson``.

    ``seg`` is a :class:`~eosin.segment.Segmentation`; ``rgb`` the image (any size; resized for the overlay).
    Labels above 65535 wrap around (1..65535) in the 16-bit PNG; the GeoJSON keeps every object. All files are
    written atomically.
    """
    from PIL import Image

    from eosin.io import atomic_path, write_geojson
    from eosin.viz import save_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / f"{k}.png" for k in ("mask", "instances", "overlay")}
    save_png(paths["mask"], seg.mask)
    labels = seg.instances.astype(np.int64)
    labels = np.where(labels > 0, (labels - 1) % 65535 + 1, 0).astype(np.uint16)
    with atomic_path(paths["instances"]) as tmp:
        Image.fromarray(labels).save(tmp, format="PNG")
    save_png(paths["overlay"], instance_overlay(rgb, seg.instances))
    paths["geojson"] = folder / "instances.geojson"
    write_geojson(
        paths["geojson"],
        instance_features(seg.instances, downsample=seg.downsample, origin=seg.origin, name=name),
    )
    return {k: os.fspath(v) for k, v in paths.items()}
