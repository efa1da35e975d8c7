"""The per-slide store: round trips, atomic group writes, reuse, interrupted writes, bad stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from eosin.errors import StoreError
from eosin.io import SlideStore


def test_round_trip_arrays_and_attrs(tmp_path):
    store = SlideStore.create(tmp_path / "s.zarr", slide={"path": "a.svs", "mpp_x": np.float64(0.5)})
    coords = np.arange(20, dtype=np.int64).reshape(10, 2)
    store.write_group(
        "grids",
        "k1",
        {"coords": coords, "empty": np.zeros((0, 2), np.int64)},
        {"mpp": np.float32(0.5), "bounds": (0, 0), "nan": float("nan")},
    )
    again = SlideStore.open(tmp_path / "s.zarr")
    assert again.slide == {"path": "a.svs", "mpp_x": 0.5}
    assert again.kinds() == ["grids"] and again.keys("grids") == ["k1"] and again.has("grids", "k1")
    group = again.read_group("grids", "k1")
    np.testing.assert_array_equal(np.asarray(group["coords"]), coords)
    assert np.asarray(group["empty"]).shape == (0, 2)
    assert group.attrs == {"mpp": 0.5, "bounds": [0, 0], "nan": None}
    assert sorted(group) == ["coords", "empty"]


def test_store_is_plain_zarr_v3(tmp_path):
    import zarr

    store = SlideStore.create(tmp_path / "s.zarr", slide={"path": "x"})
    store.write_group("tissue", "mpp8_abc", {"tissue": np.eye(4, dtype=np.uint8)}, {"mpp": 8.0})
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert root.attrs["format"] == "eosin.slide-store" and root.attrs["version"] == 1
    np.testing.assert_array_equal(root["tissue/mpp8_abc/tissue"][...], np.eye(4))


def test_existing_group_kept_unless_overwrite(tmp_path):
    store = SlideStore.create(tmp_path / "s.zarr")
    store.write_group("grids", "k", {"a": np.zeros(3)})
    with pytest.raises(StoreError, match="already has grids/k"):
        store.write_group("grids", "k", {"a": np.ones(3)})
    store.write_group("grids", "k", {"a": np.ones(3)}, overwrite=True)
    np.testing.assert_array_equal(np.asarray(store.read_group("grids", "k")["a"]), np.ones(3))
    assert not list((tmp_path / "s.zarr" / ".staging").iterdir())


def test_failed_write_leaves_previous_state(tmp_path):
    store = SlideStore.create(tmp_path / "s.zarr")
    store.write_group("features", "enc", {"x": np.zeros(4)})
    with pytest.raises(RuntimeError), store.group_writer("features", "enc", overwrite=True) as group:
        group.create_array("x", shape=(4,), dtype="f8")[...] = np.ones(4)
        raise RuntimeError("killed half way")
    np.testing.assert_array_equal(np.asarray(store.read_group("features", "enc")["x"]), np.zeros(4))
    with pytest.raises(RuntimeError), store.group_writer("features", "new") as group:
        raise RuntimeError("killed before anything")
    assert store.keys("features") == ["enc"]


def test_killed_writer_process_leaves_no_group(tmp_path):
    """A process killed in the middle of a group write: the group is absent, the store still opens."""
    path = tmp_path / "s.zarr"
    SlideStore.create(path)
    code = f"""
import os, numpy as np
from eosin.io import SlideStore
s = SlideStore.open({str(path)!r})
with s.group_writer("grids", "k") as g:
    g.create_array("a", shape=(1000,), dtype="f8", chunks=(10,))[...] = np.arange(1000)
    os._exit(9)
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    store = SlideStore.open(path)
    assert store.keys("grids") == [] and not store.has("grids", "k")
    assert store.clean_staging() == 1


def test_create_updates_slide_record(tmp_path):
    SlideStore.create(tmp_path / "s.zarr", slide={"mpp_x": None})
    store = SlideStore.create(tmp_path / "s.zarr", slide={"mpp_x": 0.25})
    assert SlideStore.open(tmp_path / "s.zarr").slide == {"mpp_x": 0.25} == store.slide


def test_bad_stores_are_typed_errors(tmp_path):
    with pytest.raises(StoreError, match="not an eosin store") as info:
        SlideStore.open(tmp_path)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}})
    )
    with pytest.raises(StoreError, match="not an eosin slide store"):
        SlideStore.open(tmp_path / "z")
    (tmp_path / "z" / "zarr.json").write_text(
        json.dumps({"attributes": {"format": "eosin.slide-store", "version": 99}})
    )
    with pytest.raises(StoreError, match="upgrade eosin"):
        SlideStore.open(tmp_path / "z")
    (tmp_path / "z" / "zarr.json").write_text("{trunc")
    with pytest.raises(StoreError, match="unreadable"):
        SlideStore.open(tmp_path / "z")
    store = SlideStore.create(tmp_path / "ok.zarr")
    with pytest.raises(StoreError, match="no group grids/none"):
        store.read_group("grids", "none")
    with pytest.raises(StoreError, match="invalid group name"):
        store.write_group("grids", "../escape", {"a": np.zeros(1)})


