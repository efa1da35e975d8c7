"""Storage and interchange: the per-slide zarr store, atomic writes, GeoJSON for QuPath, tile tables."""

from eosin.io._annotations import export_annotations, import_annotations, read_annotations, write_annotations
from eosin.io._atomic import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    sweep_temporaries,
)
from eosin.io._features_h5 import FeatureBag, read_features_h5, write_features_h5
from eosin.io._features_store import export_features, import_features, store_mpp
from eosin.io._export import grid_to_csv, tissue_to_geojson
from eosin.io._checkpoint import FORMAT_VERSION as CHECKPOINT_FORMAT_VERSION
from eosin.io._checkpoint import read_checkpoint, write_checkpoint
from eosin.io._geojson import (
    features_from_masks,
    load_geojson,
    mask_to_polygons,
    parse_geojson,
    read_geojson,
    write_geojson,
)
from eosin.io._identity import slide_identity
from eosin.io._keys import param_digest, pick_key
from eosin.io._store import SlideStore, StoreGroup

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "FeatureBag",
    "SlideStore",
    "StoreGroup",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "export_features",
    "export_annotations",
    "import_annotations",
    "load_geojson",
    "parse_geojson",
    "read_annotations",
    "write_annotations",
    "features_from_masks",
    "grid_to_csv",
    "import_features",
    "mask_to_polygons",
    "read_checkpoint",
    "read_features_h5",
    "param_digest",
    "pick_key",
    "read_geojson",
    "write_checkpoint",
    "write_features_h5",
    "slide_identity",
    "store_mpp",
    "sweep_temporaries",
    "tissue_to_geojson",
    "write_geojson",
]
