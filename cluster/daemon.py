"""tcphopd: wiring only. One asyncio process per node, one TaskGroup, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import structlog
from grpc_health.v1._async import HealthServicer

from agent.reporter import Agent
from cluster.agentlink import EtcdLink
from cluster.config import DaemonConfig, ElectionConfig
from cluster.election import RoleManager
from cluster.errors import AlreadyExists, StoreUnavailable
from cluster.forwarding import Forwarder
from cluster.health import NodeHealth
from cluster.httpapi import HttpApi
from cluster.keys import Keys
from cluster.l7.handoff import L7Handoff
from cluster.leadership import LeaderLease, RecordedVips, VipHolder
from cluster.looplag import LoopLag
from cluster.membership import Membership
from cluster.metrics import Sources, render
from cluster.model import Registration
from cluster.scheduler import Scheduler
from cluster.server import HEALTH_SERVICES, start_server
from cluster.state import ClusterState
from cluster.store.etcd import EtcdStore
from datapath.errors import DatapathError
from datapath.vip import TunVipHolder
from datapath.xdp import XdpDatapath

log = structlog.get_logger()
EXIT_DUPLICATE = 3
EXIT_CONFIG = 2
EXIT_FAILED = 4  # a loop died: the daemon stops whole (a supervisor restarts it)
GRACE_S = 2.0
RETRY_S = 1.0


def tcphop_version() -> str:
    try:
        return version("tcphop")
    except PackageNotFoundError:
        return "dev"


def raise_file_limit() -> None:
    """Every connection is a descriptor (L7 heads, splices, restored sockets): take the hard
    limit rather than the usual soft 1024, as HAProxy and nginx do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(cfg: DaemonConfig) -> int:
    structlog.contextvars.bind_contextvars(node_id=cfg.node_id)
    raise_file_limit()
    if cfg.tls is None:
        log.warning("insecure_mode", reason="--insecure: no TLS and no roles on the API, "
                    "telemetry and handoff channel")  # fmt: skip
    urls = [f"https://{e}" for e in cfg.etcd] if cfg.etcd_tls else list(cfg.etcd)
    store = EtcdStore(urls, timeout_s=cfg.etcd_timeout_s, tls=cfg.etcd_tls, auth=cfg.etcd_auth)
    keys = Keys(cfg.key_root)
    state = ClusterState(store, keys, answered_by=cfg.node_id)
    registration = Registration(
        cfg.node_id,
        cfg.advertise,
        socket.gethostname(),
        os.getpid(),
        tcphop_version(),
        time.time(),
        cfg.announces,
    )
    membership = Membership(store, keys, registration, cfg.lease_ttl_s)
    stop = asyncio.Event()
    lag = LoopLag()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    election = ElectionConfig.for_ttl(cfg.leader_ttl_s)
    leader = LeaderLease(election.margin_s)
    vips: VipHolder = TunVipHolder(cfg.uplink, leader.may_serve) if cfg.uplink else RecordedVips()
    scheduler = Scheduler(state, leader.current_term)
    forwarder = _forwarder(cfg, state, scheduler, vips) if cfg.datapath == "xdp" else None
    roles = RoleManager(
        store, keys, registration, election, forwarder or vips, membership.current_lease, leader
    )
    if isinstance(vips, TunVipHolder):
        vips.on_claim = roles.vip_claimed
    if forwarder is not None:
        roles.on_deposed, forwarder.publish_rings = forwarder.deposed, roles.publish_rings
        forwarder.gone = roles.gone_nodes
    parts = Parts(state, store, scheduler, membership, roles, forwarder, vips, stop, lag)
    try:
        return await _serve(cfg, parts)
    except* Exception as group:  # the one place a loop's death ends up: stop whole, say why
        for e in group.exceptions:
            log.error("daemon_failed", reason=f"{type(e).__name__}: {e}", exc_info=e)
    return EXIT_FAILED


@dataclass
class Parts:
    """The daemon's parts, built by run() and wired by _serve()."""

    state: ClusterState
    store: EtcdStore
    scheduler: Scheduler
    membership: Membership
    roles: RoleManager
    forwarder: Forwarder | None
    vips: VipHolder
    stop: asyncio.Event
    lag: LoopLag


