"""The answer shapes of the Qwen3-VL FastAPI tutorial server, for its clients.

The tutorial's server answers ``GET /health`` with JSON (``status``, ``model``, ...), ``GET /``
with a message, chat completions with ``{"response", "model", "usage"}`` and ``POST /generate``
(the same body) with ``{"response"}``; its test client calls ``.json()`` on the health answer and
reads ``result["response"]``. Here:

* ``/health`` keeps vLLM's status code (200, or 503 when the engine is dead: probes keep working)
  and gets the body ``{"status": "healthy" | "unhealthy", "model": <served name>}``;
* ``GET /`` answers ``{"message": ..., "model": ...}``;
* a non-streamed chat answer keeps every OpenAI field and gains a top-level ``response`` (the
  first choice's content, ``""`` when it has none), unless ``clients.response_field`` is off;
* ``POST /generate`` is served as a non-streamed chat completion and answers ``{"response"}``.
"""

from __future__ import annotations

import json
from typing import Any

from vl_serve.server.asgi import Message, Send


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def health_body(status: int, model: str | None) -> bytes:
    return _dumps({"status": "healthy" if status == 200 else "unhealthy", "model": model})


def root_body(model: str | None) -> bytes:
    return _dumps({"message": f"{model} is being served (OpenAI API under /v1).", "model": model})


def _first_content(doc: Any) -> str | None:
    """The first choice's content of a chat completion, "" when it has none; None if no answer."""
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        return None
    choices = doc["choices"]
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def add_response(body: bytes) -> bytes:
    """A chat completion ``body`` with ``"response"`` appended (``body`` itself if not one)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    content = _first_content(doc)
    end = body.rstrip().rfind(b"}")
    if content is None or "response" in doc or end < 0:
        return body
    return body[:end] + b',"response":' + _dumps(content) + body[end:]


def generate_answer(body: bytes) -> bytes:
    """The ``/generate`` answer, ``{"response": ...}``, of a chat completion ``body``."""
    try:
        content = _first_content(json.loads(body))
    except ValueError:
        return body
    return body if content is None else _dumps({"response": content})


async def answer_json(send: Send, status: int, body: bytes) -> None:
    """Send a whole JSON answer."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class HealthBody:
    """``send`` for ``GET /health``: vLLM's status code with the JSON body of :func:`health_body`."""

    __slots__ = ("model", "send", "status")

    def __init__(self, send: Send, model: str | None) -> None:
        self.send = send
        self.model = model
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message.get("status", 200))
            return
        if kind != "http.response.body" or self.status is None:
            await self.send(message)
            return
        if message.get("more_body", False):
            return  # vLLM's own body (empty, or an error text) is replaced
        status, self.status = self.status, None
        await answer_json(self.send, status, health_body(status, self.model))
