"""The encoder registry as plain data: every entry complete and consistent; listing and lookup; the CLI; no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from eosin.cli._main import main
from eosin.errors import UnknownNameError, UsageError
from eosin.models import EncoderSpec, get_spec, list_encoders, register_encoder
from eosin.models._registry import _REGISTRY, LOADERS, POOLINGS

#: every model the issue names must be in the registry
REQUIRED = {
    "resnet18", "resnet50", "densenet121", "efficientnet_b0", "vit_small_patch16_224", "vit_base_patch16_224",
    "uni", "uni2-h", "conch", "conch-v1.5", "virchow", "virchow2", "h-optimus-0", "h-optimus-1", "h0-mini",
    "phikon", "phikon-v2", "prov-gigapath", "ctranspath", "lunit-dino", "hibou-b", "hibou-l", "kimianet",
    "plip", "quiltnet-b-32", "medsiglip-448",
}  # fmt: skip

SPECS = [get_spec(name) for name in list_encoders()]


def test_every_required_model_is_registered():
    assert REQUIRED <= set(list_encoders())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_entry_is_complete_and_consistent(spec: EncoderSpec):
    assert spec.name == spec.name.lower() and spec.architecture and spec.loader in LOADERS
    assert spec.pooling in POOLINGS
    assert spec.input_size > 0 and spec.embedding_dim > 0
    assert len(spec.mean) == 3 and len(spec.std) == 3
    assert all(0 < m < 1 for m in spec.mean) and all(0 < s < 1 for s in spec.std)
    assert spec.native_mpp is None or 0.1 <= spec.native_mpp <= 4
    assert spec.licence and spec.citation and spec.description
    # weights can be had from somewhere, or at least named for a local folder
    assert spec.hub_id or spec.weights_url or spec.weights_file
    if spec.hub_id:
        assert spec.hub_id.count("/") == 1 and spec.weights_file
    if spec.gated:
        assert spec.hub_id, "only hub repositories can be gated"
    if spec.weights_sha256:
        assert len(spec.weights_sha256) >= 8 and int(spec.weights_sha256, 16) >= 0


def test_pooling_and_dimensions_follow_the_model_cards():
    dims = {s.name: s.embedding_dim for s in SPECS}
    # Virchow/Virchow2: class token (1280) concatenated with the mean patch token
    assert (
        get_spec("virchow").pooling
        == get_spec("virchow2").pooling
        == get_spec("h0-mini").pooling
        == "cls+mean"
    )
    assert dims["virchow"] == dims["virchow2"] == 2 * 1280 and dims["h0-mini"] == 2 * 768
    assert (dims["uni"], dims["uni2-h"], dims["conch"], dims["conch-v1.5"]) == (1024, 1536, 512, 768)
    assert dims["h-optimus-0"] == dims["h-optimus-1"] == dims["prov-gigapath"] == 1536
    assert (dims["phikon"], dims["phikon-v2"], dims["lunit-dino"], dims["medsiglip-448"]) == (
        768,
        1024,
        384,
        1152,
    )
    assert get_spec("h-optimus-0").mean == (0.707223, 0.578729, 0.703617)
    assert get_spec("conch").input_size == get_spec("medsiglip-448").input_size == 448


def test_names_are_unique_and_registration_refuses_duplicates():
    assert len(set(list_encoders())) == len(_REGISTRY)
    with pytest.raises(UsageError, match="already registered"):
        register_encoder(get_spec("uni"))


def test_list_pattern_is_shell_style_and_sorted():
    assert list_encoders("virchow*") == ["virchow", "virchow2"]
    assert list_encoders("H-OPTIMUS-?") == ["h-optimus-0", "h-optimus-1"]
    assert list_encoders("nothing*") == []
    assert list_encoders() == sorted(list_encoders())


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'virchow2'") as info:
        get_spec("virchov2")
    assert info.value.exit_code == 2
    assert get_spec("UNI") is get_spec("uni")


def test_cli_list_json_is_every_spec(capsys):
    assert main(["models", "list", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == list_encoders()
    virchow = next(r for r in records if r["name"] == "virchow")
    assert virchow["embedding_dim"] == 2560 and virchow["gated"] is True and virchow["magnification"] == 20.0


def test_cli_list_table_and_pattern(capsys):
    assert main(["models", "list", "h*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["name", "dim", "input", "mpp", "licence", "gated"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == list_encoders("h*")
    hoptimus0 = next(line for line in lines if line.startswith("h-optimus-0 "))
    assert "1536" in hoptimus0 and "bioptimus/H-optimus-0" in hoptimus0


def test_cli_info_and_unknown_name(capsys):
    assert main(["models", "info", "uni2-h"]) == 0
    out = capsys.readouterr().out
    assert "MahmoodLab/UNI2-h" in out and "1536" in out and "Nature Medicine" in out
    assert main(["models", "info", "uni3"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_listing_models_does_not_import_torch():
    code = (
        "import sys; from eosin.cli._main import main; main(['models', 'list', '--json']); "
        "import eosin.models; sys.exit(int('torch' in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unreachable_hub_fails_fast_with_the_fix(tmp_path, monkeypatch):
    """Not offline by setting, but no network: one quick probe, then the error naming the hub id and the fix."""
    from eosin.errors import WeightsUnavailableError
    from eosin.models import _weights, get_spec

    for var in ("HF_HUB_OFFLINE", "EOSIN_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("EOSIN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_weights, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match="cannot be reached") as info:
        _weights.resolve_weights(get_spec("phikon"), "hub")
    assert "owkin/phikon" in str(info.value) and "--weights" in str(info.value)
