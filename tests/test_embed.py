"""eosin embed: features in the store equal a direct model call on the same tiles; skipping and resuming."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import SLIDES, require

pytestmark = pytest.mark.torch

SVS = SLIDES / "CMU-1-Small-Region.svs"


def _model():
    from eosin.models import create_encoder

    torch.manual_seed(0)
    return create_encoder("resnet18", weights=None)


@pytest.fixture()
def store(tmp_path):
    from eosin.cli._main import main

    assert (
        main(
            [
                "tile",
                str(require(SVS)),
                "--mpp",
                "1.0",
                "--size",
                "224",
                "--min-tissue",
                "0.3",
                "--out",
                str(tmp_path),
                "-q",
            ]
        )
        == 0
    )
    return tmp_path / "CMU-1-Small-Region" / "store.zarr"


def _direct(store_path, model) -> np.ndarray:
    """The model on tiles read one by one with Slide.read_region, normalized by hand."""
    from eosin.io import SlideStore
    from eosin.slide import open_slide
    from eosin.tiles import TileGrid

    st = SlideStore.open(store_path)
    group = st.read_group("grids", st.keys("grids")[0])
    grid = TileGrid.from_group(group, group.attrs)
    slide = open_slide(SVS)
    tiles = np.stack([slide.read_region((int(x), int(y)), (224, 224), mpp=grid.mpp) for x, y in grid.coords])
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((x - mean) / std).numpy()


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_features_match_a_direct_model_call(store, runtime):
    from eosin.embed import embed_store
    from eosin.io import SlideStore

    model = _model()
    record = embed_store(
        store, model, dtype="float32", workers=2, batch_size=8, runtime=runtime, precision="fp32"
    )
    assert record["runtime"] == runtime
    assert record["cached"] is False and record["dim"] == 512
    group = SlideStore.open(store).read_group("features", record["key"])
    features = np.asarray(group["features"])
    expected = _direct(store, model)
    assert features.shape == expected.shape == (record["n_tiles"], 512)
    np.testing.assert_allclose(features, expected, rtol=1e-3, atol=1e-3)
    assert group.attrs["encoder"] == "resnet18" and group.attrs["order"].startswith("rows follow")
    again = embed_store(store, model, precision="fp32")
    assert again["cached"] is True


def test_bf16_features_stay_close_to_fp32(store):
    """bf16 autocast (what ``auto`` picks on CPUs with native bfloat16) changes features by rounding only."""
    from eosin.embed import embed_store
    from eosin.io import SlideStore

    model = _model()
    record = embed_store(store, model, dtype="float32", workers=0, batch_size=8, precision="bf16")
    assert record["runtime"] == "torch"
    group = SlideStore.open(store).read_group("features", record["key"])
    assert group.attrs["precision"] == "bf16"
    got, expected = np.asarray(group["features"]), _direct(store, model)
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.9999
    assert np.abs(got - expected).max() < 0.02 * np.abs(expected).max()


def test_auto_precision_is_measured_and_recorded(store, tmp_path, monkeypatch):
    """``auto`` runs the path its calibration chose, says so in the record and the group, and agrees with fp32."""
    from eosin.embed import embed_store
    from eosin.io import SlideStore

    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "home"))
    model = _model()
    record = embed_store(store, model, dtype="float32", workers=0, batch_size=8)
    cal = record["calibration"]
    assert (
        cal["measured"]
        and not cal["cached"]
        and cal["choice"] == f"{record['runtime']}-{record['precision']}"
    )
    timed = {k: v for k, v in cal["ms_per_item"].items() if v is not None}
    assert "torch-fp32" in timed and timed[cal["choice"]] <= min(timed.values()) / 0.97
    group = SlideStore.open(store).read_group("features", record["key"])
    assert group.attrs["precision"] == record["precision"] and group.attrs["runtime"] == record["runtime"]
    got, expected = np.asarray(group["features"]), _direct(store, model)
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.9999
    assert list((tmp_path / "home" / "calibration").glob("embed-*.json"))


def test_killed_run_resumes_without_corrupt_output(store):
    code = f"""
import os, torch
from eosin.io._store import PartialGroup
from eosin.models import create_encoder
from eosin.embed import embed_store
mark = PartialGroup.mark
def dying_mark(self, done):
    mark(self, done)
    if done >= 8:
        os._exit(9)
