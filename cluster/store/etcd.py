"""EtcdStore: the Store protocol on etcd v3. The only module that imports aetcd.

It speaks etcd's gRPC API through the stubs aetcd generates (`aetcd.rpc`) on grpc.aio channels
of its own, one per endpoint, rather than through `aetcd.Client`: the client hides the response
header (the revision a transaction committed at) and its shared watcher cannot tell a caller
where to resume after a broken stream. With several endpoints, a call that finds one unavailable
moves on to the next within the same deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from aetcd import rpc

from cluster.errors import LeaseExpired, RevisionCompacted, StoreError, StoreUnavailable
from cluster.histogram import Histogram
from cluster.limits import ETCD_MAX_RECEIVE_BYTES
from cluster.store.base import (
    Compare,
    Delete,
    EventKind,
    KeyValue,
    LeaseId,
    Put,
    Revision,
    TxnResult,
    WatchEvent,
)
from cluster.store.endpoints import parse_endpoints_and_scheme
from cluster.tls import TlsFiles

_T = TypeVar("_T")
# A call cancelled by its caller's deadline after this long moves the next call to another
# member (EtcdStore._try_endpoints).
SLOW_CALL_S = 0.1
_TARGETS = {
    "create": rpc.Compare.CREATE,
    "mod": rpc.Compare.MOD,
    "version": rpc.Compare.VERSION,
    "value": rpc.Compare.VALUE,
}
_OPS = {
    "==": rpc.Compare.EQUAL,
    "!=": rpc.Compare.NOT_EQUAL,
    "<": rpc.Compare.LESS,
    ">": rpc.Compare.GREATER,
}
_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


def _range_end(prefix: bytes) -> bytes:
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def _kv(kv: rpc.KeyValue) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _translate(e: grpc.aio.AioRpcError, target: str) -> StoreError:
    code, details = e.code(), e.details() or ""
    if code in _UNAVAILABLE:
        return StoreUnavailable(f"etcd at {target} is unavailable: {details or code.name}")
    if code == grpc.StatusCode.NOT_FOUND and "lease" in details:
        return LeaseExpired(details)
    return StoreError(f"etcd at {target} failed: {code.name}: {details}")


class _Token(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Adds etcd's auth token (from Authenticate) to every call on a channel."""

    def __init__(self) -> None:
        self.value: str | None = None

    def _with(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        if self.value is None:
            return d
        metadata = grpc.aio.Metadata(*(d.metadata or ()), ("token", self.value))
        return grpc.aio.ClientCallDetails(
            d.method, d.timeout, metadata, d.credentials, d.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._with(details), request)

    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._with(details), request)

    async def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(self._with(details), requests)

    async def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return await continuation(self._with(details), requests)


class _Endpoint:
    def __init__(
        self, target: str, tls: TlsFiles | None, auth: tuple[str, str] | None = None
    ) -> None:
        self.target, self.auth, self.token = target, auth, _Token()
        # The full-prefix read grows with the cluster; gRPC's 4 MiB default would turn a large
        # (or stuffed) key space into "etcd unavailable" and stop every election.
        options = [("grpc.max_receive_message_length", ETCD_MAX_RECEIVE_BYTES)]
        self.channel = (
            grpc.aio.secure_channel(
                target, tls.channel_credentials(), options=options, interceptors=[self.token]
            )
            if tls is not None
            else grpc.aio.insecure_channel(target, options=options, interceptors=[self.token])
        )
        self.auth_stub = rpc.AuthStub(self.channel)
        self.kv = rpc.KVStub(self.channel)
        self.lease = rpc.LeaseStub(self.channel)
        self.watch = rpc.WatchStub(self.channel)


@dataclass
class StoreStats:
    """What /metrics shows of this client's etcd calls (cluster/metrics.py)."""

    latency: defaultdict[str, Histogram] = field(default_factory=lambda: defaultdict(Histogram))
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (call, error type)
    watches: int = 0  # watch streams opened: the first of each watcher, then its restarts