def test_delete_group(tmp_path):
    store = SlideStore.create(tmp_path / "s.zarr")
    store.write_group("grids", "k", {"a": np.zeros(1)})
    store.delete_group("grids", "k")
    assert store.keys("grids") == [] and not os.path.exists(tmp_path / "s.zarr" / "grids" / "k")


def test_partial_group_resumes_after_a_kill(tmp_path):
    path = tmp_path / "s.zarr"
    SlideStore.create(path)
    code = f"""
import os, numpy as np
from eosin.io import SlideStore
s = SlideStore.open({str(path)!r})
part = s.partial_group("features", "enc", {{"dim": 4}}, fingerprint="f1")
a = part.group.create_array("x", shape=(100, 4), dtype="f4", chunks=(10, 4))
for start in range(0, 100, 10):
    a[start:start + 10] = np.arange(start, start + 10, dtype="f4")[:, None]
    part.mark(start + 10)
    if start == 30:
        os._exit(9)
"""
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    store = SlideStore.open(path)
    assert not store.has("features", "enc")
    part = store.partial_group("features", "enc", {"dim": 4}, fingerprint="f1")
    assert part.done == 40
    array = part.group["x"]
    for start in range(part.done, 100, 10):
        array[start : start + 10] = np.arange(start, start + 10, dtype="f4")[:, None]
        part.mark(start + 10)
    part.commit()
    got = np.asarray(store.read_group("features", "enc")["x"])
    np.testing.assert_array_equal(got[:, 0], np.arange(100))
    assert store.read_group("features", "enc").attrs == {"dim": 4}
    # another fingerprint starts afresh
    fresh = store.partial_group("features", "other", fingerprint="a")
    fresh.mark(5)
    assert store.partial_group("features", "other", fingerprint="b").done == 0


# ---------------------------------------------------------------------- keys, picker and typed accessors
def test_param_digest_keeps_the_keys_of_stored_groups():
    """Keys written by earlier versions are still found: each builder gives the string it gave before."""
    from eosin.aggregate._cohort_train import model_key
    from eosin.io import param_digest
    from eosin.run._stages import tissue_key
    from eosin.tiles import TileGrid
    from eosin.vl._heatmap import heatmap_key

    empty = np.zeros(0)
    params = {"mpp": 0.5, "tile_size": 224, "overlap": 0, "min_tissue": 0.5, "slide_mpp": 0.25}
    grid = TileGrid(empty, empty, empty, empty, empty, 224, 0, 2.0, 0.5, (0, 0, 10, 10), params)
    assert grid.key == "mpp0.5_224px_o0_t0.5_f6c6be"
    assert tissue_key({"mpp": 8.0, "slide_mpp": None}) == "mpp8_b49c12"
    assert model_key("abmil", {"epochs": 5, "lr": 0.001}) == "abmil_f11702"
    prompts = ["tumor", "normal"]
    expected = "conch--g--" + param_digest([prompts, "sha256:00ff"])
    assert heatmap_key("conch", "g", prompts, "sha256:00ff") == expected
    assert heatmap_key("conch", "mpp0.5_224px_o0_t0.5_abcdef", prompts, "sha256:00ff").endswith("--19183f")
    # segmentation keys keep their first, unsorted order
    seg = {"mpp": 0.5, "tile_size": 256, "overlap": 32, "min_tissue": 0.1}
    assert param_digest([seg, '{"a": 1}', "w1"], sort_keys=False) == "9dfe17"
    assert param_digest({"b": 1, "a": 2}) == param_digest({"a": 2, "b": 1})
    assert len(param_digest({}, n=None)) == 40


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    """A store made from the sample SVS by the tile stage (tissue and one grid), plus groups laid out as
    embed, predict, segment and qc write theirs."""
    from conftest import SLIDES, require

    from eosin.run import plan_outputs, tile_stage

    svs = require(SLIDES / "CMU-1-Small-Region.svs")
    (job,) = plan_outputs([svs], tmp_path_factory.mktemp("real"))
    tile_stage(job, mpp=2.0, tile_size=64)
    store = SlideStore.open(job.store_path)
    (gkey,) = store.keys("grids")
    coords = np.asarray(store.read_group("grids", gkey)["coords"])
    n = len(coords)
    feats = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    for encoder in ("resnet18", "resnet18_ft"):
        store.write_group(
            "features",
            f"{encoder}--{gkey}",
            {"features": feats, "coords": coords},
            {"encoder": encoder, "grid": gkey},
        )
    proba = np.full((n, 2), 0.5, np.float32)
    store.write_group(
        "predictions", "a-0123abcd", {"proba": proba, "coords": coords}, {"classes": ["x", "y"]}
    )
    seg = {"foreground": np.zeros((4, 5), np.uint8)}
    store.write_group("segmentation", "unet_mpp2_64px_o8_abcdef", seg, {})
    store.write_group("qc", gkey, {"flags": np.zeros(n, np.uint8)}, {"bits": {"pen": 1}})
    return store, gkey, feats


