"""A small ctypes binding of libbpf.so.1: build, load, maps, and BPF_PROG_TEST_RUN.

The BPF C sources live in datapath/bpf/. A built package ships their objects (hatch_build.py
compiles them, named by the source's hash); a source checkout compiles them with clang into a
private cache keyed by the source's and the compiler's hash (no compiled object in git).
libbpf failures become BpfError with the errno text; the verifier's log goes to stderr
(libbpf's default printer).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from datapath.errors import DatapathError

BPF_DIR = Path(__file__).resolve().parent / "bpf"
# Compiled objects are cached here, keyed by the SHA-256 of the source and the compiler's
# version. Root loads them into the kernel: the directory must be ours and writable by no one
# else (never a shared temp directory, where another user could plant an object).
BUILD_DIR = Path(os.environ.get("TCPHOP_BPF_BUILD", "/var/cache/tcphop/bpf"))
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)


class BpfError(DatapathError):
    pass


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


_MAP_INFO_SIZE = 88  # struct bpf_map_info: type, id, key_size, value_size, max_entries, ...


def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as e:
        raise BpfError(f"libbpf.so.1 is missing (apt-get install libbpf1): {e}") from e
    voidp = ctypes.c_void_p
    lib.bpf_object__open_file.restype = voidp
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, voidp]
    lib.bpf_object__load.argtypes = [voidp]
    lib.bpf_object__close.argtypes = [voidp]
    lib.bpf_object__find_program_by_name.restype = voidp
    lib.bpf_object__find_program_by_name.argtypes = [voidp, ctypes.c_char_p]
    lib.bpf_program__fd.argtypes = [voidp]
    lib.bpf_object__find_map_by_name.restype = voidp
    lib.bpf_object__find_map_by_name.argtypes = [voidp, ctypes.c_char_p]
    lib.bpf_map__fd.argtypes = [voidp]
    lib.bpf_map__key_size.argtypes = [voidp]
    lib.bpf_map__value_size.argtypes = [voidp]
    lib.bpf_map_update_elem.argtypes = [ctypes.c_int, voidp, voidp, ctypes.c_uint64]
    lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, voidp, voidp]
    lib.bpf_map_delete_elem.argtypes = [ctypes.c_int, voidp]
    lib.bpf_map_get_next_key.argtypes = [ctypes.c_int, voidp, voidp]
    lib.bpf_map_update_batch.argtypes = [
        ctypes.c_int,
        voidp,
        voidp,
        ctypes.POINTER(ctypes.c_uint32),
        voidp,
    ]
    lib.bpf_map__set_pin_path.argtypes = [voidp, ctypes.c_char_p]
    lib.bpf_map__max_entries.argtypes = [voidp]
    lib.bpf_obj_get.argtypes = [ctypes.c_char_p]
    lib.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, voidp, ctypes.POINTER(ctypes.c_uint32)]
    lib.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(_TestRunOpts)]
    lib.libbpf_num_possible_cpus.argtypes = []
    return lib


def _fail(what: str) -> BpfError:
    err = ctypes.get_errno()
    return BpfError(f"{what}: {os.strerror(err) if err else 'failed'}")


def _private(path: Path) -> None:
    """Refuse a path another user could have written: ours or root's, and no group/other
    write bit."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise BpfError(
            f"{path} is not private (owner uid {st.st_uid}, mode {oct(st.st_mode & 0o7777)}): "
            "refusing to load a BPF object another user could have written; set "
            "TCPHOP_BPF_BUILD to a directory only this user can write"
        )


@functools.lru_cache(maxsize=1)
def _compiler() -> tuple[str, str]:
    clang = shutil.which("clang")
    if clang is None:
        raise BpfError("clang is missing (apt-get install clang llvm libbpf-dev)")
    done = subprocess.run([clang, "--version"], capture_output=True, text=True, check=False)
    return clang, done.stdout


def shipped_name(name: str) -> str:
    """The file name of a BPF object built into the package (hatch_build.py), named by the
    SHA-256 of its source, so a package can only ever load the object of the source it has."""
    digest = hashlib.sha256((BPF_DIR / f"{name}.bpf.c").read_bytes()).hexdigest()[:24]
    return f"{name}-{digest}.bpf.o"


