"""Encoders built from the registry: shapes of every entry, and weights loaded through the real code paths.

Checkpoints are made here, tiny, in each loader's own format (timm's hub folder, a Hugging Face cache, torchvision
state dicts, CONCH and CTransPath layouts) and must give the same outputs as the model they were saved from. The
layouts converted from transformers and open_clip are checked against those libraries in test_models_oracles.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from eosin.errors import UnknownNameError, WeightsMismatchError, WeightsUnavailableError
from eosin.models import create_encoder, get_spec, list_encoders

pytestmark = pytest.mark.torch

CNN_LOADERS = ("torchvision", "kimianet")


def _x(size: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """No test sees the user's caches or the network: empty EOSIN_HOME and hub cache, offline."""
    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "eosin_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- conformance over the whole registry ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_encoders())
def test_full_size_output_matches_registry_embedding_dim(name):
    """The real architecture (built on the meta device: shapes only, no memory) returns spec.embedding_dim."""
    spec = get_spec(name)
    with torch.device("meta"):
        encoder = create_encoder(name, weights=None, device="meta")
        out = encoder(torch.empty(1, 3, spec.input_size, spec.input_size))
    assert tuple(out.shape) == (1, spec.embedding_dim) == (1, encoder.embedding_dim)


@pytest.mark.parametrize("name", list_encoders())
def test_tiny_encoder_runs_with_the_tiny_width_rule(name):
    spec = get_spec(name)
    encoder = create_encoder(name, weights=None, tiny=True)
    size = 32 if spec.loader in CNN_LOADERS or name.startswith("efficientnet") else spec.input_size
    with torch.inference_mode():
        out = encoder(_x(size))
    if spec.pooling in ("proj", "attn"):
        expected = 16
    elif spec.loader in CNN_LOADERS or name.startswith("efficientnet"):
        expected = spec.embedding_dim  # CNNs are not shrunk
    elif spec.loader == "ctranspath":
        expected = 32 * 8  # Swin doubles its width in each of the 3 merges
    else:
        expected = 32 * (2 if spec.pooling == "cls+mean" else 1)
    assert out.shape == (2, expected) and encoder.embedding_dim == expected
    assert torch.isfinite(out).all() and not encoder.training
    assert encoder.preprocess == {
        "input_size": spec.input_size,
        "mean": spec.mean,
        "std": spec.std,
        "native_mpp": spec.native_mpp,
    }


def test_parameter_counts_match_the_published_sizes():
    """Full-size architectures (meta device) have the parameter counts the papers and cards state."""
    published = {
        "uni": 303e6,
        "virchow": 631e6,
        "prov-gigapath": 1134e6,
        "h-optimus-0": 1134e6,
        "uni2-h": 681e6,
    }
    for name, count in published.items():
        with torch.device("meta"):
            model = create_encoder(name, weights=None, device="meta")
        assert sum(p.numel() for p in model.parameters()) == pytest.approx(count, rel=0.01), name


# --- timm: hub folder, HF cache, EOSIN_HOME -------------------------------------------------------------------------
def test_timm_hub_folder_loads_to_identical_outputs(tmp_path):
    from timm.models import save_for_hf

    source = create_encoder("uni", weights=None, tiny=True)
    save_for_hf(
        source.model, tmp_path / "uni", safe_serialization=True
    )  # timm's own hub layout: config.json + model.safetensors
    assert {p.name for p in (tmp_path / "uni").iterdir()} >= {"config.json", "model.safetensors"}
    loaded = create_encoder("uni", weights=tmp_path / "uni", tiny=True)
    with torch.inference_mode():
        _close(loaded(_x(224)), source(_x(224)))


