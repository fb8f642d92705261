"""``GET /ready``: 200 only while the engine is known to generate, 503 while starting, draining or dead.

``/health`` (vLLM's) is the liveness probe: 200 as soon as the HTTP server is up. ``/ready`` needs
proof that the engine generates, no older than :data:`FRESH_S`:

* a generation answer of this process sent output (a 200's body bytes, a stream's chunk) in that
  time: under user load that is the proof, and no probe is sent, so readiness never waits behind
  the queue it is asked about;
* otherwise this process sends its own one-token request (token id 0, ``max_tokens`` 1, vLLM's
  ``generate`` straight, no chat template) and waits for it at most :data:`WAIT_S`. One probe runs
  at a time; a slower one goes on in the background and counts for the next call when it ends.

An engine vLLM reports dead (``errored``) answers 503 at once, and so does a draining server
(:mod:`vl_serve.server.drain`). Each API-server process answers for itself; the ``vl_serve:ready``
gauge follows the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any, Final

from vl_serve.server import metrics
from vl_serve.server.asgi import Scope, Send

logger = logging.getLogger(__name__)

FRESH_S: Final = 5.0  # how old the proof of generation may be
WAIT_S: Final = 2.0  # how long /ready waits for a probe of its own
PROBE_TIMEOUT_S: Final = 30.0  # a probe still running after this is given up


class Readiness:
    """The proof of generation of one API-server process."""

    def __init__(self) -> None:
        self.last_output = float("-inf")  # monotonic time of the last output seen or probed
        self.probe: asyncio.Task[bool] | None = None

    def saw_output(self) -> None:
        self.last_output = time.monotonic()

    def fresh(self) -> bool:
        return time.monotonic() - self.last_output <= FRESH_S

    async def state(self, engine: Any, draining: bool) -> str:
        """``ready``, ``draining``, ``starting`` (no engine yet), ``engine_dead`` or
        ``not_generating`` (no output and no probe answer in time)."""
        if draining:
            return "draining"
        if engine is None:
            return "starting"
        if getattr(engine, "errored", False):
            return "engine_dead"
        if self.fresh():
            return "ready"
        if self.probe is None or self.probe.done():
            self.probe = asyncio.ensure_future(self._probe(engine))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.probe), WAIT_S)
        return "ready" if self.fresh() else "not_generating"

    async def _probe(self, engine: Any) -> bool:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=0.0)
        prompt = TokensPrompt(prompt_token_ids=[0])
        request_id = f"vl-serve-ready-{uuid.uuid4().hex}"
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async for output in engine.generate(prompt, params, request_id):
                    if output.outputs and output.outputs[0].token_ids:
                        self.saw_output()
        except Exception as exc:  # the engine's own error; /ready says 503
            logger.warning("readiness probe failed: %s", type(exc).__name__)
            return False
        return self.fresh()


async def answer(readiness: Readiness, scope: Scope, send: Send, draining: bool) -> None:
    """Answer ``GET /ready`` with ``{"status": ...}``: 200 when ready, else 503."""
    app = scope.get("app")
    engine = getattr(getattr(app, "state", None), "engine_client", None)
    status = await readiness.state(engine, draining)
    ok = status == "ready"
    metrics.READY.set(1 if ok else 0)
    body = json.dumps({"status": status}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200 if ok else 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
