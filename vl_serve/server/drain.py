"""Drain on SIGTERM inside one API-server process: refuse new requests, let the open ones finish, exit.

vLLM's own SIGTERM handler (``serve_http``) shuts the engine client down and cancels the HTTP
server at once: with ``--shutdown-timeout`` 0 a stream may hang without a last event, and with a
timeout ``/health`` stays 200 while every new request gets a 500. So at lifespan start-up (in the
API server's event loop, after vLLM installed its handler) :meth:`Drain.install` takes SIGTERM
over with ``loop.add_signal_handler``; SIGINT stays vLLM's. On SIGTERM:

1. at once: ``draining`` is set (``/ready`` 503, new requests 503 with Retry-After, the
   ``vl_serve:draining`` gauge 1);
2. the requests in flight get ``server.drain_timeout`` seconds to finish;
3. what is still open then is cut (:meth:`Open.cut`): its task is cancelled, which aborts the
   request in vLLM, and it is answered with a last error event and ``[DONE]`` (a stream) or a 503
   (an answer not yet started), so no client waits on a stream that never ends;
4. the HTTP server is told to exit (uvicorn's ``should_exit``); vLLM then shuts its engine client
   down as on any exit, with nothing left to drain.

With several API-server processes vLLM's supervisor forwards SIGTERM to each, and each drains
its own requests; it waits ``--shutdown-timeout`` (drain_timeout and a margin) for them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Final, Protocol

from vl_serve.server import metrics

logger = logging.getLogger(__name__)

CUT_GRACE_S: Final = 3.0  # how long cut requests get to send their last answer
_POLL_S: Final = 0.05


class Open(Protocol):
    """A request in flight, as the drain sees it."""

    def cut(self) -> None: ...


class Drain:
    """The drain state of one API-server process."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.draining = False
        self.open: set[Open] = set()
        self.app: Any = None
        self.task: asyncio.Task[None] | None = None

    def install(self, app: Any) -> None:
        """Take SIGTERM over in the running loop (lifespan start-up); ``app`` is vLLM's app."""
        self.app = app
        metrics.DRAINING.set(0)
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.start)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            logger.warning("SIGTERM is not handled by vl-serve here: no drain")

    def start(self) -> None:
        """Begin draining (idempotent)."""
        if self.draining:
            return
        self.draining = True
        metrics.DRAINING.set(1)
        metrics.READY.set(0)
        logger.info("SIGTERM: draining %d request(s) for up to %ss", len(self.open), self.timeout)
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while self.open and loop.time() < deadline:
            await asyncio.sleep(_POLL_S)
        if self.open:
            logger.warning("drain timeout: ending %d request(s) still in flight", len(self.open))
            for request in list(self.open):
                request.cut()
            grace = loop.time() + CUT_GRACE_S
            while self.open and loop.time() < grace:
                await asyncio.sleep(_POLL_S)
        logger.info("drained; stopping the HTTP server")
        self.exit()

    def exit(self) -> None:
        server = getattr(getattr(self.app, "state", None), "server", None)
        if server is not None:
            server.should_exit = True
        else:  # not vLLM's serve_http: leave it to the default action
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)