def _fake_hf_cache(root, repo_id: str, filename: str, state: dict) -> None:
    """A Hugging Face hub cache holding one file, laid out as huggingface_hub writes it."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    torch.save(state, snapshot / filename)


def test_weights_from_the_hub_cache_offline(tmp_path):
    source = create_encoder("virchow2", weights=None, tiny=True)
    _fake_hf_cache(tmp_path / "hf_cache", "paige-ai/Virchow2", "pytorch_model.bin", source.model.state_dict())
    loaded = create_encoder("virchow2", tiny=True)  # weights="hub", HF_HUB_OFFLINE=1
    with torch.inference_mode():
        out = loaded(_x(224))
        _close(out, source(_x(224)))
    assert out.shape == (2, 64)  # class token + mean patch token


def test_hub_cache_holding_safetensors_instead_of_the_pickle(tmp_path):
    """A repository re-uploaded as model.safetensors is found although the entry names pytorch_model.bin."""
    from safetensors.torch import save_file

    source = create_encoder("uni", weights=None, tiny=True)
    _fake_hf_cache(tmp_path / "hf_cache", "MahmoodLab/UNI", "placeholder.txt", {})
    snapshot = next((tmp_path / "hf_cache" / "models--MahmoodLab--UNI" / "snapshots").iterdir())
    save_file(source.model.state_dict(), snapshot / "model.safetensors")
    with torch.inference_mode():
        _close(create_encoder("uni", tiny=True)(_x(224)), source(_x(224)))


def test_weights_placed_in_eosin_home(tmp_path):
    from safetensors.torch import save_file

    source = create_encoder("lunit-dino", weights=None, tiny=True)
    folder = tmp_path / "eosin_home" / "models" / "lunit-dino"
    folder.mkdir(parents=True)
    save_file(source.model.state_dict(), folder / "model.safetensors")
    with torch.inference_mode():
        _close(create_encoder("lunit-dino", tiny=True)(_x(224)), source(_x(224)))


def test_missing_weights_offline_name_the_hub_id_and_the_gate():
    with pytest.raises(WeightsUnavailableError) as info:
        create_encoder("uni2-h", tiny=True)
    message = str(info.value)
    assert "MahmoodLab/UNI2-h" in message and "gated" in message and "huggingface-cli login" in message
    assert "models/uni2-h/pytorch_model.bin" in message and "--weights" in message


def test_missing_url_weights_offline_name_the_url():
    with pytest.raises(WeightsUnavailableError, match="resnet18-f37072fd.pth"):
        create_encoder("resnet18")


def test_bad_weights_path_and_unknown_name(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="no such weights file"):
        create_encoder("uni", weights=tmp_path / "nope.bin", tiny=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsUnavailableError, match="no weights file"):
        create_encoder("uni", weights=tmp_path / "empty", tiny=True)
    with pytest.raises(UnknownNameError, match="Did you mean 'phikon-v2'"):
        create_encoder("phikon-v3", weights=None)


# --- torchvision, checksums, mismatched files -----------------------------------------------------------------------
def _torchvision_resnet18():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_state_dict_loads_to_identical_outputs(tmp_path, suffix):
    from safetensors.torch import save_file

    reference = _torchvision_resnet18()
    path = tmp_path / f"resnet18{suffix}"
    state = reference.state_dict()
    torch.save(state, path) if suffix == ".pth" else save_file(state, path)
    spec = dataclasses.replace(get_spec("resnet18"), weights_sha256=None)  # the real sum is of the real file
    encoder = create_encoder(spec, weights=path)
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():
        _close(encoder(_x(32)), reference(_x(32)))


def test_checksum_mismatch_of_a_cached_file_is_a_typed_error(tmp_path):
    """The registry's sum protects a download or a file placed in the cache (weights="hub")."""
    from eosin.models._weights import local_weights_dir

    path = local_weights_dir(get_spec("resnet18")) / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(_torchvision_resnet18().state_dict(), path)
    with pytest.raises(WeightsMismatchError, match="SHA-256"):
        create_encoder("resnet18")  # the registry knows the real file's sum prefix
    import hashlib

    good = hashlib.sha256(path.read_bytes()).hexdigest()
    create_encoder(dataclasses.replace(get_spec("resnet18"), weights_sha256=good))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_users_own_weights_load_and_record_their_own_hash(tmp_path, suffix):
    """A user's fine-tuned ResNet-18 (not torchvision's file) given as a path is loaded, not refused by the
    registry's checksum of the download, and the encoder records the file's own SHA-256."""
    import hashlib

    from safetensors.torch import save_file

    mine = _torchvision_resnet18()
    with torch.no_grad():
        mine.layer4[1].conv2.weight.mul_(0.5)  # "fine-tuned": differs from any released file
    state = {k: v.contiguous() for k, v in mine.state_dict().items()}
    path = tmp_path / f"my-resnet18{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, path)
    encoder = create_encoder("resnet18", weights=path)
    assert encoder.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert encoder.weights_file == str(path) and encoder.seed is None
    mine.fc = torch.nn.Identity()
    with torch.inference_mode():
        _close(encoder(_x(32)), mine(_x(32)))
    record = encoder.provenance()
    assert record["weights_sha256"] == encoder.weights_sha256 and len(record["weights_hash"]) == 64


