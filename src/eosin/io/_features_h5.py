"""Tile features in the HDF5 layout other tools write and read (CLAM, TRIDENT, STAMP/KatherLab).

What those files hold (one file per slide):

- CLAM (``create_patches_fp`` / ``extract_features_fp``): ``features`` (n, d) float32 and ``coords`` (n, 2) int
  level-0 x, y; ``coords`` attributes ``patch_size`` and ``patch_level``.
- TRIDENT: the same two datasets; ``coords`` attributes include ``patch_size``, ``patch_size_level0``,
  ``target_magnification`` and ``level0_magnification``.
- STAMP / KatherLab: ``feats`` (n, d) and ``coords`` (n, 2); older files carry ``metadata`` (tile file names) instead
  of coordinates.

eosin stores features as a ``features/<key>`` group of the slide's store (docs/format.md): arrays ``features``
and (when known) ``coords``; tile names, when a file has them instead of coordinates, in the attribute ``names``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import EosinError, UsageError

__all__ = ["FeatureBag", "read_features_h5", "write_features_h5", "import_features", "export_features"]

_FEATURE_NAMES = ("features", "feats")


@dataclass
class FeatureBag:
    """Features of one slide's tiles: ``features`` (n, d), level-0 ``coords`` (n, 2) or None, tile ``names``."""

    features: np.ndarray
    coords: np.ndarray | None = None
    names: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def read_features_h5(path: str | os.PathLike[str]) -> FeatureBag:
    """Read a CLAM/TRIDENT/STAMP feature file; a clear error names what is missing."""
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise EosinError(
            f"not a readable HDF5 file ({exc}).", path=path, fix="give a features .h5 file"
        ) from None
    with handle:
        name = next((n for n in _FEATURE_NAMES if n in handle), None)
        if name is None:
            raise EosinError(
                f"no feature dataset (looked for {', '.join(_FEATURE_NAMES)}; found {', '.join(handle)}).",
                path=path,
                fix="the file must hold an (n, d) dataset named 'features' (CLAM, TRIDENT) or 'feats' (STAMP)",
            )
        features = np.asarray(handle[name])
        if features.ndim == 3 and features.shape[0] == 1:  # some tools save a batch axis
            features = features[0]
        if features.ndim != 2:
            raise EosinError(f"'{name}' has shape {features.shape}; expected (tiles, dims).", path=path)
        coords = names = None
        attrs: dict[str, Any] = {"source_dataset": name}
        if "coords" in handle:
            coords = np.asarray(handle["coords"])
            if coords.ndim == 3 and coords.shape[0] == 1:
                coords = coords[0]
            coords = coords.astype(np.int64)
            attrs.update({k: _plain(v) for k, v in handle["coords"].attrs.items()})
            if coords.shape != (features.shape[0], 2):
                raise EosinError(
                    f"coords has shape {coords.shape} but there are {features.shape[0]} feature rows.",
                    path=path,
                )
        if "metadata" in handle:
            names = [
                v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(handle["metadata"]).ravel()
            ]
            if len(names) != features.shape[0]:
                names = None
    return FeatureBag(features=features, coords=coords, names=names, attrs=attrs)


def write_features_h5(
    path: str | os.PathLike[str],
    bag: FeatureBag,
    *,
    layout: str = "clam",
    patch_size_level0: int | None = None,
) -> None:
    """Write ``bag`` as a CLAM (``layout="clam"``), TRIDENT (``"trident"``) or STAMP (``"stamp"``) file, atomically."""
    import h5py

    from eosin.io._atomic import atomic_path

    if layout not in ("clam", "trident", "stamp"):
        raise UsageError(f"unknown layout {layout!r}; choose clam, trident or stamp")
    if bag.coords is None and layout != "stamp":
        raise UsageError(f"the {layout} layout needs tile coordinates; these features have none")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("feats" if layout == "stamp" else "features", data=bag.features)
        if bag.coords is not None:
            coords = handle.create_dataset("coords", data=np.asarray(bag.coords, np.int64))
            size = patch_size_level0 if patch_size_level0 is not None else bag.attrs.get("patch_size_level0")
            if size is not None:
                # coordinates are level-0 pixels: the patch size at level 0 is the size CLAM reads at level 0
                coords.attrs["patch_size"] = int(size)
                coords.attrs["patch_level"] = 0
                coords.attrs["patch_size_level0"] = int(size)
        if bag.names is not None:
            handle.create_dataset(
                "metadata", data=np.array(bag.names, dtype=object), dtype=h5py.string_dtype()
            )


def import_features(store: Any, path: str | os.PathLike[str], *, key: str | None = None) -> str:
    """Read a feature file into ``store`` under ``features/<key>`` (default: ``<file stem>--imported``)."""
    bag = read_features_h5(path)
    key = key or f"{Path(path).stem}--imported"
    arrays: dict[str, np.ndarray] = {"features": bag.features}
    if bag.coords is not None:
        arrays["coords"] = bag.coords
    attrs = {
        **bag.attrs,
        "names": bag.names,
        "source": str(Path(path).resolve()),
        "n_tiles": len(bag),
        "dim": int(bag.features.shape[1]),
    }
    store.write_group("features", key, arrays, attrs, overwrite=True)
    return key


def export_features(
    store: Any, key: str | None, path: str | os.PathLike[str], *, layout: str = "clam"
) -> int:
    """Write a stored ``features/<key>`` group as an HDF5 file in ``layout``; returns the number of tiles."""
    from eosin.io._export import pick_key

    group = store.read_group("features", pick_key(store, "features", key))
    coords = np.asarray(group["coords"]) if "coords" in group else None
    names = group.attrs.get("names")
    bag = FeatureBag(np.asarray(group["features"]), coords, names, dict(group.attrs))
    write_features_h5(path, bag, layout=layout, patch_size_level0=group.attrs.get("patch_size_level0"))
    return len(bag)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
