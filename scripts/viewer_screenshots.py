#!/usr/bin/env python3
"""Screenshots of the viewer for docs/viewer.md: the cohort page and a slide page with layers switched on.

    python scripts/viewer_screenshots.py OUT_DIR SLIDE_ID PATHS... [--layer NAME]... [--zoom Z]

Serves PATHS on a free loopback port, opens them in headless Chromium (Debian's ``chromium``, through Playwright)
and writes OUT_DIR/viewer-cohort.png and OUT_DIR/viewer-slide.png.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("slide")
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--layer", action="append", default=[], help="layer name to switch on (repeat)")
    parser.add_argument("--cmap", default="viridis")
    parser.add_argument("--zoom", type=float, default=None)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from eosin.viewer import Catalog, create_app
    from eosin.viewer._serve import bind

    catalog = Catalog(args.paths, out=tempfile.mkdtemp(prefix="eosin-shots-"))
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(catalog), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        page.goto(url + "/")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(args.out / "viewer-cohort.png"), full_page=True)
        page.goto(f"{url}/slides/{args.slide}")
        page.wait_for_function(
            "window.eosinViewer && window.eosinViewer.ready && window.eosinViewer.tilesLoaded"
        )
        if args.zoom is not None:
            page.evaluate(f"window.eosinViewer.map.setZoom({args.zoom})")
        page.select_option("#cmap", args.cmap)
        for name in args.layer:
            page.locator("div.layer", has=page.locator("label", has_text=name)).first.locator(
                "input[type=checkbox]"
            ).check()
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(800)
        page.screenshot(path=str(args.out / "viewer-slide.png"))
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
