"""tcphopd: wiring only. One asyncio process per node, one TaskGroup, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from importlib.metadata import PackageNotFoundError, version

import structlog

from cluster.config import DaemonConfig
from cluster.election import ElectionConfig, RecordedVips, RoleManager
from cluster.errors import AlreadyExists, StoreUnavailable
from cluster.keys import Keys
from cluster.membership import Membership
from cluster.model import Registration
from cluster.server import start_server
from cluster.state import ClusterState
from cluster.store.etcd import EtcdStore

log = structlog.get_logger()
EXIT_DUPLICATE = 3
GRACE_S = 2.0
RETRY_S = 1.0


def tcphop_version() -> str:
    try:
        return version("tcphop")
    except PackageNotFoundError:
        return "dev"


async def run(cfg: DaemonConfig) -> int:
    structlog.contextvars.bind_contextvars(node_id=cfg.node_id)
    store = EtcdStore(cfg.etcd, timeout_s=cfg.etcd_timeout_s)
    keys = Keys(cfg.key_root)
    state = ClusterState(store, keys, answered_by=cfg.node_id)
    registration = Registration(
        cfg.node_id, cfg.advertise, socket.gethostname(), os.getpid(), tcphop_version(), time.time()
    )
    membership = Membership(store, keys, registration, cfg.lease_ttl_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while True:
        try:
            await membership.register()
            break
        except AlreadyExists as e:
            log.error("start_refused", reason=str(e))
            await store.close()
            return EXIT_DUPLICATE
        except StoreUnavailable as e:
            log.warning("etcd_unreachable", reason=str(e), retry_in_s=RETRY_S)
            try:
                async with asyncio.timeout(RETRY_S):
                    await stop.wait()
                await store.close()
                return 0
            except TimeoutError:
                pass
    roles = RoleManager(
        store,
        keys,
        registration,
        ElectionConfig.for_ttl(cfg.leader_ttl_s),
        RecordedVips(),
        lambda: membership.lease,
    )
    server, port = await start_server(state, cfg.listen)
    log.info("daemon_started", listen=cfg.listen, port=port, etcd=",".join(cfg.etcd))
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(membership.run(stop))
            tg.create_task(roles.run(stop))
    finally:
        await server.stop(GRACE_S)
        await membership.deregister()
        await store.close()
        log.info("daemon_stopped")
    return 0
