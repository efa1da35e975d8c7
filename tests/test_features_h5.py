"""Feature interchange with CLAM / TRIDENT / STAMP HDF5 files, on the shared example files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import DATA, require
from eosin.errors import DataError, EosinError, MissingResolutionError, UsageError
from eosin.io import SlideStore, export_features, import_features, read_features_h5

EXAMPLES = DATA / "interop" / "tcga-example"
WITH_COORDS = EXAMPLES / "TCGA-AD-6964-01Z-00-DX1" / "features.h5"
WITH_NAMES = EXAMPLES / "TCGA-3X-AAVA-01Z-00-DX1" / "features.h5"


def test_read_stamp_file_with_coords():
    bag = read_features_h5(require(WITH_COORDS))
    assert bag.features.shape == (777, 512) and bag.features.dtype == np.float32
    assert bag.coords.shape == (777, 2) and bag.coords.dtype == np.int64
    # integer coordinates without a unit, a 512 step, tiles named Tile_(x,y): level-0 pixels, taken as they are
    assert bag.attrs["source_unit"] == "px" and "source_mpp" not in bag.attrs
    tile = next((WITH_COORDS.parent).glob("Tile_*.jpg")).stem  # e.g. Tile_(16896,20480)
    xy = tuple(int(v) for v in tile[tile.index("(") + 1 : -1].split(","))
    assert xy in {tuple(c) for c in bag.coords.tolist()}
    with h5py.File(WITH_COORDS) as handle:
        np.testing.assert_array_equal(bag.features, handle["feats"][:])


def test_read_file_with_tile_names_instead_of_coords():
    bag = read_features_h5(require(WITH_NAMES))
    assert bag.features.shape == (180, 512) and bag.coords is None
    assert bag.names[0] == "0_0_0_506.jpg" and len(bag.names) == 180


@pytest.mark.parametrize(
    "layout, dataset", [("clam", "features"), ("trident", "features"), ("stamp", "feats")]
)
def test_import_then_export_round_trip(tmp_path, layout, dataset):
    store = SlideStore.create(tmp_path / "s.zarr")
    key = import_features(store, require(WITH_COORDS), key="stamp")
    assert store.keys("features") == ["stamp"] and key == "stamp"
    out = tmp_path / f"{layout}.h5"
    # the file states neither the tile size nor the slide's resolution: the layouts that need them refuse
    with pytest.raises(UsageError, match="level-0 size"):
        export_features(store, "stamp", out, layout=layout, slide_mpp=0.5)
    assert not out.exists()
    assert export_features(store, "stamp", out, layout=layout, slide_mpp=0.5, patch_size_level0=512) == 777
    with h5py.File(out) as handle, h5py.File(WITH_COORDS) as original:
        np.testing.assert_array_equal(handle[dataset][:], original["feats"][:])
        expected = original["coords"][:] * (0.5 if layout == "stamp" else 1)  # STAMP stores microns
        np.testing.assert_allclose(handle["coords"][:], expected)
    again = read_features_h5(out, mpp=0.5)
    np.testing.assert_array_equal(again.coords, read_features_h5(WITH_COORDS).coords)
    assert again.attrs["patch_size_level0"] == 512


def _stamp_v2(path, coords_um, *, unit="um", size_name="tile_size_um", size=256.0):
    """A feature file as STAMP 2.x's `stamp preprocess` writes it: µm coordinates, file attributes."""
    with h5py.File(path, "w") as handle:
        handle["coords"] = np.asarray(coords_um, np.float32)
        handle["feats"] = np.random.default_rng(0).normal(size=(len(coords_um), 8)).astype(np.float16)
        handle.attrs.update(
            {
                "unit": unit,
                size_name: size,
                "tile_size_px": 224,
                "extractor": "ctranspath",
                "feat_type": "tile",
            }
        )
    return path


STAMP_UM = np.array([[0.0, 0.0], [256.0, 0.0], [512.0, 256.0], [1024.0, 768.0]])


