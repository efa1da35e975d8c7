"""Tile features in the HDF5 layout other tools write and read (CLAM, TRIDENT, STAMP/KatherLab), units kept.

What those files hold (one file per slide), as their own writers and readers use it:

- CLAM (``create_patches_fp`` / ``extract_features_fp``): ``features`` (n, d) and ``coords`` (n, 2) int level-0
  x, y; the ``coords`` dataset's attributes ``patch_size`` and ``patch_level`` say what to read at each coordinate
  (``read_region(coord, patch_level, (patch_size, patch_size))``), with ``downsample``, ``level_dim``,
  ``downsampled_level_dim`` and ``name``.
- TRIDENT (``coords_to_h5``; its slide encoders read ``coords.attrs``): ``features`` and ``coords`` level-0 x, y;
  ``coords`` attributes ``patch_size`` (pixels at the target magnification), ``patch_size_level0``,
  ``level0_magnification``, ``target_magnification``, ``overlap``, ``name``, ``level0_width``, ``level0_height``.
- STAMP v2 (``stamp preprocess``): ``feats`` (n, d) and ``coords`` (n, 2) **in microns**, with file attributes
  ``unit="um"``, ``tile_size_um`` (``tile_size`` before v2.1), ``tile_size_px``, ``extractor``, ``feat_type``.
  Older KatherLab files hold integer pixel coordinates without a unit, or tile names (``metadata``) instead;
  "historic" STAMP files have no unit and a coordinate step of 224, meaning 224 px per 256 µm.

eosin stores features as a ``features/<key>`` group of the slide's store (docs/format.md): arrays ``features``
and (when known) ``coords`` **in level-0 pixels**; tile names, when a file has them instead of coordinates, in the
attribute ``names``. Import converts microns to level-0 pixels with the slide's mpp and refuses when it has none;
export writes each tool's units and attributes and refuses a layout whose attributes it cannot fill.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import DataError, MissingResolutionError, UsageError

__all__ = [
    "FeatureBag",
    "read_features_h5",
    "write_features_h5",
    "import_features",
    "export_features",
    "store_mpp",
]

_FEATURE_NAMES = ("features", "feats")
_MICRONS = ("um", "µm", "micron", "microns", "micrometer", "micrometre")
_PIXELS = ("px", "pixel", "pixels")
LAYOUTS = ("clam", "trident", "stamp")


@dataclass
class FeatureBag:
    """Features of one slide's tiles: ``features`` (n, d), level-0 pixel ``coords`` (n, 2) or None, tile ``names``.

    ``attrs`` holds the file's own attributes and what reading it established: ``source_unit`` (``"px"``,
    ``"um"`` or ``"stamp-224px-per-256um"``), ``source_mpp`` (the mpp used to convert microns), and, when known,
    ``patch_size_level0`` (level-0 side of a tile).
    """

    features: np.ndarray
    coords: np.ndarray | None = None
    names: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def read_features_h5(path: str | os.PathLike[str], *, mpp: float | None = None) -> FeatureBag:
    """Read a CLAM/TRIDENT/STAMP feature file, coordinates converted to level-0 pixels.

    Parameters
    ----------
    path
        The ``.h5`` file.
    mpp
        The slide's level-0 microns per pixel; needed (and only used) when the file's coordinates are in microns.

    Checked before anything is read whole: each dataset's declared size (against ``EOSIN_MAX_ARRAY_BYTES``)
    and that its bytes exist in the file. Then the values: features must be finite real numbers; coordinates
    finite, non-negative numbers; tile names text (bytes that are not UTF-8 are kept as ``\\xNN`` escapes);
    attributes that are not plain values (object references) are left out.

    Raises
    ------
    MissingResolutionError
        The coordinates are in microns and no ``mpp`` was given.
    DataError
        Not an HDF5 file, no feature dataset, coordinates that do not match the features or are in a unit
        eosin cannot interpret, values that are not finite real numbers.
    InputTooLargeError
        A dataset declares more bytes than ``EOSIN_MAX_ARRAY_BYTES``.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataError(
            f"not a readable HDF5 file ({_one_line(exc)}).", path=path, fix="give a features .h5 file"
        ) from None
    with handle:
        name = next((n for n in _FEATURE_NAMES if isinstance(handle.get(n), h5py.Dataset)), None)
        if name is None:
            raise DataError(
                f"no feature dataset (looked for {', '.join(_FEATURE_NAMES)}; found {', '.join(handle) or 'nothing'}).",
                path=path,
                fix="the file must hold an (n, d) dataset named 'features' (CLAM, TRIDENT) or 'feats' (STAMP)",
            )
        features = _read_dataset(path, handle[name], name, "features")
        if features.ndim == 3 and features.shape[0] == 1:  # some tools save a batch axis
            features = features[0]
        if features.ndim != 2 or features.shape[1] == 0:
            raise DataError(
                f"'{name}' has shape {features.shape}; expected (tiles, dims).",
                path=path,
                fix="write the features as one row per tile",
            )
        _require_finite(path, name, features)
        attrs: dict[str, Any] = _plain_attrs(handle.attrs)
        attrs["source_dataset"] = name
        raw = names = None
        coord_attrs: dict[str, Any] = {}
        if "coords" in handle:
            raw = _read_dataset(path, handle["coords"], "coords", "coordinates")
            if raw.ndim == 3 and raw.shape[0] == 1:
                raw = raw[0]
            coord_attrs = _plain_attrs(handle["coords"].attrs)
            if raw.shape != (features.shape[0], 2):
                raise DataError(
                    f"coords has shape {raw.shape} but there are {features.shape[0]} feature rows.",
                    path=path,
                    fix="coords must be (tiles, 2) x, y, one row per feature row",
                )
            _require_finite(path, "coords", raw)
            if raw.size and raw.min() < 0:
                row = int(np.argwhere(raw < 0)[0, 0])
                raise DataError(
                    f"coords holds negative coordinates (row {row}: {raw[row].tolist()}).",
                    path=path,
                    fix="coordinates must be measured from the top-left corner of the slide",
                )
        if isinstance(handle.get("metadata"), h5py.Dataset):
            names = [_text(v) for v in _read_dataset(path, handle["metadata"], "metadata", "names").ravel()]
            if len(names) != features.shape[0]:
                names = None
    attrs.update(coord_attrs)
    coords = None if raw is None else _to_level0(path, raw, name, attrs, coord_attrs, mpp)
    return FeatureBag(features=features, coords=coords, names=names, attrs=attrs)


