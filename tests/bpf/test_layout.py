"""datapath/layout.py against the compiled object: map key and value sizes from libbpf, struct
field offsets from the object's BTF. Python packs what the C program reads."""

from __future__ import annotations

import ctypes

import pytest

from datapath import layout
from datapath.libbpf import build
from tests.conftest import load_bpf

pytestmark = pytest.mark.bpf
BTF_KIND_STRUCT = 4


class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size", ctypes.c_uint32)]


class _BtfMember(ctypes.Structure):
    _fields_ = [
        ("name_off", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
    ]


def struct_fields(name: str) -> dict[str, int]:
    """Byte offset of every member of `struct name` in the object's BTF."""
    lib = ctypes.CDLL("libbpf.so.1")
    lib.btf__parse.restype = ctypes.c_void_p
    lib.btf__parse.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.btf__find_by_name_kind.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
    lib.btf__type_by_id.restype = ctypes.POINTER(_BtfType)
    lib.btf__type_by_id.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__name_by_offset.restype = ctypes.c_char_p
    lib.btf__name_by_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__free.argtypes = [ctypes.c_void_p]
    btf = lib.btf__parse(str(build()).encode(), None)
    assert btf, "the object has no BTF"
    try:
        type_id = lib.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_STRUCT)
        assert type_id > 0, f"no struct {name} in the object's BTF"
        t = lib.btf__type_by_id(btf, type_id)
        vlen, kflag = t.contents.info & 0xFFFF, t.contents.info >> 31
        members = ctypes.cast(
            ctypes.cast(t, ctypes.c_void_p).value + ctypes.sizeof(_BtfType),  # type: ignore[operator]
            ctypes.POINTER(_BtfMember * vlen),
        ).contents
        return {
            lib.btf__name_by_offset(btf, m.name_off).decode(): (
                (m.offset & 0xFFFFFF) if kflag else m.offset
            )
            // 8
            for m in members
        }
    finally:
        lib.btf__free(btf)


@pytest.mark.parametrize("map_name", layout.MAPS)
def test_every_map_has_the_key_and_value_sizes_python_packs(map_name: str) -> None:
    obj = load_bpf()
    try:
        assert obj.map_sizes(map_name) == layout.SIZES[map_name]
    finally:
        obj.close()


@pytest.mark.parametrize("struct", sorted(layout.FIELDS))
def test_struct_fields_sit_where_python_packs_them(struct: str) -> None:
    load_bpf().close()  # gate: root, clang, libbpf
    assert struct_fields(struct) == layout.FIELDS[struct]


def test_the_packers_produce_the_sizes() -> None:
    assert len(layout.vip_key("10.0.0.1", 80)) == layout.VIP_KEY_SIZE
    assert len(layout.vip_meta(1, True)) == layout.VIP_META_SIZE
    assert len(layout.flow_key("10.0.0.1", "10.0.0.2", 1, 2)) == layout.FLOW_KEY_SIZE
    assert len(layout.backend("10.0.0.1", bytes(6))) == layout.BACKEND_SIZE
