"""Concurrent writers of one store: per-writer staging, one atomic publish, dead writers' leftovers recovered.

Two real processes embed the same slide store at the same moment (a file barrier starts each round together),
several rounds in a row: both exit 0, the features equal a direct model call, nothing is left in staging.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SLIDES, require
from eosin.io import SlideStore

SVS = SLIDES / "CMU-1-Small-Region.svs"

_EMBED_TWICE = """
import sys, time
from pathlib import Path
import torch
from eosin.embed import embed_store
from eosin.models import create_encoder

me, stores = sys.argv[1], sys.argv[2:]
torch.manual_seed(0)
model = create_encoder("vit_small_patch16_224", weights=None, tiny=True)
for store in stores:
    barrier = Path(store).parent
    (barrier / f"ready.{me}").touch()
    deadline = time.monotonic() + 30
    while len(list(barrier.glob("ready.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.002)
    embed_store(store, model, dtype="float32", batch_size=2, block_rows=2, workers=0, precision="fp32")
"""


def _tiled_store(out: Path) -> Path:
    from eosin.cli._main import main

    args = ["tile", str(require(SVS)), "--mpp", "1.0", "--size", "224", "--min-tissue", "0.3"]
    assert main([*args, "--out", str(out), "-q"]) == 0
    return out / "CMU-1-Small-Region" / "store.zarr"


@pytest.mark.torch
def test_two_concurrent_embeds_give_one_correct_result(tmp_path):
    import torch

    from eosin.embed import embed_store
    from eosin.models import create_encoder

    first = _tiled_store(tmp_path / "tiled")
    rounds = [tmp_path / f"round{i}" / "store.zarr" for i in range(3)]
    for store in rounds:
        shutil.copytree(first, store)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _EMBED_TWICE, name, *map(str, rounds)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    torch.manual_seed(0)
    model = create_encoder("vit_small_patch16_224", weights=None, tiny=True)
    reference = embed_store(first, model, dtype="float32", workers=0, precision="fp32")
    expected = np.asarray(SlideStore.open(first).read_group("features", reference["key"])["features"])
    for store in rounds:
        opened = SlideStore.open(store)
        assert opened.keys("features") == [reference["key"]]
        got = np.asarray(opened.read_group("features", reference["key"])["features"])
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
        assert not list((store / ".staging").iterdir())  # the loser discarded its copy, locks released
        again = embed_store(store, model, dtype="float32", workers=0, precision="fp32")
        assert again["cached"] is True


def _fill(part, value: float) -> None:
    if "x" not in part.group:
        part.group.create_array("x", shape=(6,), dtype="f4", chunks=(2,))
    part.group["x"][part.done :] = value
    part.mark(6)


def test_two_live_writers_of_one_group_do_not_share_staging(tmp_path):
    store = SlideStore.create(tmp_path / "s.zarr")
    a = store.partial_group("features", "enc", {"weights": "w1"}, fingerprint="f")
    b = store.partial_group("features", "enc", {"weights": "w1"}, fingerprint="f")
    assert a.folder != b.folder and a.done == b.done == 0  # b does not take a's folder while a lives
    _fill(a, 1.0)
    _fill(b, 2.0)  # (a real second writer of the same request computes the same values)
    assert a.commit() is True
    assert b.commit() is False  # a published the same request first: b's copy is discarded, a's stays whole
    group = store.read_group("features", "enc")
    np.testing.assert_array_equal(np.asarray(group["x"]), np.full(6, 1.0))
    assert not list((store.path / ".staging").iterdir())
    c = store.partial_group("features", "enc", {"weights": "w2"}, fingerprint="g")
    _fill(c, 3.0)
    assert c.commit() is True  # made by other weights: the group is not the same result, so it is replaced
    assert store.read_group("features", "enc").attrs == {"weights": "w2"}
    d = store.partial_group("features", "enc", {"weights": "w2"}, fingerprint="g")
    _fill(d, 4.0)
    assert d.commit(replace=True) is True  # recomputing on purpose replaces even an equal group
    np.testing.assert_array_equal(np.asarray(store.read_group("features", "enc")["x"]), np.full(6, 4.0))


def test_clean_staging_spares_live_writers(tmp_path):
    store = SlideStore.create(tmp_path / "s.zarr")
    live = store.partial_group("features", "enc", fingerprint="f")
    with store.group_writer("grids", "k") as group:
        group.create_array("a", shape=(2,), dtype="i4")
        assert store.clean_staging() == 0  # both writers are alive
        assert live.folder.is_dir() and store.has("grids", "k") is False
    _fill(live, 1.0)
    live.commit()
    assert store.has("grids", "k") and store.has("features", "enc")


def test_dead_writers_leftovers_are_recovered_never_fatal(tmp_path):
    """What the old shared staging left behind: a group folder without zarr.json, a stale shared .partial."""
    path = tmp_path / "s.zarr"
    store = SlideStore.create(path)
    broken = path / "features" / "enc"
    (broken / "x" / "c").mkdir(parents=True)
    (broken / "x" / "c" / "0").write_bytes(b"junk")  # invisible debris where the group belongs
    old = path / ".staging" / "features.enc.partial"
    old.mkdir(parents=True)
    (old / "eosin-progress.json").write_text(json.dumps({"fingerprint": "other", "done": 4}))
    assert not store.has("features", "enc")
    part = store.partial_group("features", "enc", {"ok": True}, fingerprint="f")
    assert part.done == 0 and not old.exists()  # another fingerprint: removed, started afresh
    _fill(part, 5.0)
    assert part.commit() is True
    group = store.read_group("features", "enc")
    np.testing.assert_array_equal(np.asarray(group["x"]), np.full(6, 5.0))
    assert group.attrs == {"ok": True}
    assert not list((path / ".staging").iterdir())


def test_a_killed_writers_folder_is_resumed_by_the_next(tmp_path):
    path = tmp_path / "s.zarr"
    SlideStore.create(path)
    code = f"""
import os, numpy as np
from eosin.io import SlideStore
part = SlideStore.open({str(path)!r}).partial_group("features", "enc", fingerprint="f")
part.group.create_array("x", shape=(6,), dtype="f4", chunks=(2,))[:4] = 7.0
part.mark(4)
os._exit(9)
"""
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    store = SlideStore.open(path)
    part = store.partial_group("features", "enc", fingerprint="f")
    assert part.done == 4  # the dead writer's lock is free: its folder is taken over
    _fill(part, 8.0)
    part.commit()
    np.testing.assert_array_equal(np.asarray(store.read_group("features", "enc")["x"]), [7, 7, 7, 7, 8, 8])


_SEGMENT = """
import sys, time
from pathlib import Path
from eosin.io import SlideStore
from eosin.segment import load_segmenter, segment_slide
from eosin.slide import open_slide

me, slide, model, store = sys.argv[1:5]
barrier = Path(store).parent
(barrier / f"ready.{me}").touch()
deadline = time.monotonic() + 30
while len(list(barrier.glob("ready.*"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.002)
segment_slide(open_slide(slide), load_segmenter(model), SlideStore.create(store), mpp=4.0, tile_size=128, workers=0)
"""


@pytest.mark.torch
def test_two_concurrent_segmentations_give_one_correct_result(tmp_path):
    """Two processes segment one slide into one store at the same moment: one whole group, equal to a lone run."""
    pytest.importorskip("segmentation_models_pytorch")
    import torch

    from eosin.segment import SegConfig, build_unet, load_segmenter, save_segmenter, segment_slide
    from eosin.slide import open_slide

    torch.manual_seed(0)
    net = build_unet(encoder="resnet18", n_classes=3)
    config = SegConfig(classes=["background", "interior", "boundary"], mpp=0.5, tile_size=128)
    model = save_segmenter(tmp_path / "model", net, config)
    slide = require(SVS)
    store = tmp_path / "shared" / "store.zarr"
    store.parent.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SEGMENT, name, str(slide), str(model), str(store)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    opened = SlideStore.open(store)
    (key,) = opened.keys("segmentation")
    # a lone run on the path the published map records (``auto`` may settle on another path in another process)
    precision = opened.read_group("segmentation", key).attrs["precision"]
    assert precision in ("fp32", "bf16")
    lone = SlideStore.create(tmp_path / "lone.zarr")
    same = load_segmenter(model, precision=precision)
    assert segment_slide(open_slide(slide), same, lone, mpp=4.0, tile_size=128, workers=0) == key
    np.testing.assert_array_equal(
        np.asarray(opened.read_group("segmentation", key)["foreground"]),
        np.asarray(lone.read_group("segmentation", key)["foreground"]),
    )
    assert not list((store / ".staging").iterdir())  # the loser discarded its copy, locks released
