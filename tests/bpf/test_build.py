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


def shipped_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package directory with pass.bpf.c and its object compiled in, as a wheel has them
    (hatch_build.py), and no compiler to be found."""
    load_bpf().close()
    package = tmp_path / "bpf"
    package.mkdir()
    (package / "pass.bpf.c").write_bytes((libbpf.BPF_DIR / "pass.bpf.c").read_bytes())
    clang = libbpf._compiler()[0]
    monkeypatch.setattr(libbpf, "BPF_DIR", package)
    target = package / libbpf.shipped_name("pass")
    libbpf.compile_object(package / "pass.bpf.c", target, clang)
    target.chmod(0o644)

    def no_compiler() -> tuple[str, str]:
        raise BpfError("clang is missing")

    monkeypatch.setattr(libbpf, "_compiler", no_compiler)
    monkeypatch.setattr(libbpf, "BUILD_DIR", tmp_path / "cache")
    return target


def test_a_package_with_the_object_needs_no_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = shipped_package(tmp_path, monkeypatch)
    assert build("pass") == shipped
    libbpf.BpfObject(shipped).close()  # it loads
    assert not (tmp_path / "cache").exists()  # nothing compiled, nothing cached


def test_a_shipped_object_of_another_source_or_writable_by_others_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = shipped_package(tmp_path, monkeypatch)
    shipped.chmod(0o666)
    with pytest.raises(BpfError, match="is not private"):
        build("pass")
    shipped.chmod(0o644)
    source = tmp_path / "bpf" / "pass.bpf.c"
    source.write_text(source.read_text() + "\n// changed\n")  # the object is of the old source
    with pytest.raises(BpfError, match="clang is missing"):
        build("pass")
