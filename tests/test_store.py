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
