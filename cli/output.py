"""Rendering for clusterctl: table, json or yaml, from plain rows or documents."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from enum import Enum

import click
import yaml

FORMATS = ("table", "json", "yaml")

output_option = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)


def plain(value: object) -> object:
    """Dataclasses, enums and tuples -> JSON-shaped data."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def dump(data: object, fmt: str) -> str:
    data = plain(data)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False).rstrip()
    return json.dumps(data, indent=2)


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [
        [str(c) for c in header],
        *[["-" if c in ("", None) else str(c) for c in r] for r in rows],
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def render(data: object, fmt: str, rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    return table(rows, header) if fmt == "table" else dump(data, fmt)


def emit(data: object, fmt: str, rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    click.echo(render(data, fmt, rows, header))
