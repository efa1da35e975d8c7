"""``eosin predict``: a trained tile classifier over the tiles of slides or stores."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import click

from eosin.cli._common import echo_json, precision_option, slide_mpp_option


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Checkpoint folder written by eosin train tiles.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder: <stem>/heatmap_<class>.png and predictions.csv (default: beside each store). "
    "Needed for slide files, which are tiled into <out>/<stem>/store.zarr first.",
)
@click.option(
    "--grid",
    "grid_key",
    default=None,
    help="Which stored grid when a store holds several: a key, or its parameter part (e.g. mpp0.5_224px), "
    "matched in each store.",
)
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV of slide_id,label[,patient_id] (a cohort CSV works): the truth per slide, so predictions.csv "
    "can go to eosin evaluate classification.",
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Resolution at which slide files are tiled (default: the mpp recorded in the checkpoint).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, mps.")
@precision_option("Autocast of the encoder")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Tile-decoding processes.")
@slide_mpp_option
@click.option(
    "--cam",
    is_flag=True,
    help="Also Grad-CAM maps of the predicted class: per tile and stitched in the store (cams/<model key>), "
    "and <stem>/cam.png over the thumbnail.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def predict(
    paths,
    model_path,
    out,
    grid_key,
    labels_csv,
    mpp,
    batch_size,
    device,
    precision,
    workers,
    slide_mpp,
    cam,
    quiet,
) -> int:
    """Per-tile class probabilities of SLIDE_OR_STORE... with the classifier --model.

    Each store gets predictions/<model key> (probabilities aligned with the grid's tiles); each slide gets
    heatmap_<class>.png over its thumbnail; predictions.csv (id, slide, x, y, [label, patient,] pred, p_<class>,
    model) collects every tile. An existing predictions.csv of the same model is merged by slide: the slides of
    this run replace their old rows, other slides' rows are kept; one of another model is refused (exit 2).
    One JSON line per slide on stdout; exit 1 when some failed.

    With a slide-level model (the model/ folder of eosin train mil) the inputs are stores holding the bags it was
    trained on: predictions.csv has one row per slide (id, label, pred, p_<class>, patient: eosin evaluate
    classification reads it), attention models write attention/<key> into each store and OUT/<slide>/attention.png.
    """
    from eosin.pipeline import is_aggregator

    if is_aggregator(model_path):
        return _predict_slides(paths, model_path, out, grid_key, labels_csv, device)
    from eosin._device import precision_candidates, select_device
    from eosin.errors import EosinError
    from eosin.io import atomic_write_text
    from eosin.run import plan_outputs
    from eosin.train import checkpoint_key, load_classifier, predict_store

    dev = select_device(device)
    precision_candidates(dev, precision)  # refuses impossible combinations before any work
    model = load_classifier(model_path, device=str(dev))
    model.meta["checkpoint"] = str(model_path.resolve())
    key = checkpoint_key(model_path)
    truth = _read_labels(labels_csv) if labels_csv else {}
    header = ["id", "slide", "x", "y"] + (["label", "patient"] if labels_csv else [])
    header += ["pred", *(f"p_{c}" for c in model.classes), "model"]
    target = (out if out is not None else Path(result_dir_of(paths[0]))) / "predictions.csv"
    kept = _previous_rows(target, header, key)  # refuses another model's file before any work
    rows: list[list[str]] = []
    done: set[str] = set()
    failed = 0
    planned = (
        {job.path: job for job in plan_outputs([p for p in paths if not p.is_dir()], out)} if out else {}
    )
    for path in paths:
        try:
            store_path, out_dir = _store_for(path, out, model, mpp, slide_mpp, planned.get(path))
            result = predict_store(
                store_path,
                model,
                key=key,
                out_dir=out_dir,
                grid_key=grid_key,
                batch_size=batch_size,
                workers=workers,
                slide_mpp=slide_mpp,
                precision=precision,
                progress=not quiet,
                cam=cam,
            )
        except EosinError as exc:
            failed += 1
            click.echo(f"error: {exc}", err=True)
            continue
        slide_id = Path(result["slide"]).stem
        label, patient = truth.get(slide_id, (None, None))
        if labels_csv and label is None:
            click.echo(
                f"note: {slide_id} has no label in {labels_csv}; its rows have an empty label.", err=True
            )
        for i, ((x, y), p) in enumerate(zip(result.pop("coords"), result.pop("proba"), strict=True)):
            row = [f"{slide_id}:{i}", slide_id, str(int(x)), str(int(y))]
            if labels_csv:
                row += [label or "", patient or slide_id]
            row += [model.classes[int(p.argmax())], *(f"{v:.6f}" for v in p), key]
            rows.append(row)
        done.add(slide_id)
        echo_json(result)
    if rows:
        kept = [r for r in kept if r[1] not in done]  # this run's slides replace their old rows
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(kept + rows)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, buffer.getvalue())
        others = len({r[1] for r in kept})
        click.echo(
            f"predictions: {target} ({len(done)} slide(s) written, {others} kept from before)", err=True
        )
    if failed:
        click.echo(f"{failed} of {len(paths)} input(s) failed.", err=True)
    sys.stdout.flush()
    return 1 if failed else 0


def _previous_rows(target: Path, header: list[str], key: str) -> list[list[str]]:
    """Rows of an existing predictions.csv of the same model (to merge by slide); refuses another model's file."""
    from eosin.errors import UsageError

    if not target.is_file():
        return []
    with open(target, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        old_header = next(reader, [])
        rows = list(reader)
    models = {r[-1] for r in rows if r} if old_header and old_header[-1] == "model" else {None}
    if old_header != header or models - {key}:
        raise UsageError(
            f"it holds predictions of another model or with other columns ({', '.join(map(str, models))}); "
            "merging them with this model's rows would mix two models in one table.",
            path=target,
            fix="give another --out, or move the old predictions.csv aside",
        )
    return [r for r in rows if r]


def _predict_slides(paths, model_path, out, grid_key, labels_csv, device) -> int:
    """``eosin predict`` with a slide-level aggregator: :func:`eosin.pipeline.predict_slides`."""
    from eosin.errors import UsageError
    from eosin.pipeline import predict_slides

    if out is None:
        raise UsageError(
            "a slide-level model needs --out (predictions.csv and heatmaps go there).", fix="add --out DIR"
        )
    from eosin.run import resolve_store

    stores = [resolve_store(p, out)[0] if p.is_dir() else p for p in paths]
    if any(not p.is_dir() for p in stores):
        raise UsageError(
            "a slide-level model reads stores, not slide files.",
            fix="run eosin tile and eosin embed first (or eosin run), then pass the stores",
        )
    result = predict_slides(stores, model_path, out=out, labels=labels_csv, grid=grid_key, device=device)
    for record in result["slides"]:
        echo_json(record)
    for store, message in result["failures"]:
        click.echo(f"error: {message}", err=True)
    if result["csv"]:
        click.echo(f"predictions: {result['csv']}", err=True)
    if result["failures"]:
        click.echo(f"{len(result['failures'])} of {len(paths)} input(s) failed.", err=True)
    sys.stdout.flush()
    return 1 if result["failures"] else 0


def result_dir_of(path: Path) -> Path:
    """Default output folder of an input: the folder holding its store (``<out>/<stem>`` of eosin tile)."""
    path = Path(path)
    if path.name.endswith(".zarr"):
        return path.parent
    return path


def _store_for(
    path: Path, out: Path | None, model, mpp: float | None, slide_mpp: float | None, job=None
) -> tuple[Path, Path]:
    """The store to read for an input and the folder its heatmaps go to; tiles slide files first."""
    from eosin.errors import UsageError
    from eosin.run import resolve_store, tile_stage

    def tile(job) -> None:
        tile_mpp = mpp or model.meta.get("mpp")
        if tile_mpp is None:
            raise UsageError(
                "the checkpoint records no mpp, so the resolution to tile the slide at is unknown.",
                path=path,
                fix="add --mpp (the resolution of the training tiles), or tile it with eosin tile first",
            )
        tile_stage(job, mpp=tile_mpp, tile_size=model.input_size, slide_mpp=slide_mpp)

    return resolve_store(path, out, tile=tile, job=job)


def _read_labels(path: Path) -> dict[str, tuple[str, str | None]]:
    from eosin.errors import DataError

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        id_col = next((c for c in ("slide_id", "slide") if c in cols), None)
        if id_col is None or "label" not in cols:
            raise DataError(f"needs columns slide_id (or slide) and label; columns seen: {cols}.", path=path)
        pat_col = next((c for c in ("patient_id", "patient") if c in cols), None)
        return {r[id_col]: (r["label"], r[pat_col] if pat_col else None) for r in reader}
