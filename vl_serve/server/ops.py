"""The outermost layer: request ids, the per-request info dict, /ready, drain, admission, counting.

For every HTTP request it:

* puts a fresh dict at ``scope["vl_serve"]`` that inner layers fill in (``dialect``,
  ``thinking``) and reads it when the answer is done (``vl_serve:requests_total``,
  ``vl_serve:thinking_requests_total``);
* takes ``X-Request-Id`` from the request (1-128 characters of ``A-Za-z0-9._:-``) or makes one
  (32 hex digits), hands it to vLLM in the request headers (vLLM names its request after it, so
  it is in vLLM's request log lines) and echoes it on every answer, refusals included;
* answers ``GET /ready`` (:mod:`vl_serve.server.ready`);
* while draining (:mod:`vl_serve.server.drain`) answers every request but the probes and
  /metrics with a 503 and Retry-After;
* refuses generation requests past this process's share of ``server.max_inflight_requests``
  (:mod:`vl_serve.server.admission`);
* keeps each request it lets through in the drain's open set until its answer is done, and
  notes output for readiness.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable
from typing import Any, Final

from vl_serve import runtime
from vl_serve.server import admission, metrics, ready
from vl_serve.server.asgi import (
    DONE,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    media_type,
    route_path,
)
from vl_serve.server.drain import Drain
from vl_serve.server.errors import error_body

_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_PASS: Final = frozenset({"/health", "/metrics", "/ping", "/version"})
READY_PATH: Final = "/ready"


def request_id(scope: Scope) -> bytes:
    """The request's X-Request-Id, or a new one written into its headers."""
    headers = scope.get("headers", [])
    for name, value in headers:
        if name == b"x-request-id":
            if _REQUEST_ID.fullmatch(value):
                return bytes(value)
            break
    new = uuid.uuid4().hex.encode()
    scope["headers"] = [(n, v) for n, v in headers if n != b"x-request-id"]
    scope["headers"].append((b"x-request-id", new))
    return new


def _cut_event() -> bytes:
    _, body = error_body(
        503, "The server shut down before the request finished.", None, "server_draining"
    )
    return b"data: " + body + b"\n\ndata: [DONE]\n\n"


class Answer:
    """One request let through: its answer watched, marked with the request id, cut on drain."""

    __slots__ = (
        "finished",
        "generation",
        "ops",
        "raw_send",
        "rid",
        "sse",
        "started",
        "status",
        "stopped",
        "task",
    )

    def __init__(self, ops: OpsMiddleware, send: Send, rid: bytes, generation: bool) -> None:
        self.ops = ops
        self.raw_send = send
        self.rid = rid
        self.generation = generation
        self.started = self.finished = self.sse = self.stopped = False
        self.status = 0
        self.task = asyncio.current_task()

    def send(self, message: Message) -> Awaitable[None]:
        if self.stopped:  # cut: vLLM's last messages are dropped, the cut's answer stands
            return DONE
        kind = message["type"]
        if kind == "http.response.body":
            if message.get("body") and self.status == 200 and self.generation:
                self.ops.readiness.saw_output()
            if not message.get("more_body", False):
                self.finished = True
        elif kind == "http.response.start":
            self.started = True
            self.status = message["status"]
            headers = list(message.get("headers", ()))
            if self.generation:
                self.sse = media_type(headers) == b"text/event-stream"
            headers.append((b"x-request-id", self.rid))
            message["headers"] = headers
        return self.raw_send(message)

    def cut(self) -> None:
        """End the request now (drain timeout): vLLM's work is cancelled, see :meth:`end`."""
        if self.stopped or self.finished:
            return
        self.stopped = True
        if self.task is not None:
            self.task.cancel()

    async def end(self) -> None:
        """The cut request's last answer: an error event, a 503, or the end of its body."""
        if self.finished:
            return
        self.finished = True
        if not self.started:
            extra = [(b"x-request-id", self.rid)]
            await admission.send_refusal(
                self.raw_send, admission.draining(), admission.DRAIN_RETRY_AFTER_S, extra
            )
            return
        body = _cut_event() if self.sse else b""
        await self.raw_send({"type": "http.response.body", "body": body, "more_body": False})


class OpsMiddleware:
    """Pure ASGI middleware: ``OpsMiddleware(app)``; ``settings`` defaults to runtime's."""

    def __init__(self, app: ASGIApp, settings: dict[str, Any] | None = None) -> None:
        if settings is None:
            settings = runtime.settings()
        ops = settings.get("ops") or {}
        self.app = app
        self.max_inflight: int = ops.get("max_inflight") or 1024
        self.inflight = 0
        self.drain = Drain(float(ops.get("drain_timeout", 30)))
        self.readiness = ready.Readiness()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                self.drain.install(scope.get("app"))
            await self.app(scope, receive, send)
            return
        info: dict[str, Any] = {}
        scope["vl_serve"] = info
        rid = request_id(scope)
        info["request_id"] = rid.decode()
        path = route_path(scope)
        method = scope["method"]
        if path == READY_PATH and method == "GET":
            answer = Answer(self, send, rid, False)
            await ready.answer(self.readiness, scope, answer.send, self.drain.draining)
            return
        if path in _PASS:
            await self.app(scope, receive, Answer(self, send, rid, False).send)
            return
        extra = [(b"x-request-id", rid)]
        if self.drain.draining:
            await admission.send_refusal(
                send, admission.draining(), admission.DRAIN_RETRY_AFTER_S, extra
            )
            return
        generation = method == "POST" and path in admission.GENERATION_PATHS
        if generation and self.inflight >= self.max_inflight:
            metrics.ADMISSION_REJECTIONS.inc()
            fastdeploy = info.get("dialect") == "fastdeploy"
            if not fastdeploy:
                fastdeploy = await admission.sniff_fastdeploy(receive)
            error = admission.overloaded(fastdeploy)
            await admission.send_refusal(send, error, admission.RETRY_AFTER_S, extra)
            return
        await self._serve(scope, receive, send, rid, generation, info)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: bytes,
        generation: bool,
        info: dict[str, Any],
    ) -> None:
        answer = Answer(self, send, rid, generation)
        self.inflight += generation
        self.drain.open.add(answer)
        try:
            try:
                await self.app(scope, receive, answer.send)
            except asyncio.CancelledError:
                if not answer.stopped or answer.task is None:
                    raise
                answer.task.uncancel()
            if answer.stopped:
                await answer.end()
        finally:
            self.inflight -= generation
            self.drain.open.discard(answer)
        if generation and answer.status == 200:
            metrics.served(info.get("dialect"), info.get("thinking"))
