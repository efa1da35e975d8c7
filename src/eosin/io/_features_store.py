"""Features between a slide's store and the HDF5 files of other tools (CLAM, TRIDENT, STAMP): ``eosin import
features`` and ``eosin export features``.

The files themselves (their layouts, units and checks) are read and written by ``_features_h5.py``; this module
fills in what the store knows: the slide's mpp, the grid the features were computed on, the slide's size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from eosin.io._keys import pick_key
from eosin.io._features_h5 import FeatureBag, read_features_h5, write_features_h5

__all__ = ["export_features", "import_features", "store_mpp"]


def store_mpp(store: Any) -> float | None:
    """The level-0 mpp recorded for the store's slide when it is trustworthy (or an override), else ``None``."""
    record = store.slide or {}
    bad = {"missing-mpp", "implausible-mpp"}
    if record.get("mpp_source") != "override" and any(
        p.get("code") in bad for p in record.get("problems", [])
    ):
        return None
    mpp = record.get("mpp_x")
    return float(mpp) if mpp else None


def import_features(
    store: Any,
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    slide_mpp: float | None = None,
    bag: FeatureBag | None = None,
) -> str:
    """Read a feature file into ``store`` under ``features/<key>`` (default: ``<file stem>--imported``).

    Coordinates in microns (STAMP) are converted to level-0 pixels with ``slide_mpp``, or else the mpp the store
    records for its slide; without either they are refused (:class:`~eosin.errors.MissingResolutionError`).
    ``bag``: the file already read with :func:`read_features_h5` (so that a bad file is refused before a store
    is created for it).
    """
    if bag is None:
        mpp = slide_mpp if slide_mpp is not None else store_mpp(store)
        bag = read_features_h5(path, mpp=mpp)
    key = key or f"{Path(path).stem}--imported"
    arrays: dict[str, np.ndarray] = {"features": bag.features}
    if bag.coords is not None:
        arrays["coords"] = bag.coords
    attrs = {
        **bag.attrs,
        "coords_unit": "level-0 px" if bag.coords is not None else None,
        "names": bag.names,
        "source": str(Path(path).resolve()),
        "n_tiles": len(bag),
        "dim": int(bag.features.shape[1]),
    }
    store.write_group("features", key, arrays, attrs, overwrite=True)
    return key


def export_features(
    store: Any,
    key: str | None,
    path: str | os.PathLike[str],
    *,
    layout: str = "clam",
    slide_mpp: float | None = None,
    patch_size_level0: int | None = None,
) -> int:
    """Write a stored ``features/<key>`` group as an HDF5 file in ``layout``; returns the number of tiles.

    Tile sizes, overlap and magnification come from the grid the features were computed on (or the imported
    file's attributes); the level-0 mpp from ``slide_mpp``, the store's slide record, or the imported file.
    ``patch_size_level0`` states the level-0 tile side for features imported from a file that did not.
    """
    group = store.read_group("features", pick_key(store, "features", key))
    attrs = dict(group.attrs)
    coords = np.asarray(group["coords"]) if "coords" in group else None
    bag = FeatureBag(np.asarray(group["features"]), coords, attrs.get("names"), attrs)
    geometry: dict[str, Any] = {}
    gkey = attrs.get("grid")
    if gkey and "grids" in store.kinds() and gkey in store.keys("grids"):
        grid = store.read_group("grids", gkey).attrs
        geometry = {
            "patch_size_level0": int(round(grid["extent"])),
            "patch_size": int(grid["tile_size"]),
            "overlap": int(grid.get("overlap", 0)),
        }
    record = store.slide or {}
    if record.get("width") and record.get("height"):
        geometry["level0_size"] = (int(record["width"]), int(record["height"]))
    mpp = slide_mpp if slide_mpp is not None else store_mpp(store)
    if mpp is None and record.get("objective_power"):  # TRIDENT itself derives it from the mpp first
        geometry["level0_magnification"] = float(record["objective_power"])
    if record.get("path"):
        geometry["name"] = Path(record["path"]).stem
    if patch_size_level0 is not None:
        geometry["patch_size_level0"] = int(patch_size_level0)
    write_features_h5(path, bag, layout=layout, mpp=mpp, **geometry)
    return len(bag)
