"""A deposed leader's writes are fenced off by the leader key's create revision."""

from __future__ import annotations

import json
import time

import pytest

from cluster.config import ElectionConfig
from cluster.decision import Action
from cluster.documents import designation_to_doc, record_to_doc
from cluster.election import RoleManager
from cluster.keys import Keys
from cluster.leadership import RecordedVips
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
    assert (await a.step()).action == Action.CAMPAIGN
    assert a.leader.leading and a.leader.lease is not None
    await store.revoke(a.leader.lease)  # as if a paused leader's lease expired
    assert (await b.step()).action == Action.CAMPAIGN  # n1 is not a ready candidate
    assert b.leader.leading and b.leader.leader_revision != a.leader.leader_revision
    owner = encode(record_to_doc(VipOwner("10.0.0.1", "n1", 1)))
    assert not await a.fenced([Put(keys.vip("10.0.0.1"), owner)])
    assert await store.get(keys.vip("10.0.0.1")) is None
    assert await b.fenced([Put(keys.vip("10.0.0.1"), owner.replace(b"n1", b"n2"))])
    a.leader.valid_until = time.monotonic() + 10  # a woken leader that thinks it still leads
    await a.publish_rings({"web": {"n1": 1000}}, {})  # its rings are fenced out too
    assert await store.get(keys.ring("web")) is None
    await b.publish_rings({"web": {"n2": 1000}}, {})
    stored = await store.get(keys.ring("web"))
    assert stored is not None and json.loads(stored.value) == {"weights": {"n2": 1000}}
    assert (await a.step()).action == Action.STEP_DOWN  # a notices; b keeps leading
    assert not a.leader.leading
    term = await store.get(keys.term)
    assert term is not None and int(term.value) == 2