PartialGroup.mark = dying_mark
torch.manual_seed(0)
embed_store({str(store)!r}, create_encoder("resnet18", weights=None), dtype="float32", batch_size=4,
            block_rows=4, workers=0, precision="fp32", commit_seconds=0)
"""
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    from eosin.embed import embed_store
    from eosin.io import SlideStore

    assert "features" not in SlideStore.open(store).kinds()
    model = _model()
    record = embed_store(
        store, model, dtype="float32", batch_size=4, block_rows=4, workers=0, precision="fp32"
    )
    assert record["resumed_from"] == 8
    features = np.asarray(SlideStore.open(store).read_group("features", record["key"])["features"])
    np.testing.assert_allclose(features, _direct(store, model), rtol=1e-3, atol=1e-3)


def test_cli_embed_and_bad_input(store, tmp_path, capsys):
    from eosin.cli._main import main

    assert main(["embed", str(store), "--encoder", "resnet18", "--weights", "none", "-q"]) == 0
    assert '"dim": 512' in capsys.readouterr().out
    assert main(["embed", str(store), "--encoder", "resnet1", "--weights", "none", "-q"]) == 2
    assert "resnet18" in capsys.readouterr().err  # the close match is suggested
    assert main(["embed", str(require(SVS)), "--encoder", "resnet18", "--weights", "none", "-q"]) == 2
    assert "--out" in capsys.readouterr().err
    assert (
        main(
            [
                "embed",
                str(store),
                "--encoder",
                "resnet18",
                "--weights",
                "none",
                "--precision",
                "fp16",
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 2
    )


def test_batch_norm_folding_keeps_the_function():
    from eosin._device import fold_batch_norm
    from eosin.models import create_encoder

    model = _model().eval()
    folded = fold_batch_norm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    vit = create_encoder("vit_small_patch16_224", weights=None, tiny=True).eval()
    assert fold_batch_norm(vit) is vit  # nothing to fold


def test_features_are_keyed_by_the_weights_that_made_them(store, tmp_path, capsys):
    """--weights none then real weights recomputes (the group records the new weights); the same weights again
    reuse the group; random weights are seeded, so two stores get the same random features."""
    import hashlib
    import json
    import shutil

    import torchvision

    from eosin.cli._main import main
    from eosin.io import SlideStore
    from eosin.models import create_encoder

    other = tmp_path / "other.zarr"
    shutil.copytree(store, other)

    def embed(path, weights):
        args = ["embed", str(path), "--encoder", "resnet18", "--weights", weights, "--runtime", "torch"]
        assert main([*args, "--workers", "0", "--precision", "fp32", "--dtype", "float32", "-q"]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    def stored(path, key):
        group = SlideStore.open(path).read_group("features", key)
        return np.asarray(group["features"]), dict(group.attrs)

    first = embed(store, "none")
    random_features, attrs = stored(store, first["key"])
    assert attrs["seed"] == 0 and attrs["weights_hash"] == first["weights_hash"]
    # rows per chunk = per resume point: 256 (a multiple of the batch size), not 4,096
    assert SlideStore.open(store).read_group("features", first["key"])["features"].chunks[0] == 256
    assert attrs["versions"]["torch"] and attrs["versions"]["eosin"]
    # seeded: another store (another process would do the same) gets the very same random network
    np.testing.assert_array_equal(stored(other, embed(other, "none")["key"])[0], random_features)

    torch.manual_seed(7)
    weights = tmp_path / "my-resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    second = embed(store, str(weights))
    assert second["cached"] is False and second["replaced"] == first["weights_hash"]
    features, attrs = stored(store, second["key"])
    assert attrs["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert attrs["weights_hash"] == second["weights_hash"] != first["weights_hash"] and attrs["seed"] is None
    assert not np.allclose(features, random_features)
    model = create_encoder("resnet18", weights=weights)
    np.testing.assert_allclose(features, _direct(store, model), rtol=1e-3, atol=1e-3)
    assert embed(store, str(weights))["cached"] is True  # same weights: reused


def test_a_group_without_a_recorded_weights_hash_is_recomputed(store):
    """Stores written before weights were recorded cannot prove what made their features: recomputed."""
    import json

    from eosin.embed import embed_store
    from eosin.io import SlideStore

    record = embed_store(store, _model(), workers=0, precision="fp32", runtime="torch")
    meta = store / "features" / record["key"] / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["weights_hash"]
    meta.write_text(json.dumps(doc))
    again = embed_store(store, _model(), workers=0, precision="fp32", runtime="torch")
    assert again["cached"] is False and again["replaced"] == "unknown"
    assert (
        SlideStore.open(store).read_group("features", record["key"]).attrs["weights_hash"]
        == record["weights_hash"]
    )


_KILLED_AFTER_BATCHES = """
import os, sys
from eosin.embed import _embed, _runners
from eosin.embed import embed_store
from eosin.models import create_encoder

