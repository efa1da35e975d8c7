from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from eosin.cli._common import _readable, echo_json, expand_inputs, slide_executor, slide_options


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="Resolution of the tiles whose focus is measured (slides without a trustworthy mpp: native resolution).",
)
@click.option(
    "--size",
    "tile_size",
    type=click.IntRange(min=16),
    default=256,
    show_default=True,
    help="Tile size in pixels.",
)
@click.option(
    "--min-tissue",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Tiles with at least this tissue fraction are checked (the grid eosin tile builds with the same options).",
)
@click.option(
    "--artefact-model",
    type=click.Path(path_type=Path),
    default=None,
    help="A learned artefact detector (checkpoint folder with an 'artefact' class, e.g. from "
    "scripts/results_artefacts.py): its per-pixel map over the thumbnail adds the learned_artefact flag.",
)
@click.option(
    "--artefact-threshold",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Probability at or above which the learned detector's map counts as artefact.",
)
@slide_options
def qc(
    paths,
    out,
    mpp,
    tile_size,
    min_tissue,
    artefact_model,
    artefact_threshold,
    slide_mpp,
    backend,
    workers,
    scheduler,
    slide_timeout,
    quiet,
):
    """Quality control of slides, with a cohort report in the spirit of HistoQC.

    Per slide, OUT/<stem>/ gets thumbnail.png, overlay.png (artefacts shaded), tiles.png (flagged tiles),
    masks (tissue, pen, dark, edge, stain .png), metrics.json, and the per-tile flags in store.zarr
    (group qc/<grid key>, aligned with the tile grid). Then OUT/index.html and OUT/results.tsv list every
    slide, failed ones with their error. Prints one JSON line per slide. With --artefact-model, the learned
    detector's layer learned_artefact.png, its map learned_artefact_map.png and the tile flag learned_artefact
    come too.
    """
    from eosin.qc import qc_stage, write_report
    from eosin.run import map_slides, plan_outputs
    from eosin.tiles import default_workers

    if artefact_model is not None:  # a bad checkpoint is one error before any slide, not one per slide
        from eosin.qc import load_artefact_model

        load_artefact_model(artefact_model)
    jobs = plan_outputs(expand_inputs(paths), out)
    stage = partial(
        qc_stage,
        mpp=mpp,
        tile_size=tile_size,
        min_tissue=min_tissue,
        slide_mpp=slide_mpp,
        backend=backend,
        artefact_model=None if artefact_model is None else str(artefact_model),
        artefact_threshold=artefact_threshold,
    )
    n_workers = min(len(jobs), workers if workers is not None else default_workers())
    with slide_executor(scheduler) as executor:
        results = map_slides(
            stage,
            jobs,
            workers=max(n_workers, 1),
            progress=not quiet and len(jobs) > 1,
            desc="qc",
            executor=executor,
            timeout=slide_timeout,
        )
    rows = []
    for job, result in zip(jobs, results):
        if result.ok:
            rows.append({**result.value, "status": "ok"})
            echo_json(result.value)
        else:
            rows.append(
                {
                    **getattr(
                        result.error, "record", {}
                    ),  # no tile at the threshold: the metrics were measured
                    "name": job.path.name,
                    "slide": str(job.path),
                    "status": "failed",
                    "error": str(result.error),
                }
            )
            click.echo(f"error: {_readable(result.error)}", err=True)
    index, _ = write_report(out, rows)
    failed = sum(not r.ok for r in results)
    if failed:
        click.echo(f"{failed} of {len(jobs)} slide(s) failed.", err=True)
    click.echo(f"report: {index}", err=True)
    return 1 if failed else 0