async def _serve(cfg: DaemonConfig, p: Parts) -> int:
    forwarder = p.forwarder
    try:
        try:
            if isinstance(p.vips, TunVipHolder):
                await p.vips.start()
            if forwarder is not None:
                await forwarder.start(cfg.advertise)
        except DatapathError as e:
            log.error("start_refused", reason=f"--uplink {cfg.uplink}: {e}")
            return EXIT_CONFIG
        if not await _register(p.membership, p.stop, cfg.lease_ttl_s):
            return 0 if p.stop.is_set() else EXIT_DUPLICATE
        p.roles.read_at = time.monotonic()  # etcd just answered: healthy from the start
        agent = Agent(
            EtcdLink(p.state, cfg.node_id, p.membership.current_lease), cfg.node_id,
            cfg.report_interval_s, cfg.check_host, cfg.cpu_scope, cfg.tls,
        )  # fmt: skip
        agent.on_stream_failed = p.roles.wake.set  # a leader's crash, seen first by the stream
        health = NodeHealth(p.membership, p.roles, forwarder)
        http = await _serve_http(cfg, p, health, agent)
        if cfg.http_listen and http is None:
            return EXIT_CONFIG
        grpc_health = HealthServicer()
        server, port = await start_server(
            p.state,
            p.scheduler,
            cfg.listen,
            forwarder.datapath if forwarder else None,
            forwarder.handoff.adopter if forwarder and forwarder.handoff else None,
            forwarder.handoff if forwarder else None,
            p.lag,
            cfg.tls,
            grpc_health,
        )
        log.info("daemon_started", listen=cfg.listen, port=port, etcd=",".join(cfg.etcd),
                 http=cfg.http_listen or "off")  # fmt: skip
        try:
            async with asyncio.TaskGroup() as tg:
                for loop in (p.membership.run, p.roles.run, agent.run, p.lag.run):
                    tg.create_task(loop(p.stop))
                if forwarder is not None:
                    tg.create_task(forwarder.run(p.stop))
                tg.create_task(health.follow(grpc_health, HEALTH_SERVICES, p.stop))
        finally:
            if http is not None:
                http.close()
            await _keep_api_for_handoff(forwarder)
            await server.stop(GRACE_S)
            await p.membership.deregister()
    finally:
        if isinstance(p.vips, TunVipHolder):
            await p.vips.close()
        if forwarder is not None:
            await forwarder.close()  # the datapath stays attached: a restart keeps every flow
        await p.state.store.close()
        log.info("daemon_stopped")
    return 0


async def _serve_http(
    cfg: DaemonConfig, p: Parts, health: NodeHealth, agent: Agent
) -> asyncio.Server | None:
    """The metrics and health listener; None when off or when it cannot listen (logged)."""
    if not cfg.http_listen:
        return None
    sources = Sources(
        cfg.node_id, tcphop_version(), p.roles, p.scheduler, p.store.stats, p.lag, health,
        lambda: agent.latest, p.forwarder,
    )  # fmt: skip
    api = HttpApi(health, lambda: render(sources))
    try:
        return await api.serve(cfg.http_listen, None if cfg.http_plaintext else cfg.tls)
    except OSError as e:
        log.error("start_refused", reason=f"--http-listen {cfg.http_listen}: {e.strerror or e}")
        return None


async def _keep_api_for_handoff(forwarder: Forwarder | None) -> None:
    """The next leader asks every node for its connections before it announces the VIPs, this
    one included: keep answering for a moment after stepping down."""
    if forwarder is not None and (left := forwarder.handoff_left_s()) > 0:
        log.info("api_kept_for_handoff", seconds=round(left, 2))
        await asyncio.sleep(left)


async def teardown(cfg: DaemonConfig) -> int:
    """`tcphopd --teardown`: remove what the datapath keeps between runs (decommissioning)."""
    try:
        removed = await _xdp(cfg).teardown()
    except DatapathError as e:
        log.error("teardown_failed", reason=str(e))
        return EXIT_CONFIG
    log.info("datapath_removed", removed=removed)
    return 0


def _xdp(cfg: DaemonConfig) -> XdpDatapath:
    assert cfg.uplink is not None
    return XdpDatapath(cfg.uplink, cfg.datapath_address, Path(cfg.bpf_pin_dir), cfg.xdp_generic)


def _forwarder(
    cfg: DaemonConfig, state: ClusterState, scheduler: Scheduler, vips: VipHolder
) -> Forwarder:
    """The datapath, the L7 handoff on both of its ends, and what keeps them programmed."""
    datapath = _xdp(cfg)
    handoff = L7Handoff(cfg.node_id, scheduler, datapath, cfg.descriptor_dir, cfg.tls)
    return Forwarder(datapath, state, scheduler, vips, cfg.node_id, handoff, cfg.tls)


async def _register(membership: Membership, stop: asyncio.Event, ttl_s: int) -> bool:
    """Register, waiting out etcd outages and a crashed predecessor's lease.

    A registration held by a dead process of this node (restarted after kill -9) goes when its
    lease expires; one still held after TTL + 1 s belongs to a live daemon: refuse.
    """
    duplicate_deadline: float | None = None
    while not stop.is_set():
        try:
            await membership.register()
            return True
        except AlreadyExists as e:
            now = asyncio.get_running_loop().time()
            if duplicate_deadline is None:
                duplicate_deadline = now + ttl_s + 1
                log.warning("registration_held", reason=str(e), wait_s=ttl_s + 1)
            elif now > duplicate_deadline:
                log.error("start_refused", reason=str(e))
                return False
        except StoreUnavailable as e:
            log.warning("etcd_unreachable", reason=str(e), retry_in_s=RETRY_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETRY_S if duplicate_deadline is None else 0.2):
                await stop.wait()
    return False
