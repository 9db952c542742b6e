"""tcphopd's configuration file (cluster/configfile.py): every bad key or value is refused
with the file, the key and what would be right; nothing else is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.configfile import MAX_BYTES, Key, load
from cluster.errors import ValidationError

KEYS = {
    "node-id": Key(str),
    "lease-ttl": Key(int),
    "report-interval": Key(float),
    "insecure": Key(bool),
    "announce": Key(list),
    "datapath": Key(str, ("none", "xdp")),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tcphopd.toml"
    path.write_text(text)
    return path


def problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(ValidationError) as e:
        load(path, KEYS)
    return e.value.problems


def test_a_valid_file_gives_its_settings_by_flag_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'node-id = "n1"\nlease-ttl = 3\nreport-interval = 1\ninsecure = true\n'
        'announce = ["10.0.2.0/24", "10.0.3.0/24"]\ndatapath = "xdp"\n',
    )
    assert load(path, KEYS) == {
        "node-id": "n1",
        "lease-ttl": 3,
        "report-interval": 1,  # an integer is a number
        "insecure": True,
        "announce": ["10.0.2.0/24", "10.0.3.0/24"],
        "datapath": "xdp",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("node_id = 'n1'", "unknown key 'node_id' (did you mean 'node-id'?)"),
        ("nodeid = 'n1'", "unknown key 'nodeid'"),
        ("lease-ttl = 'two'", "key 'lease-ttl': expected an integer, got 'two'"),
        ("lease-ttl = true", "key 'lease-ttl': expected an integer, got True"),
        ("lease-ttl = 1.5", "key 'lease-ttl': expected an integer, got 1.5"),
        ("report-interval = 'fast'", "key 'report-interval': expected a number"),
        ("insecure = 1", "key 'insecure': expected true or false, got 1"),
        ("announce = '10.0.0.0/8'", "key 'announce': expected a list of strings"),
        ("announce = [1, 2]", "key 'announce': expected a list of strings"),
        ("datapath = 'ebpf'", "key 'datapath': 'ebpf' is not one of none, xdp"),
        ("[node]\nid = 'n1'", "unknown key 'node'"),
    ],
)
def test_a_bad_key_or_value_names_the_file_and_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: ")
    assert expected in problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "lease-ttl = 'x'\nbogus = 1\ndatapath = 'y'\n")
    assert len(problems(path)) == 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"node-id = ", "not valid TOML"),
        (b"node-id = 'n1'\nnode-id = 'n2'\n", "not valid TOML"),
        (b"\xff\xfe = 1", "not valid TOML"),
        (b"# " + b"x" * MAX_BYTES + b"\n", f"larger than {MAX_BYTES} bytes"),
    ],
)
def test_a_file_that_is_not_a_small_toml_document_is_refused(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "tcphopd.toml"
    path.write_bytes(content)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: ")
    assert expected in problem


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path / "nope.toml")
    assert "nope.toml: cannot read the configuration file: No such file" in problem
