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
    from eosin.train import train_tiles

    summary = train_tiles(
        data,
        out,
        encoder=encoder,
        weights=weights,
        probe=probe,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        val_fraction=val_fraction,
        patient_column=patient_column,
        label_from=label_from,
        balance=balance,
        tile_size=tile_size,
        positive_fraction=positive_fraction,
        positive_class=positive_class,
        augment=augment,
        k=k,
        input_size=input_size,
        mpp=mpp,
        patience=patience,
        device=device,
        precision=precision,
        workers=workers,
        seed=seed,
        tiny=tiny,
        progress=not quiet,
        on_tiling=lambda record: click.echo(json.dumps(record), err=True),
    )
    click.echo(json.dumps(summary))
    return 0
