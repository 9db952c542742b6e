"""A typed facade over pyroute2 (asyncio) and the few ioctls and sysctls tcphop needs.

Everything acts on the network namespace of the calling process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from pathlib import Path

from pyroute2 import AsyncIPRoute, DiagSocket
from pyroute2.netlink.exceptions import NetlinkError

from datapath.errors import DatapathError, InterfaceNotFound
from datapath.protocol import Flow

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


async def _index(ipr: AsyncIPRoute, ifname: str) -> int:
    found = await ipr.link_lookup(ifname=ifname)
    if not found:
        raise InterfaceNotFound(f"no interface {ifname!r} in this network namespace")
    return int(found[0])


async def link_mac(ifname: str) -> bytes:
    async with AsyncIPRoute() as ipr:
        [link] = await ipr.link("get", index=await _index(ipr, ifname))
    return bytes.fromhex(str(link.get("IFLA_ADDRESS")).replace(":", ""))


async def open_tun(ifname: str) -> int:
    """Create a TUN device that lives exactly as long as the returned descriptor.

    Not persistent: when the process dies, even by SIGKILL, the kernel closes the descriptor and
    removes the device with every address on it.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TUN | IFF_NO_PI))
        async with AsyncIPRoute() as ipr:
            await ipr.link("set", index=await _index(ipr, ifname), state="up")
    except (OSError, NetlinkError) as e:
        os.close(fd)
        raise DatapathError(f"cannot create TUN device {ifname!r}: {e}") from e
    return fd


async def addresses(ifname: str) -> set[str]:
    """IPv4 addresses on an interface."""
    async with AsyncIPRoute() as ipr:
        index = await _index(ipr, ifname)
        return {
            str(m.get("IFA_ADDRESS"))
            async for m in await ipr.addr("dump", family=2)
            if m["index"] == index
        }


async def labelled_addresses(ifname: str, label: str) -> set[str]:
    """IPv4 addresses on an interface that carry `label` (IFA_LABEL)."""
    async with AsyncIPRoute() as ipr:
        index = await _index(ipr, ifname)
        return {
            str(m.get("IFA_ADDRESS"))
            async for m in await ipr.addr("dump", family=2)
            if m["index"] == index and m.get("IFA_LABEL") == label
        }


async def add_address(
    ifname: str, address: str, prefixlen: int = 32, label: str | None = None
) -> None:
    async with AsyncIPRoute() as ipr:
        try:
            await ipr.addr(
                "add",
                index=await _index(ipr, ifname),
                address=address,
                prefixlen=prefixlen,
                **({"label": label} if label else {}),
            )
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise DatapathError(f"cannot add {address} to {ifname}: {e}") from e


async def del_address(ifname: str, address: str, prefixlen: int = 32) -> None:
    async with AsyncIPRoute() as ipr:
        try:
            await ipr.addr(
                "del", index=await _index(ipr, ifname), address=address, prefixlen=prefixlen
            )
        except NetlinkError as e:
            if e.code != errno.EADDRNOTAVAIL:
                raise DatapathError(f"cannot remove {address} from {ifname}: {e}") from e


def ipv4_sysctl(ifname: str, name: str) -> Path:
    return Path("/proc/sys/net/ipv4/conf") / ifname / name


# The kernel applies the larger of conf/all and conf/<interface> for these.
_MAX_OF_ALL = ("arp_ignore", "arp_announce")


def set_sysctl(path: Path, value: str) -> str:
    """Write a sysctl; return its previous value (to restore it later). A value that is
    already in effect is not written again: in a container /proc/sys is read-only, and the
    engine sets them (compose `sysctls:`)."""
    try:
        old = path.read_text().strip()
        if old == value or _in_effect(path, old, value):
            return old
        path.write_text(value)
    except OSError as e:
        raise DatapathError(
            f"cannot set {path} = {value}: {e} (in a container, set it with --sysctl)"
        ) from e
    return old