def _read_dataset(path: Path, ds: Any, name: str, what: str) -> np.ndarray:
    """A dataset read whole, after checking its declared size, its storage and its element type."""
    from eosin._limits import check_array_bytes

    kind = ds.dtype.kind
    if what == "names":
        if kind not in "SUO" or ds.dtype.fields:
            raise DataError(
                f"'{name}' holds {ds.dtype} values, not tile names.",
                path=path,
                fix="'metadata' must be a list of tile file names (strings)",
            )
    elif kind not in "fiu":
        found = {
            "c": "complex numbers",
            "S": "byte strings",
            "U": "strings",
            "O": "objects or references",
            "b": "booleans",
            "V": "compound records",
        }.get(kind, f"{ds.dtype} values")
        raise DataError(
            f"'{name}' holds {found}; {what} must be real numbers.",
            path=path,
            fix=f"write {what} as a float or integer array",
        )
    check_array_bytes(path, name, ds.shape, ds.dtype.itemsize)
    nbytes = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
    if nbytes and kind != "O":
        stored = ds.id.get_storage_size()
        uncompressed = not ds.compression and not ds.scaleoffset and not ds.shuffle
        if stored == 0 or (uncompressed and ds.external is None and stored < nbytes):
            raise DataError(
                f"'{name}' declares shape {ds.shape} ({nbytes:,} bytes) but the file holds only {stored:,} bytes "
                "of it (never written, or the file is truncated).",
                path=path,
                fix="write the file again with the tool that made it",
            )
    try:
        return np.asarray(ds[()])
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(
            f"'{name}' cannot be read ({_one_line(exc)}).",
            path=path,
            fix="the file is probably truncated or damaged: write it again",
        ) from None


