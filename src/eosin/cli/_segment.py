from __future__ import annotations

from pathlib import Path

import click

from eosin.cli._common import echo_json, precision_option, slide_mpp_option

#: inputs up to this many pixels with one level are segmented whole at their own resolution (unless --mpp)
IMAGE_PIXELS = 64_000_000


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Checkpoint folder (eosin train seg --out).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Segment slides at this µm/px (default: the model's). Images without --mpp are segmented as they are.",
)
@click.option(
    "--overlap",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.25,
    show_default=True,
    help="Fraction of a window shared with its neighbours (blended).",
)
@click.option(
    "--tile-size", type=click.IntRange(min=32), default=None, help="Window side (default: the model's)."
)
@click.option(
    "--instances",
    "instance_method",
    type=click.Choice(["auto", "components", "distance", "boundary"]),
    default="auto",
    show_default=True,
    help="How touching objects are separated (auto: boundary channel if the model has one, else distance).",
)
@click.option(
    "--min-size", type=click.IntRange(min=0), default=10, show_default=True, help="Smallest object, px."
)
@click.option(
    "--seed-threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Interior probability that seeds an object (boundary models; default: the value chosen on "
    "validation images in training, else 0.5).",
)
@click.option(
    "--tta", is_flag=True, help="Average each window over its four flips (4x the compute; +0.01 AJI on MoNuSeg)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda.")
@precision_option("Autocast of inference")
@slide_mpp_option
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Decoding processes for slides (0: in this process).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def segment(
    inputs,
    model_dir,
    out,
    mpp,
    overlap,
    tile_size,
    instance_method,
    min_size,
    seed_threshold,
    tta,
    batch_size,
    device,
    precision,
    slide_mpp,
    workers,
    quiet,
):
    """Segment images and whole slides with a trained model.

    Writes OUT/<stem>/mask.png (0/255; the image's size, or the slide at the chosen mpp), instances.png (16-bit
    labels), overlay.png and instances.geojson (QuPath detections, level-0 coordinates). Slides also get
    OUT/<stem>/store.zarr with the blended probability map (group segmentation/<key>). Prints one JSON line per
    input; exit 1 when some inputs failed.
    """
    from eosin.cli._common import expand_inputs
    from eosin.errors import EosinError
    from eosin.run import plan_outputs
    from eosin.segment import load_segmenter

    model = load_segmenter(model_dir, device=device, precision=precision)
    failed = 0
    for job in plan_outputs(expand_inputs(inputs), out):
        try:
            record = _one(
                job.path,
                model,
                job.out_dir,
                mpp,
                overlap,
                tile_size,
                instance_method,
                (min_size, seed_threshold, tta),
                batch_size,
                slide_mpp,
                workers,
                quiet,
            )
        except EosinError as exc:
            failed += 1
            click.echo(f"error: {exc}", err=True)
            continue
        echo_json(record)
    return 1 if failed else 0


def _one(
    path, model, folder, mpp, overlap, tile_size, method, options, batch_size, slide_mpp, workers, quiet
):
    import numpy as np

    min_size, seed_threshold, tta = options
    if seed_threshold is None:
        seed_threshold = model.config.instances.get("seed_threshold")

    from eosin.segment import segment_image, segment_slide, slide_segmentation, write_segmentation
    from eosin.slide import open_slide

    slide = open_slide(path, slide_mpp=slide_mpp)
    whole = slide.level_count == 1 and slide.width * slide.height <= IMAGE_PIXELS and mpp is None
    name = "nucleus" if model.config.boundary else "object"
    if whole:
        rgb = slide.thumbnail(downsample=1.0)
        seg = segment_image(
            rgb,
            model,
            tile_size=tile_size,
            overlap=overlap,
            batch_size=batch_size,
            instance_method=method,
            min_size=min_size,
            seed_threshold=seed_threshold,
            tta=tta,
        )
        record = {"input": str(path), "kind": "image"}
    else:
        from eosin.io import SlideStore
        from eosin.slide import diagnose

        store = SlideStore.create(folder / "store.zarr", slide=diagnose(slide), source=path)
        key = segment_slide(
            slide,
            model,
            store,
            mpp=mpp,
            tile_size=tile_size or 512,
            overlap=overlap,
            batch_size=batch_size,
            workers=workers,
            progress=not quiet,
            tta=tta,
        )
        seg = slide_segmentation(
            store, key, instance_method=method, min_size=min_size, seed_threshold=seed_threshold
        )
        rgb = slide.thumbnail(max_size=4096)
        record = {
            "input": str(path),
            "kind": "slide",
            "store": str(store.path),
            "group": f"segmentation/{key}",
        }
    files = write_segmentation(folder, seg, rgb, name=name)
    return {
        **record,
        "shape": list(seg.foreground.shape),
        "mpp": seg.mpp,
        "n_objects": int(seg.instances.max()),
        "seed_threshold": seed_threshold,
        "tta": tta,
        "foreground_fraction": round(float(np.mean(seg.mask)), 4),
        "files": files,
        "device": str(model.device),
        "precision": model.precision,
        "calibration": model.calibration,
    }
