"""OpsMiddleware without vLLM: request ids, admission, drain and its cut, /ready, counting.

Raw ASGI scopes go through the middleware in front of stand-in apps; /ready's engine is a
stand-in with vLLM's ``generate`` and ``errored``.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from vl_serve.server import ready
from vl_serve.server.ops import OpsMiddleware

CHAT = "/v1/chat/completions"


def scope(path: str = CHAT, method: str = "POST", headers: Any = (), app: Any = None) -> Any:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "app": app,
    }


class Client:
    """One request's side of the exchange: what it sends and what came back."""

    def __init__(self, body: bytes = b"{}") -> None:
        self.body = body
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.body is None:
            await asyncio.Event().wait()
        body, self.body = self.body, None  # type: ignore[assignment]
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def text(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


def sse_app(gate: asyncio.Event | None = None, seen: list[Any] | None = None) -> Any:
    """A stand-in for vLLM: a stream of two events, the second after ``gate`` (on the chat
    route)."""

    async def app(sc: Any, receive: Any, send: Any) -> None:
        if seen is not None:
            seen.append(sc)
        await receive()
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        if gate is not None and sc["path"] == CHAT:
            await gate.wait()
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    return app


def ops(app: Any, **ops_settings: Any) -> OpsMiddleware:
    return OpsMiddleware(app, {"ops": {"drain_timeout": 30, "max_inflight": 2, **ops_settings}})


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("sent", "echoed_as"),
    [
        pytest.param([("x-request-id", "order-42.a")], "order-42.a", id="taken"),
        pytest.param([], None, id="made"),
        pytest.param([("x-request-id", "a b\nc")], None, id="unsafe-replaced"),
        pytest.param([("x-request-id", "x" * 129)], None, id="too-long-replaced"),
    ],
)
def test_request_id_taken_or_made_reaches_vllm_and_is_echoed(sent: Any, echoed_as: Any) -> None:
    seen: list[Any] = []
    client = Client()
    asyncio.run(ops(sse_app(seen=seen))(scope(headers=sent), client.receive, client.send))
    rid = client.headers[b"x-request-id"].decode()
    if echoed_as is None:
        assert len(rid) == 32 and int(rid, 16) >= 0
    else:
        assert rid == echoed_as
    inner = [v for k, v in seen[0]["headers"] if k == b"x-request-id"]
    assert inner == [rid.encode()]  # vLLM names its request after it
    assert seen[0]["vl_serve"]["request_id"] == rid


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"stream": True}, 503, id="openai-stream"),
        pytest.param({"stream": False}, 503, id="openai"),
        pytest.param({"stream": True, "enable_thinking": True}, 429, id="fastdeploy-top-level"),
        pytest.param({"metadata": {"enable_thinking": False}}, 429, id="fastdeploy-metadata"),
        pytest.param({"metadata": {"user": "x"}}, 503, id="openai-metadata"),
    ],
)
def test_admission_refuses_past_the_bound_before_vllm(body: dict[str, Any], status: int) -> None:
    async def run() -> tuple[Client, int, Client]:
        gate, seen = asyncio.Event(), []
        mw = ops(sse_app(gate, seen))
        held = [Client() for _ in range(2)]
        tasks = [asyncio.ensure_future(mw(scope(), c.receive, c.send)) for c in held]
        await asyncio.sleep(0.01)
        refused = Client(json.dumps(body).encode())
        await mw(scope(), refused.receive, refused.send)
        reached = len(seen)
        gate.set()
        await asyncio.gather(*tasks)
        after = Client()
        await mw(scope(), after.receive, after.send)
        return refused, reached, after

    before = sample("vl_serve:admission_rejections_total")
    refused, reached, after = asyncio.run(run())
    assert refused.status == status
    assert refused.headers[b"retry-after"] == b"1"
    assert b"x-request-id" in refused.headers
    error = json.loads(refused.text)["error"]
    assert error["code"] == "server_overloaded" and set(error) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert reached == 2  # the refused request never reached vLLM
    assert after.status == 200  # the slots came back
    assert sample("vl_serve:admission_rejections_total") == before + 1


def test_probes_and_other_routes_are_not_counted_against_the_bound() -> None:
    async def run() -> list[int]:
        gate = asyncio.Event()
        mw = ops(sse_app(gate), max_inflight=1)
        held = Client()
        task = asyncio.ensure_future(mw(scope(), held.receive, held.send))
        await asyncio.sleep(0.01)
        statuses = []
        for path, method in (("/tokenize", "POST"), ("/health", "GET"), ("/v1/models", "GET")):
            c = Client()
            await mw(scope(path, method), c.receive, c.send)
            statuses.append(c.status)
        gate.set()
        await task
        return statuses

    assert asyncio.run(run()) == [200, 200, 200]


