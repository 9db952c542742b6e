"""A typed facade over pyroute2 (asyncio) and the few ioctls and sysctls tcphop needs.

Everything acts on the network namespace of the calling process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from datapath.errors import DatapathError, InterfaceNotFound

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


async def add_address(ifname: str, address: str, prefixlen: int = 32) -> None:
    async with AsyncIPRoute() as ipr:
        try:
            await ipr.addr(
                "add", index=await _index(ipr, ifname), address=address, prefixlen=prefixlen
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


def set_sysctl(path: Path, value: str) -> str:
    """Write a sysctl; return its previous value (to restore it later)."""
    try:
        old = path.read_text().strip()
        path.write_text(value)
    except OSError as e:
        raise DatapathError(f"cannot set {path} = {value}: {e}") from e
    return old
