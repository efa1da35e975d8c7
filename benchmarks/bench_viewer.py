"""Deep-zoom tile serving under load: eosin's viewer against OpenSlide's DeepZoomGenerator, both on FastAPI/uvicorn.

``python benchmarks/run.py viewer-tiles`` (prints two lines: ``viewer-tiles-cold`` and ``viewer-tiles-warm``)

A bounded load test on loopback: each side runs as its own server process (uvicorn, one process, FastAPI's thread
pool for the tile endpoint) over the big benchmark slide (40,000 x 30,000 px, 40x, 256-px JPEG tiles). Eight client
threads, each with one keep-alive connection, request the same fixed list of distinct 256-px JPEG tiles at mixed
zoom levels (the deepest four levels, where the pixels are; a fixed seed), split between them. The first pass over
the list is *cold* (a fresh server; the file is in the OS page cache for both), the second pass over the same list
is *warm*. Each side runs twice (order A B B A) and its better run counts. Unit: tiles/s over the pass; the record
also gives p50/p95 latency per request and each server's peak RSS.

- eosin: ``eosin.viewer.create_app`` (tiles from ``Slide.read_region``, OpenCV JPEG, the viewer's LRU tile cache).
- baseline: a plain ``openslide.deepzoom.DeepZoomGenerator(tile_size=256, overlap=0)`` per slide, one shared
  OpenSlide handle, PIL JPEG at the same quality (80), the same framework and thread pool; no tile cache of its own
  (OpenSlide keeps its internal cache of decoded slide tiles, as deployed).
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common

BENCHES = ("viewer-tiles",)
N_TILES = 640
CLIENTS = 8
QUALITY = 80
PASS_TIMEOUT_S = 240


# ---------------------------------------------------------------------- servers (run in child processes)
def _openslide_app(slide_path: str):
    import io
    import re

    import openslide
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response
    from openslide.deepzoom import DeepZoomGenerator

    dzg = DeepZoomGenerator(openslide.OpenSlide(slide_path), tile_size=256, overlap=0, limit_bounds=False)
    app = FastAPI()

    @app.get("/tiles/{level}/{name}")
    def tile(level: int, name: str):
        m = re.fullmatch(r"(\d+)_(\d+)\.jpg", name)
        try:
            image = dzg.get_tile(level, (int(m.group(1)), int(m.group(2))))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 404)
        buf = io.BytesIO()
        image.save(buf, "jpeg", quality=QUALITY)
        return Response(buf.getvalue(), media_type="image/jpeg")

    @app.get("/info")
    def info():
        return {"level_count": dzg.level_count}

    return app


def _eosin_app(slide_path: str):
    from eosin.viewer import Catalog, create_app

    return create_app(Catalog([slide_path], out=str(_common.WORK / "viewer-annotations")), quality=QUALITY)


def serve(side: str, slide_path: str) -> None:
    import uvicorn

    from eosin.viewer._serve import bind

    app = _eosin_app(slide_path) if side == "eosin" else _openslide_app(slide_path)
    sock = bind("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


# ---------------------------------------------------------------------- load
def _tiles(slide_path: Path) -> tuple[list[tuple[int, int, int]], int]:
    """A fixed list of distinct (zoom, col, row) tiles at the deepest four zooms, and the deepest zoom."""
    import numpy as np

    from eosin import open_slide
    from eosin.viewer import DeepZoom

    with open_slide(slide_path) as slide:
        dz = DeepZoom.for_slide(slide)
    rng = np.random.default_rng(0)
    picked: list[tuple[int, int, int]] = []
    zooms = [dz.max_zoom - k for k in range(4)]
    share = [0.4, 0.3, 0.2, 0.1]
    for z, frac in zip(zooms, share):
        cols, rows = dz.grid_size(z)
        n = min(int(N_TILES * frac), cols * rows)
        flat = rng.choice(cols * rows, size=n, replace=False)
        picked += [(z, int(i % cols), int(i // cols)) for i in flat]
    order = rng.permutation(len(picked))
    return [picked[i] for i in order], dz.max_zoom


def _run_pass(port: int, urls: list[str]) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + PASS_TIMEOUT_S

    def client(part: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for url in part:
            if time.perf_counter() > deadline:
                break
            t = time.perf_counter()
            conn.request("GET", url)
            response = conn.getresponse()
            body = response.read()
            mine.append(time.perf_counter() - t)
            if response.status != 200 or not body.startswith(b"\xff\xd8"):
                with lock:
                    errors.append(f"{url}: {response.status}")
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(urls[i::CLIENTS],)) for i in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[:3]}")
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "tiles_per_s": round(len(ordered) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
    }


def _measure(side: str, slide_path: Path, tiles: list[tuple[int, int, int]], max_zoom: int) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", side, str(slide_path)], stdout=subprocess.PIPE, text=True
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _common._tree_rss_kb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        port = int(proc.stdout.readline())
        if side == "eosin":
            urls = [f"/api/slides/big/tiles/{z}/{c}_{r}.jpg" for z, c, r in tiles]
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(200):
                try:
                    conn.request("GET", "/info")
                    top = json.loads(conn.getresponse().read())["level_count"] - 1
                    break
                except OSError:
                    time.sleep(0.1)
            conn.close()
            urls = [f"/tiles/{top - (max_zoom - z)}/{c}_{r}.jpg" for z, c, r in tiles]
        _wait(port)
        cold = _run_pass(port, urls)
        warm = _run_pass(port, urls)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        done.set()
        sampler.join()
    return {"cold": cold, "warm": warm, "peak_rss_mb": round(peak[0] / 1024.0, 1)}


def _wait(port: int) -> None:
    for _ in range(600):
        try:
            with _Probe(port):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not answer")


class _Probe:  # one connection attempt, as a context manager
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def __enter__(self):
        self.conn.connect()
        return self

    def __exit__(self, *exc):
        self.conn.close()


def _best(runs: list[dict], phase: str) -> dict:
    return max((r[phase] for r in runs), key=lambda p: p["tiles_per_s"])


def run(names: list[str]) -> list[dict]:
    slide_path = _common.big_slide()
    tiles, max_zoom = _tiles(slide_path)
    # the machine is shared: each side runs twice, in the order A B B A so that a drift in load hits both alike,
    # and each side's better run counts
    runs: dict[str, list[dict]] = {"eosin": [], "openslide": []}
    for side in ("eosin", "openslide", "openslide", "eosin"):
        runs[side].append(_measure(side, slide_path, tiles, max_zoom))
    ours = {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs["eosin"])}
    theirs = {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs["openslide"])}
    records = []
    for phase in ("cold", "warm"):
        a, b = _best(runs["eosin"], phase), _best(runs["openslide"], phase)
        records.append(
            {
                "bench": f"viewer-tiles-{phase}",
                "unit": "tiles/s",
                "eosin": a["tiles_per_s"],
                "baseline": "OpenSlide DeepZoomGenerator on FastAPI/uvicorn",
                "baseline_value": b["tiles_per_s"],
                "ratio": round(a["tiles_per_s"] / b["tiles_per_s"], 2),
                "peak_rss_mb": ours["peak_rss_mb"],
                "baseline_peak_rss_mb": theirs["peak_rss_mb"],
                "p50_ms": a["p50_ms"],
                "p95_ms": a["p95_ms"],
                "baseline_p50_ms": b["p50_ms"],
                "baseline_p95_ms": b["p95_ms"],
                "requests": a["n"],
                "clients": CLIENTS,
                "slide": Path(slide_path).name,
            }
        )
    return records


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        for record in run(list(BENCHES)):
            print(json.dumps(record), flush=True)
