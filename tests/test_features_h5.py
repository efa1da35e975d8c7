"""Feature interchange with CLAM / TRIDENT / STAMP HDF5 files, on the shared example files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import DATA, require
from eosin.errors import EosinError, UsageError
from eosin.io import SlideStore
from eosin.io._features_h5 import export_features, import_features, read_features_h5

EXAMPLES = DATA / "interop" / "tcga-example"
WITH_COORDS = EXAMPLES / "TCGA-AD-6964-01Z-00-DX1" / "features.h5"
WITH_NAMES = EXAMPLES / "TCGA-3X-AAVA-01Z-00-DX1" / "features.h5"


def test_read_stamp_file_with_coords():
    bag = read_features_h5(require(WITH_COORDS))
    assert bag.features.shape == (777, 512) and bag.features.dtype == np.float32
    assert bag.coords.shape == (777, 2) and bag.coords.dtype == np.int64
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
    assert export_features(store, "stamp", out, layout=layout) == 777
    with h5py.File(out) as handle, h5py.File(WITH_COORDS) as original:
        np.testing.assert_array_equal(handle[dataset][:], original["feats"][:])
        np.testing.assert_array_equal(handle["coords"][:], original["coords"][:])
    again = read_features_h5(out)
    np.testing.assert_array_equal(again.coords, read_features_h5(WITH_COORDS).coords)


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
        main(["export", "features", str(store), "--h5", str(tmp_path / "o.h5"), "--layout", "trident"]) == 0
    )
    with h5py.File(tmp_path / "o.h5") as handle:
        assert handle["features"].shape == (777, 512)
    assert main(["export", "features", str(tmp_path), "--h5", str(tmp_path / "x.h5")]) == 1
    assert "not an eosin store" in capsys.readouterr().err
