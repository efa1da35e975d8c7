"""Security defaults: hub weights pinned to a revision with their SHA-256 recorded; a local Dask cluster that
listens on this machine only, without a dashboard."""

from __future__ import annotations

import dataclasses
import json

import pytest

from eosin.errors import WeightsMismatchError

A, B, C = ("a" * 40), ("b" * 40), ("c" * 40)


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """A Hugging Face cache of one repository with three commits of its weights file; ``main`` points at B."""
    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hf" / "models--paige-ai--Virchow2"
    (repo / "refs").mkdir(parents=True)
    for commit in (A, B, C):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "pytorch_model.bin").write_bytes(commit.encode())
    (repo / "refs" / "main").write_text(B)
    return repo


def _spec(**changes):
    from eosin.models import get_spec

    return dataclasses.replace(get_spec("virchow2"), **changes)


def test_the_registry_revision_is_what_is_loaded(hub):
    from eosin.models._weights import resolve_weights

    path = resolve_weights(_spec(hub_revision=A), "hub")
    assert path.parent.name == A and path.read_bytes() == A.encode()  # not main (B)


def test_an_unpinned_entry_is_pinned_on_first_use_with_its_hash(hub, tmp_path):
    import hashlib

    from eosin.models._weights import PIN_FILE, local_weights_dir, resolve_weights

    spec = _spec()
    assert spec.hub_revision is None
    first = resolve_weights(spec, "hub")
    assert first.parent.name == B
    pin = json.loads((local_weights_dir(spec) / PIN_FILE).read_text())
    assert pin["revision"] == B and pin["sha256"] == hashlib.sha256(B.encode()).hexdigest()
    (hub / "refs" / "main").write_text(C)  # the repository moved on (a re-upload)
    assert resolve_weights(spec, "hub").parent.name == B  # still the pinned revision
    (hub / "snapshots" / B / "pytorch_model.bin").write_bytes(b"tampered")
    with pytest.raises(WeightsMismatchError, match="when first used") as info:
        resolve_weights(spec, "hub")
    assert PIN_FILE in str(info.value)


def test_local_dask_cluster_listens_on_loopback_without_dashboard(monkeypatch):
    pytest.importorskip("distributed")
    import psutil

    from eosin.cli import _common

    monkeypatch.setattr(_common, "_cpus", lambda: 1)
    with _common.slide_executor("local") as client:
        info = client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert all(address.startswith("tcp://127.0.0.1:") for address in info["workers"])
        # every socket the scheduler listens on (it runs in this process), its HTTP endpoint included
        listening = [c.laddr.ip for c in psutil.Process().net_connections("tcp") if c.status == "LISTEN"]
        assert listening and set(listening) == {"127.0.0.1"}
        assert client.cluster.scheduler.services.get("dashboard") is None or not _has_bokeh_dashboard(client)


def _has_bokeh_dashboard(client) -> bool:
    """Whether the scheduler serves Bokeh's interactive dashboard pages (``/status``)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(client.dashboard_link, timeout=10) as response:
            return response.status == 200 and b"bokeh" in response.read().lower()
    except urllib.error.URLError:
        return False