@pytest.mark.parametrize("size_name", ["tile_size_um", "tile_size"])  # STAMP >= 2.1, 2.0
def test_stamp_microns_become_level0_pixels_and_go_back(tmp_path, size_name):
    path = _stamp_v2(tmp_path / "stamp.h5", STAMP_UM, size_name=size_name)
    store = SlideStore.create(tmp_path / "s.zarr")
    with pytest.raises(MissingResolutionError, match="microns") as info:
        import_features(store, path)  # the store records no slide, so no mpp: refused, nothing written
    assert "stamp.h5" in str(info.value) and "--slide-mpp" in str(info.value)
    assert "features" not in store.kinds()
    import_features(store, path, key="k", slide_mpp=0.25)
    group = store.read_group("features", "k")
    np.testing.assert_array_equal(group["coords"][:], STAMP_UM / 0.25)  # 1 µm = 4 px at 0.25 µm/px
    assert group.attrs["source_unit"] == "um" and group.attrs["source_mpp"] == 0.25
    assert group.attrs["patch_size_level0"] == 1024 and "unit" not in group.attrs
    out = tmp_path / "back.h5"
    export_features(store, "k", out, layout="stamp")  # the mpp the import used is remembered
    with h5py.File(out) as handle:
        np.testing.assert_allclose(handle["coords"][:], STAMP_UM)
        assert handle.attrs["unit"] == "um" and handle.attrs["tile_size_um"] == 256.0
        assert handle.attrs["tile_size_px"] == 224 and handle.attrs["extractor"] == "ctranspath"
    export_features(store, "k", tmp_path / "t.h5", layout="trident")
    with h5py.File(tmp_path / "t.h5") as handle:
        a = handle["coords"].attrs
        np.testing.assert_array_equal(handle["coords"][:], STAMP_UM / 0.25)
        assert a["patch_size_level0"] == 1024 and a["patch_size"] == 224
        assert a["level0_magnification"] == 40  # TRIDENT's own bin for 0.25 µm/px
        # TRIDENT's relation between its attributes (coords_to_h5): patch_size_level0 = patch_size * src // target
        assert a["patch_size"] * a["level0_magnification"] // a["target_magnification"] == 1024


def test_stamp_import_takes_the_mpp_of_the_store_slide(tmp_path):
    from eosin.run._stages import SlideJob, tissue_stage

    tissue_stage(SlideJob(require(DATA / "slides" / "CMU-1-Small-Region.svs"), tmp_path))
    store = SlideStore.open(tmp_path / "store.zarr")
    import_features(store, _stamp_v2(tmp_path / "stamp.h5", STAMP_UM), key="k")
    np.testing.assert_array_equal(store.read_group("features", "k")["coords"][:], np.rint(STAMP_UM / 0.499))


def test_historic_stamp_units_and_uninterpretable_files(tmp_path):
    with h5py.File(tmp_path / "old.h5", "w") as handle:  # first STAMP: no unit, step 224 = 224 px per 256 µm
        handle["feats"] = np.zeros((3, 4), np.float32)
        handle["coords"] = np.array([[0, 0], [224, 0], [448, 224]])
    bag = read_features_h5(tmp_path / "old.h5", mpp=0.5)
    np.testing.assert_array_equal(bag.coords, [[0, 0], [512, 0], [1024, 512]])
    assert bag.attrs["source_unit"] == "stamp-224px-per-256um"
    with pytest.raises(DataError, match="'furlong'"):
        read_features_h5(_stamp_v2(tmp_path / "f.h5", STAMP_UM, unit="furlong"), mpp=0.5)
    with h5py.File(tmp_path / "frac.h5", "w") as handle:  # microns without their unit attribute
        handle["feats"] = np.zeros((2, 4), np.float32)
        handle["coords"] = np.array([[0.0, 0.0], [128.5, 0.0]])
    with pytest.raises(DataError, match="no unit"):
        read_features_h5(tmp_path / "frac.h5")


