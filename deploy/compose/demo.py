"""The compose demo's steps, run in the client container (deploy/compose/demo.sh calls them):

    python3 /compose/demo.py setup | shares N | direct-return MB | download MB MB/S NOT_NODE |
                             leader | designate NODE | new-leader NOT_NODE | l7

Real traffic from the client through the VIP (curl; downloads with http.client); the cluster
through the SDK with the admin certificate of the environment (TCPHOP_ENDPOINT, TCPHOP_TLS_*).
A step that finds the cluster misbehaving prints why and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass

from cluster.model import Role
from cluster.sdk import ClusterClient, NotLeader, TlsFiles, Unavailable
from lab import services

NET = os.environ.get("TCPHOP_COMPOSE_NET", "10.231")
VIP = f"{NET}.100.10"
STALL_S = 10.0  # a download that receives nothing this long has failed
NODES = {"n1": f"{NET}.2.0/24", "n2": f"{NET}.2.0/24", "n3": f"{NET}.3.0/24",
         "n4": f"{NET}.3.0/24"}  # fmt: skip
WEB, SHOP = services.web(VIP), services.shop(VIP, len(NODES))  # those of the lab's demo


class DemoFailed(Exception):
    pass


def client() -> ClusterClient:
    tls = TlsFiles.from_paths(
        os.environ["TCPHOP_TLS_CA"], os.environ["TCPHOP_TLS_CERT"], os.environ["TCPHOP_TLS_KEY"]
    )
    return ClusterClient(os.environ["TCPHOP_ENDPOINT"], tls=tls)


async def leader_of(c: ClusterClient, not_node: str = "", timeout_s: float = 15) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Unavailable):
            st = await c.status(timeout_s=1)
            if st.leader and st.leader.node_id != not_node:
                return st.leader.node_id
        await asyncio.sleep(0.01)
    raise DemoFailed(f"no leader (other than {not_node or 'none'}) within {timeout_s} s")


async def setup(c: ClusterClient) -> None:
    """Apply both services in one transaction; wait for a leader and every server eligible."""
    await c.apply_services([WEB, SHOP])
    print(
        f"services web ({VIP}:{WEB.port} L4, XDP hop) and shop ({VIP}:{SHOP.port} L7, rules) "
        "applied"
    )
    await c.designate("n1", Role.PRIMARY)
    await c.designate("n2", Role.BACKUP)
    print("n1 designated primary, n2 backup (n3 and n4 cannot announce the VIPs' segment)")
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(Unavailable, NotLeader):
            rings = (await c.datapath(timeout_s=1)).rings
            if all(len(rings.get(s, {})) == len(NODES) for s in ("web", "shop")):
                break
        if time.monotonic() > deadline:
            raise DemoFailed("not every server passed the health checks within 30 s")
        await asyncio.sleep(0.2)
    print(f"leader {await leader_of(c)}; all {len(NODES)} servers healthy in both services")


def curl(*args: str, timeout_s: int = 60) -> subprocess.CompletedProcess[str]:
    cmd = ["curl", "-sS", "--max-time", str(timeout_s), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 5, check=False)


def served_by(headers: str) -> str:
    for line in headers.splitlines():
        if line.lower().startswith("x-served-by:"):
            return line.split(":", 1)[1].strip()
    return ""


def shares(count: int) -> None:
    """`count` requests, each on a new connection: who served them, by subnet."""
    served = Counter(
        served_by(curl("-sD", "-", "-o", "/dev/null", f"http://{VIP}/").stdout) or "failed"
        for _ in range(count)
    )
    print(f"{count} requests to http://{VIP}/, each on a new connection:")
    print(f"{'NODE':<6}{'SUBNET':<16}{'REQUESTS':>9}{'SHARE':>7}")
    for node, subnet in NODES.items():
        print(f"{node:<6}{subnet:<16}{served[node]:>9}{100 * served[node] / count:>6.0f}%")
    if served["failed"] or sum(served[n] > 0 for n in NODES) < len(NODES):
        raise DemoFailed(f"some requests failed or a node got none: {dict(served)}")


@dataclass(frozen=True)
class Download:
    bytes: int
    server: str
    sha256: str
    intact: bool  # every byte, the right SHA-256, no error
    error: str


def download(megabytes: int, rate_mb: float = 0, avoid: str = "") -> Download:
    """A download through the VIP, hashed as it arrives (at most `rate_mb` MiB/s when given),
    on a connection not served by `avoid` (a node about to be killed takes its own
    connections with it: the demo shows that the scheduler's failure costs none)."""
    size = megabytes * 2**20
    for _ in range(20):
        conn = http.client.HTTPConnection(VIP, WEB.port, timeout=STALL_S)
        try:
            conn.request("GET", f"/bytes/{size}")
            resp = conn.getresponse()
            server = resp.getheader("X-Served-By", "")
            if server == avoid:
                continue
            return _receive(resp, server, size, rate_mb)
        except OSError as e:
            return Download(0, "", "", False, f"{type(e).__name__}: {e}")
        finally:
            conn.close()
    raise DemoFailed(f"twenty connections in a row were served by {avoid}")


def _receive(resp: http.client.HTTPResponse, server: str, size: int, rate_mb: float) -> Download:
    got, digest, t0 = 0, hashlib.sha256(), time.monotonic()
    try:
        while chunk := resp.read(256 * 1024):
            got += len(chunk)
            digest.update(chunk)
            if rate_mb and (ahead := got / (rate_mb * 2**20) - (time.monotonic() - t0)) > 0:
                time.sleep(ahead)
        error = ""
    except OSError as e:  # a reset, or no byte for STALL_S
        error = f"{type(e).__name__}: {e}"
    want = hashlib.sha256(b"x" * size).hexdigest()  # the test service sends N bytes of "x"
    sha = digest.hexdigest()
    return Download(got, server, sha, not error and got == size and sha == want, error)


async def direct_return(c: ClusterClient, megabytes: int) -> None:
    """A download served by a node in the other subnet: its response never passes the
    scheduler (the leader's XDP `vip_reply` counter stays 0)."""
    leader = await leader_of(c)
    before = (await c.datapath(leader)).stats
    for _ in range(12):
        result = download(megabytes)
        if NODES.get(result.server) != NODES[leader]:
            break
    else:
        raise DemoFailed("twelve downloads in a row were served in the scheduler's subnet")
    after = (await c.datapath(leader)).stats
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("encapsulated", "vip_reply")}
    where = f"{result.server} ({NODES.get(result.server)})"
    print(f"{megabytes} MiB from {where}, scheduler {leader} ({NODES[leader]}): "
          f"{result.bytes} bytes, sha256 {result.sha256[:16]}…")  # fmt: skip
    print(f"{leader}'s XDP counters during it: encapsulated +{delta['encapsulated']}, replies "
          f"through the scheduler (vip_reply) +{delta['vip_reply']}")  # fmt: skip
    if not result.intact or delta["vip_reply"] != 0:
        raise DemoFailed(f"the download was not intact or passed the scheduler: {result}")


