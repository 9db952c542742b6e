"""TunVipHolder: where a leader's VIPs live on its node.

Each VIP is a /32 on a TUN device that exists exactly as long as this process (the kernel
removes it when the process dies, even by SIGKILL), so the node's stack accepts the VIP's
traffic only while tcphopd runs. The uplink gets `arp_ignore=1` and `arp_announce=2`, so the
kernel never answers ARP for a VIP; `ArpResponder` answers instead, and only while `is_valid()`
(the leader's lease is surely held, or it leads stranded from etcd) — a paused leader answers
nothing. Newly held VIPs are announced with gratuitous ARP; another station's announcement of a
held VIP is passed to `on_claim` (the election yields to it). Sysctls are restored on close.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import structlog

from datapath import netlink
from datapath.arp import ArpResponder

log = structlog.get_logger()
ANNOUNCE_REPEAT_S = (0.0, 0.2, 1.0)  # keepalived-like repeats, in case one is lost
CLAIM_SETTLE_S = 0.02  # between the first announcement and answering requests


class TunVipHolder:
    def __init__(self, uplink: str, is_valid: Callable[[], bool]) -> None:
        self.uplink, self.is_valid = uplink, is_valid
        # Told when another station announces a VIP this node holds (a new leader's GARP).
        self.on_claim: Callable[[str, bytes], None] = lambda vip, mac: None
        self.tun = f"thv{os.getpid() % 1_000_000}"
        self.held: frozenset[str] = frozenset()
        self.released: frozenset[str] = frozenset()  # held last, until the next hold
        self._fd: int | None = None
        self._responder: ArpResponder | None = None
        self._restore: dict[str, str] = {}

    async def start(self) -> None:
        """Create the TUN device, take ARP for VIPs away from the kernel, start answering."""
        mac = await netlink.link_mac(self.uplink)
        for name, value in (("arp_ignore", "1"), ("arp_announce", "2")):
            path = netlink.ipv4_sysctl(self.uplink, name)
            self._restore[str(path)] = netlink.set_sysctl(path, value)
        self._fd = await netlink.open_tun(self.tun)
        self._responder = ArpResponder(self.uplink, mac, self._answers, self._heard)
        log.info("vip_holder_started", uplink=self.uplink, tun=self.tun)

    def _answers(self, address: str) -> bool:
        return address in self.held and self.is_valid()

    def _heard(self, address: str, mac: bytes) -> None:
        if address in self.held or address in self.released:
            self.on_claim(address, mac)

    async def hold(self, vips: frozenset[str]) -> None:
        if self._fd is None:
            await self.start()
        for vip in vips - self.held:
            await netlink.add_address(self.tun, vip)
        for vip in self.held - vips:
            await netlink.del_address(self.tun, vip)
        added = vips - self.held
        if added and self._responder is not None:
            # Announce before answering: an ex-leader that kept the VIP while cut off from etcd
            # (static stability) hears this and stops answering first, so no request is
            # answered by both.
            for vip in sorted(added):
                self._responder.announce(vip)
            await asyncio.sleep(CLAIM_SETTLE_S)
        self.held, self.released = vips, frozenset()
        for vip in sorted(added):
            self._announce(vip)

    def _announce(self, vip: str) -> None:
        loop = asyncio.get_running_loop()
        for delay in ANNOUNCE_REPEAT_S:
            loop.call_later(delay, self._announce_once, vip)

    def _announce_once(self, vip: str) -> None:
        if self._responder is not None and self._answers(vip):
            self._responder.announce(vip)

    async def release(self) -> None:
        self.released = self.held or self.released  # a claim of these still concerns us
        self.held = frozenset()  # stop answering first
        if self._fd is not None:
            for vip in await netlink.addresses(self.tun):
                await netlink.del_address(self.tun, vip)

    async def close(self) -> None:
        await self.release()
        if self._responder is not None:
            self._responder.close()
            self._responder = None
        if self._fd is not None:
            os.close(self._fd)  # the kernel removes the TUN device
            self._fd = None
        for path, value in self._restore.items():
            netlink.set_sysctl(Path(path), value)
        self._restore.clear()