clock = [0.0]
_embed._clock = lambda: clock[0]  # the commit interval runs on a clock advanced by the "model" below

make = _runners.make_runner
def counting(*args, **kwargs):
    runner = make(*args, **kwargs)
    class Dying:
        name = runner.name
        batches = 0
        def __call__(self, images):
            out = runner(images)
            Dying.batches += 1
            clock[0] += float(sys.argv[3])  # a slow model: the commit interval spans several batches
            if Dying.batches == int(sys.argv[2]):
                os._exit(9)  # killed after this batch was computed, before it could be written
            return out
    return Dying()
_runners.make_runner = counting
embed_store(sys.argv[1], create_encoder("resnet18", weights=None), dtype="float32", batch_size=2,
            block_rows=2, workers=0, precision="fp32", runtime="torch", commit_seconds=float(sys.argv[4]))
"""


def test_a_kill_loses_at_most_one_commit_interval_and_resumes_to_identical_features(store):
    """Killed in the 6th batch (the slide has 16 tiles; batches and chunks of 2 rows) at 0.1 s per batch (a
    simulated clock) and a 0.35 s commit interval: rows are committed at the first chunk boundary after 0.35 s
    (after the 4th batch), so less than one interval is lost (test_killed_run_resumes_without_corrupt_output
    covers commit_seconds=0, every chunk); the resumed run (same random network: weights=None is seeded) ends
    with exactly the uninterrupted run's features."""
    import json

    from eosin.embed import embed_store
    from eosin.io import SlideStore

    killed_after, per_batch, commit_seconds = 6, 0.1, 0.35
    code = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_BATCHES, str(store), str(killed_after), str(per_batch)]
        + [str(commit_seconds)],
        check=False,
    ).returncode
    assert code == 9
    (progress,) = (store / ".staging").glob("features.*.partial/eosin-progress.json")
    done = json.loads(progress.read_text())["done"]
    computed = 2 * (killed_after - 1)  # rows of the batches finished before the killing one
    interval = 2 * (int(commit_seconds // per_batch) + 1)  # rows computed in one commit interval
    assert computed - interval < done <= computed  # lost: less than one commit interval
    assert done == 8  # committed after batch 4 (0.4 s); batch 5 was not yet due
    record = embed_store(
        store,
        _model(),
        dtype="float32",
        batch_size=2,
        block_rows=2,
        workers=0,
        precision="fp32",
        runtime="torch",
    )
    assert record["resumed_from"] == done
    resumed = np.asarray(SlideStore.open(store).read_group("features", record["key"])["features"])
    fresh = store.parent.parent / "fresh.zarr"
    import shutil

    shutil.copytree(store, fresh)
    SlideStore.open(fresh).delete_group("features", record["key"])
    again = embed_store(
        fresh,
        _model(),
        dtype="float32",
        batch_size=2,
        block_rows=2,
        workers=0,
        precision="fp32",
        runtime="torch",
    )
    assert again["resumed_from"] is None
    np.testing.assert_array_equal(
        np.asarray(SlideStore.open(fresh).read_group("features", again["key"])["features"]), resumed
    )


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_runner_overlaps_batches_and_agrees_with_the_cpu(precision):
    """On a GPU batches are submitted before earlier ones finish (pinned memory, non-blocking copies); the
    features are those of the CPU in float32, within TF32/fp16 rounding."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    from eosin._calibrate import TOLERANCE, relative_error
    from eosin.embed._runners import TorchRunner

    model = _model().eval()
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (32, 224, 224, 3), dtype=np.uint8) for _ in range(3)]
    expected = [TorchRunner(model, torch.device("cpu"), "fp32")(b) for b in batches]
    gpu = TorchRunner(model, torch.device("cuda"), precision)
    handles = [gpu.submit(b) for b in batches]  # all three queued before any result is asked for
    for handle, want in zip(handles, expected, strict=True):
        assert relative_error(handle.result(), want) <= TOLERANCE
