"""``eosin models``: the encoder registry on the command line (no PyTorch needed)."""

from __future__ import annotations

import click

from eosin.cli._common import echo_json


@click.group()
def models():
    """List and describe the encoders of the model registry."""


@models.command("list")
@click.argument("pattern", required=False, default="*")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of the full entries on stdout.")
def list_cmd(pattern, as_json):
    """List the encoders whose name matches PATTERN (shell-style, e.g. 'uni*'; default: all).

    Columns: embedding size, input size in pixels, native resolution (µm/px), licence, whether the weights
    are gated on the Hugging Face hub (log in and accept the licence there first), and whether they are usable
    offline on this machine (package: an installed Python package carries them; local: $EOSIN_HOME/models;
    hf cache: the Hugging Face cache; no: they must be fetched first).
    """
    from eosin.models import get_spec, list_encoders, offline_source

    specs = [get_spec(name) for name in list_encoders(pattern)]
    offline = {s.name: offline_source(s) for s in specs}
    if as_json:
        echo_json([{**spec.to_dict(), "offline": offline[spec.name]} for spec in specs])
        return 0
    if not specs:
        click.echo(f"no encoder matches {pattern!r}.", err=True)
        return 0
    header = ("name", "dim", "input", "mpp", "licence", "gated", "offline", "weights")
    rows = [
        (
            s.name,
            str(s.embedding_dim),
            str(s.input_size),
            "-" if s.native_mpp is None else f"{s.native_mpp:g}",
            s.licence,
            "yes" if s.gated else "no",
            offline[s.name] or "no",
            _source(s),
        )
        for s in specs
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _source(spec) -> str:
    if spec.weights_package:
        pip_name = spec.weights_pip or spec.weights_package
        return f"pip {pip_name}" + (f" (eosin[{spec.weights_extra}])" if spec.weights_extra else "")
    return spec.hub_id or spec.weights_url or "local file only"


@models.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as one JSON object.")
def info_cmd(name, as_json):
    """Describe encoder NAME: architecture, preprocessing, weights source, licence and citation."""
    from eosin.models import get_spec

    from eosin.models import offline_source

    spec = get_spec(name)
    record = {**spec.to_dict(), "offline": offline_source(spec)}
    if as_json:
        echo_json(record)
        return 0
    click.echo(click.style(spec.name, bold=True) + (f"  {spec.description}" if spec.description else ""))
    for key in (
        "architecture",
        "arch_kwargs",
        "loader",
        "input_size",
        "mean",
        "std",
        "native_mpp",
        "magnification",
        "embedding_dim",
        "pooling",
        "licence",
        "hub_id",
        "weights_file",
        "weights_url",
        "gated",
        "offline",
        "weights_sha256",
        "weights_package",
        "weights_pip",
        "weights_extra",
        "key_map",
        "citation",
    ):
        value = record[key]
        if value in (None, {}, ""):
            continue
        click.echo(f"  {key:15s} {value}")
    return 0
