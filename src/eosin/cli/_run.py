"""``eosin run``: a whole recipe over a folder of slides from one configuration (eosin.pipeline.run)."""

from __future__ import annotations

import sys

import click

from eosin.cli._common import echo_json


@click.command()
@click.argument("config", required=False)
@click.option(
    "--print-config",
    "print_config",
    is_flag=True,
    help="Print a commented configuration to start from (every key at its default; with CONFIG a recipe's) and exit.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of the configuration (e.g. --set tiles.mpp=1 --set slides=SLIDES/); repeatable.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run every per-slide stage on Dask: 'local' (a loopback cluster) or a scheduler address (tcp://host:8786). "
    "Overrides the configuration's scheduler.",
)
@click.option("--list-recipes", is_flag=True, help="List the recipes shipped with eosin and exit.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def run(config, print_config, overrides, scheduler, list_recipes, quiet) -> int:
    """Run CONFIG (a YAML file, or a shipped recipe: eosin run --list-recipes) over its slides.

    doctor -> tissue -> QC -> tiles -> (stain, embed) -> tile predictions / slide predictions (MIL) /
    segmentation -> heatmaps -> OUT/report.html, with every output in the configuration's out folder. Re-running
    skips what is done; a killed run resumes. One JSON line per slide on stdout; exit 1 when some slide failed.
    """
    from eosin import pipeline
    from eosin.errors import UsageError

    if list_recipes:
        for name, what in pipeline.list_recipes().items():
            click.echo(f"{name:<22} {what}")
        return 0
    if print_config:
        click.echo(pipeline.default_config_text(config), nl=False)
        return 0
    if config is None:
        raise UsageError("name a configuration file or recipe.", fix="eosin run --print-config > run.yaml")
    extra = list(overrides) + ([f"scheduler={scheduler}"] if scheduler else [])
    cfg = pipeline.load_config(config, overrides=extra)
    summary = pipeline.run(cfg, progress=not quiet, log=lambda line: click.echo(line, err=True))
    for record in summary["slides"]:
        echo_json(record)
    click.echo(f"report: {summary['report']}", err=True)
    if summary["n_failed"]:
        click.echo(f"{summary['n_failed']} of {summary['n_slides']} slide(s) failed.", err=True)
    sys.stdout.flush()
    return 1 if summary["n_failed"] else 0
