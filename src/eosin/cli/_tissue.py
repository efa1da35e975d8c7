from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from eosin.cli._common import expand_inputs, run_over_slides, slide_options


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option(
    "--tissue-mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=8.0,
    show_default=True,
    help="Resolution of the masks in microns per pixel (slides without a trustworthy mpp use a downsample instead).",
)
@slide_options
def tissue(paths, out, tissue_mpp, slide_mpp, backend, workers, scheduler, slide_timeout, quiet):
    """Detect tissue, pen marks and cross-sections.

    Writes, per slide, OUT/<stem>/tissue.png and pen.png (binary masks, 0/255, the slide's aspect ratio),
    overlay.png (tissue outlined, pen shaded, sections numbered) and the masks with their resolution into
    OUT/<stem>/store.zarr. Prints one JSON line per slide.
    """
    from eosin.run import plan_outputs, tissue_stage

    jobs = plan_outputs(expand_inputs(paths), out)
    stage = partial(tissue_stage, tissue_mpp=tissue_mpp, slide_mpp=slide_mpp, backend=backend)
    return run_over_slides(
        stage,
        jobs,
        workers=workers,
        quiet=quiet,
        desc="tissue",
        scheduler=scheduler,
        slide_timeout=slide_timeout,
    )
