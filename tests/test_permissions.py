"""Outputs honour the user's umask: reports, pictures and stores are as readable as any file the user makes
(``0o644`` under umask 022, ``0o640`` under 027), not owner-only as ``tempfile.mkstemp`` would leave them."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import SLIDES, require
from eosin.cli._main import main


@pytest.fixture()
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_tissue_and_qc_outputs_honour_the_umask(tmp_path, umask, mask):
    from eosin.io import current_umask

    slide = require(SLIDES / "CMU-1-Small-Region.svs")
    umask(mask)
    assert current_umask() == mask
    out = tmp_path / "out"
    assert main(["tissue", str(slide), "--out", str(out), "--workers", "0", "-q"]) == 0
    assert main(["qc", str(slide), "--out", str(out), "--workers", "0", "-q"]) == 0
    files, wrong = 0, []
    for root, dirs, names in os.walk(out):
        for name in names:
            path = os.path.join(root, name)
            files += 1
            if stat.S_IMODE(os.stat(path).st_mode) != 0o666 & ~mask:
                wrong.append((path, oct(stat.S_IMODE(os.stat(path).st_mode))))
        for name in dirs:
            path = os.path.join(root, name)
            if stat.S_IMODE(os.stat(path).st_mode) != 0o777 & ~mask:
                wrong.append((path, oct(stat.S_IMODE(os.stat(path).st_mode))))
    kinds = {os.path.splitext(n)[1] for _, _, names in os.walk(out) for n in names}
    assert {".png", ".json", ".html"} <= kinds and files > 20
    assert not wrong, wrong


def test_atomic_writers_honour_the_umask(tmp_path, umask):
    from eosin.io import atomic_path, atomic_write_bytes, atomic_write_text

    umask(0o027)
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    with atomic_path(tmp_path / "c.dat") as tmp:
        tmp.write_bytes(b"x")
    for name in ("a.txt", "b.bin", "c.dat"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_a_writer_that_replaces_the_temporary_file_still_honours_the_umask(tmp_path, umask, mask):
    """safetensors' ``save_file`` writes a file of its own (owner-only) over the path it is given: a model
    checkpoint came out 0600 while its config.json beside it was 0644."""
    import torch
    from safetensors.torch import save_file

    from eosin.io import atomic_path

    umask(mask)
    with atomic_path(tmp_path / "w.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))
    with atomic_path(tmp_path / "r.bin") as tmp:  # any writer that unlinks and recreates
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    for name in ("w.safetensors", "r.bin"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask, name


@pytest.mark.parametrize("replace_folder", [False, True], ids=["file-by-file", "whole-folder"])
@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_checkpoints_honour_the_umask(tmp_path, umask, mask, replace_folder):
    """Every trained model is written by eosin.io.write_checkpoint: its files and folder follow the umask."""
    import torch

    from eosin.io import read_checkpoint, write_checkpoint

    umask(mask)
    folder = write_checkpoint(
        tmp_path / "model", {"w": torch.arange(4.0)}, {"kind": "test"}, replace_folder=replace_folder
    )
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in folder.iterdir()}
    assert modes and all(m == 0o666 & ~mask for m in modes.values()), {k: oct(v) for k, v in modes.items()}
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o777 & ~mask
    tensors, config = read_checkpoint(folder)
    assert config["kind"] == "test" and torch.equal(tensors["w"], torch.arange(4.0))
