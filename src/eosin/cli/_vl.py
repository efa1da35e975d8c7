"""Vision-language commands: ``zeroshot``, ``index``, ``search``, ``heatmap`` and ``evaluate retrieval``, thin
layers over :mod:`eosin.vl`."""

from __future__ import annotations

from pathlib import Path

import click

from eosin.cli._common import echo_json, precision_option

_WEIGHTS_HELP = "'hub' (EOSIN_HOME/models/<name>, the Hugging Face cache, the hub), or the model's folder."


def _model_options(f):
    f = precision_option("Autocast of the image tower")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")(f)
    f = click.option("--weights", default="hub", show_default=True, help=_WEIGHTS_HELP)(f)
    return f


def _tile_options(f):
    """How tiles are read: which grid, batch size, decoding processes, progress bar."""
    f = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(f)
    f = click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=None,
        help="Decoding processes (default: decided by measuring the first batch; 0: in this process).",
    )(f)
    f = click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)(f)
    return click.option("--grid", "grid_key", default=None, help="Which stored grid, when a store holds several.")(f)


def _load(model, weights, device, precision):
    from eosin.vl import load_vl_model

    return load_vl_model(model, weights=weights, device=device, precision=precision)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model", required=True, help="Vision-language model: a registry name or a trained model's folder."
)
@click.option(
    "--classes",
    "prompts",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON: class -> prompts, or CONCH's {classnames, templates}.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Predictions CSV."
)
@_model_options
@_tile_options
def zeroshot(inputs, model, prompts, out, weights, device, precision, grid_key, batch_size, workers, quiet):
    """Classify tiles (labelled tile folders, image files, slide stores) from text prompts, without training.

    Writes a predictions CSV that `eosin evaluate classification` reads (id, label when the tiles come from
    labelled folders, pred, p_<class>, provenance) and prints one JSON summary line.
    """
    from eosin.vl import load_prompts, zero_shot_sources

    classes = load_prompts(prompts)  # a bad prompt file fails before the model loads
    vl = _load(model, weights, device, precision)
    echo_json(
        zero_shot_sources(
            inputs,
            classes,
            model=vl,
            out=out,
            batch_size=batch_size,
            grid_key=grid_key,
            workers=workers,
            progress=not quiet,
        )
    )


@click.command("index")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model", required=True, help="Vision-language model: a registry name or a trained model's folder."
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Index file (.npz)."
)
@_model_options
@_tile_options
def index_(inputs, model, out, weights, device, precision, grid_key, batch_size, workers, quiet):
    """Build a searchable index of tile embeddings (stores, tile folders, images) with their provenance."""
    from eosin.errors import UsageError
    from eosin.vl import index_sources

    if out.suffix != ".npz":
        raise UsageError(
            f"the index file must end in .npz: {out}.", fix=f"use --out {out.with_suffix('.npz')}"
        )
    vl = _load(model, weights, device, precision)
    index = index_sources(
        inputs,
        model=vl,
        out=out,
        batch_size=batch_size,
        grid_key=grid_key,
        workers=workers,
        progress=not quiet,
    )
    echo_json({"index": str(out), "n_tiles": len(index), "dim": index.dim, **vl.describe()})


@click.command()
@click.argument("index", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text", default=None, help="Text query.")
@click.option("--image", type=click.Path(path_type=Path), default=None, help="Image query (a tile file).")
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many tiles.")
@click.option("--model", default=None, help="Default: the model the index was built with.")
@click.option(
    "--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Contact sheet PNG."
)
@_model_options
def search(index, text, image, k, model, sheet, weights, device, precision):
    """Print the K tiles of INDEX nearest to a text or an image, one JSON line each (best first)."""
    from eosin.errors import UsageError
    from eosin.vl import index_model, load_index, search as run_search

    if (text is None) == (image is None):
        raise UsageError("give one query: --text or --image.", fix='e.g. --text "tumour budding"')
    tiles = load_index(index)
    if image is not None:
        from eosin.vl import read_image

        image = read_image(image)  # a non-image fails here, before the model loads
    vl = _load(model or index_model(tiles), weights, device, precision)
    hits = run_search(tiles, text=text, image=image, model=vl, k=k)
    for hit in hits:
        echo_json(hit)
    if sheet is not None:
        from eosin.vl import contact_sheet

        contact_sheet(hits, sheet, title=f"query: {text}" if text else "query: image")


@click.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--text", "texts", multiple=True, required=True, help="A concept; repeat for several panels.")
@click.option(
    "--model", required=True, help="Vision-language model: a registry name or a trained model's folder."
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Picture (default: STORE/../text_heatmap.png).",
)
@_model_options
@_tile_options
def heatmap(store, texts, model, png, weights, device, precision, grid_key, batch_size, workers, quiet):
    """Score a slide's tiles against typed concepts; write text_heatmap/<key> into the store and a PNG."""
    from eosin.vl import text_heatmap

    vl = _load(model, weights, device, precision)
    png = png or store.parent / "text_heatmap.png"
    echo_json(
        text_heatmap(
            store,
            list(texts),
            model=vl,
            grid_key=grid_key,
            png=png,
            batch_size=batch_size,
            workers=workers,
            progress=not quiet,
        )
    )


@click.command()
@click.argument("index", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--classes",
    "prompts",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Prompt file for text-to-image queries (classes named as the tile labels).",
)
@click.option("--model", default=None, help="Default: the model the index was built with.")
@click.option("--weights", default="hub", show_default=True, help=_WEIGHTS_HELP)
@click.option("--bootstrap", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def retrieval(index, prompts, model, weights, bootstrap, seed):
    """Recall@1/5/10/50 of a labelled index: image-to-image (query left out) and text-to-image, with 95% CIs."""
    from eosin.vl import evaluate_retrieval, index_model, load_index, load_prompts

    tiles = load_index(index)
    classes = load_prompts(prompts) if prompts is not None else None
    vl = _load(model or index_model(tiles), weights, "auto", "auto") if classes is not None else None
    echo_json(evaluate_retrieval(tiles, classes, model=vl, n_bootstrap=bootstrap, seed=seed))
