"""Faults to inject into a running lab, and their undoing: processes killed or hung, a node cut
from etcd or from everyone (nftables in its namespace, dropping silently), etcd members and the
etcd leader lost, gratuitous ARPs dropped on the router. Used by the chaos suite
(bench/chaos.py) and the split-brain tests; every fault has an undo that returns the lab to
where it was (a killed process is started again, in its place in lab.json).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from lab import etcd as lab_etcd
from lab.lifecycle import start_node
from lab.netns import ETCD_SUBNET
from lab.state import LabProcess, LabState

TABLE = "tcphop_chaos"  # the nftables table a cut lives in (one per namespace)


def node_index(node: str) -> int:
    return int(node.removeprefix("n"))


def signal_node(state: LabState, node: str, sig: signal.Signals) -> None:
    proc = state.nodes[node_index(node) - 1]
    if proc.running():
        os.kill(proc.pid, sig)


def restart_node(state: LabState, node: str) -> None:
    """Start node's tcphopd again (after a kill) and record the new process."""
    i = node_index(node)
    old = state.nodes[i - 1]
    if old.running():
        os.kill(old.pid, signal.SIGCONT)
        return
    state.nodes[i - 1] = start_node(state, i)
    state.save()


def _nft(ns: str, *rules: str) -> None:
    script = "\n".join(rules) + "\n"
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True,
                   check=True, capture_output=True)  # fmt: skip


def cut(state: LabState, node: str, etcd_only: bool) -> None:
    """Drop, silently, node's traffic to and from etcd (etcd_only), or all its traffic on
    eth0 (cut from the router: clients, etcd and the other nodes)."""
    net = state.lab
    match = f"ip daddr {net.net}.{ETCD_SUBNET}.0/24 " if etcd_only else 'oifname "eth0" '
    back = f"ip saddr {net.net}.{ETCD_SUBNET}.0/24 " if etcd_only else 'iifname "eth0" '
    _nft(net.node_ns(node_index(node)),
         f"table inet {TABLE} {{",
         f"  chain out {{ type filter hook output priority -10; {match}drop; }}",
         f"  chain in {{ type filter hook input priority -10; {back}drop; }}",
         "}")  # fmt: skip
    if not etcd_only:  # ARP too: the node's VIP answers must not reach the segment
        _nft(net.node_ns(node_index(node)),
             f"table netdev {TABLE} {{",
             '  chain egress { type filter hook egress device "eth0" priority -10; drop; }',
             "}")  # fmt: skip


def heal(state: LabState, node: str) -> None:
    ns = state.lab.node_ns(node_index(node))
    for family in ("inet", "netdev"):
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", family, TABLE],
                       check=False, capture_output=True)  # fmt: skip


def drop_gratuitous_arp(state: LabState, on: bool) -> None:
    """On the router: drop every gratuitous ARP (a request sent from a VIP) arriving from the
    VIP's segment, so it learns a VIP's new owner only by asking (replies still pass)."""
    r = state.lab.ns("r")
    if not on:
        subprocess.run(["ip", "netns", "exec", r, "nft", "delete", "table", "arp", TABLE],
                       check=False, capture_output=True)  # fmt: skip
        return
    vips = f"{state.lab.net}.100.0/24"  # a gratuitous ARP is a request from the VIP itself
    _nft(r, f"table arp {TABLE} {{",
         "  chain in { type filter hook input priority -10; "
         f"arp operation request arp saddr ip {vips} drop; }}",
         "}")  # fmt: skip


def etcd_member(state: LabState, k: int) -> LabProcess:
    return state.etcd_members[k - 1]


def etcd_leader(state: LabState) -> int:
    """Which member (1-based) leads etcd now."""
    found = _etcdctl(state, "endpoint", "status", "-w", "json")
    statuses = json.loads(found)
    leader_id = statuses[0]["Status"]["leader"]
    for k, st in enumerate(statuses, 1):
        if st["Status"]["header"]["member_id"] == leader_id:
            return k
    raise RuntimeError("no etcd member says it leads")


def _etcdctl(state: LabState, *args: str) -> str:
    pki = Path(state.directory) / "pki"
    tls = ["--cacert", str(pki / "ca.crt"), "--cert", str(pki / "admin.crt"),
           "--key", str(pki / "admin.key")] if (pki / "ca.crt").exists() else []  # fmt: skip
    done = subprocess.run(
        [str(lab_etcd.etcdctl_binary()), "--endpoints", state.etcd_url, *tls, *args,
         "--command-timeout", "3s"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def kill_etcd(state: LabState, k: int) -> None:
    member = etcd_member(state, k)
    if member.running():
        os.kill(member.pid, signal.SIGKILL)


def restart_etcd(state: LabState, k: int) -> None:
    """Start member k again on its data directory; it rejoins the cluster."""
    if etcd_member(state, k).running():
        return
    proc = lab_etcd.restart(state, k)
    if k == 1:
        state.etcd = proc
    else:
        state.etcd_peers[k - 2] = proc
    state.save()
