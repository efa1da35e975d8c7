"""Touching objects: binary masks that merge them teach foreground and outlines only, the loss of pixels whose part
is unknown, the seed threshold of the boundary watershed and its choice on validation images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import DATA, require
from eosin.segment import separate_instances

MONUSEG = DATA / "segmentation" / "monuseg-train"
STEM = "TCGA-21-5786-01Z-00-DX1"  # 440 nuclei in its XML, 247 components in its binary mask


def _xml_and_binary():
    from eosin.segment._data import read_class_mask, read_image

    image = read_image(require(MONUSEG / "tissue_image" / f"{STEM}.tif"))
    xml = read_class_mask(MONUSEG / "annotations" / f"{STEM}.xml", shape=image.shape[:2])
    binary = read_class_mask(MONUSEG / "masks" / f"{STEM}.png")
    return image, xml, binary


def test_a_binary_masks_merged_contacts_are_left_unknown_not_taught_as_interior():
    from scipy import ndimage

    from eosin.segment._data import UNKNOWN_PART, target_from_labels

    _, xml, binary = _xml_and_binary()
    assert binary.max() < 0.8 * xml.max()  # the binary mask merges touching nuclei (the oracle: the XML)
    merged = target_from_labels(binary, boundary=True)
    partial = target_from_labels(binary, boundary=True, contacts_known=False)
    full = target_from_labels(xml, boundary=True)
    # contacts between two XML nuclei, away from the background: boundary in the XML target
    contact = (full == 2) & ~ndimage.binary_dilation(xml == 0, np.ones((3, 3), bool))
    inside = contact & ~ndimage.binary_dilation(binary == 0, np.ones((3, 3), bool))
    assert inside.sum() > 500
    assert (merged[inside] == 1).mean() > 0.5  # components teach "interior" across most of the contacts
    assert (partial[inside] == UNKNOWN_PART).all()  # partial targets claim nothing there
    assert not (partial == 1).any()
    outline = (partial == 2) != (merged == 2)
    assert outline.sum() < 0.02 * (binary > 0).sum()  # the outline against the background is kept


def test_load_pairs_uses_binary_masks_for_foreground_only_beside_instance_annotations(tmp_path):
    from PIL import Image

    from eosin.errors import UnknownNameError
    from eosin.segment._data import UNKNOWN_PART, load_pairs

    image, xml, binary = _xml_and_binary()
    for name in ("img", "msk", "inst"):
        (tmp_path / name).mkdir()
    pairs = []
    for stem, (r, c) in {"a": (0, 0), "b": (500, 500)}.items():
        Image.fromarray(image[r : r + 128, c : c + 128]).save(tmp_path / "img" / f"{stem}.png")
        Image.fromarray(((binary[r : r + 128, c : c + 128] > 0) * 255).astype(np.uint8)).save(
            tmp_path / "msk" / f"{stem}.png"
        )
        pairs.append((stem, tmp_path / "img" / f"{stem}.png", tmp_path / "msk" / f"{stem}.png"))
    Image.fromarray(xml[:128, :128].astype(np.uint16)).save(tmp_path / "inst" / "a.png")

    mixed = {s.stem: s for s in load_pairs(pairs, boundary=True, instances=tmp_path / "inst")}
    assert mixed["a"].contacts_known and not mixed["b"].contacts_known
    assert not (mixed["a"].target == UNKNOWN_PART).any() and (mixed["b"].target == UNKNOWN_PART).any()
    assert mixed["a"].source.name == "a.png" and mixed["a"].source.parent.name == "inst"
    binary_only = load_pairs(pairs, boundary=True)
    assert all(s.contacts_known for s in binary_only)  # nothing else to learn contacts from
    forced = load_pairs(pairs, boundary=True, instances=tmp_path / "inst", binary_masks="components")
    assert all(s.contacts_known for s in forced)
    with pytest.raises(UnknownNameError):
        load_pairs(pairs, boundary=True, binary_masks="merge")


@pytest.mark.torch
def test_an_unknown_part_pixel_asks_only_that_it_is_not_background():
    import torch

    from eosin.segment import dice_ce_loss
    from eosin.segment._data import UNKNOWN_PART

    torch.manual_seed(0)
    logits = torch.randn(1, 3, 1, 4, requires_grad=True)
    target = torch.tensor([[[0, 1, 2, UNKNOWN_PART]]])
    weights = torch.tensor([1.0, 1.0, 3.0])
    loss = dice_ce_loss(logits, target, class_weights=weights, dice_weight=0.0)
    p = torch.softmax(logits.detach(), 1)[0, :, 0]
    by_hand = -(
        1 * torch.log(p[0, 0]) + 1 * torch.log(p[1, 1]) + 3 * torch.log(p[2, 2]) + 1 * torch.log(p[1, 3] + p[2, 3])
    ) / (1 + 1 + 3 + 1)
    assert float(loss.detach()) == pytest.approx(float(by_hand), rel=1e-5)
    loss.backward()
    g = logits.grad[0, :, 0, 3]
    assert float(g[1]) == pytest.approx(float(g[2]) * float(p[1, 3] / p[2, 3]), rel=1e-4)  # no push between parts
    known = dice_ce_loss(logits.detach(), torch.tensor([[[0, 1, 2, 1]]]), class_weights=weights)
    assert torch.isfinite(known)


def _neck_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two touching discs; the interior channel is confident in their cores and faint across the neck."""
    yy, xx = np.mgrid[:100, :160]
    left = (yy - 50) ** 2 + (xx - 50) ** 2 < 30**2
    right = ((yy - 50) ** 2 + (xx - 105) ** 2 < 30**2) & ~left
    truth = left * 1 + right * 2
    interior = np.where(truth > 0, 0.95, 0.0).astype(np.float32)
    interior[:, 70:86] = np.where(truth[:, 70:86] > 0, 0.65, 0.0)
    return (truth > 0).astype(np.float32), interior, truth.astype(np.int32)


