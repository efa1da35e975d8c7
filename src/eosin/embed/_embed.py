"""``eosin embed``: a stored grid's tiles through an encoder, features into the store, resumably.

Decoding runs in the tile stream's worker processes (stain normalization and resizing too), overlapped with the
model running in this process. Features are written in whole zarr chunks (256 rows by default) into a partial group
that a killed run resumes (:class:`eosin.io._store.PartialGroup`), committed by time: about every ``commit_seconds``
(30 s) of work, at the first chunk boundary after it, so a kill loses about 30 s of work (or one chunk, for models
slower than a chunk per 30 s) instead of the 4,096 tiles of earlier versions. The finished group
``features/<encoder>--<grid>`` replaces nothing until it is complete.

A stored group is reused only when it was made by the same weights: its ``weights_hash`` attribute (SHA-256 of the
encoder's state dict, :func:`eosin.models.weights_hash`) must equal the encoder's. Other weights (``--weights none``
then real weights, a fine-tuned file, a group from before weights were recorded) recompute the features and replace
the group; the summary's ``replaced`` names the hash it had.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import numpy as np

from eosin._device import PRECISIONS, select_device
from eosin._provenance import versions
from eosin.errors import UsageError
from eosin.io import param_digest

__all__ = ["PRECISIONS", "check_precision", "embed_store", "features_key", "select_device"]

#: rows per stored chunk (rounded to a multiple of the batch size): small enough that a commit comes often, large
#: enough that reading a slide's features stays as fast as with 4,096-row chunks (50,000 x 768 float16: 0.55 s
#: either way, 0.98 s with 64-row chunks)
CHUNK_ROWS = 256
#: the clock commit intervals are measured on (tests replace it)
_clock = time.monotonic


def features_key(encoder_name: str, grid_key: str, stain: str | None = None) -> str:
    """Store key of the features of ``grid_key`` by ``encoder_name`` (and a stain method, when used)."""
    return f"{encoder_name}--{grid_key}" + (f"--{stain}" if stain else "")


def check_precision(device, precision: str, runtime: str = "auto") -> list[str]:
    """The (precision, runtime) paths ``auto`` may choose from on ``device`` (``torch-fp32``...); refuses
    impossible combinations before any work. ONNX Runtime computes in float32."""
    from eosin.embed._runners import runner_candidates

    return [c.name for c in runner_candidates(select_device(device), precision, runtime)]


def embed_store(
    store_path: str | os.PathLike[str],
    encoder: Any,
    *,
    weights: str | os.PathLike[str] | None = "hub",
    grid_key: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    dtype: str = "float16",
    stain: Any = None,
    workers: int | None = None,
    slide_mpp: float | None = None,
    progress: bool = False,
    block_rows: int | None = None,
    runtime: str = "auto",
    commit_seconds: float = 30.0,
) -> dict[str, Any]:
    """Embed the tiles of a stored grid with ``encoder`` into ``features/<encoder>--<grid>`` of the store.

    Parameters
    ----------
    store_path
        A slide store made by ``eosin tile``; the slide is reopened from the path it records.
    encoder
        A registry name (built with ``weights``) or a built :class:`eosin.models.Encoder`.
    grid_key
        Which stored grid (needed when the store holds several).
    batch_size
        Tiles per forward pass (and per decoding job); default 64, 256 on a GPU (large batches keep it busy).
    device, precision
        ``auto``/``cpu``/``cuda``...; precision ``auto`` (the fastest of float32 and the mixed precisions this
        device has, measured on the slide's first tiles the first time this model runs on this machine, and
        only among paths whose features agree with float32's: :mod:`eosin._calibrate`), ``fp32``, ``fp16``
        (CUDA) or ``bf16`` autocast. bf16 features of a random ResNet-18 on real tiles had cosine similarity
        > 0.99999 to fp32's.
    dtype
        Storage type of the features, ``float16`` (half the disk) or ``float32``.
    stain
        A fitted stain normalizer applied to tiles before the model (in the decoding workers), or None.
    workers
        Decoding processes (default: on a GPU one per CPU, at most 8; on a CPU the tile stream decides by measuring;
        0 decodes in this process).
    runtime
        ``auto`` (PyTorch or, on a CPU in fp32, ONNX Runtime when installed: whichever the calibration measured
        faster), ``torch`` or ``onnx`` (see :mod:`eosin.embed._runners`).
    block_rows
        Rows per stored chunk, the unit of resuming (default: about 256, a multiple of ``batch_size``).
    commit_seconds
        Finished rows are committed (written and recorded as done) at the first chunk boundary after this many
        seconds of work since the last commit; a killed run loses at most that much work (or one chunk). 0 commits
        every chunk.

    Returns
    -------
    dict
        One summary record: slide, store, key, n_tiles, dim, seconds, tiles_per_s, cached, resumed_from,
        weights_hash (and ``replaced``: the weights hash of a stored group made by other weights, ``"unknown"``
        for one that recorded none), the device, precision and runtime that ran, and ``calibration`` (the choice, its timings in ms per tile
        and why the other paths were not taken).
    """

    from eosin.io import SlideStore, pick_key
    from eosin.models import Encoder, create_encoder
    from eosin.slide import open_slide
    from eosin.tiles import iter_tiles

    if dtype not in ("float16", "float32"):
        raise UsageError(f"features are stored as float16 or float32, not {dtype!r}")
    t0 = time.perf_counter()
    store = SlideStore.open(store_path)
    record = store.slide or {}
    gkey = store.pick("grids", grid_key)
    grid = store.grid(gkey)
    if record.get("path") is not None:
        store.check_source(record["path"])  # the file there is still the slide the grid was made on
    dev = select_device(device)
    check_precision(dev, precision, runtime)  # refuses impossible combinations before any work
    batch_size = batch_size or (256 if dev.type == "cuda" else 64)
    model = encoder if isinstance(encoder, Encoder) else create_encoder(encoder, weights=weights, device=dev)
    model = model.to(dev).eval()
    stain_name = getattr(stain, "name", None)
    key = features_key(model.spec.name, gkey, stain_name)
    whash = model.weights_hash
    summary = {
        "slide": record.get("path"),
        "store": str(store.path),
        "key": key,
        "n_tiles": len(grid),
        "weights_hash": whash,
        "pretrained": model.weights_sha256 is not None,
    }
    replaced = None
    if store.has("features", key):
        stored = store.read_group("features", key).attrs.get("weights_hash")
        if stored == whash:
            return {
                **summary,
                "dim": model.embedding_dim,
                "cached": True,
                "resumed_from": None,
                "seconds": 0.0,
            }
        replaced = stored or "unknown"
    if record.get("path") is None:
        raise UsageError("the store records no slide path.", fix="make the store with eosin tile")
    if slide_mpp is None and record.get("mpp_source") == "override":
        slide_mpp = record.get("mpp_x")
    slide = open_slide(record["path"], slide_mpp=slide_mpp)
    from eosin.embed._prepare import TilePrep, reading_grid

    read, resize = reading_grid(grid, slide, input_size=model.input_size, native_mpp=model.spec.native_mpp)
    prep = TilePrep(stain, resize) if (stain is not None or resize) else None
    from eosin.embed._runners import CALIBRATION_TILES, choose_runner, make_runner

    decision = None
    # precision and runtime: measured on this slide's first tiles (cached per machine and model)
    if len(grid):
        rows = batch_size if dev.type == "cuda" else min(batch_size, CALIBRATION_TILES)
        from eosin.tiles import read_tiles

        sample = read_tiles(
            slide, read.coords[:rows], tile_size=read.tile_size, downsample=read.downsample, transform=prep
        )
        runner, decision = choose_runner(model, dev, precision, runtime, sample, batch_size=batch_size)
        precision = decision.precision
    else:
        precision = "fp32"
        runner = make_runner(model, dev, precision, "torch")
    attrs = {
        "encoder": model.spec.name,
        "embedding_dim": model.embedding_dim,
        "grid": gkey,
        "n_tiles": len(grid),
        "dtype": dtype,
        "precision": precision,
        "read_mpp": read.mpp,
        "read_tile_size": read.tile_size,
        "input_size": model.input_size,
        "mean": list(model.spec.mean),
        "std": list(model.spec.std),
        "stain": stain_name,
        "weights": str(weights) if weights is not None else None,
        "weights_file": model.weights_file,
        "weights_sha256": model.weights_sha256,
        "seed": model.seed,
        "pretrained": model.weights_sha256 is not None,
        "weights_source": getattr(model, "weights_source", None),
        "weights_hash": whash,
        "device": str(dev),
        "runtime": runner.name,
        "versions": versions(),
        "order": "rows follow the grid's tile order",
    }
    fingerprint = param_digest(attrs, n=None)
    part = store.partial_group("features", key, attrs, fingerprint=fingerprint)
    resumed_from = part.done or None
    # rows per zarr chunk: whole chunks are written, so a resumed run never builds on a chunk cut short
    block = block_rows or max(1, round(CHUNK_ROWS / batch_size)) * batch_size
    if "features" not in part.group:
        part.group.create_array(
            "features",
            shape=(len(grid), model.embedding_dim),
            dtype=dtype,
            chunks=(block, model.embedding_dim),
        )
        part.group.create_array("coords", shape=(len(grid), 2), dtype="int64", chunks=(max(len(grid), 1), 2))
        if len(grid):
            part.group["coords"][...] = grid.coords
    features = part.group["features"]
    start = part.done
    pending: list[np.ndarray] = []
    pending_rows = 0
    t_run = time.perf_counter()
    if workers is None and dev.type == "cuda":
        # the GPU leaves the CPUs to decoding: all of them decode in parallel (in one process the stream's
        # ~2,400 tiles/s of the tiled-TIFF fast path would cap a GPU that embeds thousands a second)
        from eosin.tiles import default_workers

        # at most 8: each holds prefetched batches in shared memory (256 tiles of 224 px: 38.5 MB a batch)
        workers = min(8, default_workers()) if default_workers() > 2 else None
    batches = iter_tiles(
        slide,
        read,
        indices=np.arange(start, len(grid)),
        batch_size=batch_size,
        workers=workers,
        transform=prep,
        progress=progress,
    )
    last_commit = _clock()
    # an asynchronous runner (PyTorch on CUDA) has one batch on the GPU while the next is handed over
    depth = 2 if getattr(runner, "asynchronous", False) else 1
    in_flight: list[Any] = []
    for batch in itertools.chain(batches, [None]):
        if batch is not None:
            in_flight.append(runner.submit(batch.images) if depth > 1 else runner(batch.images))
        while in_flight and (batch is None or len(in_flight) >= depth):
            done = in_flight.pop(0)
            out = (done.result() if depth > 1 else done).astype(dtype, copy=False)
            pending.append(out)
            pending_rows += len(out)
            finished = start + pending_rows == len(grid)
            due = pending_rows >= block and _clock() - last_commit >= commit_seconds
            if finished or due:
                rows = np.concatenate(pending)
                n = len(rows) if finished else len(rows) // block * block  # whole chunks only, until the last
                features[start : start + n] = rows[:n]
                start += n
                part.mark(start)
                pending, pending_rows = ([rows[n:]] if n < len(rows) else []), len(rows) - n
                last_commit = _clock()
    # features of other weights were there: this recomputation replaces them (else the old group would stay)
    part.commit(replace=replaced is not None)
    slide.close()
    seconds = time.perf_counter() - t0
    done_now = len(grid) - (resumed_from or 0)
    return {
        **summary,
        "dim": model.embedding_dim,
        "cached": False,
        "resumed_from": resumed_from,
        **({"replaced": replaced} if replaced else {}),
        "seconds": round(seconds, 3),
        "tiles_per_s": round(done_now / max(time.perf_counter() - t_run, 1e-9), 1),
        "runtime": runner.name,
        "precision": precision,
        "device": str(dev),
        "calibration": decision.record() if decision is not None else None,
    }
