from __future__ import annotations

import sys

import click

from eosin import __version__
from eosin.cli._lazy import LazyGroup

# name -> ("module:attribute", short help). Add a command by adding a line here and a module beside this one.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("eosin.cli._info:info", "Describe slides and diagnose their metadata (the slide doctor)."),
    "tissue": (
        "eosin.cli._tissue:tissue",
        "Detect tissue, pen marks and cross-sections; write masks and overlays.",
    ),
    "tile": ("eosin.cli._tile:tile", "Build tissue tile grids at a resolution into one store per slide."),
    "export": (
        "eosin.cli._export:export",
        "Export a store's tiles (CSV) or tissue contours (GeoJSON for QuPath).",
    ),
    "import": (
        "eosin.cli._import:import_",
        "Bring other tools' results (CLAM/TRIDENT/STAMP features) into stores.",
    ),
    "evaluate": (
        "eosin.cli._evaluate:evaluate",
        "Evaluate predictions: classification or segmentation metrics.",
    ),
    "models": ("eosin.cli._models:models", "List the model registry."),
    "embed": ("eosin.cli._embed:embed", "Embed a store's tiles with an encoder from the registry."),
    "stain": ("eosin.cli._stain:stain", "Normalize the stain of images to a target."),
    "train": (
        "eosin.cli._train:train",
        "Train models: tile classifiers (and MIL, segmentation when installed).",
    ),
    "predict": (
        "eosin.cli._predict:predict",
        "Classify the tiles of slides with a trained model; heatmaps, CSV.",
    ),
    "qc": (
        "eosin.cli._qc:qc",
        "Quality control: artefacts, blurry tiles, per-tile flags and a cohort report.",
    ),
    "segment": (
        "eosin.cli._segment:segment",
        "Segment images and slides with a U-Net; masks, instances, GeoJSON.",
    ),
    "view": ("eosin.cli._view:view", "Web viewer: slides deep-zoomed, result layers, QuPath annotations."),
    "run": ("eosin.cli._run:run", "Run a whole recipe over a folder of slides from a YAML configuration."),
    "zeroshot": ("eosin.cli._vl:zeroshot", "Classify tiles from text prompts with a vision-language model."),
    "index": ("eosin.cli._vl:index_", "Build a searchable index of tile embeddings (text/image retrieval)."),
    "search": ("eosin.cli._vl:search", "Find the tiles of an index nearest to a text or an image."),
    "heatmap": (
        "eosin.cli._vl:heatmap",
        "Show where typed concepts are on a slide (text-to-region heatmap).",
    ),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eosin")
def cli() -> None:
    """eosin: whole-slide images in, tissue tiles, features, predictions and reports out.

    A command that processes several inputs returns exit code 1 when some failed (the others are still
    processed) and 2 for usage errors.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return its exit code (used by the console script and in-process tests)."""
    try:
        result = cli.main(args=argv, prog_name="eosin", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:  # bad options, missing arguments
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except _eosin_error() as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except OSError as exc:  # writing outputs: permissions, read-only disk, a file in the way, a full disk
        from eosin.errors import output_error

        error = output_error(exc)
        click.echo(f"error: {error}", err=True)
        return error.exit_code
    return result if isinstance(result, int) else 0


def _eosin_error():
    from eosin.errors import EosinError

    return EosinError


def entry() -> None:  # pragma: no cover - console script wrapper
    sys.exit(main())