def _in_effect(path: Path, old: str, value: str) -> bool:
    """Whether conf/all already makes `value` the interface's effective setting."""
    if path.name not in _MAX_OF_ALL or path.parent.name == "all":
        return False
    if not (old.isdigit() and value.isdigit() and int(old) <= int(value)):
        return False
    effective = path.parent.parent / "all" / path.name
    return effective.read_text().strip() == value


XDP_FLAGS_SKB_MODE = 2  # generic XDP
XDP_FLAGS_DRV_MODE = 4  # native XDP
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # REACHABLE STALE DELAY PROBE PERMANENT


async def attach_xdp(ifname: str, prog_fd: int, generic: bool) -> None:
    """Attach (or atomically replace) the interface's XDP program."""
    flags = XDP_FLAGS_SKB_MODE if generic else XDP_FLAGS_DRV_MODE
    async with AsyncIPRoute() as ipr:
        try:
            await ipr.link(
                "set",
                index=await _index(ipr, ifname),
                xdp={"attrs": [("IFLA_XDP_FD", prog_fd), ("IFLA_XDP_FLAGS", flags)]},
            )
        except NetlinkError as e:
            mode = "generic" if generic else "native"
            raise DatapathError(
                f"cannot attach XDP ({mode}) to {ifname}: {e} (a program attached in the other "
                "mode must be removed first: `ip link set dev IF xdp off`)"
            ) from e


async def detach_xdp(ifname: str, generic: bool) -> None:
    await attach_xdp(ifname, -1, generic)


async def next_hop(address: str) -> tuple[str, str]:
    """(interface, next-hop address) the main table uses towards `address`."""
    async with AsyncIPRoute() as ipr:
        try:
            [route] = await ipr.route("get", dst=address)
        except NetlinkError as e:
            raise DatapathError(f"no route to {address}: {e}") from e
        [link] = await ipr.link("get", index=route.get("RTA_OIF"))
    return str(link.get("IFLA_IFNAME")), str(route.get("RTA_GATEWAY") or address)


async def neighbour_mac(ifname: str, address: str) -> bytes | None:
    """The kernel's usable neighbour entry for `address` on `ifname`, if any."""
    async with AsyncIPRoute() as ipr:
        index = await _index(ipr, ifname)
        async for n in await ipr.neigh("dump", family=2):
            if (
                n["ifindex"] == index
                and n.get("NDA_DST") == address
                and n["state"] & NUD_USABLE
                and n.get("NDA_LLADDR")
            ):
                return bytes.fromhex(str(n.get("NDA_LLADDR")).replace(":", ""))
    return None


async def clamp_default_route_mss(mss: int) -> bool:
    """Advertise at most `mss` on connections using the default route; False without one.

    Encapsulation adds 20 bytes to client->server segments, so servers must ask clients for
    segments that still fit the path MTU once encapsulated.
    """
    async with AsyncIPRoute() as ipr:
        defaults = [
            r
            async for r in await ipr.route("dump", table=254, family=2)
            if r["dst_len"] == 0 and r.get("RTA_GATEWAY")
        ]
        for r in defaults:
            try:
                await ipr.route(
                    "replace",
                    dst="0.0.0.0/0",
                    gateway=r.get("RTA_GATEWAY"),
                    oif=r.get("RTA_OIF"),
                    proto=r["proto"],
                    metrics={"advmss": mss},
                )
            except NetlinkError as e:
                raise DatapathError(f"cannot set advmss {mss} on the default route: {e}") from e
    return bool(defaults)


LOCAL_REPLIES_TABLE = 0x7468  # "th": the routing table of transparent delivery's replies
LOCAL_REPLIES_PRIORITY = 7468