def compile_object(source: Path, target: Path, clang: str) -> None:
    """Compile one BPF C source; write `target` atomically (a whole object or none), 0600."""
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    done = subprocess.run(
        [clang, "-O2", "-g", "-Wall", "-target", "bpf",
         f"-I/usr/include/{platform.machine()}-linux-gnu", "-c", str(source), "-o", str(partial)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BpfError(f"clang failed on {source.name}: {done.stderr.strip()}")
    partial.chmod(0o600)
    partial.rename(target)


def build(name: str = "tcphop") -> Path:
    """The object of datapath/bpf/<name>.bpf.c: the one the package ships when it has it (no
    compiler needed), else from the private cache, compiled with clang if missing."""
    source = BPF_DIR / f"{name}.bpf.c"
    ship = BPF_DIR / shipped_name(name)
    if ship.exists():
        _private(BPF_DIR)
        _private(ship)
        return ship
    clang, version = _compiler()
    digest = hashlib.sha256(source.read_bytes() + version.encode()).hexdigest()[:24]
    target = BUILD_DIR / f"{name}-{digest}.bpf.o"
    BUILD_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private(BUILD_DIR)
    if target.exists():
        _private(target)
        return target
    compile_object(source, target, clang)
    return target


@dataclass
class BpfObject:
    """A loaded BPF object: its programs and maps by name. Close it to unload.

    With `pin_dir` (a directory on a bpf filesystem), the maps named in `pinned` are pinned
    there: a later load reuses them (same contents, so flows survive a restart) or, when a
    pinned map no longer matches its definition, fails with the path to remove (or, for the
    maps in `replaceable`, counters only, pins a new one).
    """

    path: Path
    pin_dir: Path | None = None
    pinned: tuple[str, ...] = ()
    replaceable: tuple[str, ...] = ()  # pinned counters a changed definition may replace
    _obj: int = 0

    def __post_init__(self) -> None:
        self.lib = _lib()
        self._fds: dict[str, int] = {}
        obj = self.lib.bpf_object__open_file(str(self.path).encode(), None)
        if not obj:
            raise _fail(f"cannot open {self.path}")
        self._obj = obj
        try:
            for name in self.pinned if self.pin_dir else ():
                assert self.pin_dir is not None
                found = self.lib.bpf_object__find_map_by_name(obj, name.encode())
                if not found:
                    raise BpfError(f"no map {name!r} in {self.path.name}")
                if name in self.replaceable:
                    self._unpin_if_changed(found, self.pin_dir / name)
                if self.lib.bpf_map__set_pin_path(found, str(self.pin_dir / name).encode()):
                    raise _fail(f"cannot pin map {name} at {self.pin_dir}")
            if self.lib.bpf_object__load(obj) != 0:
                hint = (
                    f"; if maps pinned in {self.pin_dir} are stale, remove them"
                    if (self.pin_dir and self.pinned)
                    else ""
                )
                raise _fail(f"the kernel rejected {self.path.name} (verifier log on stderr){hint}")
        except BaseException:
            self.close()
            raise

    def _unpin_if_changed(self, found: int, pin: Path) -> None:
        """A pinned map of counters whose shape changed (a newer program counts more) is
        unpinned, so the load makes a new one: counters restart, flows are untouched."""
        if not pin.exists():
            return
        fd = self.lib.bpf_obj_get(str(pin).encode())
        if fd < 0:
            return
        info = ctypes.create_string_buffer(_MAP_INFO_SIZE)
        size = ctypes.c_uint32(_MAP_INFO_SIZE)
        try:
            if self.lib.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)) != 0:
                return
        finally:
            os.close(fd)
        _, _, key, value, entries = struct.unpack_from("<5I", info.raw)
        wanted = (
            int(self.lib.bpf_map__key_size(found)),
            int(self.lib.bpf_map__value_size(found)),
            int(self.lib.bpf_map__max_entries(found)),
        )
        if (key, value, entries) != wanted:
            pin.unlink()

    def prog_fd(self, name: str) -> int:
        prog = self.lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise BpfError(f"no program {name!r} in {self.path.name}")
        return int(self.lib.bpf_program__fd(prog))

    def map_sizes(self, name: str) -> tuple[int, int]:
        """(key size, value size) of a map, as the object defines it."""
        found = self.lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not found:
            raise BpfError(f"no map {name!r} in {self.path.name}")
        return int(self.lib.bpf_map__key_size(found)), int(self.lib.bpf_map__value_size(found))

    def map_fd(self, name: str) -> int:
        if name not in self._fds:
            found = self.lib.bpf_object__find_map_by_name(self._obj, name.encode())
            if not found:
                raise BpfError(f"no map {name!r} in {self.path.name}")
            self._fds[name] = int(self.lib.bpf_map__fd(found))
        return self._fds[name]

    def update_many(self, map_name: str, keys: bytes, values: bytes, count: int) -> None:
        """Update `count` packed keys with `count` packed values in one system call."""
        n = ctypes.c_uint32(count)
        k = ctypes.create_string_buffer(keys, len(keys))
        v = ctypes.create_string_buffer(values, len(values))
        if self.lib.bpf_map_update_batch(self.map_fd(map_name), k, v, ctypes.byref(n), None):
            raise _fail(f"cannot update map {map_name}")

    def keys(self, map_name: str, key_size: int, limit: int | None = None) -> list[bytes]:
        """The keys of a hash map, at most `limit` (a snapshot: entries may change meanwhile)."""
        fd, out = self.map_fd(map_name), list[bytes]()
        prev, key = None, ctypes.create_string_buffer(key_size)
        while (limit is None or len(out) < limit) and self.lib.bpf_map_get_next_key(
            fd, prev, key
        ) == 0:
            out.append(key.raw)
            prev = ctypes.create_string_buffer(key.raw, key_size)
        return out

    def update(self, map_name: str, key: bytes, value: bytes) -> None:
        k, v = (
            ctypes.create_string_buffer(key, len(key)),
            ctypes.create_string_buffer(value, len(value)),
        )
        if self.lib.bpf_map_update_elem(self.map_fd(map_name), k, v, 0) != 0:
            raise _fail(f"cannot update map {map_name}")

    def delete(self, map_name: str, key: bytes) -> None:
        k = ctypes.create_string_buffer(key, len(key))
        if self.lib.bpf_map_delete_elem(self.map_fd(map_name), k) != 0:
            raise _fail(f"cannot delete from map {map_name}")

    def lookup(self, map_name: str, key: bytes, value_size: int) -> bytes | None:
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value_size)
        if self.lib.bpf_map_lookup_elem(self.map_fd(map_name), k, v) != 0:
            return None
        return v.raw

    def percpu_sum(self, map_name: str, key: bytes) -> int:
        """The sum over CPUs of a per-CPU u64 counter."""
        cpus = int(self.lib.libbpf_num_possible_cpus())
        raw = self.lookup(map_name, key, 8 * cpus)
        if raw is None:
            raise BpfError(f"no key {key.hex()} in {map_name}")
        return sum(int.from_bytes(raw[i : i + 8], "little") for i in range(0, 8 * cpus, 8))

    def test_run(self, prog: str, packet: bytes) -> tuple[int, bytes]:
        """Run one packet through a program (BPF_PROG_TEST_RUN): its verdict and output."""
        data_in = ctypes.create_string_buffer(packet, len(packet))
        data_out = ctypes.create_string_buffer(len(packet) + 256)
        opts = _TestRunOpts(
            sz=ctypes.sizeof(_TestRunOpts),
            data_in=ctypes.cast(data_in, ctypes.c_void_p),
            data_out=ctypes.cast(data_out, ctypes.c_void_p),
            data_size_in=len(packet),
            data_size_out=len(data_out),
            repeat=1,
        )
        if self.lib.bpf_prog_test_run_opts(self.prog_fd(prog), ctypes.byref(opts)) != 0:
            raise _fail(f"test run of {prog}")
        return int(opts.retval), data_out.raw[: opts.data_size_out]

    def close(self) -> None:
        self._fds.clear()
        if self._obj:
            self.lib.bpf_object__close(self._obj)
            self._obj = 0
