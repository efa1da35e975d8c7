"""``eosin.pipeline.run``: a whole recipe over a folder of slides, every output in one folder, resumable.

Stages, in order: doctor, tissue, QC, tiles, (embed, with stain), tile predictions, slide predictions (MIL),
segmentation, then the cohort outputs (CSVs, QC report, ``report.html``, ``run.json``). Each per-slide stage maps
over the slides still standing through :func:`eosin.run.map_slides` (a local process pool, or a Dask client with
``scheduler``); a slide that fails a stage is reported and left out of the later ones, the others go on.
Re-running skips what is stored under the same cache keys; a killed run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from eosin.pipeline._config import RunConfig, config_to_dict, load_config

__all__ = ["run"]


def run(
    config: RunConfig | dict[str, Any] | str | os.PathLike[str],
    *,
    progress: bool = False,
    executor: Any = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a configuration (a :class:`RunConfig`, a mapping, a YAML file or a recipe name) to the end.

    Parameters
    ----------
    progress
        Progress bars on stderr, one per stage.
    executor
        A ready executor with ``submit`` (e.g. a ``dask.distributed.Client``) instead of ``config.scheduler``.
    log
        Called with one line per slide failure and per note.

    Returns
    -------
    dict
        out, report, the CSVs written, ``n_failed`` and one record per slide (``status`` ok or failed, the stage it
        failed at and the error, what each stage found, and ``cached``: the stages that found their results
        stored and skipped the work). The same goes to ``OUT/run.json``.
    """
    from eosin._provenance import versions
    from eosin.io import atomic_write_text
    from eosin.pipeline._stages import PipelineJob
    from eosin.run import dask_executor, find_slides, plan_outputs

    config = config if isinstance(config, RunConfig) else load_config(config)
    log = log or (lambda line: None)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    # each slide's folder: eosin tile's names (safe, always inside out, distinct for equal names)
    jobs = [
        PipelineJob(j.path, j.out_dir, j.store_path) for j in plan_outputs(find_slides(config.slides), out)
    ]
    slides = {j.name: {"name": j.name, "slide": str(j.path), "status": "ok"} for j in jobs}
    with contextlib.ExitStack() as stack:
        if executor is None and config.scheduler:
            executor = stack.enter_context(dask_executor(config.scheduler))
        runner = _Runner(config, executor, progress, slides, log)
        runner.stages(jobs)
        runner.cohort(jobs)
    records = [slides[j.name] for j in jobs]
    report = _report(out, config, records)
    summary = {
        "out": str(out),
        "report": str(report),
        "tile_predictions": str(out / "tile_predictions.csv")
        if (out / "tile_predictions.csv").exists()
        else None,
        "slide_predictions": str(out / "slide_predictions.csv")
        if (out / "slide_predictions.csv").exists()
        else None,
        "n_slides": len(records),
        "n_failed": sum(r["status"] != "ok" for r in records),
        "scheduler": config.scheduler,
        "config": config_to_dict(config),
        "versions": versions(),
        "slides": records,
    }
    atomic_write_text(out / "run.json", json.dumps(summary, indent=1, default=str))
    return summary


