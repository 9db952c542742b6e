"""Hatch build hook: compile the BPF programs into the wheel, so a node needs no compiler.

The objects land beside their sources in the package (datapath/bpf/<name>-<source sha>.bpf.o),
where datapath.libbpf.build finds them. Editable installs compile on first use instead.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ShipBpfObjects(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        sys.path.insert(0, self.root)
        from datapath.libbpf import BPF_DIR, compile_object, shipped_name

        clang = shutil.which("clang")
        if clang is None:
            raise RuntimeError("building the wheel compiles the BPF programs: install clang")
        self._out = Path(tempfile.mkdtemp(prefix="tcphop-bpf-"))
        for source in sorted(BPF_DIR.glob("*.bpf.c")):
            name = source.name.removesuffix(".bpf.c")
            target = self._out / shipped_name(name)
            compile_object(source, target, clang)
            target.chmod(0o644)
            build_data["force_include"][str(target)] = f"datapath/bpf/{target.name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        out = getattr(self, "_out", None)
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
