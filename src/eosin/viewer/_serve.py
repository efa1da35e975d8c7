"""Start the viewer: bind the socket first (a port in use is a clear usage error), then run uvicorn on it."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import Any

from eosin.errors import UsageError

__all__ = ["bind", "serve"]


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); :class:`UsageError` when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is already in use.",
                fix="stop the program using it, or choose another port with --port (0 picks a free one)",
            ) from None
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror}).", fix="check --host and --port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    paths: list[str | os.PathLike[str]],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    out: str | os.PathLike[str] | None = None,
    cache_mb: int = 256,
    tile_format: str = "jpg",
    on_ready: Callable[[str], Any] | None = None,
) -> None:
    """Serve the slides and eosin outputs under ``paths`` until interrupted.

    Parameters
    ----------
    paths
        Slide files, folders of slides, eosin output folders (their ``store.zarr`` stores are found).
    host, port
        Where to listen; the default serves this machine only. ``port=0`` picks a free port.
    out
        Folder annotations are written to (default: ``<first folder given>/annotations``).
    cache_mb
        Size of the tile cache.
    on_ready
        Called with the URL once the socket is bound (the CLI prints it).
    """
    import uvicorn

    from eosin.viewer._app import create_app
    from eosin.viewer._catalog import Catalog

    catalog = Catalog(list(paths), out=out)
    app = create_app(catalog, cache_bytes=cache_mb * 2**20, tile_format=tile_format)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/"
    if on_ready is not None:
        on_ready(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