def test_a_higher_seed_threshold_splits_objects_joined_by_a_faint_boundary():
    fg, interior, _ = _neck_maps()
    assert separate_instances(fg, interior=interior).max() == 1
    labels = separate_instances(fg, interior=interior, seed_threshold=0.8)
    assert labels.max() == 2 and labels[50, 40] != labels[50, 120]


class _MapModel:
    """A 'segmenter' that reads its class probabilities off the image: red = background, green = interior."""

    class config:
        tile_size = 64
        classes = ["background", "interior", "boundary"]

    @staticmethod
    def predict(tiles: np.ndarray) -> np.ndarray:
        bg, inner = tiles[..., 0] / 255.0, tiles[..., 1] / 255.0
        return np.stack([bg, inner, 1 - bg - inner], axis=1).astype(np.float32)


def test_tuning_picks_the_seed_threshold_with_the_best_aji_on_validation_images():
    from eosin.evaluate import aji
    from eosin.segment._tune import tune_instances

    fg, interior, truth = _neck_maps()
    image = np.zeros(fg.shape + (3,), np.uint8)
    image[..., 0] = np.rint((1 - fg) * 255)
    image[..., 1] = np.rint(np.minimum(interior, fg) * 255)
    chosen = tune_instances(
        _MapModel, [image, image[:, ::-1]], [truth, truth[:, ::-1]], stems=["neck", "mirror"], thresholds=(0.5, 0.7, 0.9)
    )
    assert chosen["seed_threshold"] == 0.7 and chosen["images"] == ["neck", "mirror"]
    assert chosen["aji"][0.7] > 0.9 > chosen["aji"][0.5]
    assert chosen["aji"][0.5] == pytest.approx(aji(truth, (truth > 0).astype(np.int32)), abs=1e-3)
    one = tune_instances(_MapModel, [image], [truth], stems=["neck"], thresholds=(0.5, 0.7, 0.9))
    assert one["seed_threshold"] is None and "2 or more" in one["why"] and one["aji"] == chosen["aji"]