def _require_finite(path: Path, name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind != "f" or not arr.size:
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        kinds = " and ".join(
            k for k, m in (("NaN", np.isnan(arr).any()), ("infinite", np.isinf(arr).any())) if m
        )
        raise DataError(
            f"'{name}' holds {int(bad.sum()):,} {kinds} value(s) (first in row {row}).",
            path=path,
            fix="recompute the features of those tiles or drop those rows before importing",
        )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _plain_attrs(attrs: Any) -> dict[str, Any]:
    """Attributes that are plain values (numbers, text, lists of them); others (references, records) are left out."""
    out: dict[str, Any] = {}
    for key in attrs:
        try:
            value = _plain(attrs[key])
        except (OSError, TypeError, ValueError):  # an attribute h5py cannot read (odd type)
            continue
        if _jsonable(value):
            out[_text(key)] = value
    return out


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return np.isfinite(value)
    if isinstance(value, list):
        return all(_jsonable(v) for v in value)
    return False


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:200]


def _to_level0(
    path: Path, raw: np.ndarray, dataset: str, attrs: dict[str, Any], coord_attrs: dict, mpp: float | None
) -> np.ndarray:
    """Level-0 pixel coordinates from a file's ``coords``; records ``source_unit`` (and more) in ``attrs``."""
    unit = attrs.pop("unit", None)  # the group stores level-0 pixels; the file's unit is kept as source_unit
    unit = unit.strip().lower() if isinstance(unit, str) else unit
    if unit is None and dataset == "feats" and not coord_attrs and _step(raw) == 224:
        # STAMP's own rule for its first format: a step of 224 means 224 px per 256 µm
        attrs.update(source_unit="stamp-224px-per-256um", tile_size_um=256.0, tile_size_px=224)
        microns = raw.astype(np.float64) / 224 * 256
    elif unit in _MICRONS:
        attrs["source_unit"] = "um"
        size = attrs.get("tile_size_um", attrs.get("tile_size"))
        if size is None:
            raise DataError(
                "the coordinates are in microns but the file states no tile size (tile_size_um).",
                path=path,
                fix="re-extract the features with a tool that records tile_size_um (STAMP >= 2)",
            )
        attrs["tile_size_um"] = float(size)
        microns = raw.astype(np.float64)
    elif unit is None or unit in _PIXELS:
        attrs["source_unit"] = "px"
        if not np.allclose(raw, np.rint(raw)):
            raise DataError(
                "the coordinates have fractions but no unit attribute; they are not level-0 pixels.",
                path=path,
                fix="STAMP files in microns need the file attribute unit='um' and tile_size_um",
            )
        if (
            "patch_size_level0" not in attrs
            and int(attrs.get("patch_level", -1)) == 0
            and "patch_size" in attrs
        ):
            attrs["patch_size_level0"] = int(attrs["patch_size"])  # CLAM at level 0
        return np.rint(raw).astype(np.int64)
    else:
        raise DataError(
            f"coordinates in unit {unit!r}, which eosin cannot interpret (it reads 'um' and 'px').",
            path=path,
            fix="convert the coordinates to microns (unit='um') or level-0 pixels",
        )
    if mpp is None:
        raise MissingResolutionError(
            "the coordinates are in microns; turning them into level-0 pixels needs the slide's microns per pixel.",
            path=path,
            fix="give --slide-mpp X (Python: mpp=X), or import into the store eosin made for that slide",
        )
    attrs["source_mpp"] = float(mpp)
    attrs["patch_size_level0"] = int(round(attrs["tile_size_um"] / mpp))
    return np.rint(microns / mpp).astype(np.int64)


def _step(coords: np.ndarray) -> float | None:
    """The smallest non-zero step between coordinates along x or y (the tile stride of a regular grid)."""
    steps = [np.diff(np.unique(coords[:, i])) for i in (0, 1)]
    steps = np.concatenate([s[s > 0] for s in steps])
    return float(steps.min()) if steps.size else None


