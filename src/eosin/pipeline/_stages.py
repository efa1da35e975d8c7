"""The per-slide stages of ``eosin run``: each a picklable function of (job, config) -> JSON-ready record.

Each stage opens what it needs itself, so an executor can run it in any process, or on any Dask worker. Models are
loaded once per process (a small cache keyed by everything that makes them). Each stage skips work whose result is
already stored under the same cache key: tissue by its parameters, grids by their key, features by the encoder's
weights hash, tile predictions by the checkpoint's weights hash, segmentations by the model's weights hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PipelineJob",
    "classify_stage",
    "doctor_stage",
    "embed_stage",
    "encoder_of",
    "qc_job",
    "qc_stage",
    "segment_stage",
    "tiles_stage",
    "tissue_stage",
]

_CACHE: dict[tuple, Any] = {}


@dataclass(frozen=True)
class PipelineJob:
    """One slide of a run: its file, its folder ``OUT/<stem>/`` and its store (``OUT/<stem>/store.zarr``)."""

    path: Path
    out_dir: Path
    store_path: Path

    @property
    def name(self) -> str:
        return self.out_dir.name


def qc_job(job: PipelineJob, out: Path) -> PipelineJob:
    """The job QC runs on: pictures in ``OUT/qc/<stem>/`` (the QC report's layout), the slide's own store."""
    return PipelineJob(job.path, out / "qc" / job.name, job.store_path)


def _cached(key: tuple, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _slide_mpp(config: Any):
    from eosin.slide import SlideMpp

    if config.slide_mpp is None:
        return None
    return SlideMpp(default=float(config.slide_mpp), force=config.force_slide_mpp)


def _decode_workers(config: Any) -> int | None:
    """Tile-decoding processes inside a model stage: none on Dask workers, also when the run was handed a client
    without ``scheduler`` in its configuration (daemonic processes cannot start a pool)."""
    import multiprocessing

    return 0 if config.scheduler or multiprocessing.current_process().daemon else None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    from eosin.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, default=str))


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def doctor_stage(job: PipelineJob, config: Any) -> dict[str, Any]:
    """The slide doctor's record (``eosin info``), written to ``OUT/<stem>/doctor.json``; never fails on a bad file."""
    from eosin.slide import diagnose_path

    kwargs = {"backend": config.backend} if config.backend else {}
    record = diagnose_path(job.path, **kwargs)
    _write_record(job.out_dir / "doctor.json", record)
    return {"slide": str(job.path), "problems": record.get("problems", [])}


def encoder_of(config: Any) -> str | None:
    """The encoder whose features the run embeds: ``embed.encoder``, else the MIL model's, else None."""
    if config.embed.encoder:
        return config.embed.encoder
    if config.mil.model:
        path = Path(config.mil.model) / "config.json"
        try:
            source = json.loads(path.read_text(encoding="utf-8")).get("training", {}).get("source")
        except (OSError, ValueError):
            source = None
        if not source:
            from eosin.errors import ConfigError

            raise ConfigError(
                "the MIL model does not record the encoder of its features.",
                path=path,
                fix="set embed.encoder to the encoder it was trained on",
            )
        return source
    return None


def tissue_stage(job: PipelineJob, config: Any) -> dict[str, Any]:
    """Tissue, pen and sections (``eosin tissue``): masks in the store; tissue.png, pen.png, overlay.png."""
    from eosin.run import tissue_stage as run_tissue

    return run_tissue(job, tissue_mpp=config.tissue.mpp, slide_mpp=_slide_mpp(config), backend=config.backend)


def qc_stage(job: PipelineJob, config: Any) -> dict[str, Any]:
    """QC (``eosin qc``) into ``OUT/qc/<stem>/`` and ``qc/<grid key>`` of the store; ``job`` is :func:`qc_job`'s."""
    from eosin.qc import qc_stage as run_qc

    return run_qc(
        job,
        mpp=config.tiles.mpp,
        tile_size=config.tiles.size,
        min_tissue=config.tiles.min_tissue,
        tissue_mpp=config.tissue.mpp,
        slide_mpp=_slide_mpp(config),
        backend=config.backend,
        blur_threshold=config.qc.blur_threshold,
        min_fraction=config.qc.min_fraction,
    )


def tiles_stage(job: PipelineJob, config: Any) -> dict[str, Any]:
    """The tile grid (``eosin tile``) into ``grids/<key>`` and tiles.png; its key recorded in ``tiles.json``."""
    from eosin.run import tile_stage

    record = tile_stage(
        job,
        mpp=config.tiles.mpp,
        tile_size=config.tiles.size,
        overlap=config.tiles.overlap,
        min_tissue=config.tiles.min_tissue,
        tissue_mpp=config.tissue.mpp,
        slide_mpp=_slide_mpp(config),
        backend=config.backend,
    )
    _write_record(
        job.out_dir / "tiles.json", {k: v for k, v in record.items() if k not in ("seconds", "cached")}
    )
    return record


def _grid_key(job: PipelineJob) -> str | None:
    """The key of the grid the run's tile stage made (recorded in ``tiles.json``)."""
    record = _read_record(job.out_dir / "tiles.json") or {}
    return record.get("grid")


def embed_stage(job: PipelineJob, config: Any) -> dict[str, Any]:
    """Features of the run's grid by :func:`encoder_of` into the store (resumable; reused for the same weights)."""
    from eosin.embed import embed_store

    name = encoder_of(config)
    device = config.device
    weights = None if config.embed.weights == "none" else config.embed.weights
    encoder = _cached(("encoder", name, weights, device), lambda: _encoder(name, weights, device))
    stain = None
    if config.stain.method:
        stain = _cached(("stain", config.stain.method, config.stain.target), lambda: _normalizer(config))
    record = embed_store(
        job.store_path,
        encoder,
        weights=weights,
        grid_key=_grid_key(job),
        batch_size=config.embed.batch_size,
        device=device,
        precision=config.precision,
        dtype=config.embed.dtype,
        stain=stain,
        workers=_decode_workers(config),
        slide_mpp=_slide_mpp(config),
        runtime=config.embed.runtime,
    )
    return record


def _encoder(name: str, weights: Any, device: str):
    from eosin.embed import select_device
    from eosin.models import create_encoder

    return create_encoder(name, weights=weights, device=select_device(device))


def _normalizer(config: Any):
    import numpy as np
    from PIL import Image

    from eosin.stain import get_normalizer

    return get_normalizer(config.stain.method).fit(np.asarray(Image.open(config.stain.target).convert("RGB")))


def classify_stage(job: PipelineJob, config: Any) -> dict[str, Any]:
    """Tile predictions of the run's grid by ``classify.model`` into ``predictions/<checkpoint key>``, heatmaps.

    Skipped when ``OUT/<stem>/classify.json`` records the same checkpoint key and grid and the store holds them.
    """
    from eosin.io import SlideStore
    from eosin.train import checkpoint_key, predict_store

    model_path = Path(config.classify.model)
    key = checkpoint_key(model_path)
    grid = _grid_key(job)
    done = _read_record(job.out_dir / "classify.json")
    if done and done.get("key") == key and done.get("grid") == grid:
        if SlideStore.open(job.store_path).has("predictions", key):
            return {**done, "cached": True}
    model = _cached(
        ("classifier", str(model_path.resolve()), key, config.device), lambda: _classifier(model_path, config)
    )
    result = predict_store(
        job.store_path,
        model,
        key=key,
        out_dir=job.out_dir,
        grid_key=grid,
        batch_size=config.classify.batch_size,
        workers=_decode_workers(config),
        slide_mpp=_slide_mpp(config),
        precision=config.precision,
    )
    result.pop("proba")
    result.pop("coords")
    record = {**result, "heatmaps": [Path(p).name for p in result["heatmaps"]], "cached": False}
    record.pop("seconds", None)
    _write_record(job.out_dir / "classify.json", record)
    return record


def _classifier(path: Path, config: Any):
    from eosin.embed import select_device
    from eosin.train import load_classifier

    model = load_classifier(path, device=str(select_device(config.device)))
    model.meta["checkpoint"] = str(path.resolve())
    return model


def segment_stage(job: PipelineJob, config: Any) -> dict[str, Any]:
    """Segment the slide with ``segment.model`` into ``segmentation/<key>`` (resumable by bands of rows), then
    ``OUT/<stem>/segmentation/``: mask.png, instances.png, overlay.png, instances.geojson.

    The pictures are redrawn only when ``segment.json`` does not record the same key and instance settings.
    """
    import numpy as np

    from eosin.io import SlideStore
    from eosin.segment import load_segmenter, segment_slide, slide_segmentation, write_segmentation
    from eosin.slide import diagnose, open_slide

    cfg = config.segment
    path = Path(cfg.model)
    model = _cached(
        ("segmenter", str(path.resolve()), _mtime(path), config.device, config.precision),
        lambda: load_segmenter(path, device=config.device, precision=config.precision),
    )
    with open_slide(job.path, slide_mpp=_slide_mpp(config), backend=config.backend) as slide:
        store = SlideStore.create(job.store_path, slide=diagnose(slide), source=job.path)
        key = segment_slide(
            slide,
            model,
            store,
            mpp=cfg.mpp,
            tile_size=cfg.tile_size,
            overlap=cfg.overlap,
            min_tissue=cfg.min_tissue,
            batch_size=cfg.batch_size,
            workers=_decode_workers(config),
            tta=cfg.tta,
        )
        seed = cfg.seed_threshold if cfg.seed_threshold is not None else model.config.instances.get("seed_threshold")
        settings = {
            "key": key,
            "instance_method": cfg.instance_method,
            "min_size": cfg.min_size,
            "seed_threshold": seed,
        }
        done = _read_record(job.out_dir / "segment.json")
        if done and all(done.get(k) == v for k, v in settings.items()):
            return {**done, "cached": True}
        seg = slide_segmentation(
            store, key, instance_method=cfg.instance_method, min_size=cfg.min_size, seed_threshold=seed
        )
        rgb = slide.thumbnail(max_size=4096)
    name = "nucleus" if model.config.boundary else "object"
    files = write_segmentation(job.out_dir / "segmentation", seg, rgb, name=name)
    record = {
        "slide": str(job.path),
        "store": str(job.store_path),
        "group": f"segmentation/{key}",
        **settings,
        "shape": list(seg.foreground.shape),
        "mpp": seg.mpp,
        "n_objects": int(seg.instances.max()),
        "foreground_fraction": round(float(np.mean(seg.mask)), 4),
        "files": {k: str(Path(v).relative_to(job.out_dir)) for k, v in files.items()},
        "cached": False,
    }
    _write_record(job.out_dir / "segment.json", record)
    return record


def _mtime(path: Path) -> float:
    try:
        return max(p.stat().st_mtime for p in path.iterdir())
    except (OSError, ValueError):
        return 0.0
