"""Clean exits: after ``kill -9`` of a multi-process run nothing survives, leaks or stays behind.

The runs are real ``eosin`` processes started in their own session, so every process they start (the fork
server, Python's resource tracker, the decoding workers) can be found by its session id after the parent died.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SLIDES, require

SVS = SLIDES / "CMU-1-Small-Region.svs"
EOSIN = [sys.executable, "-c", "import sys; from eosin.cli._main import main; sys.exit(main())"]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and /dev/shm")


def _session(sid: int) -> list[str]:
    """Command lines of the live processes of session ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != sid:
                continue
            state = next(
                line for line in (entry / "status").read_text().splitlines() if line.startswith("State")
            )
            if "Z" not in state:  # a zombie is already dead
                found.append((entry / "cmdline").read_text().replace("\0", " "))
        except (OSError, StopIteration):
            continue
    return found


def _blocks(pid: int) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"eosin_{pid}_")]


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@linux_only
@pytest.mark.torch
def test_kill_9_of_a_multi_process_embed_leaves_nothing(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tile = [*EOSIN, "tile", str(require(SVS)), "--mpp", "0.5", "--size", "224", "--out", str(tmp_path), "-q"]
    subprocess.run(tile, check=True, env=env, capture_output=True)
    store = tmp_path / "CMU-1-Small-Region" / "store.zarr"
    embed = [*EOSIN, "embed", str(store), "--encoder", "resnet18", "--weights", "none", "--runtime", "torch"]
    embed += ["--precision", "fp32", "--batch-size", "2", "--workers", "2", "-q"]
    proc = subprocess.Popen(embed, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        # main + fork server + resource tracker + 2 workers, with their shared memory blocks
        started = _wait(lambda: len(_session(proc.pid)) >= 5 and _blocks(proc.pid), 120)
        assert started and proc.poll() is None, _session(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _wait(lambda: not _session(proc.pid), 30), _session(proc.pid)
        assert _wait(lambda: not _blocks(proc.pid), 10)
    finally:  # whatever failed above, leave no process behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert not [p for p in tmp_path.rglob(".*") if p.is_file() and ".staging" not in p.parts]


@linux_only
def test_kill_9_of_a_multi_process_tile_leaves_no_worker(tmp_path):
    """``eosin tile`` over several slides with a pool of 2: the slide workers go with their parent."""
    slides = tmp_path / "slides"
    slides.mkdir()
    for i in range(12):
        shutil.copyfile(require(SVS), slides / f"s{i}.svs")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tile = [*EOSIN, "tile", str(slides), "--mpp", "0.5", "--out", str(tmp_path / "o"), "--workers", "2", "-q"]
    proc = subprocess.Popen(tile, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        # main + fork server + 2 workers (forked from the fork server, so they share its command line)
        assert _wait(lambda: len(_session(proc.pid)) >= 4, 120) and proc.poll() is None, _session(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _wait(lambda: not _session(proc.pid), 30), _session(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@linux_only
def test_the_next_run_removes_blocks_and_temporaries_of_dead_runs(tmp_path):
    """When the resource tracker died too (a whole process group killed), the next run cleans up."""
    import numpy as np

    from eosin.io import atomic_write_text
    from eosin.io._atomic import _HOST

    code = """
import os
from multiprocessing import resource_tracker
from eosin._mp import shared_block
block = shared_block(4096)
resource_tracker.unregister(block._name, "shared_memory")  # as if the tracker had been killed with us
print(block.name)
os._exit(9)
"""
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    name = dead.stdout.strip()
    assert dead.returncode == 9 and name.startswith("eosin_") and os.path.exists(f"/dev/shm/{name}")
    pid = int(name.split("_")[1])
    left = tmp_path / f".tiles.png.{_HOST}-{pid}-abc123.png"  # what a save killed half way leaves
    mine = tmp_path / f".tiles.png.{_HOST}-{os.getpid()}-live.png"  # a live writer's: kept
    left.write_bytes(b"half a png")
    mine.write_bytes(b"being written")

    from eosin.slide import open_slide
    from eosin.tiles import iter_tiles, make_grid
    from eosin.tissue import detect_tissue

    with open_slide(require(SVS)) as slide:
        grid = make_grid(slide, detect_tissue(slide), mpp=4.0, tile_size=64, min_tissue=0.5)
        batches = list(iter_tiles(slide, grid, batch_size=4, workers=2))
    assert np.array_equal(np.concatenate([b.indices for b in batches]), np.arange(len(grid)))
    assert not os.path.exists(f"/dev/shm/{name}")
    atomic_write_text(tmp_path / "tiles.png", "x")
    assert not left.exists() and mine.exists()


@linux_only
def test_a_module_named_like_the_standard_library_in_the_cwd_is_not_imported(tmp_path):
    (tmp_path / "inspect.py").write_text('raise SystemExit("the wrong inspect module was imported")\n')
    a, b = tmp_path / "a.svs", tmp_path / "b.svs"
    shutil.copyfile(require(SVS), a)
    shutil.copyfile(require(SVS), b)
    run = subprocess.run(
        [str(Path(sys.executable).parent / "eosin"), "tile", "a.svs", "b.svs", "--mpp", "2", "--size", "64"]
        + ["--out", "o", "--workers", "2", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": _absolute(os.environ.get("PYTHONPATH", ""))},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "wrong inspect" not in run.stderr and len(run.stdout.splitlines()) == 2


def _absolute(pythonpath: str) -> str:
    """PYTHONPATH with its entries made absolute (the run starts in another folder)."""
    return os.pathsep.join(str(Path(p).resolve()) for p in pythonpath.split(os.pathsep) if p)
