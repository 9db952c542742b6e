"""A deposed leader's writes are fenced off by the leader key's create revision."""

from __future__ import annotations

import time

import pytest

from cluster.documents import designation_to_doc, record_to_doc
from cluster.election import ElectionConfig, RecordedVips, RoleManager
from cluster.keys import Keys
from cluster.model import Designation, Registration, Role, VipOwner
from cluster.snapshot import encode
from cluster.store.base import Put
from cluster.store.etcd import EtcdStore

pytestmark = pytest.mark.etcd


def manager(store: EtcdStore, keys: Keys, node: str) -> RoleManager:
    me = Registration(node, f"127.0.0.1:{1000 + int(node[1])}", "h", 1, "t", time.time())
    return RoleManager(store, keys, me, ElectionConfig.for_ttl(1), RecordedVips(), lambda: None)


async def test_fenced_write_from_a_deposed_leader_fails(store: EtcdStore, keys: Keys) -> None:
    for node, role in (("n1", Role.PRIMARY), ("n2", Role.BACKUP)):
        reg = Registration(node, "127.0.0.1:1", "h", 1, "t", time.time())
        await store.put(keys.node(node), encode(record_to_doc(reg)))
        await store.put(keys.designation(node), encode(designation_to_doc(Designation(node, role))))
    a, b = manager(store, keys, "n1"), manager(store, keys, "n2")
    await a._cycle()
    assert a.leading and a.lease is not None
    await store.revoke(a.lease)  # as if a paused leader's lease expired
    b.absent_since = time.monotonic() - 1  # the backup has waited long enough
    await b._cycle()
    assert b.leading and b.leader_revision != a.leader_revision
    owner = encode(record_to_doc(VipOwner("10.0.0.1", "n1", 1)))
    assert not await a._fenced([Put(keys.vip("10.0.0.1"), owner)])
    assert await store.get(keys.vip("10.0.0.1")) is None
    assert await b._fenced([Put(keys.vip("10.0.0.1"), owner.replace(b"n1", b"n2"))])
    await a._cycle()  # a notices and steps down; b keeps leading
    assert not a.leading
    term = await store.get(keys.term)
    assert term is not None and int(term.value) == 2
