"""free_port (cluster/store/embedded.py): a port for a process about to listen, never one an
outgoing connection could take first, never the same one twice."""

from __future__ import annotations

import socket
from pathlib import Path

from cluster.store.embedded import free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= p < low for p in ports), [p for p in ports if p >= low]
    with socket.socket() as s:  # still free: the caller can bind it
        s.bind(("127.0.0.1", ports[-1]))