def test_users_pickle_with_code_is_refused_safely(tmp_path):
    """weights_only=True: a .pth that would run code when unpickled is refused, and the code does not run."""
    import pickle

    flag = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(flag), "w"))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"conv1.weight": Evil()}, fh)
    with pytest.raises(WeightsMismatchError, match="not a readable PyTorch weights file"):
        create_encoder("resnet18", weights=path)
    assert not flag.exists()


def test_random_weights_are_seeded_and_the_hash_follows_the_weights():
    """weights=None gives the same network on every call (seed 0 by default, recorded), another seed another
    network; the global random state is untouched."""
    from eosin.models import weights_hash

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = create_encoder("efficientnet_b0", weights=None)
    b = create_encoder("efficientnet_b0", weights=None)
    c = create_encoder("efficientnet_b0", weights=None, seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert a.seed == 0 and c.seed == 1 and a.weights_sha256 is None
    with torch.inference_mode():
        torch.testing.assert_close(a(_x(64)), b(_x(64)), rtol=0, atol=0)
    assert a.weights_hash == b.weights_hash == weights_hash(b.state_dict())
    assert c.weights_hash != a.weights_hash
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)
    assert b.weights_hash != a.weights_hash


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(_torchvision_resnet18().state_dict(), path)
    with pytest.raises(WeightsMismatchError, match="do not fit 'resnet50'"):
        create_encoder(dataclasses.replace(get_spec("resnet50"), weights_sha256=None), weights=path)
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="not a readable PyTorch weights file"):
        create_encoder("uni", weights=tmp_path / "junk.bin", tiny=True)


def test_kimianet_sequential_checkpoint_loads(tmp_path):
    """KimiaNet's PyTorch port saves nn.Sequential(densenet121.features, ...) behind DataParallel's prefix."""
    import torchvision

    torch.manual_seed(0)
    densenet = torchvision.models.densenet121(weights=None).eval()
    wrapped = torch.nn.Sequential(densenet.features, torch.nn.Linear(1024, 30))
    torch.save(
        {f"module.{k}": v for k, v in wrapped.state_dict().items()}, tmp_path / "KimiaNetPyTorchWeights.pth"
    )
    encoder = create_encoder("kimianet", weights=tmp_path)
    densenet.classifier = torch.nn.Identity()
    with torch.inference_mode():
        _close(encoder(_x(32)), densenet(_x(32)))


# --- CONCH, CTransPath: layouts without an installable reference --------------------------------------------------
def test_conch_checkpoint_layout_loads(tmp_path):
    """A CONCH checkpoint: the whole CoCa model under visual.* / text.*, with heads eosin does not use."""
    source = create_encoder("conch", weights=None, tiny=True)
    state = {f"visual.{k}": v for k, v in source.model.state_dict().items()}
    state |= {"visual.proj_contrast": torch.randn(16, 16), "visual.ln_caption.weight": torch.ones(8)}
    state |= {"text.token_embedding.weight": torch.randn(4, 8), "logit_scale": torch.tensor(1.0)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = create_encoder("conch", weights=tmp_path / "pytorch_model.bin", tiny=True)
    with torch.inference_mode():
        _close(loaded(_x(448)), source(_x(448)))


def test_conch_v15_checkpoint_at_224_is_resampled_to_448(tmp_path):
    source = create_encoder("conch-v1.5", weights=None, tiny=True)
    at_224 = create_encoder("conch-v1.5", weights=None, tiny=True, img_size=224)
    state = dict(source.model.state_dict())
    state["trunk.pos_embed"] = at_224.model.trunk.pos_embed.detach()  # the release stores a 224-px grid
    torch.save(state, tmp_path / "pytorch_model_vision.bin")
    loaded = create_encoder("conch-v1.5", weights=tmp_path, tiny=True)
    assert loaded.model.trunk.pos_embed.shape == source.model.trunk.pos_embed.shape == (1, 1 + 28 * 28, 32)
    with torch.inference_mode():
        assert loaded(_x(448)).shape == (2, 16)


def test_ctranspath_hub_checkpoint_loads(tmp_path):
    from safetensors.torch import save_file

    source = create_encoder("ctranspath", weights=None, tiny=True)
    assert "patch_embed.proj.6.weight" in source.model.state_dict()  # CTransPath's convolutional stem
    save_file(source.model.state_dict(), tmp_path / "model.safetensors")
    loaded = create_encoder("ctranspath", weights=tmp_path, tiny=True)
    with torch.inference_mode():
        _close(loaded(_x(224)), source(_x(224)))
