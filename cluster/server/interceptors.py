"""One interceptor for every RPC: check the caller's role (with TLS), bind log context, map
domain errors to status codes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import structlog

from cluster.errors import ClusterError
from cluster.server.access import authorize
from cluster.server.status import status_for

log = structlog.get_logger()
Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, enforce_roles: bool = True) -> None:
        self.enforce_roles = enforce_roles  # False only with --insecure: no certificates

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method if self.enforce_roles else ""
        codecs = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary is not None:
            call = _unary(handler.unary_unary, details.method, method)
            return grpc.unary_unary_rpc_method_handler(call, *codecs)
        if handler.unary_stream is not None:
            call = _stream(handler.unary_stream, details.method, method)
            return grpc.unary_stream_rpc_method_handler(call, *codecs)
        if handler.stream_stream is not None:
            call = _stream(handler.stream_stream, details.method, method)
            return grpc.stream_stream_rpc_method_handler(call, *codecs)
        return handler  # stream-unary: none in tcphop.v1


def _unary(inner: Any, rpc: str, checked: str) -> Any:
    async def call(request: Any, context: Ctx) -> Any:
        _bind(rpc, context)
        try:
            if checked:
                authorize(checked, context)
            return await inner(request, context)
        except ClusterError as e:
            await _abort(context, e)

    return call


def _stream(inner: Any, rpc: str, checked: str) -> Any:
    """For calls that answer with a stream (the request may be one message or a stream)."""

    async def call(request: Any, context: Ctx) -> AsyncIterator[Any]:
        _bind(rpc, context)
        try:
            if checked:
                authorize(checked, context)
            async for item in inner(request, context):
                yield item
        except ClusterError as e:
            await _abort(context, e)

    return call


def _bind(rpc: str, context: Ctx) -> None:
    # grpc.aio runs each RPC in a task of its own, so the binding ends with the call.
    structlog.contextvars.bind_contextvars(
        rpc=rpc.rsplit("/", 1)[-1], peer=context.peer(), request_id=uuid.uuid4().hex[:12]
    )


async def _abort(context: Ctx, error: ClusterError) -> None:
    code = status_for(error)
    if code == grpc.StatusCode.INTERNAL:
        log.error("rpc_failed", exc_info=error)
    else:
        log.info("rpc_rejected", code=code.name, reason=str(error))
    await context.abort(code, str(error))