class EtcdStore:
    """Store on etcd v3. Every call is bounded by `timeout_s`."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        timeout_s: float = 2.0,
        tls: TlsFiles | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        """https:// endpoints need `tls` (the CA etcd's certificate chains to, and a client
        certificate etcd accepts); http:// endpoints are plaintext, as their scheme says.
        `auth`: etcd user and password (etcd with auth enabled); tokens are renewed as needed."""
        self.endpoints, scheme = parse_endpoints_and_scheme(endpoints)
        if (scheme == "https") != (tls is not None):
            raise ValueError(
                "https:// etcd endpoints need --etcd-ca/--etcd-cert/--etcd-key"
                if tls is None
                else "etcd TLS files given for http:// endpoints; use https://"
            )
        self.timeout_s = timeout_s
        self._conns = [_Endpoint(t, tls, auth) for t in self.endpoints]
        self._current = 0
        self.stats = StoreStats()

    async def _authenticated(self, conn: _Endpoint, again: bool = False) -> _Endpoint:
        """With a user and password: a token for this endpoint (a fresh one when `again`)."""
        if conn.auth is not None and (conn.token.value is None or again):
            conn.token.value = None
            name, password = conn.auth
            reply = await conn.auth_stub.Authenticate(
                rpc.AuthenticateRequest(name=name, password=password)
            )
            conn.token.value = reply.token
        return conn

    async def _call(self, name: str, op: Callable[[_Endpoint], Awaitable[_T]]) -> _T:
        """Run `op` on the current endpoint, failing over to the next one when it is down;
        time it and count its failures under `name` (self.stats)."""
        started = time.monotonic()
        try:
            result = await self._try_endpoints(op)
        except StoreError as e:
            self.stats.errors[(name, type(e).__name__)] += 1
            raise
        self.stats.latency[name].observe(time.monotonic() - started)
        return result

    async def _try_endpoints(self, op: Callable[[_Endpoint], Awaitable[_T]]) -> _T:
        """A member that vanished (a killed container, a cut link) answers nothing rather than
        refusing: a call that times out, here or in the caller's own deadline, moves the next
        call to the next member, as a refused one moves on at once."""
        last: StoreError | None = None
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                for _ in self._conns:
                    conn = self._conns[self._current]
                    try:
                        try:
                            return await op(await self._authenticated(conn))
                        except grpc.aio.AioRpcError as e:
                            if conn.auth is None or "auth token" not in (e.details() or ""):
                                raise
                            return await op(await self._authenticated(conn, again=True))
                    except grpc.aio.AioRpcError as e:
                        last = _translate(e, conn.target)
                        if not isinstance(last, StoreUnavailable):
                            raise last from e
                        self._current = (self._current + 1) % len(self._conns)
        except asyncio.CancelledError:
            if time.monotonic() - started > SLOW_CALL_S:
                self._current = (self._current + 1) % len(self._conns)
            raise
        except TimeoutError:
            target = self._conns[self._current].target
            self._current = (self._current + 1) % len(self._conns)
            raise StoreUnavailable(
                f"etcd at {target} did not answer within {self.timeout_s} s"
            ) from None
        assert last is not None
        raise last

    async def get(self, key: bytes) -> KeyValue | None:
        resp = await self._call("range", lambda c: c.kv.Range(rpc.RangeRequest(key=key)))
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def get_prefix(self, prefix: bytes) -> tuple[list[KeyValue], Revision]:
        req = rpc.RangeRequest(
            key=prefix,
            range_end=_range_end(prefix),
            sort_order=rpc.RangeRequest.ASCEND,
            sort_target=rpc.RangeRequest.KEY,
        )
        resp = await self._call("range", lambda c: c.kv.Range(req))
        return [_kv(kv) for kv in resp.kvs], Revision(resp.header.revision)

    async def put(self, key: bytes, value: bytes, lease: LeaseId | None = None) -> Revision:
        req = rpc.PutRequest(key=key, value=value, lease=lease or 0)
        resp = await self._call("put", lambda c: c.kv.Put(req))
        return Revision(resp.header.revision)

    async def delete(self, key: bytes) -> bool:
        resp = await self._call(
            "delete", lambda c: c.kv.DeleteRange(rpc.DeleteRangeRequest(key=key))
        )
        return bool(resp.deleted)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        reads = [
            rpc.RequestOp(request_range=rpc.RangeRequest(key=k))
            for k in dict.fromkeys(c.key for c in compares)
        ]
        req = rpc.TxnRequest(
            compare=[_compare(c) for c in compares],
            success=[_op(o) for o in success],
            failure=[_op(o) for o in failure] + reads,
        )
        resp = await self._call("txn", lambda c: c.kv.Txn(req))
        current: dict[bytes, KeyValue | None] = {}
        if not resp.succeeded:
            for read, r in zip(reads, resp.responses[len(failure) :], strict=True):
                kvs = r.response_range.kvs
                current[read.request_range.key] = _kv(kvs[0]) if kvs else None
        return TxnResult(resp.succeeded, Revision(resp.header.revision), current)

    async def create(self, key: bytes, value: bytes, lease: LeaseId | None = None) -> TxnResult:
        return await self.txn([Compare(key, "create", "==", 0)], [Put(key, value, lease)])

    async def grant_lease(self, ttl_s: int) -> tuple[LeaseId, int]:
        resp = await self._call(
            "lease_grant", lambda c: c.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl_s))
        )
        if resp.error:
            raise StoreError(f"lease grant failed: {resp.error}")
        return LeaseId(resp.ID), int(resp.TTL)

    async def keepalive(self, lease: LeaseId) -> int:
        async def once(c: _Endpoint) -> int:
            async for reply in c.lease.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease)])):
                return int(reply.TTL)
            return 0

        ttl = await self._call("lease_keepalive", once)
        if ttl <= 0:
            raise LeaseExpired(f"lease {lease:x} has expired")
        return ttl

    async def revoke(self, lease: LeaseId) -> None:
        with contextlib.suppress(LeaseExpired):
            await self._call(
                "lease_revoke", lambda c: c.lease.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease))
            )

    async def compact(self, revision: int) -> None:
        await self._call(
            "compact",
            lambda c: c.kv.Compact(rpc.CompactionRequest(revision=revision, physical=True)),
        )

    async def watch_prefix(self, prefix: bytes, start_revision: int) -> AsyncIterator[WatchEvent]:
        self.stats.watches += 1
        conn = self._conns[self._current]
        try:
            await self._authenticated(conn)
        except grpc.aio.AioRpcError as e:
            raise _translate(e, conn.target) from e
        create = rpc.WatchCreateRequest(
            key=prefix,
            range_end=_range_end(prefix),
            start_revision=start_revision,
            prev_kv=True,
        )
        requests: asyncio.Queue[rpc.WatchRequest | None] = asyncio.Queue()
        await requests.put(rpc.WatchRequest(create_request=create))

        async def outgoing() -> AsyncIterator[rpc.WatchRequest]:
            while (req := await requests.get()) is not None:
                yield req

        call = conn.watch.Watch(outgoing())
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise RevisionCompacted(resp.compact_revision)
                if resp.canceled:
                    raise StoreUnavailable(
                        f"etcd at {conn.target} cancelled the watch: "
                        f"{resp.cancel_reason or 'no reason given'}"
                    )
                for ev in resp.events:
                    kind = EventKind.DELETE if ev.type == rpc.Event.DELETE else EventKind.PUT
                    yield WatchEvent(
                        kind, _kv(ev.kv), _kv(ev.prev_kv) if ev.HasField("prev_kv") else None
                    )
            raise StoreUnavailable(f"etcd at {conn.target} closed the watch stream")
        except grpc.aio.AioRpcError as e:
            if e.code() in _UNAVAILABLE:
                self._current = (self._current + 1) % len(self._conns)
            raise _translate(e, conn.target) from e
        finally:
            await requests.put(None)
            call.cancel()

    async def close(self) -> None:
        for conn in self._conns:
            await conn.channel.close()


def _compare(c: Compare) -> rpc.Compare:
    msg = rpc.Compare(key=c.key, target=_TARGETS[c.target], result=_OPS[c.op])
    if c.target == "value":
        assert isinstance(c.value, bytes)
        msg.value = c.value
    elif c.target == "create":
        msg.create_revision = int(c.value)
    elif c.target == "mod":
        msg.mod_revision = int(c.value)
    else:
        msg.version = int(c.value)
    return msg


def _op(o: Put | Delete) -> rpc.RequestOp:
    if isinstance(o, Put):
        return rpc.RequestOp(
            request_put=rpc.PutRequest(key=o.key, value=o.value, lease=o.lease or 0)
        )
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=o.key))
