"""Segmentation: blending without seams, any image size, instance separation, training, checkpoints, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import DATA, SLIDES, require
from eosin.segment import (
    BandAccumulator,
    blend_window,
    patch_probability_map,
    separate_instances,
    sliding_window,
)

MONUSEG = DATA / "segmentation" / "monuseg-train"
STEM = "TCGA-21-5784-01Z-00-DX1"


def _identity(tiles: np.ndarray) -> np.ndarray:
    """A 'model' whose output at each pixel is the pixel itself: blending must give the image back."""
    return tiles.transpose(0, 3, 1, 2).astype(np.float32)


def _image(rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng(rows * cols).integers(0, 256, (rows, cols, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ blending
def test_constant_model_gives_a_constant_map():
    out = sliding_window(
        _image(301, 457), lambda t: np.full((len(t), 2, *t.shape[1:3]), 0.7), tile_size=128, overlap=0.25
    )
    assert out.shape == (2, 301, 457)
    np.testing.assert_allclose(out, 0.7, rtol=1e-6)


@pytest.mark.parametrize("shape", [(301, 457), (37, 53), (129, 255), (1, 300)])
def test_position_dependent_model_reconstructs_the_image_at_any_size(shape):
    image = _image(*shape)
    out = sliding_window(image, _identity, tile_size=64, overlap=16, batch_size=5)
    assert out.shape == (3, *shape)
    np.testing.assert_allclose(out, image.transpose(2, 0, 1), atol=1e-3)


def test_blend_weights_are_smooth_and_positive():
    w = blend_window(64, 16)
    assert w.min() > 0 and w[32, 32] == 1
    assert np.abs(np.diff(w[32])).max() < 0.15  # no jump anywhere along a row


def test_band_accumulator_streams_the_same_map_as_in_memory_blending():
    image = _image(200, 170)
    tile, over = 64, 16
    expected = sliding_window(image, _identity, tile_size=tile, overlap=over)
    out = np.full((3, 200, 170), -1.0, np.float32)
    rows_seen = []

    def sink(row, block):
        rows_seen.append((row, block.shape[1]))
        out[:, row : row + block.shape[1]] = block

    band = BandAccumulator((200, 170), 3, tile_size=tile, overlap=over, sink=sink)
    from eosin.segment._window import window_starts

    for y in window_starts(200, tile, tile - over):
        for x in window_starts(170, tile, tile - over):
            band.add(int(y), int(x), _identity(image[None, y : y + tile, x : x + tile])[0])
    band.close()
    np.testing.assert_allclose(out, expected, atol=1e-3)
    assert sum(n for _, n in rows_seen) == 200 and max(n for _, n in rows_seen) <= tile - over


def test_band_accumulator_leaves_untouched_rows_at_zero():
    blocks = {}
    band = BandAccumulator((100, 50), 1, tile_size=32, overlap=0, sink=lambda r, b: blocks.update({r: b}))
    band.add(64, 0, np.ones((1, 32, 32), np.float32))
    band.close()
    full = np.concatenate([blocks[r] for r in sorted(blocks)], axis=1)[0]
    assert full.shape == (100, 50)
    assert full[:64].max() == 0 and full[64:96, :32].min() == 1 and full[64:, 32:].max() == 0


def test_patch_route_spreads_patch_probabilities_smoothly():
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, 150:] = 255  # the right half is "positive"
    prob = patch_probability_map(image, lambda p: p.mean(axis=(1, 2, 3)) / 255, patch_size=64, stride=16)
    assert prob.shape == (200, 300)
    assert prob[:, :60].max() < 0.01 and prob[:, 240:].min() > 0.99
    assert np.all(np.diff(prob[100]) >= -1e-6)  # rises monotonically across the border, no steps back


# ------------------------------------------------------------------------------------------------ instances
def _two_touching_discs() -> np.ndarray:
    yy, xx = np.mgrid[:100, :160]
    return ((yy - 50) ** 2 + (xx - 50) ** 2 < 30**2) | ((yy - 50) ** 2 + (xx - 105) ** 2 < 30**2)


def test_distance_watershed_splits_two_touching_discs():
    mask = _two_touching_discs()
    assert separate_instances(mask, method="components").max() == 1
    labels = separate_instances(mask.astype(np.float32), method="distance", min_distance=5)
    assert labels.max() == 2
    assert labels[50, 50] != labels[50, 105] and labels[50, 50] > 0
    assert np.array_equal(labels > 0, mask)


def test_boundary_watershed_splits_at_the_boundary_channel():
    mask = _two_touching_discs()
    interior = mask.astype(np.float32)
    interior[:, 76:80] = 0.1  # the boundary channel marks the neck between the discs
    labels = separate_instances(mask.astype(np.float32), interior=interior)
    assert labels.max() == 2 and np.array_equal(labels > 0, mask)


# ------------------------------------------------------------------------------------------------ data
def test_palette_masks_map_to_the_nearest_colour(tmp_path):
    from PIL import Image

    from eosin.segment import read_class_mask

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, 10:20] = (250, 5, 3)  # JPEG-like red
    rgb[:, 20:] = (2, 248, 9)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    palette = {"background": (0, 0, 0), "tumour": (255, 0, 0), "stroma": (0, 255, 0)}
    classes = read_class_mask(tmp_path / "m.png", palette=palette)
    assert classes[0, 0] == 0 and classes[0, 15] == 1 and classes[0, 25] == 2


def test_boundary_target_separates_touching_instances():
    from eosin.segment import target_from_labels

    labels = np.zeros((10, 12), np.int32)
    labels[2:8, 1:6], labels[2:8, 6:11] = 1, 2
    target = target_from_labels(labels, boundary=True)
    assert set(np.unique(target)) == {0, 1, 2}
    assert np.all(target[3:7, 5:7] == 2)  # where the two objects meet
    assert target[4, 3] == 1 and target[0, 0] == 0


# ------------------------------------------------------------------------------------------------ torch
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    from eosin.segment import SegConfig, build_unet, save_segmenter

    torch.manual_seed(0)
    net = build_unet(encoder="resnet18", n_classes=3)
    config = SegConfig(classes=["background", "interior", "boundary"], mpp=0.5, tile_size=256)
    return save_segmenter(tmp_path_factory.mktemp("ckpt") / "model", net, config)


@pytest.mark.torch
def test_training_steps_on_a_real_monuseg_crop_decrease_the_loss():
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    from eosin.segment import build_unet, dice_ce_loss, target_from_labels
    from eosin.segment._data import read_class_mask, read_image

    image = read_image(require(MONUSEG / "tissue_image" / f"{STEM}.tif"))
    labels = read_class_mask(MONUSEG / "annotations" / f"{STEM}.xml", shape=image.shape[:2])
    target = target_from_labels(labels, boundary=True)[300:396, 300:396]
    assert (target == 1).mean() > 0.1 and (target == 2).any()
    torch.manual_seed(0)
    net = build_unet(encoder="resnet18", n_classes=3)
    x = torch.from_numpy(image[300:396, 300:396].copy()).permute(2, 0, 1)[None].float() / 255 - 0.5
    y = torch.from_numpy(target.astype(np.int64))[None]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = dice_ce_loss(net(x), y, class_weights=torch.tensor([1.0, 1.0, 3.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.torch
def test_crop_batches_keep_the_in_process_stream_and_spread_over_workers():
    """No workers: exactly the crops the training loop drew itself before; workers: the same kind of batches,
    each worker its own reproducible stream, every epoch complete."""
    import torch

    from eosin.segment._data import Augment, CropBatches, CropSampler, SegSample, crop_loader

    rng = np.random.default_rng(0)
    samples = [
        SegSample(
            f"s{i}",
            rng.integers(0, 256, (80, 90, 3), dtype=np.uint8),
            (rng.random((80, 90)) > 0.7).astype(np.uint8),
        )
        for i in range(3)
    ]
    aug = {"elastic": 0.5, "hed_sigma": 0.05, "hed_bias": 0.01}
    crops = CropBatches(samples, crop=32, batch_size=4, steps=3, positive_fraction=0.5, augment=aug, seed=5)
    sampler = CropSampler(samples, crop=32, positive_fraction=0.5, seed=5)
    augment = Augment(**aug, seed=5)
    for epoch in range(2):
        for images, targets in crops:
            expect = [augment(*sampler.sample()) for _ in range(4)]
            np.testing.assert_array_equal(images.numpy(), np.stack([e[0] for e in expect]))
            np.testing.assert_array_equal(targets.numpy(), np.stack([e[1] for e in expect]))
            assert targets.dtype == torch.int64 and images.shape == (4, 32, 32, 3)

    def epochs(n):
        loader = crop_loader(
            CropBatches(samples, crop=32, batch_size=4, steps=5, positive_fraction=0.5, augment=aug, seed=5),
            workers=2,
        )
        return [[b[0].numpy() for b in loader] for _ in range(n)]

    first, again = epochs(2), epochs(1)
    assert [len(e) for e in first] == [5, 5]
    for a, b in zip(first[0], again[0], strict=True):
        np.testing.assert_array_equal(a, b)  # reproducible for a given number of workers
    assert not np.array_equal(first[0][0], first[0][1])  # two workers, two streams
    assert not np.array_equal(first[0][0], first[1][0])  # the next epoch draws anew


@pytest.mark.torch
def test_checkpoint_round_trip_gives_identical_outputs(tiny_checkpoint, tmp_path, monkeypatch):
    import torch

    from eosin._device import precision_candidates
    from eosin.segment import load_segmenter

    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "home"))

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["arch"] == "Unet" and config["classes"] == ["background", "interior", "boundary"]
    a = load_segmenter(tiny_checkpoint, device="cpu")
    b = load_segmenter(tiny_checkpoint, device="cpu")
    tiles = _image(70, 90)[None]  # not a multiple of 32: padded and cropped back
    pa, pb = a.predict(tiles), b.predict(tiles)
    assert pa.shape == (1, 3, 70, 90)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_allclose(pa.sum(1), 1, rtol=1e-5)
    # precision "auto" was settled by measuring on the first windows, once: the second model reused it
    assert a.precision in precision_candidates(torch.device("cpu")) and b.precision == a.precision
    assert a.calibration["choice"] == f"torch-{a.precision}" and not a.calibration["cached"]
    assert b.calibration["cached"] == a.calibration["measured"]


@pytest.mark.torch
def test_bf16_inference_stays_close_to_fp32(tiny_checkpoint):
    from eosin.segment import load_segmenter

    tiles = _image(96, 96)[None]
    p32 = load_segmenter(tiny_checkpoint, device="cpu", precision="fp32").predict(tiles)
    b16 = load_segmenter(tiny_checkpoint, device="cpu", precision="bf16")
    assert b16.precision == "bf16"
    p16 = b16.predict(tiles)
    assert p16.dtype == np.float32
    np.testing.assert_allclose(p16.sum(1), 1, rtol=1e-5)
    assert np.abs(p16 - p32).max() < 0.05
    assert (p16.argmax(1) == p32.argmax(1)).mean() > 0.98


@pytest.mark.torch
def test_training_without_validation_keeps_the_lowest_loss_epoch_whatever_the_loss(tmp_path):
    """With no validation images the training loss picks the epoch to keep: an epoch must be kept even when the
    loss (Dice + cross-entropy, easily above 1 in the first epochs) never falls below 1."""
    pytest.importorskip("segmentation_models_pytorch")
    from PIL import Image

    from eosin.segment import train_segmenter
    from eosin.segment._data import read_image

    image = read_image(require(MONUSEG / "tissue_image" / f"{STEM}.tif"))
    mask = np.asarray(Image.open(MONUSEG / "masks" / f"{STEM}.png").convert("L"))
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    Image.fromarray(image[:96, :96]).save(tmp_path / "img" / "c0.png")
    Image.fromarray(mask[:96, :96]).save(tmp_path / "msk" / "c0.png")
    result = train_segmenter(
        tmp_path / "img", tmp_path / "msk", tmp_path / "ck", epochs=2, crops_per_epoch=2, crop=64, batch_size=2,
        val_fraction=0, precision="fp32", workers=0, lr=1e-6,
    )  # fmt: skip
    losses = [h["loss"] for h in result["history"]]
    assert min(losses) > 1  # the case of the bug: no epoch scored above the old starting point of -1
    assert result["best_epoch"] == 1 + int(np.argmin(losses))
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["training"]["best_epoch"] == result["best_epoch"] and (tmp_path / "ck" / "model.safetensors").is_file()


@pytest.mark.torch
def test_train_seg_command_writes_a_checkpoint(tmp_path):
    pytest.importorskip("segmentation_models_pytorch")
    from click.testing import CliRunner
    from PIL import Image

    from eosin.cli._train_seg import seg
    from eosin.segment._data import read_image

    image = read_image(require(MONUSEG / "tissue_image" / f"{STEM}.tif"))
    mask = np.asarray(Image.open(MONUSEG / "masks" / f"{STEM}.png").convert("L"))
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for i, (r, c) in enumerate([(0, 0), (500, 500), (0, 500)]):
        Image.fromarray(image[r : r + 96, c : c + 96]).save(tmp_path / "img" / f"c{i}.png")
        Image.fromarray(mask[r : r + 96, c : c + 96]).save(tmp_path / "msk" / f"c{i}.jpg", quality=80)
    args = [
        "--images",
        tmp_path / "img",
        "--masks",
        tmp_path / "msk",
        "--out",
        tmp_path / "ck",
        "--epochs",
        "1",
    ]
    args += ["--crops-per-epoch", "4", "--crop", "64", "--batch-size", "2", "--val-fraction", "0.34", "-q"]
    result = CliRunner().invoke(seg, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert len(record["val"]) == 1 and len(record["train"]) == 2
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["training"]["val"] == record["val"] and (tmp_path / "ck" / "model.safetensors").is_file()
    assert config["training"]["epochs"] == 1 and config["training"]["device"] == "cpu"  # resolved, not "auto"
    assert config["training"]["versions"]["eosin"] and config["training"]["precision"] in ("fp32", "bf16")
    assert record["calibration"]["choice"] == f"torch-{record['precision']}"
    plan = record[
        "loader"
    ]  # crop workers chosen by measurement: none where they would take the model's cores
    from eosin.data import choose_loader_workers

    assert plan["how"] == "measured" and (plan["workers"], plan["torch_threads"]) == choose_loader_workers(
        plan["input_ms_per_crop"], plan["step_ms_per_crop"]
    )
    assert config["training"]["precision"] == record["precision"]


@pytest.mark.torch
def test_segment_command_on_a_real_image(tiny_checkpoint, tmp_path):
    from PIL import Image

    from eosin.cli._main import main

    image = require(MONUSEG / "tissue_image" / f"{STEM}.tif")
    crop = np.asarray(Image.open(image).convert("RGB"))[:301, :417]  # odd size
    Image.fromarray(crop).save(tmp_path / "odd.png")
    code = main(
        ["segment", str(tmp_path / "odd.png"), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")]
    )
    assert code == 0
    mask = np.asarray(Image.open(tmp_path / "o" / "odd" / "mask.png"))
    assert mask.shape == (301, 417) and set(np.unique(mask)) <= {0, 255}
    inst = Image.open(tmp_path / "o" / "odd" / "instances.png")
    assert inst.mode.startswith("I;16") and np.asarray(inst).shape == (301, 417)
    doc = json.loads((tmp_path / "o" / "odd" / "instances.geojson").read_text())
    labels = np.asarray(inst)
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(np.unique(labels[labels > 0]))


@pytest.mark.torch
def test_segment_command_on_a_slide_writes_the_mask_at_the_mpp_and_the_store_group(tiny_checkpoint, tmp_path):
    from PIL import Image

    from eosin.cli._main import main
    from eosin.io import SlideStore

    slide = require(SLIDES / "CMU-1-Small-Region.svs")
    out = tmp_path / "o"
    code = main(
        ["segment", str(slide), "--model", str(tiny_checkpoint), "--out", str(out), "--mpp", "2", "-q"]
        + ["--workers", "0", "--tile-size", "128"]
    )
    assert code == 0
    store = SlideStore.open(out / slide.stem / "store.zarr")
    (key,) = store.keys("segmentation")
    group = store.read_group("segmentation", key)
    ds = group.attrs["downsample"]
    assert group.attrs["mpp"] == 2 and ds == pytest.approx(2 / 0.499, rel=0.01)
    rows, cols = int(np.ceil(2967 / ds)), int(np.ceil(2220 / ds))
    assert group["foreground"].shape == (rows, cols) and group["interior"].shape == (rows, cols)
    mask = np.asarray(Image.open(out / slide.stem / "mask.png"))
    assert mask.shape == (rows, cols) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask > 0, np.asarray(group["foreground"]) >= 128)


@pytest.mark.torch
def test_slide_segmentation_killed_half_way_resumes_to_the_same_map(tiny_checkpoint, tmp_path):
    """A run killed after some bands were written continues from them and ends with the uninterrupted map."""
    import subprocess
    import sys

    from eosin.io import SlideStore
    from eosin.segment import load_segmenter, segment_slide
    from eosin.slide import open_slide

    path = require(SLIDES / "CMU-1-Small-Region.svs")
    code = f"""
