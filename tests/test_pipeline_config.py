"""The run configuration of ``eosin run``: defaults equal to the CLI's, errors that name the key, shipped recipes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from eosin.cli._main import main
from eosin.errors import ConfigError, UnknownNameError
from eosin.pipeline import RunConfig, default_config_text, list_recipes, load_config, recipe_text


def _cfg(**data):
    return load_config({"slides": ["s/"], **data})


def test_printed_default_config_reads_back_as_the_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(default_config_text())
    config = load_config(path)
    default = RunConfig(slides=[str(tmp_path / "slides")], out=str(tmp_path / "eosin-run"))
    assert config == default
    # every key is commented (sections by the line above them)
    lines = default_config_text().splitlines()
    assert all("#" in line or lines[i - 1].startswith("#") for i, line in enumerate(lines) if ":" in line)


def test_defaults_are_the_cli_defaults():
    """Each option of the per-stage commands that a config key mirrors has the same default."""
    from eosin.cli._embed import embed
    from eosin.cli._qc import qc
    from eosin.cli._segment import segment
    from eosin.cli._tile import tile

    def default(command, name):
        return next(p.default for p in command.params if p.name == name)

    c = RunConfig(slides=["s"])
    assert c.tiles.size == default(tile, "tile_size") and c.tiles.overlap == default(tile, "overlap")
    assert c.tiles.min_tissue == default(tile, "min_tissue") and c.tissue.mpp == default(tile, "tissue_mpp")
    assert c.tiles.mpp == default(qc, "mpp")
    assert c.embed.batch_size == default(embed, "batch_size") and c.embed.dtype == default(embed, "dtype")
    assert c.embed.runtime == default(embed, "runtime") and c.embed.weights == default(embed, "weights")
    assert c.segment.overlap == default(segment, "overlap") and c.segment.min_size == default(segment, "min_size")
    assert c.segment.batch_size == default(segment, "batch_size")
    assert c.segment.instance_method == default(segment, "instance_method")
    assert c.precision == default(embed, "precision") and c.device == default(embed, "device")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"tile": {"mpp": 1}}, ["'tile'", "Did you mean 'tiles'"]),
        ({"tiles": {"mp": 1}}, ["'tiles.mp'", "'mpp'"]),
        ({"tiles": {"size": "big"}}, ["tiles.size", "'big'", "whole number"]),
        ({"tiles": {"mpp": 0}}, ["tiles.mpp", "above 0"]),
        ({"tiles": {"min_tissue": 2}}, ["tiles.min_tissue", "at most 1"]),
        ({"stain": {"method": "macenkoo", "target": "t.png"}}, ["stain.method", "'macenkoo'", "'macenko'"]),
        ({"stain": {"method": "macenko"}}, ["stain.target", "go together"]),
        ({"tiles": {"size": 64, "overlap": 64}}, ["tiles.overlap", "smaller"]),
        ({"qc": {"enabled": "yes please"}}, ["qc.enabled", "true or false"]),
        ({"scheduler": "somewhere"}, ["scheduler", "tcp://"]),
        ({"slides": []}, ["slides", "nothing to run"]),
        ({"tiles": 3}, ["tiles.", "mapping"]),
    ],
)
def test_bad_configs_name_the_key_value_and_fix(data, words):
    with pytest.raises(ConfigError) as info:
        load_config({"slides": ["s/"], **data})
    text = str(info.value)
    assert all(w in text for w in words), text
    assert "Fix:" in text
    assert info.value.exit_code == 2


def test_paths_are_relative_to_the_file_and_overrides_apply(tmp_path):
    path = tmp_path / "sub" / "run.yaml"
    path.parent.mkdir()
    path.write_text("slides: slides/\nout: o\nclassify:\n  model: ckpt\n")
    config = load_config(path, overrides=["tiles.mpp=1", "qc.enabled=false", "embed.encoder=resnet18"])
    assert config.slides == [str(path.parent / "slides")] and config.out == str(path.parent / "o")
    assert config.classify.model == str(path.parent / "ckpt")
    assert config.tiles.mpp == 1.0 and config.qc.enabled is False and config.embed.encoder == "resnet18"
    with pytest.raises(ConfigError, match="tiles.mpp"):
        load_config(path, overrides=["tiles.mpp=fast"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, overrides=["tiles.mpp"])


def test_yaml_errors_and_unknown_recipes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("slides: [a\nout: b\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(UnknownNameError, match="tile-classifier"):
        load_config("tile-clasifier")


@pytest.mark.parametrize("name", sorted(list_recipes()))
def test_shipped_recipes_are_valid_configs(name):
    config = load_config(name)
    assert config.slides and yaml.safe_load(recipe_text(name))
    kinds = {"tile-classifier": config.classify.model, "nuclei-segmentation": config.segment.model}
    assert kinds[name]  # each recipe names the model it needs
    assert dataclasses.asdict(config)  # plain data for run.json


def test_cli_print_config_and_errors(tmp_path, capsys):
    assert main(["run", "--print-config"]) == 0
    text = capsys.readouterr().out
    cwd = Path.cwd()
    assert load_config(yaml.safe_load(text)) == RunConfig(slides=[str(cwd / "slides")], out=str(cwd / "eosin-run"))
    assert main(["run", "--print-config", "nuclei-segmentation"]) == 0
    assert "segment:" in capsys.readouterr().out
    assert main(["run", "--list-recipes"]) == 0
    assert "tile-classifier" in capsys.readouterr().out
    path = tmp_path / "run.yaml"
    path.write_text("slides: x\ntiels:\n  mpp: 1\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'tiels'" in err and "'tiles'" in err and "Traceback" not in err
