"""Class activation maps (Grad-CAM via pytorch-grad-cam): a CNN's map sits on the evidence, a ViT's map is laid out
on its patch grid, and the stitched map lines up with the tile grid."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import DATA, SLIDES, require

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

CRC = DATA / "tiles" / "crc-val-he-7k"


def _red_detector():
    """A CNN whose 'evidence' logit is the mean red-minus-green-and-blue response: it looks at red patches only."""
    from torch import nn

    from eosin.models import Encoder, get_spec
    from eosin.train._model import LinearHead, TileClassifier

    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-0.2)
        conv.weight[:, 0, 1, 1], conv.weight[:, 1, 1, 1], conv.weight[:, 2, 1, 1] = 1.0, -1.0, -1.0
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = LinearHead(4, 2)
    with torch.no_grad():
        head.fc.weight[:] = torch.tensor([[-1.0] * 4, [1.0] * 4])
        head.fc.bias.zero_()
    return TileClassifier(
        Encoder(get_spec("resnet18"), net, embedding_dim=4, input_size=96), head, ["plain", "evidence"]
    )


def test_cnn_cam_sits_on_the_evidence_patch():
    from eosin.train._cam import tile_cams

    files = sorted(require(CRC).glob("*.png"))[::8][:4]  # real H&E tiles of four classes
    tiles = np.stack([cv2.resize(cv2.imread(str(p))[..., ::-1], (96, 96)) for p in files])
    boxes = [(8, 8), (60, 20), (30, 64), (70, 70)]  # (row, col) of a 20-px saturated red square per tile
    for tile, (r, c) in zip(tiles, boxes, strict=True):
        tile[r : r + 20, c : c + 20] = (230, 20, 20)
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    model = _red_detector().eval()
    assert (model(x).argmax(1) == 1).all()  # the patch decides the class
    cams = tile_cams(model, x, np.ones(4, int), size=96)  # maps at the tiles' own size
    for cam, (r, c) in zip(cams, boxes, strict=True):
        inside = np.zeros(cam.shape, bool)
        inside[r : r + 20, c : c + 20] = True
        assert cam[inside].mean() > 0.5 > 0.05 > cam[~inside].mean()
        peak = np.unravel_index(cam.argmax(), cam.shape)
        assert r - 2 <= peak[0] < r + 22 and c - 2 <= peak[1] < c + 22


def test_vit_cam_is_laid_out_on_the_patch_grid():
    from eosin.models import create_encoder
    from eosin.train._cam import cam_target, tile_cams
    from eosin.train._model import LinearHead, TileClassifier

    enc = create_encoder("vit_small_patch16_224", weights=None, tiny=True)
    layer, reshape = cam_target(enc)
    assert layer is enc.model.blocks[-1].norm1
    tokens = torch.arange(2 * (1 + 196) * 3, dtype=torch.float32).reshape(2, 197, 3)
    grid = reshape(tokens)  # class token dropped, patch tokens row by row on the 14 x 14 grid
    assert grid.shape == (2, 3, 14, 14) and torch.equal(grid[0, :, 0, 1], tokens[0, 2])
    model = TileClassifier(enc, LinearHead(enc.embedding_dim, 2), ["a", "b"]).eval()
    cams = tile_cams(
        model, torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)), np.array([0, 1])
    )
    assert cams.shape == (2, 32, 32) and np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1


def test_stitched_map_lines_up_with_the_tile_grid(tmp_path):
    from eosin.run._stages import SlideJob, tile_stage
    from eosin.slide import open_slide
    from eosin.train._cam import stitch_cams

    svs = require(SLIDES / "CMU-1-Small-Region.svs")
    summary = tile_stage(SlideJob(svs, tmp_path), mpp=4, tile_size=32)
    from eosin.io import SlideStore
    from eosin.tiles import TileGrid

    group = SlideStore.open(tmp_path / "store.zarr").read_group("grids", summary["grid"])
    grid = TileGrid.from_group(group, group.attrs)
    with open_slide(svs) as slide:
        thumb, bounds = slide.thumbnail(max_size=1024), slide.bounds
    cams = np.zeros((len(grid), 32, 32), np.float32)
    cams[:, :, :16] = 1  # every tile's map lit on its left half only
    stitched, covered = stitch_cams(cams, grid.coords, grid.extent, shape=thumb.shape[:2], bounds=bounds)
    assert stitched.shape == thumb.shape[:2]
    sx = thumb.shape[1] / bounds[2]
    for x, y in grid.coords:
        row = int((y - bounds[1] + grid.extent / 2) * sx)
        left, right = (int((x - bounds[0] + grid.extent * f) * sx) for f in (0.25, 0.75))
        assert stitched[row, left] == 1 and stitched[row, right] == 0
    area = covered.sum() / (sx * sx)  # covered thumbnail pixels, in level-0 pixels
    assert area == pytest.approx(len(grid) * grid.extent**2, rel=0.1)
