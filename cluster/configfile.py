"""tcphopd's configuration file: TOML whose keys are the command-line flags without the leading
dashes (`node-id = "n1"`, `announce = ["10.0.2.0/24"]`).

Precedence, highest first: flags, then TCPHOP_* environment variables, then this file, then the
built-in defaults. The file is read once at start; every key and value is checked against the
flag it stands for, and a bad one names the file, the key and what would be right.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ValidationError
from cluster.limits import CONFIG_FILE_MAX_BYTES as MAX_BYTES

DEFAULT_PATH = Path("/etc/tcphop/tcphopd.toml")


@dataclass(frozen=True, slots=True)
class Key:
    """What one flag accepts: `kind` is str, int, float, bool (a switch) or list (repeatable)."""

    kind: type
    choices: tuple[str, ...] = ()


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list of strings"}  # fmt: skip


def load(path: Path, keys: dict[str, Key]) -> dict[str, object]:
    """The file's settings by flag name (dashes, as written); ValidationError names every
    problem, each with the file and key."""
    try:
        raw = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as e:
        raise ValidationError(
            [f"{path}: cannot read the configuration file: {e.strerror}"]
        ) from None
    if len(raw) > MAX_BYTES:
        raise ValidationError([f"{path}: larger than {MAX_BYTES} bytes; is it the right file?"])
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValidationError([f"{path}: not valid TOML: {e}"]) from None
    problems = [p for name, value in data.items() if (p := _problem(name, value, keys.get(name)))]
    if problems:
        raise ValidationError([f"{path}: {p}" for p in problems])
    return data


def _problem(name: str, value: object, key: Key | None) -> str:
    if key is None:
        hint = f" (did you mean {name.replace('_', '-')!r}?)" if "_" in name else ""
        return f"unknown key {name!r}{hint}; keys are tcphopd's flags without the dashes"
    want = key.kind
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return ""
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not ok:
        return f"key {name!r}: expected {_KIND_NAMES[want]}, got {value!r}"
    if key.choices and value not in key.choices:
        return f"key {name!r}: {value!r} is not one of {', '.join(key.choices)}"
    return ""
