"""Storage and interchange: the per-slide zarr store, atomic writes, GeoJSON for QuPath, tile tables."""

from eosin.io._atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text
from eosin.io._geojson import features_from_masks, mask_to_polygons, read_geojson, write_geojson
from eosin.io._store import SlideStore, StoreGroup

__all__ = [
    "SlideStore",
    "StoreGroup",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "features_from_masks",
    "mask_to_polygons",
    "read_geojson",
    "write_geojson",
]