class _Runner:
    """Maps each stage over the slides still standing; records what each found or why a slide failed."""

    def __init__(self, config: RunConfig, executor: Any, progress: bool, slides: dict, log) -> None:
        self.config, self.executor, self.progress, self.slides, self.log = (
            config,
            executor,
            progress,
            slides,
            log,
        )

    def map(self, stage: Callable, jobs: list, desc: str, *, local_workers: int = 1, fatal: bool = True):
        from eosin.run import map_slides

        alive = [j for j in jobs if self.slides[j.name]["status"] == "ok"]
        results = map_slides(
            partial(stage, config=self.config),
            alive,
            workers=local_workers,
            progress=self.progress and len(alive) > 1,
            desc=desc,
            executor=self.executor,
        )
        done = {}
        for job, result in zip(alive, results, strict=True):
            if result.ok:
                done[job.name] = result.value
                if isinstance(result.value, dict) and result.value.get("cached"):
                    self.slides[job.name].setdefault("cached", []).append(desc)  # found stored: skipped
            elif fatal:
                self.slides[job.name].update(status="failed", failed_stage=desc, error=str(result.error))
                self.log(f"error: {desc}: {result.error}")
            else:
                self.slides[job.name][f"{desc}_error"] = str(result.error)
                self.log(f"note: {desc}: {result.error}")
        return done

    def stages(self, jobs: list) -> None:
        from eosin.pipeline import _stages as st
        from eosin.tiles import default_workers

        config, slides = self.config, self.slides
        pool = min(len(jobs), config.workers if config.workers is not None else default_workers())
        for name, rec in self.map(st.doctor_stage, jobs, "doctor", local_workers=pool).items():
            slides[name]["problems"] = rec["problems"]
        for name, rec in self.map(st.tissue_stage, jobs, "tissue", local_workers=pool).items():
            slides[name]["tissue_fraction"] = rec["tissue_fraction"]
        if config.qc.enabled:
            qc_jobs = [st.qc_job(j, Path(config.out)) for j in jobs]
            for name, rec in self.map(st.qc_stage, qc_jobs, "qc", local_workers=pool, fatal=False).items():
                slides[name]["qc"] = rec
        for name, rec in self.map(st.tiles_stage, jobs, "tiles", local_workers=pool).items():
            slides[name].update(n_tiles=rec["n_tiles"], grid=rec["grid"])
        # model stages: in this process (one model, tiles decoded by worker processes), or one slide per Dask worker
        if st.encoder_of(config):
            for name, rec in self.map(st.embed_stage, jobs, "embed").items():
                slides[name]["features"] = rec["key"]
        if config.classify.model:
            for name, rec in self.map(st.classify_stage, jobs, "classify").items():
                slides[name].update(predictions=rec["key"], tile_classes=rec["classes"])
                slides[name]["heatmap_names"] = [
                    Path(h).stem.removeprefix("heatmap_") for h in rec["heatmaps"]
                ]
        if config.segment.model:
            for name, rec in self.map(st.segment_stage, jobs, "segment").items():
                slides[name].update(segmentation=rec["group"], n_objects=rec["n_objects"])

    def cohort(self, jobs: list) -> None:
        config, out = self.config, Path(self.config.out)
        alive = [j for j in jobs if self.slides[j.name]["status"] == "ok"]
        if config.qc.enabled:
            from eosin.qc import write_report

            rows = [
                {**self.slides[j.name]["qc"], "status": "ok"}
                if "qc" in self.slides[j.name]
                else {
                    "name": j.path.name,
                    "slide": str(j.path),
                    "status": "failed",
                    "error": self.slides[j.name].get("qc_error") or self.slides[j.name].get("error"),
                }
                for j in jobs
            ]
            write_report(out / "qc", rows)
        if config.classify.model:
            _tile_csv(out, alive, self.slides, config)
        if config.mil.model and alive:
            from eosin.pipeline._slide_predict import predict_slides

            result = predict_slides(
                [j.store_path for j in alive],
                config.mil.model,
                out=out,
                labels=config.labels,
                grid=None,
                device=config.device,
                csv_name="slide_predictions.csv",
                heatmap_dirs=[j.out_dir for j in alive],
            )
            by_store = {r["store"]: r for r in result["slides"]}
            for j in alive:
                rec = by_store.get(str(j.store_path))
                if rec is None:
                    continue
                self.slides[j.name].update(
                    slide_pred=rec["pred"], slide_proba=rec["proba"], slide_classes=result["classes"]
                )
            for store, message in result["failures"]:
                self.log(f"error: mil: {message}")
                name = Path(store).parent.name
                self.slides[name].update(status="failed", failed_stage="mil", error=message)


def _tile_csv(out: Path, jobs: list, slides: dict, config: RunConfig) -> None:
    """``OUT/tile_predictions.csv`` from the stores' predictions groups (id, slide, x, y, [label, patient,] pred,
    p_<class>): the format of ``eosin predict``, read by ``eosin evaluate classification``."""
    import numpy as np

    from eosin.io import SlideStore, atomic_write_text
    from eosin.pipeline._slide_predict import read_labels

    truth = read_labels(config.labels) if config.labels else {}
    rows, classes = [], None
    for j in jobs:
        key = slides[j.name].get("predictions")
        if key is None:
            continue
        group = SlideStore.open(j.store_path).predictions(key)
        classes = classes or list(group.attrs["classes"])
        proba = np.asarray(group["proba"][...])
        coords = np.asarray(group["coords"][...])
        p_mean = proba.mean(axis=0) if len(proba) else np.zeros(len(classes))
        slides[j.name]["tile_mean"] = [round(float(v), 6) for v in p_mean]
        label, patient = truth.get(j.name, ("", j.name))
        for i, ((x, y), p) in enumerate(zip(coords, proba, strict=True)):
            row = [f"{j.name}:{i}", j.name, str(int(x)), str(int(y))]
            if config.labels:
                row += [label, patient]
            rows.append(row + [classes[int(p.argmax())], *(f"{v:.6f}" for v in p)])
    if classes is None:
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["id", "slide", "x", "y"]
        + (["label", "patient"] if config.labels else [])
        + ["pred", *(f"p_{c}" for c in classes)]
    )
    writer.writerows(rows)
    atomic_write_text(out / "tile_predictions.csv", buffer.getvalue())


def _report(out: Path, config: RunConfig, records: list[dict[str, Any]]) -> Path:
    from eosin.pipeline._report import write_run_report

    return write_run_report(out, config_to_dict(config), records)