def write_features_h5(
    path: str | os.PathLike[str],
    bag: FeatureBag,
    *,
    layout: str = "clam",
    patch_size_level0: int | None = None,
    patch_size: int | None = None,
    mpp: float | None = None,
    level0_size: tuple[int, int] | None = None,
    level0_magnification: float | None = None,
    overlap: int | None = None,
    name: str | None = None,
    encoder: str | None = None,
) -> None:
    """Write ``bag`` (level-0 pixel coordinates) as a CLAM, TRIDENT or STAMP file, atomically.

    Each keyword falls back to ``bag.attrs`` under the same name. ``patch_size_level0`` is the level-0 side of a
    tile, ``patch_size`` its side in the pixels the encoder saw, ``mpp`` the slide's level-0 microns per pixel.
    CLAM needs ``patch_size_level0``; TRIDENT also a level-0 magnification (``level0_magnification`` or, as
    TRIDENT itself does, one derived from ``mpp``); STAMP with coordinates needs ``mpp`` (it stores microns).
    A layout whose attributes cannot be filled is refused with a :class:`~eosin.errors.UsageError`.
    """
    import h5py

    from eosin.io._atomic import atomic_path

    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose clam, trident or stamp")
    if bag.coords is None and layout != "stamp":
        raise UsageError(f"the {layout} layout needs tile coordinates; these features have none")
    a = bag.attrs
    size0 = _first(patch_size_level0, a.get("patch_size_level0"))
    size = _first(patch_size, a.get("tile_size_px"), size0)
    mpp = _first(mpp, a.get("source_mpp"))
    dims = _first(level0_size, a.get("level0_size"))
    mag0 = _first(level0_magnification, a.get("level0_magnification"))
    overlap = _first(overlap, a.get("overlap"), 0)
    name = _first(name, a.get("name"))
    encoder = _first(encoder, a.get("encoder"), a.get("extractor"))
    coords = None if bag.coords is None else np.asarray(bag.coords, np.int64)
    if coords is not None and size0 is None:
        raise UsageError(
            f"the {layout} layout states the tiles' level-0 size, which these features do not record.",
            fix="export features that eosin computed on a grid, or give patch_size_level0",
        )
    attrs: dict[str, Any] = {}
    root: dict[str, Any] = {}
    if layout == "clam" and coords is not None:
        attrs = {
            "patch_size": int(size0),
            "patch_level": 0,
            "downsample": [1.0, 1.0],
            "patch_size_level0": int(size0),
        }
        if dims is not None:
            attrs.update(level_dim=[int(d) for d in dims], downsampled_level_dim=[int(d) for d in dims])
    elif layout == "trident":
        if mag0 is None and mpp is not None:
            mag0 = _magnification_from_mpp(float(mpp))
        if mag0 is None:
            raise UsageError(
                "the trident layout states the level-0 magnification, and neither it nor the slide's mpp is known.",
                fix="export from the store of a slide with a trustworthy mpp, or give --slide-mpp X",
            )
        attrs = {
            "patch_size": int(size),
            "patch_size_level0": int(size0),
            "level0_magnification": float(mag0),
            "target_magnification": float(mag0) * int(size) / int(size0),
            "overlap": int(overlap),
        }
        if dims is not None:
            attrs.update(level0_width=int(dims[0]), level0_height=int(dims[1]))
    elif layout == "stamp" and coords is not None:
        if mpp is None:
            raise UsageError(
                "the stamp layout stores coordinates in microns, and the slide's mpp is not known.",
                fix="export from the store of a slide with a trustworthy mpp, or give --slide-mpp X",
            )
        root = {"unit": "um", "tile_size_um": float(size0) * float(mpp), "tile_size_px": int(size)}
    if layout == "stamp":
        root.update(feat_type="tile", **({"extractor": str(encoder)} if encoder else {}))
    if name is not None and layout != "stamp":
        attrs["name"] = str(name)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        feats = handle.create_dataset("feats" if layout == "stamp" else "features", data=bag.features)
        if encoder and layout != "stamp":
            feats.attrs["encoder"] = str(encoder)
        handle.attrs.update(root)
        if coords is not None:
            data = coords * float(mpp) if root.get("unit") == "um" else coords
            handle.create_dataset("coords", data=data).attrs.update(attrs)
        if bag.names is not None:
            handle.create_dataset(
                "metadata", data=np.array(bag.names, dtype=object), dtype=h5py.string_dtype()
            )


def _magnification_from_mpp(mpp: float) -> float:
    """TRIDENT's own magnification bins for a level-0 mpp (``WSI._fetch_magnification``)."""
    for limit, mag in ((0.16, 80), (0.2, 60), (0.3, 40), (0.6, 20), (1.2, 10), (2.4, 5)):
        if mpp < limit:
            return float(mag)
    raise UsageError(f"a level-0 resolution of {mpp} µm/px is below 5x; TRIDENT has no magnification for it")


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


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
    from eosin.io._keys import pick_key

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


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype.kind in "biufSUO" else None
    return value
