"""XdpDatapath: datapath/bpf/tcphop.bpf.c attached to a node's uplink, driven from Python.

The object is built with clang when needed, loaded through libbpf with every map pinned under
`pin_dir` (a bpf filesystem, mounted there if it is not), and attached to the uplink (generic or
native XDP; attaching replaces a previous program atomically). A restarted daemon reuses the
pinned maps, so flows and tables survive it; the program stays attached while no daemon runs.

Programming follows Katran's split: the kernel hashes the 4-tuple and forwards; Python writes
tables. Backends keep their index for as long as the maps live (flows refer to indices), and a
service keeps its ring while its VIP:port stays; rings are rewritten only when they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import structlog

from datapath import layout, maglev, netlink
from datapath.errors import DatapathError
from datapath.libbpf import BpfError, BpfObject, build
from datapath.protocol import DatapathInfo, DesiredState, Flow, SchedulerTables, VipService

log = structlog.get_logger()
BPF_FS_MAGIC = 0xCAFE4A11
NEXT_HOP_TTL_S = 30.0
RESOLVE_TIMEOUT_S = 0.3
LO_LABEL = "lo:tcphop"
EMPTY_RING = bytes(4 * layout.RING_SIZE)


def on_bpf_fs(path: Path) -> bool:
    """Whether `path` is a mounted bpf filesystem (statfs magic), via stat -f."""
    done = subprocess.run(
        ["stat", "-f", "-c", "%t", str(path)], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and int(done.stdout.strip() or "0", 16) == BPF_FS_MAGIC


def ensure_bpf_fs(root: Path) -> None:
    """Make `root` a directory on a bpf filesystem: mount one there unless one is above it."""
    root.mkdir(parents=True, exist_ok=True)
    probe = root
    while probe != probe.parent:
        if on_bpf_fs(probe):
            return
        probe = probe.parent
    done = subprocess.run(
        ["mount", "-t", "bpf", "bpf", str(root)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DatapathError(f"cannot mount a bpf filesystem on {root}: {done.stderr.strip()}")


class XdpDatapath:
    def __init__(
        self, uplink: str, address: str, pin_dir: Path, generic: bool = False, mss: int = 1440
    ) -> None:
        self.uplink, self.address, self.pin_dir = uplink, address, pin_dir
        self.generic, self.mss = generic, mss
        self.obj: BpfObject | None = None
        self.state = DesiredState()
        self.backend_index: dict[str, int] = {}  # server address -> backends map index
        self.service_index: dict[tuple[str, int], int] = {}  # VIP:port -> ring index
        self.ring_inputs: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
        self.next_hops: dict[str, tuple[bytes, float]] = {}  # address -> (MAC, resolved at)
        self.node_of: dict[str, str] = {}  # server address -> node id, from desired states
        self.vips_checked = False  # lo's addresses were compared with the desired VIPs once

    @property
    def bpf(self) -> BpfObject:
        if self.obj is None:
            raise DatapathError("the XDP datapath is not started")
        return self.obj

    async def start(self) -> None:
        if self.address not in await netlink.addresses(self.uplink):
            raise DatapathError(
                f"the advertised host {self.address} is not an address of {self.uplink}; "
                "other nodes send encapsulated traffic there"
            )
        for name, value in (("arp_ignore", "1"), ("arp_announce", "2")):
            netlink.set_sysctl(netlink.ipv4_sysctl(self.uplink, name), value)
        netlink.set_sysctl(netlink.ipv4_sysctl(self.uplink, "forwarding"), "1")
        if not await netlink.clamp_default_route_mss(self.mss):
            log.warning("no_default_route", reason="cannot clamp the MSS of VIP connections")
        ensure_bpf_fs(self.pin_dir.parent)
        self.pin_dir.mkdir(parents=True, exist_ok=True)
        reused = (self.pin_dir / layout.FLOWS_MAP).exists()
        self.obj = BpfObject(build(), self.pin_dir, layout.MAPS, layout.COUNTER_MAPS)
        self._recover()
        self.bpf.update(layout.CONFIG_MAP, layout.u32(0), socket.inet_aton(self.address))
        await netlink.attach_xdp(self.uplink, self.bpf.prog_fd(layout.PROG), self.generic)
        log.info(
            "datapath_started",
            kind="xdp",
            uplink=self.uplink,
            mode=self._mode,
            pinned=str(self.pin_dir),
            reused_maps=reused,
            flows=self.flow_count(),
        )

    @property
    def _mode(self) -> str:
        return "generic" if self.generic else "native"

    def _recover(self) -> None:
        """Learn indices from pinned maps a previous process filled."""
        for i in range(layout.MAX_BACKENDS):
            raw = self.bpf.lookup(layout.BACKENDS_MAP, layout.u32(i), layout.BACKEND_SIZE)
            if raw and raw[:4] != bytes(4):
                self.backend_index[socket.inet_ntoa(raw[:4])] = i
        for key in self.bpf.keys(layout.VIPS_MAP, layout.VIP_KEY_SIZE):
            meta = self.bpf.lookup(layout.VIPS_MAP, key, layout.VIP_META_SIZE)
            if meta is not None:
                vip, port = socket.inet_ntoa(key[:4]), struct.unpack("!H", key[4:6])[0]
                self.service_index[(vip, port)] = struct.unpack("<I", meta[:4])[0]

    async def apply(self, desired: DesiredState) -> None:
        await self._apply_vips(desired.vips)
        self._sync_addresses(layout.SERVED_MAP, desired.vips)
        self._sync_addresses(layout.TRUSTED_MAP, desired.trusted)
        self._sync_keys(layout.HANDED_MAP, {layout.vip_key(*k) for k in desired.handed})
        if desired.scheduler is not None:
            await self._apply_scheduler(desired.scheduler)
        elif self.state.scheduler is not None or self.service_index:
            for key in self.bpf.keys(layout.VIPS_MAP, layout.VIP_KEY_SIZE):
                self.bpf.delete(layout.VIPS_MAP, key)
            self.service_index.clear()
            self.ring_inputs.clear()
            log.info("scheduler_tables_cleared")
        self.state = desired

    async def _apply_vips(self, vips: frozenset[str]) -> None:
        """VIPs on lo, labelled LO_LABEL so that only ours are ever removed."""
        if vips == self.state.vips and self.vips_checked:
            return
        self.vips_checked = True
        ours = await netlink.labelled_addresses("lo", LO_LABEL)
        for vip in sorted(vips - ours):
            await netlink.add_address("lo", vip, label=LO_LABEL)
        for vip in sorted(ours - vips):
            await netlink.del_address("lo", vip)

    def _sync_addresses(self, map_name: str, wanted: frozenset[str]) -> None:
        """Make a set of IPv4 addresses (u32 -> u8 map) hold exactly `wanted`."""
        self._sync_keys(map_name, {socket.inet_aton(a) for a in wanted})

    def _sync_keys(self, map_name: str, wanted: set[bytes]) -> None:
        """Make a set (key -> u8 map) hold exactly the `wanted` keys."""
        have = set(self.bpf.keys(map_name, layout.SIZES[map_name][0]))
        for key in sorted(wanted - have):
            self.bpf.update(map_name, key, b"\x01")
        for key in sorted(have - wanted):
            self.bpf.delete(map_name, key)

    async def _apply_scheduler(self, tables: SchedulerTables) -> None:
        reachable = []
        for node, addr in tables.backends:
            try:
                mac = await self._next_hop_mac(addr)
            except DatapathError as e:  # left out of the rings until it resolves
                log.warning("backend_unreachable", node=node, reason=str(e))
                continue
            reachable.append((node, addr))
            self.node_of[addr] = node
            if addr not in self.backend_index:
                used = set(self.backend_index.values())
                free = next((i for i in range(layout.MAX_BACKENDS) if i not in used), None)
                if free is None:
                    raise DatapathError(f"more than {layout.MAX_BACKENDS} servers")
                self.backend_index[addr] = free
            self.bpf.update(
                layout.BACKENDS_MAP,
                layout.u32(self.backend_index[addr]),
                layout.backend(addr, mac),
            )
        address_of = dict(reachable)
        wanted = {s.key: s for s in tables.services}
        for key in [k for k in self.service_index if k not in wanted]:
            self.bpf.delete(layout.VIPS_MAP, layout.vip_key(*key))
            self.ring_inputs.pop(self.service_index.pop(key), None)
        for service in tables.services:
            index = self._ring_index(service)
            await self._write_ring(index, service, address_of)
            fenced = tables.fenced or (service.l7 and not tables.listening)
            meta = layout.vip_meta(index, service.l7, fenced)
            self.bpf.update(layout.VIPS_MAP, layout.vip_key(*service.key), meta)

    def _ring_index(self, service: VipService) -> int:
        if service.key not in self.service_index:
            used = set(self.service_index.values())
            free = next((i for i in range(layout.MAX_SERVICES) if i not in used), None)
            if free is None:
                raise DatapathError(
                    f"service {service.name}: the XDP datapath holds {layout.MAX_SERVICES} "
                    "VIP:port services; delete one first"
                )
            self.service_index[service.key] = free
        return self.service_index[service.key]

    async def _write_ring(
        self, index: int, service: VipService, address_of: dict[str, str]
    ) -> None:
        weights = {n: w for n, w in service.weights if n in address_of and w > 0}
        servers = {n: self.backend_index[address_of[n]] for n in weights}
        if self.ring_inputs.get(index) == (weights, servers):
            return  # the same table again: building one costs tens of milliseconds
        self.ring_inputs[index] = (weights, servers)
        value = {n: self.backend_index[address_of[n]] + 1 for n in weights}
        # Building and writing 65,537 slots takes milliseconds (tens for an unbuilt table): off
        # the event loop.
        await asyncio.to_thread(self._build_and_write_ring, index, weights, value)
        log.info("ring_written", service=service.name, weights=weights)

    def _build_and_write_ring(
        self, index: int, weights: dict[str, int], value: dict[str, int]
    ) -> None:
        """One service's slots in one system call: backend index + 1 per slot (0: none)."""
        packed = struct.Struct(f"<{layout.RING_SIZE}I")
        table = maglev.build_cached(weights, layout.RING_SIZE) if weights else None
        ring = packed.pack(*map(value.__getitem__, table)) if table else EMPTY_RING
        first = index * layout.RING_SIZE
        keys = packed.pack(*range(first, first + layout.RING_SIZE))
        self.bpf.update_many(layout.RINGS_MAP, keys, ring, layout.RING_SIZE)

    async def _next_hop_mac(self, address: str) -> bytes:
        """The MAC of the next hop towards a server (itself, or the router across subnets)."""
        if address == self.address:
            return bytes(6)  # forwarded to this node's own stack; never sent
        cached = self.next_hops.get(address)
        if cached and time.monotonic() - cached[1] < NEXT_HOP_TTL_S:
            return cached[0]
        ifname, hop = await netlink.next_hop(address)
        if ifname != self.uplink:
            raise DatapathError(
                f"server {address} is reached through {ifname}, not the uplink {self.uplink}: "
                "XDP sends encapsulated packets back out of the interface they came in on"
            )
        deadline = time.monotonic() + RESOLVE_TIMEOUT_S
        while (mac := await netlink.neighbour_mac(ifname, hop)) is None:
            if time.monotonic() > deadline:
                raise DatapathError(f"cannot resolve the MAC of {hop} (next hop to {address})")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # makes the kernel ARP
                s.sendto(b"", (address, 9))
            await asyncio.sleep(0.02)
        self.next_hops[address] = (mac, time.monotonic())
        return mac

    def programmed(self) -> DesiredState:
        return self.state

    def info(self) -> DatapathInfo:
        stats = {
            s.name.lower(): self.bpf.percpu_sum(layout.STATS_MAP, layout.u32(s))
            for s in layout.Stat
        }
        return DatapathInfo("xdp", self.uplink, self._mode, self.address, stats)

    def placed(self) -> dict[tuple[str, int, str], int]:
        out = {}
        for key in self.bpf.keys(layout.PLACED_MAP, layout.PLACED_KEY_SIZE):
            vip, port, server = layout.parse_placed_key(key)
            with contextlib.suppress(BpfError):  # gone meanwhile
                out[vip, port, self.node_of.get(server, server)] = self.bpf.percpu_sum(
                    layout.PLACED_MAP, key
                )
        return out

    def flow_count(self) -> int:
        return len(self.bpf.keys(layout.FLOWS_MAP, layout.FLOW_KEY_SIZE))

    def flows(self, limit: int) -> list[Flow]:
        node_by_index = {i: self.node_of.get(a, a) for a, i in self.backend_index.items()}
        out = []
        for key in self.bpf.keys(layout.FLOWS_MAP, layout.FLOW_KEY_SIZE, limit):
            raw = self.bpf.lookup(layout.FLOWS_MAP, key, layout.INDEX_SIZE)
            if raw is None:
                continue  # expired meanwhile
            client, vip, cport, vport = layout.parse_flow_key(key)
            node = node_by_index.get(struct.unpack("<I", raw)[0] & layout.FLOW_INDEX, "")
            out.append(Flow(client, cport, vip, vport, node))
        return out

    def lookup_flow(self, client: str, client_port: int, vip: str, port: int) -> str | None:
        raw = self.bpf.lookup(
            layout.FLOWS_MAP, layout.flow_key(client, vip, client_port, port), layout.INDEX_SIZE
        )
        if raw is None:
            return None
        index = struct.unpack("<I", raw)[0] & layout.FLOW_INDEX
        addr = next((a for a, i in self.backend_index.items() if i == index), "")
        return self.node_of.get(addr, addr)

    async def add_flows(self, flows: list[Flow]) -> int:
        index_of_node = {
            n: self.backend_index[a] for a, n in self.node_of.items() if a in self.backend_index
        }
        added = 0
        for f in flows:
            if f.node in index_of_node:
                self.bpf.update(
                    layout.FLOWS_MAP,
                    layout.flow_key(f.client, f.vip, f.client_port, f.port),
                    layout.u32(index_of_node[f.node]),
                )
                added += 1
        return added

    def remove_flow(self, client: str, client_port: int, vip: str, port: int) -> None:
        key = layout.flow_key(client, vip, client_port, port)
        if self.bpf.lookup(layout.FLOWS_MAP, key, layout.INDEX_SIZE) is not None:
            self.bpf.delete(layout.FLOWS_MAP, key)

    async def close(self) -> None:
        if self.obj is not None:
            self.obj.close()
            self.obj = None

    async def teardown(self) -> list[str]:
        """Remove everything the datapath leaves in place between runs: the program on the
        uplink, our VIPs on lo, transparent delivery's routing, the pinned maps. Returns what
        it removed."""
        await self.close()
        removed = []
        try:
            await netlink.detach_xdp(self.uplink, self.generic)
            removed.append(f"{self._mode} XDP program on {self.uplink}")
        except DatapathError as e:
            log.warning("xdp_detach_failed", reason=str(e))
        for vip in sorted(await netlink.labelled_addresses("lo", LO_LABEL)):
            await netlink.del_address("lo", vip)
            removed.append(f"{vip} on lo")
        if await netlink.unroute_loopback_replies():
            removed.append("the local route of transparent delivery's replies")
        for name in layout.MAPS:
            pin = self.pin_dir / name
            if pin.exists():
                pin.unlink()
                removed.append(str(pin))
        with contextlib.suppress(OSError):
            self.pin_dir.rmdir()
        return removed


def default_pin_dir(node_id: str) -> Path:
    return Path(os.environ.get("TCPHOP_BPF_PIN_ROOT", "/sys/fs/bpf/tcphop")) / node_id