async def designate(c: ClusterClient, node: str) -> None:
    t0 = time.monotonic()
    await c.designate(node, Role.PRIMARY)
    while await leader_of(c) != node:
        if time.monotonic() - t0 > 10:
            raise DemoFailed(f"{node} did not take over within 10 s of its designation")
        await asyncio.sleep(0.01)
    print(f"{node} designated primary: it leads {time.monotonic() - t0:.3f} s later")


async def l7(c: ClusterClient) -> None:
    """Requests to the L7 service: rules by path and header, round-robin, cookie persistence;
    each connection handed over with TCP_REPAIR to the node its rule chose."""
    before = (await c.datapath()).handoff_stats
    url = f"http://{VIP}:{SHOP.port}"
    cases: list[tuple[str, str, tuple[str, ...]]] = [
        ("GET /static/app.js", "/static/app.js", ())
    ] * 2
    cases += [("GET / with X-Tenant: blue", "/", ("-H", "X-Tenant: blue"))] * 2
    cases += [("GET /", "/", ())] * 4
    cases += [("GET / with Cookie: session=42", "/", ("-H", "Cookie: session=42"))] * 3
    failed = []
    for label, path, extra in cases:
        done = curl("-sD", "-", "-o", "/dev/null", *extra, url + path)
        node = served_by(done.stdout)
        print(f"{label:<32} -> {node or 'FAILED ' + done.stderr.strip()}")
        failed += [] if node else [label]
    view = await c.datapath()
    moved = {k: view.handoff_stats.get(k, 0) - before.get(k, 0)
             for k in ("handoffs_done", "served_locally")}  # fmt: skip
    print(f"handed off with TCP_REPAIR: {moved['handoffs_done']}, served by the scheduler "
          f"itself: {moved['served_locally']}; hop p50 {view.handoff_p50_ms:.2f} ms")  # fmt: skip
    if failed:
        raise DemoFailed(f"L7 requests failed: {failed}")


async def step(args: list[str]) -> None:
    async with client() as c:
        match args:
            case ["setup"]:
                await setup(c)
            case ["shares", n]:
                shares(int(n))
            case ["direct-return", mb]:
                await direct_return(c, int(mb))
            case ["download", mb, rate, avoid]:
                print(json.dumps(asdict(download(int(mb), float(rate), avoid))))
            case ["leader"]:
                print(await leader_of(c))
            case ["designate", node]:
                await designate(c, node)
            case ["new-leader", old]:
                t0 = time.monotonic()
                print(f"{await leader_of(c, old)} leads {time.monotonic() - t0:.3f} s later")
            case ["l7"]:
                await l7(c)
            case _:
                raise DemoFailed(f"unknown step {args}; see this file's docstring")


if __name__ == "__main__":
    try:
        asyncio.run(step(sys.argv[1:]))
    except DemoFailed as e:
        print(f"demo: {e}", file=sys.stderr)
        sys.exit(1)
