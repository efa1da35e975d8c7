from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from eosin.cli._common import expand_inputs, run_over_slides, slide_options
from eosin.errors import UsageError


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Tile resolution in microns per pixel.",
)
@click.option(
    "--magnification",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Tile magnification (e.g. 20), converted with the slide's mpp; instead of --mpp.",
)
@click.option(
    "--size",
    "tile_size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Tile side in pixels.",
)
@click.option(
    "--overlap", type=click.IntRange(min=0), default=0, show_default=True, help="Pixels shared by neighbours."
)
@click.option(
    "--min-tissue",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Keep tiles with at least this fraction of tissue.",
)
@click.option(
    "--tissue-mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=8.0,
    show_default=True,
    help="Resolution of the tissue masks.",
)
@slide_options
def tile(
    paths,
    out,
    mpp,
    magnification,
    tile_size,
    overlap,
    min_tissue,
    tissue_mpp,
    slide_mpp,
    backend,
    workers,
    scheduler,
    slide_timeout,
    quiet,
):
    """Build tissue tile grids, one store per slide (OUT/<stem>/store.zarr).

    Prints one JSON line per slide: slide, n_tiles, mpp, tile_size, seconds, store, grid. A grid already in the
    store with the same parameters is reused. OUT/<stem>/tiles.png shows the tiles over the slide.
    """
    from eosin.run import plan_outputs, tile_stage

    if (mpp is None) == (magnification is None):
        raise UsageError("give exactly one of --mpp and --magnification.", fix="e.g. --mpp 0.5 (about 20x)")
    if overlap >= tile_size:
        raise UsageError(f"--overlap ({overlap}) must be smaller than --size ({tile_size}).")
    jobs = plan_outputs(expand_inputs(paths), out)
    stage = partial(
        tile_stage,
        mpp=mpp,
        magnification=magnification,
        tile_size=tile_size,
        overlap=overlap,
        min_tissue=min_tissue,
        tissue_mpp=tissue_mpp,
        slide_mpp=slide_mpp,
        backend=backend,
    )
    return run_over_slides(
        stage,
        jobs,
        workers=workers,
        quiet=quiet,
        desc="tile",
        scheduler=scheduler,
        slide_timeout=slide_timeout,
    )
