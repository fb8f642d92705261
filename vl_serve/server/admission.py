"""Admission: a bound on the generation requests in flight, and the refusals that come with it.

vLLM's own bound (``--max-num-queued-reqs``) does not serve: a request it turns away gets a 503
without Retry-After, and a stream gets a 200 with an error event inside it, which clients and
load balancers take for an answer. Here each API-server process counts its generation requests
(:data:`GENERATION_PATHS`, running or queued, from arrival to the end of the answer) and refuses
one past its share of ``server.max_inflight_requests`` before vLLM sees it, so before any 200:
a 503 with ``Retry-After`` (code ``server_overloaded``), or a 429 for a request in FastDeploy's
dialect, which is how FastDeploy answers a full queue. The same refusal without a bound is the
answer while the server drains (code ``server_draining``).
"""

from __future__ import annotations

from typing import Any, Final

from vl_serve.server import metrics
from vl_serve.server.asgi import Receive, Send
from vl_serve.server.errors import RequestError
from vl_serve.server.jsonbody import decode_body

# The routes whose requests occupy the engine (the body shapes of vl_serve.server.shapes and the
# other generation routes vLLM serves).
GENERATION_PATHS: Final = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/chat/completions/batch",
        "/invocations",
        "/v1/responses",
        "/v1/messages",
        "/v2/chat/completions",  # Qianfan's
        "/generate",  # the tutorial's
    }
)
RETRY_AFTER_S: Final = 1  # overloaded: the queue moves in about that time
DRAIN_RETRY_AFTER_S: Final = 5  # draining: another replica should take it
# FastDeploy's own request keys (vl_serve.server.dialect): a body with one at the top level or in
# ``metadata`` is a FastDeploy client's.
_FASTDEPLOY_KEYS: Final = ("enable_thinking", "reasoning_max_tokens")
_MAX_SNIFF: Final = 1 << 20  # larger bodies are not read to choose 429 over 503


def overloaded(fastdeploy: bool) -> RequestError:
    message = "The server is at capacity; retry after the time in the Retry-After header."
    return RequestError(429 if fastdeploy else 503, message, code="server_overloaded")


def draining() -> RequestError:
    message = "The server is shutting down; send the request to another replica or retry later."
    return RequestError(503, message, code="server_draining")


def is_fastdeploy(req: Any) -> bool:
    """Whether a parsed body uses FastDeploy's request keys (top level or ``metadata``)."""
    if not isinstance(req, dict):
        return False
    if any(key in req for key in _FASTDEPLOY_KEYS):
        return True
    meta = req.get("metadata")
    return isinstance(meta, dict) and any(key in meta for key in _FASTDEPLOY_KEYS)


async def sniff_fastdeploy(receive: Receive) -> bool:
    """Read a refused request's body (at most 1 MiB) and say whether it is FastDeploy's."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_SNIFF:
            return False
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        req, _ = decode_body(b"".join(chunks), 64)
    except RequestError:
        return False
    return is_fastdeploy(req)


async def send_refusal(
    send: Send, error: RequestError, retry_after: int, extra: list[tuple[bytes, bytes]]
) -> None:
    """Answer with ``error`` and ``Retry-After``; counted in ``vl_serve:refusals_total``."""
    metrics.refused(error.code)
    status, body = error.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
