from __future__ import annotations

from pathlib import Path

import click


@click.group()
def export():
    """Export a slide store's contents for other tools."""


@export.command("tiles")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV file to write.",
)
@click.option("--key", default=None, help="Which grid, when the store holds several.")
def tiles(store, csv_path, key):
    """Tiles of a grid as CSV: x, y, width, height (level-0 pixels), tissue_fraction, pen_fraction, section."""
    from eosin.io import SlideStore
    from eosin.io import grid_to_csv

    n = grid_to_csv(SlideStore.open(store), csv_path, key=key)
    click.echo(f"{n} tiles -> {csv_path}", err=True)
    return 0


@export.command("geojson")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="GeoJSON file to write.",
)
@click.option(
    "--key", default=None, help="Which tissue detection (or annotations), when the store holds several."
)
@click.option(
    "--annotations",
    is_flag=True,
    help="Export the annotations imported with 'eosin import geojson' instead of the tissue contours.",
)
def geojson(store, out, key, annotations):
    """Tissue and pen contours (or stored annotations) as a GeoJSON FeatureCollection QuPath imports (level-0 pixels)."""
    from eosin.io import SlideStore, export_annotations
    from eosin.io import tissue_to_geojson

    if annotations:
        n = export_annotations(SlideStore.open(store), out, key=key)
    else:
        n = tissue_to_geojson(SlideStore.open(store), out, key=key)
    click.echo(f"{n} features -> {out}", err=True)
    return 0


@export.command("features")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--h5",
    "h5_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="HDF5 file to write.",
)
@click.option(
    "--layout",
    type=click.Choice(["clam", "trident", "stamp"]),
    default="clam",
    show_default=True,
    help="Dataset names of the tool that will read the file.",
)
@click.option("--key", default=None, help="Which features, when the store holds several.")
@click.option(
    "--slide-mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Level-0 microns per pixel, when the store records none (STAMP stores microns; TRIDENT a magnification).",
)
@click.option(
    "--patch-size-level0",
    type=click.IntRange(min=1),
    default=None,
    help="Level-0 side of a tile, for features imported from a file that did not state it.",
)
def features(store, h5_path, layout, key, slide_mpp, patch_size_level0):
    """Tile features as HDF5 for CLAM, TRIDENT or STAMP, in each tool's units and coordinate attributes.

    CLAM and TRIDENT: level-0 pixel coords with patch_size/patch_level (CLAM) or patch_size_level0 and the
    magnifications (TRIDENT); STAMP: coords in microns with unit="um" and tile_size_um.
    """
    from eosin.io import SlideStore, export_features

    n = export_features(
        SlideStore.open(store),
        key,
        h5_path,
        layout=layout,
        slide_mpp=slide_mpp,
        patch_size_level0=patch_size_level0,
    )
    click.echo(f"{n} feature rows -> {h5_path}", err=True)
    return 0
