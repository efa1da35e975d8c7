"""Class balance from the CLI: DeepSlide's denser stride for rare classes, Foucart's fixed positive share."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, require
from eosin.data import PositiveFractionBatches, TileTable, cut_tiles, stride_balanced_tiles
from eosin.errors import UsageError

CRC = DATA / "tiles" / "crc-val-he-7k"


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    """Real 224-px H&E images as training regions: 16 'other' (ADI, DEB, LYM, MUC) against 4 'tumour'."""
    files = sorted(require(CRC).glob("*.png"))
    other = [p for p in files if p.name[:3] in ("ADI", "DEB", "LYM", "MUC")]
    tumour = [p for p in files if p.name.startswith("TUM")]
    csv = tmp_path_factory.mktemp("regions") / "regions.csv"
    csv.write_text(
        "path,label\n" + "".join(f"{p},other\n" for p in other) + "".join(f"{p},tumour\n" for p in tumour)
    )
    return csv, TileTable.from_rows([*other, *tumour], ["other"] * len(other) + ["tumour"] * len(tumour))


def _per_side(size: int, tile: int, stride: int) -> int:
    return (size - tile) // stride + 1


def test_denser_stride_for_the_rare_class(regions):
    _, table = regions
    full = cut_tiles(table, tile_size=56)
    assert full.counts() == {"other": 16 * _per_side(224, 56, 56) ** 2, "tumour": 4 * 16}  # 4 x 4 per image
    balanced, strides = stride_balanced_tiles(table, tile_size=56)
    assert strides == {"other": 56, "tumour": 28}  # 4 times fewer tiles: stride / sqrt(4)
    counts = balanced.counts()
    assert counts == {"other": 256, "tumour": 4 * _per_side(224, 56, 28) ** 2}  # 7 x 7 per image
    assert counts["tumour"] / len(balanced) > 0.4 > full.counts()["tumour"] / len(full)  # from 20 % to 43 %
    x, y, w, h = balanced.boxes.T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 224).all() and (y + h <= 224).all()
    with Image.open(balanced.paths[0]) as im:  # a box is a real crop of its image
        assert im.size == (224, 224)
    with pytest.raises(UsageError):
        cut_tiles(balanced, tile_size=56)  # already cut


def test_every_batch_holds_the_positive_fraction():
    targets = np.array([0] * 90 + [1] * 10)  # 10 % positive
    batches = list(PositiveFractionBatches(targets, [1], fraction=0.25, batch_size=16, seed=0))
    assert len(batches) == 7 and all(len(b) == 16 for b in batches)
    assert all((targets[b] == 1).sum() == 4 for b in batches)  # exactly round(0.25 * 16) positives each
    first = np.concatenate(batches)[np.isin(np.concatenate(batches), np.flatnonzero(targets == 1))][:10]
    assert len(set(first.tolist())) == 10  # every positive once before any repeats
    with pytest.raises(UsageError):
        PositiveFractionBatches(targets, [1], fraction=1.0, batch_size=16)


@pytest.mark.torch
def test_loader_and_cli_balance_options(regions, tmp_path, capsys):
    from eosin.cli._main import main
    from eosin.data import make_loader

    csv, table = regions
    tiles = cut_tiles(table, tile_size=56)
    loader = make_loader(tiles, size=16, batch_size=8, positive_fraction=0.25, workers=0, seed=0)
    labels = [y for _, y in loader]
    assert len(labels) == -(-len(tiles) // 8)
    tumour = tiles.classes.index("tumour")  # the rarest class is the positive one by default
    assert all(int((y == tumour).sum()) == 2 for y in labels)
    args = ["train", "tiles", str(csv), "--encoder", "resnet18", "--weights", "none", "--tiny"]
    args += ["--input-size", "16", "--workers", "0", "--val-fraction", "0", "--probe", "knn"]
    capsys.readouterr()
    assert main([*args, "--tile-size", "56", "--balance", "stride", "--out", str(tmp_path / "k")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(err.splitlines()[0])["strides"] == {"other": 56, "tumour": 28}
    assert json.loads(out)["train_counts"] == {"other": 256, "tumour": 196}
    config = json.loads((tmp_path / "k" / "config.json").read_text())
    assert config["tiling"]["strides"]["tumour"] == 28
    assert main([*args, "--balance", "stride", "--out", str(tmp_path / "x")]) == 2  # stride needs --tile-size
