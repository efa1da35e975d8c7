"""Vision-language backends against their reference libraries: same tiny random checkpoint, same inputs, eosin's
loading and preprocessing on one side, the library's own ``from_pretrained``/processor/forward on the other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fake_calibration_timings
from vl_fixtures import minilm_folder, tiny_clip, tiny_open_clip, tiny_siglip

from eosin.errors import UnknownNameError, UsageError, WeightsMismatchError, WeightsUnavailableError
from eosin.vl import get_vl_spec, list_vl_models, load_vl_model

TEXTS = ["an H&E image of tumour.", "adipose tissue", "a histopathology image of lymphocytes and stroma."]


def _tiles(n=3, side=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def _unit(x):
    x = x.detach().float()
    return (x / x.norm(dim=-1, keepdim=True)).numpy()


def _pooled(out):
    return out if hasattr(out, "shape") else out.pooler_output


@pytest.mark.parametrize("safetensors", [False, True])
def test_clip_matches_transformers(tmp_path, safetensors):
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    folder = tiny_clip(tmp_path / "plip", safetensors=safetensors)
    model = load_vl_model("plip", weights=folder, precision="fp32")
    ref = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # 80x96 tiles: eosin's own resize + centre crop must give the processor's pixels
    tiles = _tiles(3, 80)[:, :, :, :].repeat(1, axis=0)
    tiles = np.random.default_rng(1).integers(0, 256, (3, 80, 96, 3), dtype=np.uint8)
    pixels = processor(images=list(tiles), return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(model.prep.tensor(tiles).numpy(), pixels.numpy(), atol=1e-5)
    with torch.no_grad():
        want_img = _unit(_pooled(ref.get_image_features(pixel_values=pixels)))
        want_txt = _unit(
            _pooled(ref.get_text_features(**tokenizer(TEXTS, padding=True, return_tensors="pt")))
        )
    np.testing.assert_allclose(model.encode_images(tiles), want_img, atol=1e-5)
    np.testing.assert_allclose(model.encode_text(TEXTS), want_txt, atol=1e-5)
    assert model.embedding_dim == 16
    assert model.logit_scale == pytest.approx(float(ref.logit_scale.detach().exp()))
    assert np.allclose(np.linalg.norm(model.encode_text(TEXTS), axis=1), 1.0, atol=1e-6)


def test_siglip_matches_transformers(tmp_path):
    from transformers import AutoTokenizer, SiglipImageProcessor, SiglipModel

    folder = tiny_siglip(tmp_path / "medsiglip")
    model = load_vl_model("medsiglip-448", weights=folder, precision="fp32")
    ref = SiglipModel.from_pretrained(folder).eval()
    processor = SiglipImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tiles = np.random.default_rng(2).integers(0, 256, (2, 90, 70, 3), dtype=np.uint8)
    pixels = processor(images=list(tiles), return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(model.prep.tensor(tiles).numpy(), pixels.numpy(), atol=1e-5)
    tokens = tokenizer(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    with torch.no_grad():
        want_img = _unit(_pooled(ref.get_image_features(pixel_values=pixels)))
        want_txt = _unit(_pooled(ref.get_text_features(input_ids=tokens["input_ids"])))
    np.testing.assert_allclose(model.encode_images(tiles), want_img, atol=1e-5)
    np.testing.assert_allclose(model.encode_text(TEXTS), want_txt, atol=1e-5)
    assert model.logit_bias == pytest.approx(float(ref.logit_bias.detach()))


def test_open_clip_matches_open_clip(tmp_path):
    import open_clip

    folder = tiny_open_clip(tmp_path / "quilt")
    model = load_vl_model("quiltnet-b-32", weights=folder, precision="fp32")
    ref, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{folder}", pretrained=f"{folder}/open_clip_pytorch_model.bin"
    )
    ref.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    from PIL import Image

    tiles = np.random.default_rng(3).integers(0, 256, (2, 75, 100, 3), dtype=np.uint8)
    pixels = torch.stack([preprocess(Image.fromarray(t)) for t in tiles])
    np.testing.assert_allclose(model.prep.tensor(tiles).numpy(), pixels.numpy(), atol=1e-5)
    with torch.no_grad():
        want_img = _unit(ref.encode_image(pixels))
        want_txt = _unit(ref.encode_text(tokenizer(TEXTS)))
    np.testing.assert_allclose(model.encode_images(tiles), want_img, atol=1e-5)
    np.testing.assert_allclose(model.encode_text(TEXTS), want_txt, atol=1e-5)


def test_registry_and_bad_folders(tmp_path, monkeypatch):
    assert {"plip", "quiltnet-b-32", "medsiglip-448", "conch"} <= set(list_vl_models())
    assert get_vl_spec("PLIP").backend == "hf_clip"
    with pytest.raises(UnknownNameError, match="plip"):
        get_vl_spec("plipp")
    # a folder without tokenizer files: a typed error naming the folder, not a transformers traceback
    folder = tiny_clip(tmp_path / "plip")
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(WeightsUnavailableError, match="no tokenizer") as err:
        load_vl_model("plip", weights=folder)
    assert str(folder) in str(err.value)
    # weights of another shape
    other = tiny_siglip(tmp_path / "sig")
    with pytest.raises((WeightsMismatchError, WeightsUnavailableError)):
        load_vl_model("plip", weights=other)
    # offline and nothing cached: the error names the hub repository and where to put the files
    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="vinid/plip"):
        load_vl_model("plip")
    with pytest.raises(UsageError, match="eosin-vl.json"):
        load_vl_model(tmp_path)
    assert minilm_folder().is_dir()


def test_auto_precision_is_measured_on_the_first_images_not_read_from_cpu_flags(tmp_path, monkeypatch):
    """``precision="auto"`` is settled by a calibration of the image tower (as embed, predict and segment do): a
    CPU whose flags promise bf16 still runs float32 when bf16 measures slower, and the output records say so."""
    seen = fake_calibration_timings(monkeypatch, tmp_path / "home", {"torch-fp32": 1.0, "torch-bf16": 3.0})
    folder = tiny_clip(tmp_path / "plip")
    model = load_vl_model("plip", weights=folder, device="cpu")
    assert model.precision == "auto" and model.calibration is None  # nothing measured before images come
    emb = model.encode_images(_tiles(5))
    assert seen == [("vl-images", ["torch-fp32", "torch-bf16"])]
    assert model.precision == "fp32"
    record = model.describe()
    assert record["precision"] == "fp32" and record["calibration"]["choice"] == "torch-fp32"
    assert set(record["calibration"]["ms_per_item"]) == {"torch-fp32", "torch-bf16"}
    fp32 = load_vl_model("plip", weights=folder, device="cpu", precision="fp32")
    np.testing.assert_allclose(emb, fp32.encode_images(_tiles(5)), atol=1e-6)
    # explicit settings are obeyed without measuring; impossible ones are refused at once
    assert load_vl_model("plip", weights=folder, device="cpu", precision="bf16").precision == "bf16"
    with pytest.raises(UsageError):
        load_vl_model("plip", weights=folder, device="cpu", precision="fp16")