async def route_loopback_replies_locally() -> None:
    """Transparent delivery connects to an application on 127.0.0.1 from the client's own
    address (IP_TRANSPARENT). The application's answers go from 127.0.0.1 to that address,
    which the main table would send out of the node (and the kernel refuses: a loopback source
    on a real interface). One rule and one route deliver them locally instead, to the relay's
    socket: `ip rule add from 127.0.0.1 lookup 0x7468` with `local 0.0.0.0/0 dev lo` in that
    table (the TPROXY recipe). Idempotent."""
    async with AsyncIPRoute() as ipr:
        lo = await _index(ipr, "lo")
        try:
            await ipr.route("replace", dst="0.0.0.0/0", type="local", scope=254, oif=lo,
                            table=LOCAL_REPLIES_TABLE)  # fmt: skip
            await ipr.rule("add", src="127.0.0.1", src_len=32, table=LOCAL_REPLIES_TABLE,
                           priority=LOCAL_REPLIES_PRIORITY)  # fmt: skip
        except NetlinkError as e:
            if e.code != errno.EEXIST:  # the rule is there already
                raise DatapathError(f"cannot route loopback replies locally: {e}") from e


async def unroute_loopback_replies() -> bool:
    """Remove what route_loopback_replies_locally added; False if it was not there."""
    async with AsyncIPRoute() as ipr:
        try:
            await ipr.rule("del", src="127.0.0.1", src_len=32, table=LOCAL_REPLIES_TABLE,
                           priority=LOCAL_REPLIES_PRIORITY)  # fmt: skip
        except NetlinkError as e:
            if e.code != errno.ENOENT:
                raise DatapathError(f"cannot remove the loopback replies rule: {e}") from e
            return False
        with contextlib.suppress(NetlinkError):
            await ipr.route("del", dst="0.0.0.0/0", type="local", scope=254,
                            table=LOCAL_REPLIES_TABLE)  # fmt: skip
    return True


TCP_ESTABLISHED = 1


def established_connections() -> list[tuple[str, int, str, int]]:
    """(local address, local port, peer address, peer port) of every established IPv4 TCP
    socket in this network namespace."""
    with DiagSocket() as ds:
        ds.bind()
        messages = ds.get_sock_stats(family=socket.AF_INET, states=1 << TCP_ESTABLISHED)
    return [
        (str(m["idiag_src"]), int(m["idiag_sport"]), str(m["idiag_dst"]), int(m["idiag_dport"]))
        for m in messages
    ]


def served_flows(vips: set[str], node: str) -> list[Flow]:
    """The established connections on these VIPs (every one when `vips` is empty), pinned to
    `node`: what a node answers ListConnections with, and what a leader reads of its own."""
    return [Flow(peer, pport, local, lport, node) for local, lport, peer, pport
            in established_connections() if not vips or local in vips]  # fmt: skip


def established_local_ends() -> list[tuple[str, int]]:
    """(local address, local port) of every established IPv4 TCP socket in this netns."""
    return [(addr, port) for addr, port, _, _ in established_connections()]


TCP_STATES = ("", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
              "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV")  # fmt: skip


def sockets_on(address: str, port: int) -> dict[str, int]:
    """How many TCP sockets of this namespace use `port`, by state: those bound to `address`
    under the state's name, those of any other address (IPv6 too) under "address state" (what
    holds a port a listener cannot bind). Synchronous, like every DiagSocket call here: from
    async code call it in a thread (pyroute2 runs an event loop of its own inside)."""
    with DiagSocket() as ds:
        ds.bind()
        messages = [
            m
            for family in (socket.AF_INET, socket.AF_INET6)
            for m in ds.get_sock_stats(family=family, states=0xFFFFFFFF)
        ]
    counts: dict[str, int] = {}
    for m in messages:
        if int(m["idiag_sport"]) == port:
            state = int(m["idiag_state"])
            name = TCP_STATES[state] if state < len(TCP_STATES) else str(state)
            if (src := str(m["idiag_src"])) != address:
                name = f"{src} {name}"
            counts[name] = counts.get(name, 0) + 1
    return counts