def test_typed_accessors_read_a_real_store(real_store):
    from eosin.io import FeatureBag
    from eosin.tiles import TileGrid
    from eosin.tissue import TissueMasks

    store, gkey, feats = real_store
    grid = store.grid()
    assert isinstance(grid, TileGrid) and grid.key == gkey and len(grid) == len(feats) > 0
    assert store.grid(gkey[: gkey.index("_o")]).key == gkey  # the readable part of the key
    masks = store.tissue()
    assert isinstance(masks, TissueMasks) and masks.tissue.dtype == bool and masks.tissue.any()
    assert masks.tissue.shape == masks.pen.shape == masks.sections.shape
    # an encoder name picks <encoder>--<grid>, and not the features of another encoder that begins alike
    bag = store.features("resnet18")
    assert isinstance(bag, FeatureBag) and bag.attrs["encoder"] == "resnet18"
    np.testing.assert_array_equal(bag.features, feats)
    np.testing.assert_array_equal(bag.coords, grid.coords)
    assert store.features("resnet18_ft", grid=gkey).attrs["encoder"] == "resnet18_ft"
    pred = store.predictions("a")  # a checkpoint's folder name picks <name>-<hash>
    assert pred.attrs["classes"] == ["x", "y"] and np.asarray(pred["proba"]).shape == (len(feats), 2)
    assert store.predictions().path.name == "a-0123abcd"
    assert store.segmentation("unet").path.name == "unet_mpp2_64px_o8_abcdef"
    assert np.asarray(store.qc()["flags"]).shape == (len(feats),)
    assert store.qc(gkey).attrs["bits"] == {"pen": 1}
    assert store.pick("features", "resnet18_ft") == f"resnet18_ft--{gkey}"
    assert store.group("grids").attrs["tile_size"] == 64


def test_picker_errors_name_store_kind_keys_and_fix(real_store):
    store, gkey, _ = real_store
    with pytest.raises(StoreError) as info:  # two encoders' features, none asked for
        store.features()
    text = str(info.value)
    assert str(store.path) in text and "holds 2 features" in text and f"resnet18_ft--{gkey}" in text
    assert "Fix:" in text
    with pytest.raises(StoreError) as info:  # an encoder never run on this store
        store.features("uni2")
    text = str(info.value)
    assert "holds no features of encoder 'uni2'" in text and f"resnet18--{gkey}" in text
    assert "eosin embed" in text
    with pytest.raises(StoreError, match="holds no attention.*eosin train mil"):
        store.attention()
    with pytest.raises(StoreError, match="2 features match grid 'mpp2"):
        store.features(grid=gkey)


def test_resolver_finds_stores_and_tiles_slides(real_store, tmp_path):
    """One input→store resolver: a store, an output folder holding one, or a slide tiled by the caller."""
    from conftest import SLIDES

    from eosin.errors import UsageError
    from eosin.run import resolve_store, resolve_stores, store_in, store_name

    store, _, _ = real_store
    folder, svs = store.path.parent, SLIDES / "CMU-1-Small-Region.svs"
    assert store_in(store.path) == store.path and store_in(folder) == store.path and store_in(svs) is None
    assert store_name(store.path) == folder.name == "CMU-1-Small-Region"
    assert resolve_store(folder) == (store.path, folder)
    assert resolve_store(store.path, tmp_path / "o") == (store.path, tmp_path / "o" / folder.name)
    with pytest.raises(UsageError, match="no store here"):
        resolve_store(tmp_path)
    with pytest.raises(UsageError, match="not a slide file"):
        resolve_store(svs, tmp_path)
    with pytest.raises(UsageError, match="needs --out"):
        resolve_store(svs, tile=lambda job: None)
    tiled = []
    found = resolve_stores([svs, folder], tmp_path / "o", tile=tiled.append)
    assert found[0] == (store.path, tmp_path / "o" / folder.name)  # stores first, then the slides tiled
    assert found[1] == (tmp_path / "o" / svs.stem / "store.zarr", tmp_path / "o" / svs.stem)
    assert [job.path for job in tiled] == [svs]
    with pytest.raises(UsageError, match="--out"):
        resolve_stores([svs])
    failures = []

    def broken(job):
        raise UsageError("cannot tile")

    assert resolve_stores([svs], tmp_path, tile=broken, on_error=lambda p, e: failures.append(p)) == []
    assert failures == [svs]
