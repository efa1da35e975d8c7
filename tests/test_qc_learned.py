"""The learned artefact detector: per-pixel maps from patch predictions, and ``eosin qc --artefact-model``."""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest

from conftest import SLIDES, require
from eosin.errors import EosinError, UsageError
from eosin.qc import FLAGS, TileQC, artefact_map, load_artefact_model, patch_scorer

SVS = SLIDES / "CMU-1-Small-Region.svs"


def _red_share(patches: np.ndarray) -> np.ndarray:
    """A stand-in classifier whose output is known: the share of a patch's pixels that are pure red."""
    p = patches.astype(int)
    return ((p[..., 0] > 200) & (p[..., 1] < 50) & (p[..., 2] < 50)).mean(axis=(1, 2))


def test_the_map_of_a_red_share_model_reproduces_the_red_region():
    rng = np.random.default_rng(0)
    image = rng.integers(150, 230, (120, 160, 3), dtype=np.uint8)  # pinkish noise, nothing pure red
    truth = np.zeros((120, 160), bool)
    truth[30:90, 60:130] = True
    image[truth] = (255, 0, 0)
    prob = artefact_map(image, _red_share, patch_size=16, stride=4)
    assert prob.shape == truth.shape and prob.dtype == np.float32
    found = prob >= 0.5
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.95
    # a patch (16 px) or more inside or outside the region, every patch covering a pixel agrees on the answer
    assert prob[46:74, 76:114].min() > 0.99
    far = np.ones_like(truth)
    far[14:106, 44:146] = False
    assert prob[far].max() < 0.01
    # shrunk to the scale a model learned at (half here), the map comes back at the image's size, same region
    half = artefact_map(image, _red_share, patch_size=8, stride=2, image_side=80)
    assert half.shape == truth.shape
    assert 2 * ((half >= 0.5) & truth).sum() / ((half >= 0.5).sum() + truth.sum()) > 0.95


def test_the_map_rejects_a_stride_beyond_the_patch():
    with pytest.raises(UsageError, match="stride"):
        artefact_map(np.zeros((64, 64, 3), np.uint8), _red_share, patch_size=16, stride=32)


def _checkpoint(path, *, artefact_logit: float, classes=("artefact", "clean")):
    """A classifier checkpoint whose answer is fixed by its head's bias (random encoder, zero weights)."""
    import torch

    from eosin.models import create_encoder
    from eosin.train import TileClassifier, save_classifier
    from eosin.train._model import LinearHead

    enc = create_encoder("efficientnet_lite0", weights=None)
    head = LinearHead(enc.embedding_dim, 2)
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.copy_(torch.tensor([artefact_logit, 0.0]))
    # patches of 128 px read at 32 px: few patches over the QC image, so the test stays quick
    model = TileClassifier(enc, head, classes, {"input_size": 32, "patch_size": 128})
    return save_classifier(model, path)


def test_patch_scorer_gives_the_artefact_column(tmp_path):
    model = load_artefact_model(_checkpoint(tmp_path / "m", artefact_logit=np.log(3.0)))
    scores = patch_scorer(model)(np.zeros((5, 128, 128, 3), np.uint8))
    np.testing.assert_allclose(scores, 0.75, atol=1e-5)  # softmax of (log 3, 0)
    assert artefact_map(np.zeros((200, 300, 3), np.uint8), model).shape == (200, 300)


def test_eosin_qc_with_an_artefact_model_stores_the_flag_and_the_report_column(tmp_path):
    from eosin.cli._main import main
    from eosin.io import SlideStore

    ckpt = _checkpoint(tmp_path / "everywhere", artefact_logit=6.0)  # calls every pixel an artefact
    out = tmp_path / "qc"
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(
            ["qc", str(require(SVS)), "--out", str(out), "--artefact-model", str(ckpt), "--workers", "0", "-q"]
        )
    assert code == 0
    metrics = json.loads((out / "CMU-1-Small-Region" / "metrics.json").read_text())
    assert metrics["learned_artefact_fraction"] == 1.0
    assert metrics["tiles_learned_artefact"] == metrics["n_tiles"] > 20
    group = SlideStore.open(out / "CMU-1-Small-Region" / "store.zarr").read_group("qc", metrics["grid"])
    tiles = TileQC.from_group(group, group.attrs)
    assert group.attrs["bits"]["learned_artefact"] == FLAGS["learned_artefact"]
    assert tiles.flagged("learned_artefact").all()
    # tiles overhanging the image's border see less of the map (outside counts as 0), the others all of it
    for layer in (tiles.probabilities["learned_artefact"], tiles.fractions["learned_artefact"]):
        assert np.median(layer) > 0.99 and layer.min() >= 0.25
    for name in ("learned_artefact", "learned_artefact_map", "overlay", "tiles"):
        assert (out / "CMU-1-Small-Region" / f"{name}.png").is_file()
    (row,) = csv.DictReader(io.StringIO((out / "results.tsv").read_text()), delimiter="\t")
    assert float(row["learned_artefact_fraction"]) == 1.0
    assert row["tiles_learned_artefact"] == str(metrics["n_tiles"])
    assert "learned artefact fraction" in (out / "index.html").read_text()

    # the same run without a model: no learned column, no learned arrays, the classical flags unchanged
    plain = tmp_path / "plain"
    with redirect_stdout(io.StringIO()):
        assert main(["qc", str(SVS), "--out", str(plain), "--workers", "0", "-q"]) == 0
    assert "learned_artefact_fraction" not in (plain / "results.tsv").read_text()
    group = SlideStore.open(plain / "CMU-1-Small-Region" / "store.zarr").read_group("qc", metrics["grid"])
    again = TileQC.from_group(group, group.attrs)
    assert not again.probabilities and "learned_artefact" not in again.fractions
    np.testing.assert_array_equal(again.flags, tiles.flags & ~np.uint8(FLAGS["learned_artefact"]))


def test_a_bad_artefact_model_is_a_typed_error_naming_the_file(tmp_path, capsys):
    from eosin.cli._main import main

    missing = tmp_path / "no-such-model"
    with pytest.raises(UsageError, match="no-such-model"):
        load_artefact_model(missing)
    assert main(["qc", str(SVS), "--out", str(tmp_path / "q"), "--artefact-model", str(missing), "-q"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "q").exists()  # refused before any slide

    not_a_checkpoint = tmp_path / "folder"
    not_a_checkpoint.mkdir()
    with pytest.raises(EosinError, match="not a classifier checkpoint") as info:
        load_artefact_model(not_a_checkpoint)
    assert info.value.path == str(not_a_checkpoint)

    other = _checkpoint(tmp_path / "tumour", artefact_logit=0.0, classes=("normal", "tumour"))
    with pytest.raises(UsageError, match="'artefact'") as info:
        load_artefact_model(other)
    assert info.value.path == str(other)