import os
from eosin.io import SlideStore
from eosin.io._store import PartialGroup
from eosin.segment import load_segmenter, segment_slide
from eosin.slide import open_slide
mark = PartialGroup.mark
def dying(self, done):
    mark(self, done)
    if done >= 200:
        os._exit(9)
PartialGroup.mark = dying
segment_slide(open_slide({str(path)!r}), load_segmenter({str(tiny_checkpoint)!r}),
              SlideStore.create({str(tmp_path / "a.zarr")!r}), mpp=2.0, tile_size=128, workers=0)
"""
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    store = SlideStore.open(tmp_path / "a.zarr")
    assert "segmentation" not in store.kinds()
    import json

    (progress,) = (tmp_path / "a.zarr" / ".staging").glob("segmentation.*.partial/eosin-progress.json")
    assert json.loads(progress.read_text())["done"] >= 200  # the second run starts from there
    from eosin import _calibrate

    def no_second_calibration(*args, **kwargs):
        raise AssertionError("a resumed run must go on with the precision its bands were made with")

    model = load_segmenter(tiny_checkpoint)  # precision auto, as the killed run had
    original = _calibrate.calibrate
    _calibrate.calibrate = no_second_calibration
    try:
        key = segment_slide(open_slide(path), model, store, mpp=2.0, tile_size=128, workers=0)
    finally:
        _calibrate.calibrate = original
    group = store.read_group("segmentation", key)
    resumed = np.asarray(group["foreground"])
    # the record names the path that made the map (settled by the killed run's calibration), never "auto"
    assert group.attrs["precision"] in ("fp32", "bf16") and group.attrs["calibration"]["choice"].endswith(
        group.attrs["precision"]
    )
    fresh_store = SlideStore.create(tmp_path / "b.zarr")
    same_path = load_segmenter(tiny_checkpoint, precision=group.attrs["precision"])
    fresh_key = segment_slide(open_slide(path), same_path, fresh_store, mpp=2.0, tile_size=128, workers=0)
    fresh = np.asarray(fresh_store.read_group("segmentation", fresh_key)["foreground"])
    assert key == fresh_key and resumed.shape == fresh.shape and resumed.shape[0] > 200
    np.testing.assert_array_equal(resumed, fresh)


@pytest.mark.torch
def test_retrained_model_with_the_same_seed_gets_new_masks(tmp_path):
    """Slide maps are keyed by the weights: a model retrained with the same seed and epochs (same config.json)
    is not served the old model's map (issue 11's stale cache)."""
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    from eosin.io import SlideStore
    from eosin.segment import SegConfig, build_unet, load_segmenter, save_segmenter, segment_slide
    from eosin.slide import open_slide

    path = require(SLIDES / "CMU-1-Small-Region.svs")
    config = SegConfig(classes=["background", "foreground"], mpp=2.0, training={"best_epoch": 3, "seed": 0})
    torch.manual_seed(0)
    net = build_unet(encoder="resnet18", n_classes=2)
    folder = save_segmenter(tmp_path / "model", net, config)
    store = SlideStore.create(tmp_path / "s.zarr")
    kwargs = {"mpp": 4.0, "tile_size": 128, "workers": 0}
    first = segment_slide(open_slide(path), load_segmenter(folder, device="cpu"), store, **kwargs)
    old = np.asarray(store.read_group("segmentation", first)["foreground"])
    with torch.no_grad():  # "retrained": other weights, the same recorded seed and best epoch
        net.segmentation_head[0].bias.copy_(torch.tensor([2.0, -2.0]))
    save_segmenter(folder, net, config)
    model = load_segmenter(folder, device="cpu")
    second = segment_slide(open_slide(path), model, store, **kwargs)
    assert second != first
    group = store.read_group("segmentation", second)
    assert group.attrs["weights_hash"] == model.weights_hash and group.attrs["versions"]["eosin"]
    assert not np.array_equal(np.asarray(group["foreground"]), old)
    assert segment_slide(open_slide(path), load_segmenter(folder, device="cpu"), store, **kwargs) == second
