from __future__ import annotations

from pathlib import Path

import click


@click.group("import")
def import_():
    """Bring results of other tools into slide stores (features, QuPath GeoJSON)."""


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
@click.option(
    "--slide-mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Level-0 microns per pixel of the slide, to turn coordinates in microns (STAMP) into pixels "
    "(default: the mpp the store records for its slide).",
)
def features(h5, store_path, key, slide_mpp):
    """A CLAM/TRIDENT/STAMP feature file (features or feats, coords) into a store's features group.

    Coordinates are stored as level-0 pixels: STAMP's microns are converted with the slide's mpp, and a file in
    microns is refused when that mpp is unknown.
    """
    from eosin.io import SlideStore, import_features, read_features_h5, store_mpp

    store = SlideStore.open(store_path) if (store_path / "zarr.json").is_file() else None
    mpp = slide_mpp if slide_mpp is not None else (store_mpp(store) if store is not None else None)
    bag = read_features_h5(h5, mpp=mpp)  # a bad file is refused before any store is created for it
    store = store if store is not None else SlideStore.create(store_path)
    key = import_features(store, h5, key=key, slide_mpp=slide_mpp, bag=bag)
    click.echo(f"{h5} -> {store_path} features/{key}", err=True)
    return 0


@import_.command("geojson")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--store",
    "store_path",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The slide's store.",
)
@click.option("--key", default=None, help="Store key (default: the file's stem).")
def geojson(path, store_path, key):
    """A QuPath GeoJSON export (annotations, detections) into a store's annotations group, every feature kept."""
    from eosin.io import SlideStore, import_annotations

    key, n = import_annotations(SlideStore.open(store_path), path, key=key)
    click.echo(f"{n} features: {path} -> {store_path} annotations/{key}", err=True)
    return 0
