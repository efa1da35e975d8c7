"""Issue 13 item 9: inputs and outputs that used to end in a traceback or raw errno text now give one typed line
with a fix (FIFOs and devices as inputs, damaged segmentation models, outputs that cannot be written)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import badfiles
from badfiles import STAIN_TARGET, one_error_line
from conftest import require
from eosin.cli._main import main


# ---------------------------------------------------------------- item 9: tracebacks -> one typed line
@pytest.mark.parametrize("kind", ["fifo", "devnull"])
@pytest.mark.parametrize("command", ["info", "tile", "tissue", pytest.param("stain", marks=pytest.mark.slow)])
def test_a_fifo_or_dev_null_as_input_is_one_line(tmp_path, capsys, kind, command):
    path = badfiles.fifo(tmp_path) if kind == "fifo" else Path(os.devnull)
    out = tmp_path / "out"
    argv = {
        "info": ["info", str(path)],
        "tile": ["tile", str(path), "--mpp", "1", "--out", str(out), "-q", "--workers", "0"],
        "tissue": ["tissue", str(path), "--out", str(out), "-q", "--workers", "0"],
        "stain": ["stain", str(path), "--target", str(STAIN_TARGET), "--out", str(out)],
    }[command]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 1
    text = captured.out if command == "info" else one_error_line(captured.err)
    assert ("named pipe (FIFO)" if kind == "fifo" else "a device") in text and "Traceback" not in captured.err
    assert not out.exists()


@pytest.fixture(scope="module")
def seg_checkpoint(tmp_path_factory):
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    from eosin.segment import SegConfig, build_unet, save_segmenter

    torch.manual_seed(0)
    net = build_unet(encoder="resnet18", n_classes=2)
    return save_segmenter(tmp_path_factory.mktemp("seg") / "model", net, SegConfig(tile_size=64))


def _damaged_model(src: Path, folder: Path, how: str) -> Path:
    import json
    import shutil

    model = folder / f"model-{how}"
    shutil.copytree(src, model)
    weights, config = model / "model.safetensors", model / "config.json"
    if how == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "garbage-weights":
        weights.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif how == "empty-weights":
        weights.write_bytes(b"")
    elif how == "config-not-json":
        config.write_text('{"format": "eosin.segmenter", ')
    elif how == "config-not-utf8":
        config.write_bytes(b'{"format": "eosin.segmenter", "arch": "\xff\xfe"}')
    elif how == "config-wrong-types":
        record = json.loads(config.read_text())
        config.write_text(json.dumps({**record, "classes": 3, "mean": "imagenet"}))
    elif how == "config-other-network":
        record = json.loads(config.read_text())
        config.write_text(json.dumps({**record, "classes": ["background", "a", "b"]}))  # weights: 2 classes
    elif how == "config-unknown-arch":
        record = json.loads(config.read_text())
        config.write_text(json.dumps({**record, "arch": "Unett"}))
    return model


@pytest.mark.torch
@pytest.mark.parametrize(
    "how, reason",
    [
        ("truncated-weights", "not a readable safetensors file"),
        pytest.param("garbage-weights", "not a readable safetensors file", marks=pytest.mark.slow),
        pytest.param("empty-weights", "not a readable safetensors file", marks=pytest.mark.slow),
        ("config-not-json", "not valid JSON"),
        pytest.param("config-not-utf8", "not valid JSON", marks=pytest.mark.slow),
        pytest.param("config-wrong-types", "wrong type or value", marks=pytest.mark.slow),
        pytest.param("config-other-network", "do not fit the network", marks=pytest.mark.slow),
        pytest.param("config-unknown-arch", "cannot build", marks=pytest.mark.slow),
    ],
)
def test_segment_with_a_damaged_model_is_one_typed_line(seg_checkpoint, tmp_path, capsys, how, reason):
    from eosin.segment import load_segmenter

    model = _damaged_model(seg_checkpoint, tmp_path, how)
    with pytest.raises(Exception, match=reason) as info:
        load_segmenter(model)
    assert type(info.value).__module__ == "eosin.errors"
    image = badfiles.image(tmp_path, "tile.png", np.full((64, 64, 3), 180, np.uint8))
    out = tmp_path / "out"
    assert main(["segment", str(image), "--model", str(model), "--out", str(out)]) == 1
    assert reason in one_error_line(capsys.readouterr().err)
    assert not any(out.rglob("*.png")) if out.exists() else True


@pytest.mark.parametrize("command", ["tile", "tissue", "stain", "import"])
@pytest.mark.parametrize("where", ["file-in-the-way", "not-writable"])
def test_an_output_that_cannot_be_written_says_what_to_do(tmp_path, capsys, command, where):
    """A file where the output folder should be (ENOTDIR), and a folder the system refuses writes to (/sys:
    EPERM even for root, so the test is real whoever runs it)."""
    if where == "file-in-the-way":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "out"
    else:
        out = Path("/sys") / f"eosin-test-{os.getpid()}"
        if not Path("/sys").is_dir():
            pytest.skip("no /sys on this system")
    svs = str(require(badfiles.SVS))
    argv = {
        "tile": ["tile", svs, "--mpp", "1", "--out", str(out), "-q", "--workers", "0"],
        "tissue": ["tissue", svs, "--out", str(out), "-q", "--workers", "0"],
        "stain": ["stain", str(badfiles.DATA / "stain" / "stardist-histo.jpg"), "--target", str(STAIN_TARGET),
                  "--out", str(out)],
        "import": ["import", "features", str(require(badfiles.H5)), "--store", str(out / "s.zarr")],
    }[command]  # fmt: skip
    assert main(argv) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "Errno" not in line and ("a file stands where a folder is needed" in line or "not allow" in line
                                    or "permission denied" in line or "read-only" in line)  # fmt: skip
    assert "choose" in line
