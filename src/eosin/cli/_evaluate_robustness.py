"""``eosin evaluate robustness``: a tile classifier under stain and scanner perturbations."""

from __future__ import annotations

import json
from pathlib import Path

import click

from eosin.cli._common import echo_json


def _numbers(kind):
    def parse(ctx, param, value):
        if value is None or value.strip().lower() in ("", "none"):
            return ()
        try:
            return tuple(kind(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"a comma-separated list of numbers, not {value!r}") from None

    return parse


def _names(ctx, param, value):
    if value is None or value.strip().lower() in ("", "none"):
        return ()
    from eosin.stain import list_normalizers

    names = tuple(v.strip().lower() for v in value.split(","))
    bad = [n for n in names if n not in list_normalizers()]
    if bad:
        raise click.BadParameter(f"unknown normaliser(s) {bad}; use {list_normalizers()}")
    return names


@click.command()
@click.argument("tiles", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Classifier checkpoint folder (eosin train tiles --out).",
)
@click.option(
    "--targets",
    type=click.Path(exists=True, path_type=Path),
    multiple=True,
    help="Stain-transfer target images (files, or a folder of them); repeatable.",
)
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Image the normalisers before the model are fitted to (default: the first target).",
)
@click.option(
    "--hed",
    default="0.02,0.05,0.1,0.2",
    show_default=True,
    callback=_numbers(float),
    help="HED jitter strengths (sigma; bias = sigma/5); 'none' to skip.",
)
@click.option(
    "--jpeg",
    default="90,70,50,30,10",
    show_default=True,
    callback=_numbers(int),
    help="JPEG qualities; 'none' to skip.",
)
@click.option(
    "--blur",
    default="0.5,1,2,4",
    show_default=True,
    callback=_numbers(float),
    help="Gaussian blur sigmas in pixels; 'none' to skip.",
)
@click.option(
    "--transfer",
    default="reinhard,macenko,vahadane",
    show_default=True,
    callback=_names,
    help="Methods that carry the tiles to each target's stain.",
)
@click.option(
    "--normalizers",
    default="reinhard,macenko,vahadane",
    show_default=True,
    callback=_names,
    help="Normalisers tried before the model (each its own pipeline); 'none' for the model alone.",
)
@click.option(
    "--metric",
    type=click.Choice(["balanced_accuracy", "accuracy", "macro_f1", "cohen_kappa"]),
    default="balanced_accuracy",
    show_default=True,
)
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option(
    "--max-tiles",
    type=click.IntRange(min=1),
    default=None,
    help="Use a class-stratified random subset of this many tiles.",
)
@click.option(
    "--label-from", type=click.Choice(["auto", "folder", "prefix", "csv"]), default="auto", show_default=True
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for robustness.json and robustness.png.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def robustness(
    tiles,
    model_path,
    targets,
    reference,
    hed,
    jpeg,
    blur,
    transfer,
    normalizers,
    metric,
    n_bootstrap,
    max_tiles,
    label_from,
    device,
    seed,
    out,
    as_json,
    quiet,
):
    """How much a tile classifier's metric drops, and how many predictions flip, when the labelled TILES (a
    folder or CSV, as eosin train tiles reads) are perturbed: HED jitter, stain transfer to real targets, JPEG,
    blur; with bootstrap CIs, alone and with each stain normaliser before the model."""
    import numpy as np

    from eosin.data import load_tile_table, read_tile
    from eosin.errors import UsageError
    from eosin.evaluate import evaluate_robustness, plot_robustness
    from eosin.io import atomic_write_text

    if (tiles / "zarr.json").is_file() or (tiles / "store.zarr").is_dir():
        raise UsageError(
            "robustness needs labelled tiles; a slide store has no tile labels.",
            path=tiles,
            fix="give a folder of tiles by class, or a path,label CSV",
        )
    table = load_tile_table(tiles, label_from=label_from)
    index = np.arange(len(table))
    if max_tiles is not None and max_tiles < len(table):
        rng = np.random.default_rng(seed)
        labels = np.asarray(table.labels)
        share = max_tiles / len(table)
        index = np.sort(
            np.concatenate(
                [
                    rng.choice(
                        np.flatnonzero(labels == c), max(1, round(share * (labels == c).sum())), replace=False
                    )
                    for c in np.unique(labels)
                ]
            )
        )
    boxes = getattr(table, "boxes", None)
    images = [read_tile(table.paths[i], None if boxes is None else boxes[i]) for i in index]
    sizes = {im.shape for im in images}
    if len(sizes) > 1:
        import cv2

        side = min(min(s[:2]) for s in sizes)
        images = [cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in images]
    files = []
    for item in targets:
        files += (
            sorted(
                p for p in item.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff")
            )
            if item.is_dir()
            else [item]
        )
    report = evaluate_robustness(
        model_path,
        np.stack(images),
        [table.labels[i] for i in index],
        hed=hed,
        targets=files,
        transfer_methods=transfer if files else (),
        jpeg=jpeg,
        blur=blur,
        normalizers=normalizers if (files or reference) else (),
        reference=reference,
        metric=metric,
        n_bootstrap=n_bootstrap,
        seed=seed,
        device=device,
        progress=not quiet,
    )
    report["tiles"] = str(tiles)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "robustness.json", json.dumps(report, indent=1) + "\n")
    plot_robustness(report, out / "robustness.png")
    if as_json:
        echo_json(report)
        return 0
    click.echo(
        f"{report['metric']} on {report['n_tiles']} tiles -> {out / 'robustness.json'}, robustness.png"
    )
    for name, clean in report["pipelines"].items():
        rows = [c for c in report["conditions"] if c["pipeline"] == name]
        worst = max(rows, key=lambda c: c["drop"]) if rows else None
        line = f"  {name:9s} clean {clean['value']:.3f} [{clean['ci'][0]:.3f}, {clean['ci'][1]:.3f}]"
        if worst:
            line += (
                f"; worst drop {worst['drop']:+.3f} at {worst['perturbation']} {worst['strength']}, "
                f"mean flip rate {np.mean([c['flip_rate'] for c in rows]):.3f}"
            )
        click.echo(line)
    return 0