def test_drain_refuses_new_requests_keeps_probes_and_lets_streams_finish() -> None:
    async def run() -> dict[str, Any]:
        gate = asyncio.Event()
        server = SimpleNamespace(should_exit=False)
        app = SimpleNamespace(state=SimpleNamespace(server=server, engine_client=None))
        mw = ops(sse_app(gate))
        mw.drain.app = app
        open_one = Client()
        task = asyncio.ensure_future(mw(scope(app=app), open_one.receive, open_one.send))
        await asyncio.sleep(0.01)
        mw.drain.start()
        new, probe, health = Client(), Client(), Client()
        await mw(scope(app=app), new.receive, new.send)
        await mw(scope("/ready", "GET", app=app), probe.receive, probe.send)
        await mw(scope("/health", "GET", app=app), health.receive, health.send)
        exited_early = server.should_exit
        gate.set()
        await task
        assert mw.drain.task is not None
        await asyncio.wait_for(mw.drain.task, 5)
        return {
            "new": new,
            "probe": probe,
            "health": health,
            "open": open_one,
            "early": exited_early,
            "exit": server.should_exit,
        }

    got = asyncio.run(run())
    assert got["new"].status == 503 and got["new"].headers[b"retry-after"] == b"5"
    assert json.loads(got["new"].text)["error"]["code"] == "server_draining"
    assert got["probe"].status == 503 and json.loads(got["probe"].text) == {"status": "draining"}
    assert got["health"].status == 200
    assert got["open"].text.endswith(b"data: [DONE]\n\n") and b"error" not in got["open"].text
    assert not got["early"] and got["exit"]  # the server exits once the stream ended
    assert sample("vl_serve:draining") == 1


@pytest.mark.parametrize("started", [True, False], ids=["stream-started", "not-started"])
def test_drain_timeout_cuts_what_is_left_with_a_last_answer(started: bool) -> None:
    cancelled: list[bool] = []

    async def stuck(sc: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            if started:
                headers = [(b"content-type", b"text/event-stream")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send(
                    {"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True}
                )
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)  # vLLM aborts the request here
            await send({"type": "http.response.body", "body": b"LATE-BYTES", "more_body": False})
            raise

    async def run() -> tuple[Client, bool]:
        server = SimpleNamespace(should_exit=False)
        mw = ops(stuck, drain_timeout=0.1)
        mw.drain.app = SimpleNamespace(state=SimpleNamespace(server=server))
        client = Client()
        task = asyncio.ensure_future(mw(scope(), client.receive, client.send))
        await asyncio.sleep(0.01)
        mw.drain.start()
        await asyncio.wait_for(task, 5)
        assert mw.drain.task is not None
        await asyncio.wait_for(mw.drain.task, 5)
        return client, server.should_exit

    client, exited = asyncio.run(run())
    assert cancelled == [True] and exited
    assert client.sent[-1].get("more_body", False) is False
    assert b"LATE-BYTES" not in client.text
    if started:
        assert client.text.endswith(b"data: [DONE]\n\n")
        last = client.text.split(b"data: ")[-2].strip()
        assert json.loads(last)["error"]["code"] == "server_draining"
    else:
        assert (
            client.status == 503 and json.loads(client.text)["error"]["code"] == "server_draining"
        )


class Engine:
    """vLLM's engine client as /ready uses it: ``errored`` and ``generate``."""

    def __init__(self, *, errored: bool = False, stuck: bool = False) -> None:
        self.errored = errored
        self.stuck = stuck
        self.calls = 0

    async def generate(self, prompt: Any, params: Any, request_id: str) -> Any:
        self.calls += 1
        assert params.max_tokens == 1 and request_id.startswith("vl-serve-ready-")
        if self.stuck:
            await asyncio.Event().wait()
        yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=[7])])


@pytest.mark.parametrize(
    ("engine", "recent_output", "state", "probes"),
    [
        pytest.param(None, False, "starting", 0, id="no-engine-yet"),
        pytest.param(Engine(errored=True), False, "engine_dead", 0, id="engine-dead"),
        pytest.param(Engine(), False, "ready", 1, id="idle-engine-probed"),
        pytest.param(Engine(stuck=True), False, "not_generating", 1, id="probe-unanswered"),
        pytest.param(Engine(stuck=True), True, "ready", 0, id="user-output-is-the-proof"),
    ],
)
def test_ready_states(
    engine: Any, recent_output: bool, state: str, probes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ready, "WAIT_S", 0.05)
    readiness = ready.Readiness()
    if recent_output:
        readiness.saw_output()

    async def run() -> Client:
        app = SimpleNamespace(state=SimpleNamespace(engine_client=engine))
        client = Client()
        await ready.answer(readiness, scope("/ready", "GET", app=app), client.send, False)
        if readiness.probe is not None:
            readiness.probe.cancel()
        return client

    client = asyncio.run(run())
    assert json.loads(client.text) == {"status": state}
    assert client.status == (200 if state == "ready" else 503)
    assert sample("vl_serve:ready") == (1 if state == "ready" else 0)
    assert getattr(engine, "calls", 0) == probes


def test_answered_requests_are_counted_by_dialect_and_thinking() -> None:
    async def app(sc: Any, receive: Any, send: Any) -> None:
        sc["vl_serve"].update(dialect="qianfan", thinking=False)
        await sse_app()(sc, receive, send)

    before = (
        sample("vl_serve:requests_total", dialect="qianfan"),
        sample("vl_serve:thinking_requests_total", thinking="off"),
        sample("vl_serve:requests_total", dialect="openai"),
    )
    client = Client()
    asyncio.run(ops(app)(scope(), client.receive, client.send))
    client = Client()
    asyncio.run(ops(sse_app())(scope(), client.receive, client.send))  # no dialect noted
    after = (
        sample("vl_serve:requests_total", dialect="qianfan"),
        sample("vl_serve:thinking_requests_total", thinking="off"),
        sample("vl_serve:requests_total", dialect="openai"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]
