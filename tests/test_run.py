"""map_slides: order kept, failures collected per item, same results in-process and in a pool."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from eosin.errors import CorruptSlideError
from eosin.run import map_slides


def _stage(item: int) -> int:
    if item == 3:
        raise CorruptSlideError("truncated.", path=f"slide{item}.svs", fix="copy it again")
    if item == 4:
        raise ValueError("a bug")
    return item * item


@pytest.mark.parametrize("workers", [1, 2])
def test_order_and_per_item_errors(workers):
    results = map_slides(_stage, range(6), workers=workers)
    assert [r.item for r in results] == list(range(6))
    assert [r.value for r in results] == [0, 1, 4, None, None, 25]
    assert isinstance(results[3].error, CorruptSlideError)
    assert results[3].error.path == "slide3.svs" and "copy it again" in str(results[3].error)
    assert isinstance(results[4].error, ValueError)
    assert [r.ok for r in results] == [True, True, True, False, False, True]


def test_any_executor_with_submit():
    with ThreadPoolExecutor(2) as pool:
        results = map_slides(_stage, [2, 3], executor=pool)
    assert results[0].value == 4 and isinstance(results[1].error, CorruptSlideError)


def test_empty():
    assert map_slides(_stage, []) == []


def test_dask_client_as_executor():
    """A Dask client maps the same stage; typed errors come back as errors, not worker crashes."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        results = map_slides(_stage, range(5), executor=client)
    assert [r.value for r in results] == [0, 1, 4, None, None]
    assert isinstance(results[3].error, CorruptSlideError) and "copy it again" in str(results[3].error)
    assert isinstance(results[4].error, ValueError)


def test_cli_runs_slides_on_a_local_dask_cluster(tmp_path, capsys):
    import json

    from conftest import SLIDES, require
    from eosin.cli._main import main

    svs = require(SLIDES / "CMU-1-Small-Region.svs")
    assert main(["tissue", str(svs), "--out", str(tmp_path / "a"), "-q"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main(["tissue", str(svs), "--out", str(tmp_path / "b"), "--scheduler", "local", "-q"]) == 0
    dask = json.loads(capsys.readouterr().out)
    assert dask["tissue_fraction"] == local["tissue_fraction"] and dask["n_sections"] == local["n_sections"]
