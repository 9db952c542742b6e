"""ARP for VIPs, in user space: answer requests, announce, and ask who holds an address.

The kernel is told never to answer ARP for a VIP (it lives on a TUN device, and the uplink has
`arp_ignore=1`), so a VIP is reachable exactly while a live process answers for it: a paused or
dead leader stops answering at once. This is MetalLB's layer-2 model.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
REQUEST, REPLY = 1, 2
_ARP = struct.Struct("!6s6sHHHBBH6s4s6s4s")  # ethernet header + ARP for IPv4 over Ethernet


@dataclass(frozen=True, slots=True)
class Arp:
    op: int
    sha: bytes
    spa: str
    tha: bytes
    tpa: str


def build(eth_dst: bytes, eth_src: bytes, arp: Arp) -> bytes:
    return _ARP.pack(
        eth_dst,
        eth_src,
        ETH_P_ARP,
        1,
        ETH_P_IP,
        6,
        4,
        arp.op,
        arp.sha,
        socket.inet_aton(arp.spa),
        arp.tha,
        socket.inet_aton(arp.tpa),
    )


def parse(frame: bytes) -> Arp | None:
    """The ARP message in an Ethernet frame; None for anything else (never raises)."""
    if len(frame) < _ARP.size:
        return None
    (_, _, ethertype, htype, ptype, hlen, plen, op, sha, spa, tha, tpa) = _ARP.unpack_from(frame)
    if (ethertype, htype, ptype, hlen, plen) != (ETH_P_ARP, 1, ETH_P_IP, 6, 4) or op not in (
        REQUEST,
        REPLY,
    ):
        return None
    return Arp(op, sha, socket.inet_ntoa(spa), tha, socket.inet_ntoa(tpa))


def reply_to(request: Arp, mac: bytes) -> bytes:
    return build(request.sha, mac, Arp(REPLY, mac, request.tpa, request.sha, request.spa))


def announcement(vip: str, mac: bytes) -> bytes:
    """Gratuitous ARP: a broadcast request from and for the VIP; neighbours update their entry."""
    return build(BROADCAST, mac, Arp(REQUEST, mac, vip, ZERO_MAC, vip))


def open_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        sock.bind((ifname, ETH_P_ARP))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ArpResponder:
    """Answers ARP requests on one interface for the addresses `answer(tpa)` accepts, and tells
    `heard(spa, sha)` of every ARP message another station sends from an address (a gratuitous
    ARP or a reply: who claims that address now)."""

    def __init__(
        self,
        ifname: str,
        mac: bytes,
        answer: Callable[[str], bool],
        heard: Callable[[str, bytes], None] = lambda spa, sha: None,
    ) -> None:
        self.ifname, self.mac, self.answer, self.heard = ifname, mac, answer, heard
        self.sock = open_socket(ifname)
        self.replies = 0
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                frame, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            msg = parse(frame)
            if msg is not None and msg.sha != self.mac and msg.spa != "0.0.0.0":
                self.heard(msg.spa, msg.sha)
            if msg is not None and msg.op == REQUEST and self.answer(msg.tpa):
                with contextlib.suppress(OSError):
                    self.sock.send(reply_to(msg, self.mac))
                    self.replies += 1

    def announce(self, vip: str) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(announcement(vip, self.mac))

    def close(self) -> None:
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def who_has(ifname: str, mac: bytes, target: str, timeout_s: float = 0.2) -> set[bytes]:
    """Send one ARP probe for target and return the MACs of every node that answered.

    A probe (sender address 0.0.0.0, RFC 5227) needs no address of our own.
    """
    ipaddress.IPv4Address(target)
    with open_socket(ifname) as sock:
        sock.send(build(BROADCAST, mac, Arp(REQUEST, mac, "0.0.0.0", ZERO_MAC, target)))
        answers: set[bytes] = set()
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                frame, addr = sock.recvfrom(2048)
            except TimeoutError:
                break
            msg = parse(frame)
            if addr[2] != PACKET_OUTGOING and msg and msg.op == REPLY and msg.spa == target:
                answers.add(msg.sha)
        return answers
