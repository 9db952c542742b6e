"""The BPF object cache: keyed by source and compiler, private, never loaded from a path another
user could write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datapath import libbpf
from datapath.libbpf import BpfError, build
from tests.conftest import load_bpf

pytestmark = pytest.mark.bpf


def test_objects_are_cached_privately_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_bpf().close()  # gate: root, clang, libbpf
    cache = tmp_path / "cache"
    monkeypatch.setattr(libbpf, "BUILD_DIR", cache)
    obj = build("pass")
    assert obj.parent == cache and len(obj.stem.split("-")[-1].split(".")[0]) == 24
    assert cache.stat().st_mode & 0o777 == 0o700 and obj.stat().st_mode & 0o777 == 0o600
    assert build("pass") == obj  # the same source and compiler: the same object


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_a_cache_others_can_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    load_bpf().close()
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(mode)
    monkeypatch.setattr(libbpf, "BUILD_DIR", cache)
    with pytest.raises(BpfError, match="is not private"):
        build("pass")


def test_a_planted_object_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_bpf().close()
    cache = tmp_path / "cache"
    monkeypatch.setattr(libbpf, "BUILD_DIR", cache)
    obj = build("pass")
    obj.chmod(0o666)  # as if someone else could have rewritten it
    with pytest.raises(BpfError, match="is not private"):
        build("pass")
    obj.unlink()
    os.symlink("/dev/null", obj)  # or replaced it with a link
    with pytest.raises(BpfError, match="is not private"):
        build("pass")
