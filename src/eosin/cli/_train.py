"""``eosin train``: train tile classifiers (``tiles``); MIL and segmentation subcommands load from their modules."""

from __future__ import annotations

import json
from pathlib import Path

import click

from eosin.cli._common import precision_option
from eosin.cli._lazy import LazyGroup

# subcommands defined in other modules, imported on first use: name -> ("module:attribute", short help)
_PLUGINS = {
    "mil": ("eosin.cli._train_mil:mil", "Train a slide-level model on feature bags (attention MIL)."),
    "seg": ("eosin.cli._train_seg:seg", "Train a segmentation model on image/mask pairs."),
    "clip": ("eosin.cli._train_clip:clip", "Train a two-tower image-text model contrastively (CLIP-style)."),
}


@click.group(cls=LazyGroup, lazy=_PLUGINS)
def train() -> None:
    """Train models: tile classifiers, and (when installed) MIL and segmentation models."""


@train.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--encoder", required=True, help="Registry name of the encoder (see eosin models).")
@click.option(
    "--weights",
    default="hub",
    show_default=True,
    help="Encoder weights: hub, a file or folder, or none (random initialisation).",
)
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Checkpoint folder."
)
@click.option(
    "--probe",
    type=click.Choice(["finetune", "linear", "knn"]),
    default="finetune",
    show_default=True,
    help="Fine-tune encoder and head, or fit a linear/kNN probe on frozen features.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of patients held out for validation and early stopping (0: none).",
)
@click.option(
    "--patient-column",
    default="patient",
    show_default=True,
    help="CSV column of patient ids; tiles without one count as their own patient.",
)
@click.option(
    "--label-from",
    type=click.Choice(["auto", "folder", "prefix", "csv"]),
    default="auto",
    show_default=True,
    help="Where labels come from: sub-folders per class, CLASS-... file names, or a path,label CSV.",
)
@click.option(
    "--balance",
    type=click.Choice(["weighted", "oversample", "stride", "none"]),
    default="weighted",
    show_default=True,
    help="Class balance: weighted sampling, oversample (duplicate rare-class tiles), stride (DeepSlide: cut "
    "rare classes' images with a denser stride; needs --tile-size), or none.",
)
@click.option(
    "--tile-size",
    type=click.IntRange(min=8),
    default=None,
    help="Cut the images of DATA into tiles of this side (training regions rather than ready tiles).",
)
@click.option(
    "--positive-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Every training batch holds this share of --positive-class tiles (Foucart et al.), e.g. 0.25.",
)
@click.option(
    "--positive-class",
    default=None,
    help="The class counted as positive by --positive-fraction (default: the rarest class).",
)
@click.option(
    "--augment/--no-augment", default=True, show_default=True, help="Flips, 90° turns, HED jitter, blur."
)
@click.option(
    "--k", "k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours of --probe knn."
)
@click.option("--input-size", type=click.IntRange(min=16), default=None, help="Resize tiles to this side.")
@click.option(
    "--mpp", type=click.FloatRange(min=0, min_open=True), default=None, help="Microns per pixel of the tiles."
)
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@precision_option("Autocast when fine-tuning")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="DataLoader worker processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tiny", is_flag=True, hidden=True, help="Toy-width encoder (tests).")
@click.option("-q", "--quiet", is_flag=True, help="No per-epoch lines on stderr.")
def tiles(
    data,
    encoder,
    weights,
    out,
    probe,
    epochs,
    batch_size,
    lr,
    val_fraction,
    patient_column,
    label_from,
    balance,
    tile_size,
    positive_fraction,
    positive_class,
    augment,
    k,
    input_size,
    mpp,
    patience,
    device,
    precision,
    workers,
    seed,
    tiny,
    quiet,
) -> int:
    """Train a tile classifier on DATA: a folder with one sub-folder per class, or a CSV of path,label[,patient].

    Validation tiles are whole patients held out (stratified by label where possible); the checkpoint folder gets
    model.safetensors and config.json (encoder, classes, preprocessing, mpp, training parameters, history). One
    JSON summary goes to stdout.
    """
    from eosin.data import load_tile_table, patient_split
    from eosin.errors import UsageError
    from eosin.train import fit_probe_tiles, fit_tiles, save_classifier

    table = load_tile_table(data, label_from=label_from, patient_column=patient_column)
    w = None if weights.lower() == "none" else weights
    if val_fraction > 0:
        tr, va = patient_split(table.labels, table.patients, test_size=val_fraction, seed=seed)
        train_t, val_t = table.subset(tr), table.subset(va)
    else:
        train_t, val_t = table, None
    tiling: dict = {}
    if balance == "stride" and tile_size is None:
        raise UsageError(
            "--balance stride cuts the images of DATA with per-class strides: give --tile-size N."
        )
    if tile_size is not None:
        from eosin.data import cut_tiles, stride_balanced_tiles

        if balance == "stride":
            train_t, strides = stride_balanced_tiles(train_t, tile_size=tile_size)
            balance = "none"  # the tiling balanced the classes
            tiling = {"tile_size": tile_size, "strides": strides}
        else:
            train_t = cut_tiles(train_t, tile_size=tile_size)
            tiling = {"tile_size": tile_size, "strides": {c: tile_size for c in table.classes}}
        val_t = cut_tiles(val_t, tile_size=tile_size) if val_t is not None else None
        click.echo(json.dumps({"tiles": train_t.counts(), **tiling}), err=True)
    if probe == "finetune":
        model, history = fit_tiles(
            train_t,
            val_t,
            encoder=encoder,
            weights=w,
            tiny=tiny,
            input_size=input_size,
            mpp=mpp,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            balance=balance,
            positive_fraction=positive_fraction,
            positive_class=positive_class,
            augment=augment,
            patience=patience,
            device=device,
            precision=precision,
            workers=workers,
            seed=seed,
            progress=not quiet,
        )
        last = history[-1]
    else:
        model = fit_probe_tiles(
            train_t,
            encoder=encoder,
            weights=w,
            tiny=tiny,
            input_size=input_size,
            mpp=mpp,
            kind=probe,
            k=k,
            batch_size=batch_size,
            workers=workers,
            device=device,
        )
        last = {}
        if val_t is not None:
            from eosin.train import validation_metrics

            last = validation_metrics(
                model, val_t, next(model.parameters()).device, batch_size=batch_size, workers=workers
            )
            model.meta["validation"] = last
    if tiling:
        model.meta["tiling"] = tiling
    model.meta["split"] = {
        "val_fraction": val_fraction,
        "train_patients": sorted(set(train_t.patients.tolist()))[:1000],
        "val_patients": sorted(set(val_t.patients.tolist()))[:1000] if val_t is not None else [],
    }
    save_classifier(model, out)
    summary = {
        "checkpoint": str(out),
        "encoder": encoder,
        "probe": probe,
        "classes": list(table.classes),
        "n_train": len(train_t),
        "train_counts": train_t.counts(),
        "n_val": 0 if val_t is None else len(val_t),
        **{k_: round(v, 4) for k_, v in last.items() if k_.startswith("val_")},
    }
    if probe == "finetune":
        summary["precision"] = model.meta["training"]["precision"]
        summary["calibration"] = model.meta.get("calibration")
    click.echo(json.dumps(summary))
    return 0
