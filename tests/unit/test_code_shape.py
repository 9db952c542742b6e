"""The house rules on size, checked rather than remembered: no module over 400 lines, no
function over 60, no grab-bag modules (generated code aside)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cluster", "datapath", "agent", "cli", "lab", "bench", "tests", "deploy")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def sources() -> list[Path]:
    return [
        p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if "api" not in p.relative_to(ROOT).parts[1:2]  # cluster/api/: generated
    ]


def test_the_code_is_found() -> None:
    assert len(sources()) > 50


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources()
        if (n := p.read_text().count("\n")) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for p in sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(ROOT)}:{node.name}"] = lines
    assert long == {}


def test_no_grab_bag_modules() -> None:
    names = {p.stem for p in sources()}
    assert not names & {"utils", "helpers", "common", "misc"}
