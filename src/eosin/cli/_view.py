from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (this machine only by default).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: a free one)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for annotations drawn or imported in the viewer (default: <first folder given>/annotations).",
)
@click.option(
    "--cache-mb", type=click.IntRange(min=0), default=256, show_default=True, help="Tile cache size."
)
def view(paths, host, port, out, cache_mb):
    """Open slides and eosin output folders in a web viewer: deep zoom, result layers, QuPath annotations.

    PATHS are slide files, folders of slides, or output folders of eosin commands (their stores are found).
    """
    from eosin.viewer import serve

    def ready(url: str) -> None:
        click.echo(f"eosin viewer on {url} (Ctrl+C to stop)", err=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(
                f"warning: listening on {host}: anyone who can reach this machine can see these slides and "
                "write annotations (there is no login).",
                err=True,
            )

    serve(list(paths), host=host, port=port, out=out, cache_mb=cache_mb, on_ready=ready)
    return 0
