"""Helpers shared by the benchmarks: peer venvs, the big slide, peak RSS of a process tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work"


def data_dir() -> Path:
    env = os.environ.get("EOSIN_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def peer_venv(name: str, packages: list[str]) -> Path:
    """A venv under benchmarks/_work with ``packages`` installed (made once); returns its python."""
    venv = WORK / f"venv-{name}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = "\n".join(packages)
    if not (stamp.exists() and stamp.read_text() == wanted):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
        stamp.write_text(wanted)
    return python


def fresh_home(name: str) -> str:
    """An empty ``$EOSIN_HOME`` for one benchmark run (calibration decisions start from nothing)."""
    import shutil

    home = WORK / f"home-{name}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return str(home)


def big_slide() -> Path:
    """The 40,000 x 30,000 px 40x pyramidal TIFF from ../shared/tools/make_big_slide.py (built once)."""
    env = os.environ.get("EOSIN_BIG_SLIDE")
    if env:
        return Path(env)
    out = WORK / "big.tiff"
    if not out.exists():
        tool = data_dir().parent / "tools" / "make_big_slide.py"
        python = peer_venv("pyvips", ["pyvips", "pyvips-binary", "numpy"])
        WORK.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part.tiff")
        subprocess.run([str(python), str(tool), str(tmp)], check=True)
        tmp.replace(out)
    return out


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc), in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_measured(cmd: list[str], *, env: dict | None = None, poll: float = 0.05) -> tuple[dict, float]:
    """Run ``cmd`` (which prints one JSON object last on stdout); return it and the tree's peak RSS in MB."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            time.sleep(poll)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak[0] / 1024.0
