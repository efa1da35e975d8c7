from __future__ import annotations

from pathlib import Path

import click


@click.group("import")
def import_():
    """Bring results of other tools into slide stores."""


@import_.command("features")
@click.argument("h5", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--store",
    "store_path",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The slide's store (created when absent).",
)
@click.option("--key", default=None, help="Store key (default: <file stem>--imported).")
def features(h5, store_path, key):
    """A CLAM/TRIDENT/STAMP feature file (features or feats, coords) into a store's features group."""
    from eosin.io import SlideStore
    from eosin.io._features_h5 import import_features

    key = import_features(SlideStore.create(store_path), h5, key=key)
    click.echo(f"{h5} -> {store_path} features/{key}", err=True)
    return 0
