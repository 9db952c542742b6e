"""Node registration under an etcd lease.

`nodes/<id>` exists exactly while the node's lease lives: created with create-if-absent (a
second daemon with the same id is refused), refreshed every `ttl_s / 4`, deleted by revoking
the lease on a clean shutdown. A killed node's key goes when etcd expires the lease. The first
registration also creates the node's persistent designation with defaults.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from cluster.documents import designation_to_doc, record_to_doc
from cluster.errors import AlreadyExists, LeaseExpired, StoreError
from cluster.keys import Keys
from cluster.model import Designation, Registration
from cluster.snapshot import BAD_VALUE, decode, encode
from cluster.store.base import Compare, KeyValue, LeaseId, Put, Store

log = structlog.get_logger()


class Membership:
    def __init__(
        self, store: Store, keys: Keys, registration: Registration, ttl_s: int = 2
    ) -> None:
        self.store, self.keys, self.registration, self.ttl_s = store, keys, registration, ttl_s
        self.lease: LeaseId | None = None
        self.refreshed_at = 0.0  # monotonic: the last registration or keepalive etcd confirmed

    def current_lease(self) -> LeaseId | None:
        """The node lease while registered (None between a lost lease and re-registering)."""
        return self.lease

    @property
    def node_id(self) -> str:
        return self.registration.node_id

    async def _replace_leaseless(self, holder: KeyValue, lease: LeaseId) -> bool:
        """A node key no lease holds belongs to no live tcphopd (a hand-made or buggy write
        that would never expire): replace it, comparing the revision we judged."""
        if holder.lease:
            return False
        guard = Compare(holder.key, "mod", "==", holder.mod_revision)
        put = Put(holder.key, encode(record_to_doc(self.registration)), lease)
        replaced = (await self.store.txn([guard], [put])).succeeded
        if replaced:
            log.warning("registration_replaced", reason="the node key was held by no lease")
        return replaced

    async def register(self) -> None:
        """Take `nodes/<id>` under a fresh lease; raise AlreadyExists if another node holds it."""
        lease, granted = await self.store.grant_lease(self.ttl_s)
        key = self.keys.node(self.node_id)
        result = await self.store.create(key, encode(record_to_doc(self.registration)), lease)
        holder = None if result.succeeded else result.current.get(key)
        if not result.succeeded and (
            holder is None or not await self._replace_leaseless(holder, lease)
        ):
            await self.store.revoke(lease)
            try:
                who = decode(holder.value) if holder else {}
            except BAD_VALUE:
                who = {}
            raise AlreadyExists(
                f"node id {self.node_id!r} is already registered by a live tcphopd "
                f"(endpoint {who.get('endpoint', '?')}, host {who.get('hostname', '?')}, "
                f"pid {who.get('pid', '?')}); stop it, or wait {self.ttl_s} s for its lease to "
                "expire if it is dead, or pick another --node-id"
            )
        self.lease, self.refreshed_at = lease, time.monotonic()
        await self.store.create(
            self.keys.designation(self.node_id),
            encode(designation_to_doc(Designation(self.node_id))),
        )
        log.info(
            "node_registered",
            lease_id=f"{lease:x}",
            ttl_s=granted,
            endpoint=self.registration.endpoint,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the lease alive until stop is set; re-register if the lease was lost."""
        period_s = self.ttl_s / 4
        while not stop.is_set():
            try:
                async with asyncio.timeout(period_s):
                    await stop.wait()
                return
            except TimeoutError:
                pass
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            if self.lease is None:
                await self.register()
                log.warning("node_reregistered")
            else:
                await self.store.keepalive(self.lease)
                self.refreshed_at = time.monotonic()
        except LeaseExpired:
            log.warning(
                "lease_lost",
                lease_id=f"{self.lease or 0:x}",
                reason="not refreshed before its TTL ran out",
            )
            self.lease = None
        except AlreadyExists:
            raise
        except StoreError as e:
            log.warning("lease_refresh_failed", reason=str(e))

    async def deregister(self) -> None:
        if self.lease is not None:
            await self.store.revoke(self.lease)
            log.info("node_deregistered", lease_id=f"{self.lease:x}")
            self.lease = None
