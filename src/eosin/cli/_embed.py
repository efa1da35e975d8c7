from __future__ import annotations

from pathlib import Path

import click

from eosin.cli._common import echo_json, precision_option, slide_mpp_option


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--encoder", required=True, help="Registry name (eosin models list).")
@click.option(
    "--weights",
    default="hub",
    show_default=True,
    help="'hub' (local cache, then the Hugging Face hub), a file or folder of weights, or 'none' (random).",
)
@click.option(
    "--grid",
    "grid_key",
    default=None,
    help="Which stored grid when a store holds several: a key, or its parameter part (e.g. mpp0.5_224px), "
    "matched in each store.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Tiles per batch [default: 64; 256 on a GPU].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@precision_option("Autocast of the encoder")
@click.option(
    "--runtime",
    type=click.Choice(["auto", "torch", "onnx"]),
    default="auto",
    show_default=True,
    help="auto: PyTorch or (fp32 on a CPU) ONNX Runtime, whichever measured faster on this machine.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float16", "float32"]),
    default="float16",
    show_default=True,
    help="Stored features.",
)
@click.option(
    "--stain",
    type=click.Choice(["reinhard", "macenko", "vahadane"]),
    default=None,
    help="Normalize tiles first.",
)
@click.option(
    "--stain-target",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Target image for --stain.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="For slides given directly: where their stores go.",
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="For slides given directly: tile resolution (default: the encoder's, else 0.5).",
)
@slide_mpp_option
@click.option(
    "--workers", type=click.IntRange(min=0), default=None, help="Decoding processes (0: in this process)."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def embed(
    inputs,
    runtime,
    encoder,
    weights,
    grid_key,
    batch_size,
    device,
    precision,
    dtype,
    stain,
    stain_target,
    out,
    mpp,
    slide_mpp,
    workers,
    quiet,
):
    """Embed the tiles of slide stores (or of slides, tiled first) with an encoder; features go into each store.

    Prints one JSON line per store. A store that already holds these features is skipped; a run killed half
    way resumes where it stopped.
    """
    from eosin.embed import check_precision, embed_store, select_device
    from eosin.errors import UsageError
    from eosin.models import create_encoder

    if (stain is None) != (stain_target is None):
        raise UsageError(
            "--stain and --stain-target go together.", fix="e.g. --stain macenko --stain-target target.png"
        )
    check_precision(device, precision, runtime)
    normalizer = None
    if stain is not None:
        from eosin._limits import decode_image
        from eosin.stain import get_normalizer

        normalizer = get_normalizer(stain).fit(decode_image(stain_target))
    model = create_encoder(
        encoder, weights=None if weights == "none" else weights, device=select_device(device)
    )
    stores, failed = _stores(
        inputs, out, mpp or model.spec.native_mpp or 0.5, model.input_size, slide_mpp, quiet
    )
    for path in stores:
        try:
            record = embed_store(
                path,
                model,
                weights=weights,
                grid_key=grid_key,
                batch_size=batch_size,
                device=device,
                precision=precision,
                dtype=dtype,
                stain=normalizer,
                workers=workers,
                slide_mpp=slide_mpp,
                progress=not quiet,
                runtime=runtime,
            )
        except Exception as exc:
            from eosin.errors import EosinError

            if not isinstance(exc, EosinError):
                raise
            failed += 1
            click.echo(f"error: {exc}", err=True)
            continue
        echo_json(record)
    return 1 if failed else 0


def _stores(inputs, out, mpp, size, slide_mpp, quiet) -> tuple[list[Path], int]:
    """Stores named directly, plus stores made by tiling the slides named (into --out)."""
    from eosin.cli._common import _note_skipped
    from eosin.run import resolve_stores, tile_stage

    failed = []

    def failure(path: Path, exc: Exception) -> None:
        failed.append(path)
        click.echo(f"error: {exc}", err=True)

    found = resolve_stores(
        inputs,
        out,
        tile=lambda job: tile_stage(job, mpp=mpp, tile_size=size, slide_mpp=slide_mpp),
        on_error=failure,
        on_skipped=_note_skipped,
    )
    return [store for store, _ in found], len(failed)