@pytest.mark.torch
def test_training_records_the_partial_targets_and_the_chosen_seed_threshold(tmp_path):
    """Crops of a real MoNuSeg image: two with 16-bit instance labels (one of them the validation image), one with
    its binary mask only; the checkpoint records which taught contacts and the threshold chosen on validation,
    and `eosin segment` uses it."""
    pytest.importorskip("segmentation_models_pytorch")
    from click.testing import CliRunner
    from PIL import Image

    from eosin.cli._segment import segment
    from eosin.cli._train_seg import seg
    from eosin.segment._tune import SEED_THRESHOLDS

    image, xml, binary = _xml_and_binary()
    for name in ("img", "msk", "inst"):
        (tmp_path / name).mkdir()
    for i, (r, c) in enumerate([(0, 0), (500, 500), (0, 500)]):  # c2 is the validation image (seeded split)
        Image.fromarray(image[r : r + 96, c : c + 96]).save(tmp_path / "img" / f"c{i}.png")
        Image.fromarray(((binary[r : r + 96, c : c + 96] > 0) * 255).astype(np.uint8)).save(
            tmp_path / "msk" / f"c{i}.png"
        )
        if i != 1:
            Image.fromarray(xml[r : r + 96, c : c + 96].astype(np.uint16)).save(tmp_path / "inst" / f"c{i}.png")
    args = ["--images", tmp_path / "img", "--masks", tmp_path / "msk", "--instances", tmp_path / "inst"]
    args += ["--out", tmp_path / "ck", "--epochs", "1", "--crops-per-epoch", "4", "--crop", "64"]
    args += ["--batch-size", "2", "--val-fraction", "0.34", "--encoder", "resnet18", "--hed", "0.2", "-q"]
    result = CliRunner().invoke(seg, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert record["val"] == ["c2"]
    assert config["training"]["contacts_unknown"] == ["c1"] and config["training"]["binary_masks"] == "auto"
    assert config["training"]["hed"] == 0.2
    chosen = config["instances"]
    assert chosen["images"] == ["c2"] and set(map(float, chosen["aji"])) == set(SEED_THRESHOLDS)
    assert chosen["seed_threshold"] is None and "why" in chosen  # one validation image: scores only

    def segment_once(name):
        result = CliRunner().invoke(
            segment, [str(tmp_path / "img" / "c0.png"), "--model", str(tmp_path / "ck"), "--out", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.output.strip().splitlines()[-1])["seed_threshold"]

    assert segment_once("o1") is None
    config["instances"]["seed_threshold"] = 0.7  # as chosen on two or more validation images
    (tmp_path / "ck" / "config.json").write_text(json.dumps(config))
    assert segment_once("o2") == 0.7


def test_flip_average_undoes_each_flip_and_averages():
    from eosin.segment import flip_average

    tiles = np.random.default_rng(0).integers(0, 256, (2, 6, 9, 3), dtype=np.uint8)
    identity = lambda t: t.transpose(0, 3, 1, 2).astype(np.float32)  # noqa: E731 - an equivariant "model"
    np.testing.assert_array_equal(flip_average(identity)(tiles), identity(tiles))
    column = lambda t: np.broadcast_to(np.arange(t.shape[2], dtype=np.float32), (len(t), 1, *t.shape[1:3]))  # noqa: E731
    np.testing.assert_allclose(flip_average(column)(tiles), 4.0)  # (c + 8 - c) / 2 everywhere


@pytest.mark.torch
def test_slide_map_key_follows_tta_but_not_the_instance_separation(tmp_path):
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    from eosin.segment import SegConfig, build_unet, load_segmenter, save_segmenter
    from eosin.segment._infer import slide_key

    torch.manual_seed(0)
    config = SegConfig(classes=["background", "interior", "boundary"], mpp=0.5, tile_size=256)
    save_segmenter(tmp_path / "m", build_unet(encoder="resnet18", n_classes=3), config)
    model = load_segmenter(tmp_path / "m")
    args = {"mpp": 0.5, "tile_size": 512, "overlap": 64, "min_tissue": 0.01}
    plain, params = slide_key(model, **args)
    assert "tta" not in params and slide_key(model, **args, tta=True)[0] != plain
    model.config.instances = {"seed_threshold": 0.7}  # separation happens after the map: same map, same key
    assert slide_key(model, **args)[0] == plain


def test_crops_are_drawn_in_proportion_to_image_area():
    """Every pixel is equally likely to be trained on: a data set mixing 1000-px fields with 300-px crops (MoNuSeg
    with MoNuSAC) must not draw the small images as often as the large ones."""
    from eosin.segment._data import CropSampler, SegSample

    big = SegSample("big", np.zeros((400, 400, 3), np.uint8), np.zeros((400, 400), np.uint8))
    small = SegSample("small", np.full((100, 100, 3), 255, np.uint8), np.zeros((100, 100), np.uint8))
    sampler = CropSampler([big, small], crop=64, positive_fraction=0.0, seed=1)
    draws = [int(sampler.sample()[0].mean() > 127) for _ in range(3400)]
    share_small = np.mean(draws)
    assert abs(share_small - 1 / 17) < 0.02, share_small  # area 10,000 of 170,000, not one in two


@pytest.mark.torch
def test_encoder_learning_rate_is_a_fraction_of_the_decoders(tmp_path, monkeypatch):
    """--encoder-lr 0.1: the optimizer holds the encoder's parameters, all of them and nothing else, at a tenth of
    --lr through the whole one-cycle schedule, and the checkpoint records it."""
    pytest.importorskip("segmentation_models_pytorch")
    import torch
    from click.testing import CliRunner

    from PIL import Image

    from eosin.cli._train_seg import seg
    from eosin.segment import build_unet

    seen, sizes = [], []

    class Spy(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            sizes.append([sum(p.numel() for p in g["params"]) for g in self.param_groups])

        def step(self, *args, **kwargs):
            seen.append([g["lr"] for g in self.param_groups])
            return super().step(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", Spy)
    rng = np.random.default_rng(0)
    for d in ("img", "msk"):
        (tmp_path / d).mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "img" / f"c{i}.png")
        Image.fromarray(((rng.random((64, 64)) > 0.6) * 255).astype(np.uint8)).save(tmp_path / "msk" / f"c{i}.png")
    args = ["--images", str(tmp_path / "img"), "--masks", str(tmp_path / "msk"), "--out", str(tmp_path / "ck"),
            "--epochs", "2", "--crops-per-epoch", "4", "--crop", "64", "--batch-size", "2", "--val-fraction", "0",
            "--precision", "fp32", "--workers", "0", "--lr", "0.002", "--encoder-lr", "0.1", "-q"]  # fmt: skip
    result = CliRunner().invoke(seg, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(seen) == 4 and all(enc == pytest.approx(0.1 * dec) for enc, dec in seen)
    assert max(dec for _, dec in seen) <= 0.002
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["training"]["encoder_lr"] == 0.1 and config["training"]["lr"] == 0.002
    net = build_unet(encoder="resnet18", n_classes=3)  # the command's default encoder
    encoder = sum(p.numel() for p in net.encoder.parameters())
    assert sizes[-1] == [encoder, sum(p.numel() for p in net.parameters()) - encoder]


def test_crop_sampler_of_no_images_is_built_and_one_size_keeps_the_uniform_draw():
    """The area weights must neither fail on an empty list (what a caller validating later passes) nor change the
    crops of a data set whose images share one size (the published MoNuSeg runs)."""
    from eosin.segment._data import CropSampler, SegSample

    assert CropSampler([], crop=32).p is None
    same = [SegSample(f"s{i}", np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)) for i in range(3)]
    assert CropSampler(same, crop=32).p is None