def test_export_from_an_eosin_grid_carries_each_tools_attributes(tmp_path):
    from eosin.run._stages import SlideJob, tile_stage

    svs = require(DATA / "slides" / "CMU-1-Small-Region.svs")
    tile_stage(SlideJob(svs, tmp_path), mpp=1.0, tile_size=224)
    store = SlideStore.open(tmp_path / "store.zarr")
    gkey = store.keys("grids")[0]
    grid = store.read_group("grids", gkey)
    coords = np.asarray(grid["coords"])
    feats = np.arange(len(coords) * 4, dtype=np.float32).reshape(-1, 4)
    store.write_group(
        "features", "enc--g", {"features": feats, "coords": coords}, {"grid": gkey, "encoder": "enc"}
    )
    extent = round(grid.attrs["extent"])  # 224 px at 1 µm/px on a 0.499 µm/px slide: 449 level-0 px
    assert abs(extent - 224 / 0.499) < 1
    for layout in ("clam", "trident", "stamp"):
        export_features(store, None, tmp_path / f"{layout}.h5", layout=layout)
    with h5py.File(tmp_path / "clam.h5") as handle:  # CLAM reads read_region(coord, patch_level, patch_size)
        a = handle["coords"].attrs
        assert (a["patch_level"], a["patch_size"]) == (0, extent)
        assert list(a["level_dim"]) == [2220, 2967] and a["name"] == "CMU-1-Small-Region"
        np.testing.assert_array_equal(handle["coords"][:], coords)
    with h5py.File(tmp_path / "trident.h5") as handle:
        a = handle["coords"].attrs
        assert (a["patch_size"], a["patch_size_level0"], a["level0_magnification"]) == (224, extent, 20)
        assert (a["level0_width"], a["level0_height"], a["overlap"]) == (2220, 2967, 0)
        # TRIDENT's relation (coords_to_h5: patch_size * src // target); the target is not a whole number here
        assert a["patch_size"] * a["level0_magnification"] / a["target_magnification"] == pytest.approx(
            extent
        )
        assert handle["features"].attrs["encoder"] == "enc"
    with h5py.File(tmp_path / "stamp.h5") as handle:
        np.testing.assert_allclose(handle["coords"][:], coords * 0.499)
        assert handle.attrs["unit"] == "um" and handle.attrs["tile_size_px"] == 224
        assert handle.attrs["tile_size_um"] == pytest.approx(extent * 0.499)
    back = read_features_h5(tmp_path / "stamp.h5", mpp=0.499)
    np.testing.assert_array_equal(back.coords, coords)


def test_names_survive_and_clam_needs_coords(tmp_path):
    store = SlideStore.create(tmp_path / "s.zarr")
    import_features(store, require(WITH_NAMES), key="named")
    with pytest.raises(UsageError, match="needs tile coordinates"):
        export_features(store, "named", tmp_path / "x.h5", layout="clam")
    assert not (tmp_path / "x.h5").exists()
    export_features(store, "named", tmp_path / "s.h5", layout="stamp")
    assert read_features_h5(tmp_path / "s.h5").names == read_features_h5(WITH_NAMES).names


def test_bad_files(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(EosinError, match="not a readable HDF5") as info:
        read_features_h5(tmp_path / "junk.h5")
    assert "junk.h5" in str(info.value)
    with h5py.File(tmp_path / "empty.h5", "w") as handle:
        handle["something"] = np.zeros(3)
    with pytest.raises(EosinError, match="no feature dataset"):
        read_features_h5(tmp_path / "empty.h5")
    with h5py.File(tmp_path / "mismatch.h5", "w") as handle:
        handle["features"] = np.zeros((4, 8), np.float32)
        handle["coords"] = np.zeros((3, 2), np.int64)
    with pytest.raises(EosinError, match="coords has shape"):
        read_features_h5(tmp_path / "mismatch.h5")


def test_cli_import_and_export(tmp_path, capsys):
    from eosin.cli._main import main

    store = tmp_path / "s.zarr"
    assert main(["import", "features", str(require(WITH_COORDS)), "--store", str(store), "--key", "k"]) == 0
    assert (
        main(["export", "features", str(store), "--h5", str(tmp_path / "o.h5"), "--layout", "trident"]) == 2
    )
    assert "level-0 size" in capsys.readouterr().err
    args = ["--slide-mpp", "0.5", "--patch-size-level0", "512"]
    assert (
        main(["export", "features", str(store), "--h5", str(tmp_path / "o.h5"), "--layout", "trident", *args])
        == 0
    )
    with h5py.File(tmp_path / "o.h5") as handle:
        assert handle["features"].shape == (777, 512)
        assert handle["coords"].attrs["level0_magnification"] == 20
    stamp = _stamp_v2(tmp_path / "stamp.h5", STAMP_UM)
    assert main(["import", "features", str(stamp), "--store", str(tmp_path / "t.zarr")]) == 1
    assert "microns" in capsys.readouterr().err
    assert (
        main(["import", "features", str(stamp), "--store", str(tmp_path / "t.zarr"), "--slide-mpp", "0.5"])
        == 0
    )
    assert main(["export", "features", str(tmp_path), "--h5", str(tmp_path / "x.h5")]) == 1
    assert "not an eosin store" in capsys.readouterr().err
