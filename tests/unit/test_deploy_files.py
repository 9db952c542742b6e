"""The deployment files stay true to tcphopd: the example config names every flag with a
valid value, and the compose demo's config loads."""

from __future__ import annotations

import re
from pathlib import Path

import click

from cluster import configfile
from cluster.__main__ import _file_keys, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "tcphopd.toml"


def keys() -> dict[str, configfile.Key]:
    return _file_keys(click.Context(main))


def test_the_example_names_every_setting_and_nothing_else() -> None:
    named = set(re.findall(r"^#? ?([a-z][a-z-]*) = ", EXAMPLE.read_text(), re.MULTILINE))
    assert named == set(keys())


def test_the_example_loads_as_it_is_and_with_every_line_uncommented(tmp_path: Path) -> None:
    assert configfile.load(EXAMPLE, keys())["node-id"] == "n1"
    text = re.sub(r"^# ([a-z][a-z-]* = )", r"\1", EXAMPLE.read_text(), flags=re.MULTILINE)
    every = tmp_path / "every.toml"
    every.write_text(text)
    assert set(configfile.load(every, keys())) == set(keys())


def test_the_compose_demo_config_loads() -> None:
    settings = configfile.load(ROOT / "deploy" / "compose" / "tcphopd.toml", keys())
    assert settings["datapath"] == "xdp"
