"""Operations end to end on the tiny model: drain on SIGTERM, a dead engine, admission under a burst,
client disconnects, request ids and vl-serve's metrics with two API-server processes.

SIGTERM and the EngineCore kill end their servers, so each has its own; the other rows share one
server with ``api_server_count: 2`` and ``max_num_seqs: 2`` (admission bound 4 x 2 = 8, 4 per
process). Each row prints its measured figures (``FIGURES ...``; run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.helpers.media_hosts import MediaHost
from tests.helpers.ops import (
    Outcome,
    chat_body,
    engine_core,
    group_processes,
    post,
    samples,
    value,
)
from tests.helpers.vlserver import VLServer, running, tiny_config

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("VL_SERVE_TEST_URL")), reason="starts and stops servers of its own"
)


def figures(row: str, **values: Any) -> None:
    print(f"FIGURES {row}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def _stream_in_thread(base_url: str, body: dict[str, Any], first: threading.Event) -> Outcome:
    outcome = Outcome(sent_at=time.monotonic())

    def run() -> None:
        with httpx.Client(timeout=120) as client:
            url = base_url + "/v1/chat/completions"
            with client.stream("POST", url, json=body) as resp:
                outcome.status = resp.status_code
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        outcome.events.append(line[6:])
                        first.set()
        outcome.done_at = time.monotonic()
        first.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    outcome.body = thread
    return outcome


def _assert_refused(outcome: Outcome, status: int, code: str) -> None:
    assert outcome.status == status, (outcome.status, outcome.body, outcome.events[:2])
    assert int(outcome.headers["retry-after"]) >= 1
    error = outcome.body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code


# --- SIGTERM -------------------------------------------------------------------------------


# Streams long enough to be open through the checks after SIGTERM even when a loaded machine
# starts them seconds apart (~14 s for four on 2 idle cores), within the drain timeout.
_LONG = 1200


def test_sigterm_during_four_streams_drains_and_exits_0() -> None:
    drain_timeout = 60
    with running(tiny_config(server={"drain_timeout": drain_timeout}), name="drain") as server:
        assert server.proc is not None
        firsts = [threading.Event() for _ in range(4)]
        streams = [
            _stream_in_thread(server.base_url, chat_body(stream=True, max_tokens=_LONG), first)
            for first in firsts
        ]
        assert all(first.wait(120) for first in firsts)
        # A loaded machine may start the streams seconds apart: the drain is checked on those
        # still open at the signal (all four, on an idle machine), and at least two must be.
        open_at_signal = [s for s in streams if not s.done_at]
        signalled = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)  # the vl-serve process only, as docker stop
        # The signal goes through the supervisor to the API server's loop: a probe sent in the
        # same millisecond may still be answered 200, so /ready is polled (every 10 ms, 5 s).
        try:
            ready = httpx.get(server.url("/ready"), timeout=10)
            while ready.status_code == 200 and time.monotonic() - signalled < 5:
                time.sleep(0.01)
                ready = httpx.get(server.url("/ready"), timeout=10)
        except httpx.TransportError as exc:
            states = [(s.status, len(s.events), round(s.done_at - signalled, 2)) for s in streams]
            raise AssertionError(
                f"/ready after SIGTERM: {exc}; streams (status, events, done_s): {states}; "
                f"exit {server.proc.poll()}\n{server.log_tail(80)}"
            ) from exc
        ready_s = time.monotonic() - signalled
        refused = [post(server.base_url, chat_body(stream=s)) for s in (True, False)]
        checked = time.monotonic()
        for stream in streams:
            stream.body.join(drain_timeout + 30)
        rc = server.proc.wait(timeout=drain_timeout + 30)
        exit_s = time.monotonic() - signalled
        figures(
            "sigterm",
            ready_status=ready.status_code,
            ready_s=round(ready_s, 3),
            refused=[o.status for o in refused],
            streams_done_s=[round(s.done_at - signalled, 2) for s in streams],
            tokens=[len(s.events) - 1 for s in streams],
            open_at_signal=len(open_at_signal),
            exit_status=rc,
            exit_s=round(exit_s, 2),
        )
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        for outcome in refused:
            _assert_refused(outcome, 503, "server_draining")
        assert len(open_at_signal) >= 2
        for stream in streams:
            assert stream.status == 200 and stream.finished, stream.events[-3:]
            assert len(stream.events) >= _LONG  # every token came, the ones after the signal too
        for stream in open_at_signal:
            assert stream.done_at > checked  # still open while /ready and the refusals were seen
        assert rc == 0
        assert exit_s < drain_timeout


# --- a dead engine -------------------------------------------------------------------------


def test_engine_core_killed_ends_the_server_non_zero_without_orphans() -> None:
    with running(tiny_config(), name="enginekill") as server:
        assert server.proc is not None
        pgid = server.proc.pid
        assert httpx.get(server.url("/ready"), timeout=10).status_code == 200
        engine = engine_core(server.proc.pid)
        killed = time.monotonic()
        engine.kill()
        ready_s = None
        ready_seen: Any = None
        while time.monotonic() - killed < 15 and ready_s is None:
            try:
                resp = httpx.get(server.url("/ready"), timeout=2)
                if resp.status_code == 503:
                    ready_s, ready_seen = time.monotonic() - killed, resp.json()
            except httpx.TransportError:  # the server is gone: nothing answers 200 either
                ready_s, ready_seen = time.monotonic() - killed, "connection refused"
            time.sleep(0.05)
        rc = server.proc.wait(timeout=15)
        exit_s = time.monotonic() - killed
        left = group_processes(pgid)
        figures(
            "kill -9 EngineCore",
            ready_503_s=ready_s and round(ready_s, 2),
            ready=ready_seen,
            exit_status=rc,
            exit_s=round(exit_s, 2),
            processes_left=len(left),
        )
        assert ready_s is not None and ready_s <= 5
        assert rc != 0 and exit_s <= 15
        assert left == []


# --- one server, two API-server processes ----------------------------------------------------


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 160, 90)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def host() -> Iterator[MediaHost]:
    srv = MediaHost({"green.png": _png()})
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def shared(host: MediaHost) -> Iterator[VLServer]:
    base = tiny_config()
    config = tiny_config(
        max_num_seqs=2,
        media={"allowed_networks": ["127.0.0.1/32"]},
        vllm_args={**base["vllm_args"], "api_server_count": 2},
    )
    with running(config, name="ops") as server:
        yield server


def _image_body(url: str, **extra: Any) -> dict[str, Any]:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return {
        **chat_body(stream=False, max_tokens=2),
        **extra,
        "messages": [{"role": "user", "content": content}],
    }


def test_metrics_count_across_two_api_server_processes(shared: VLServer, host: MediaHost) -> None:
    """Eight image requests, each on a connection of its own (the kernel spreads them over both
    processes), counted as eight in every scrape, whichever process answers it."""
    url = host.url("green.png")
    before = samples(shared.base_url)
    openai_n, off_n, fd_n, bad_n = 4, 2, 2, 2
    sent = [post(shared.base_url, _image_body(url)) for _ in range(openai_n)]
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    sent += [post(shared.base_url, _image_body(url, **off)) for _ in range(off_n)]
    sent += [post(shared.base_url, _image_body(url, enable_thinking=True)) for _ in range(fd_n)]
    bad = [post(shared.base_url, _image_body(host.url("missing.png"))) for _ in range(bad_n)]
    assert [o.status for o in sent] == [200] * len(sent), [o.body for o in sent]
    assert {o.status for o in bad} == {400}
    bad_code = bad[0].body["error"]["code"]
    images = len(sent)
    want = {
        ("vl_serve:media_items_total", (("modality", "image"), ("source", "http"))): images,
        ("vl_serve:media_fetch_seconds_count", ()): images + bad_n,
        ("vl_serve:media_fetch_bytes_count", ()): images,
        ("vl_serve:media_fetch_bytes_sum", ()): images * len(_png()),
        ("vl_serve:media_decode_seconds_count", ()): images,
        ("vl_serve:refusals_total", (("code", bad_code),)): bad_n,
        ("vl_serve:requests_total", (("dialect", "openai"),)): openai_n + off_n,
        ("vl_serve:requests_total", (("dialect", "fastdeploy"),)): fd_n,
        ("vl_serve:thinking_requests_total", (("thinking", "off"),)): off_n,
        ("vl_serve:thinking_requests_total", (("thinking", "on"),)): fd_n,
    }
    scrapes = [samples(shared.base_url) for _ in range(6)]
    for after in scrapes:
        got = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in want}
        assert got == want
        for gauge in ("vl_serve:draining", "vl_serve:ready", "vl_serve:admission_rejections_total"):
            assert any(name == gauge for name, _ in after), gauge
    figures("metrics", requests=images + bad_n, scrapes=len(scrapes), deltas=list(want.values()))


def test_request_ids_are_taken_or_made_and_echoed(shared: VLServer) -> None:
    given = post(shared.base_url, chat_body(stream=False), **{"X-Request-Id": "order-42.a"})
    made = post(shared.base_url, chat_body(stream=True))
    bad = post(shared.base_url, chat_body(stream=False), **{"X-Request-Id": "a b\tc"})
    assert given.headers["x-request-id"] == "order-42.a"
    for outcome in (made, bad):
        rid = outcome.headers["x-request-id"]
        assert len(rid) == 32 and int(rid, 16) >= 0
    assert made.status == 200 and made.finished


async def _burst(base_url: str, n: int) -> list[tuple[bool, Outcome]]:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=180, limits=limits) as client:

        async def one(i: int) -> tuple[bool, Outcome]:
            fastdeploy = i % 4 == 0
            extra = {"metadata": {"enable_thinking": False}} if fastdeploy else {}
            body = chat_body(stream=True, max_tokens=8, **extra)
            outcome = Outcome(sent_at=time.monotonic())
            url = base_url + "/v1/chat/completions"

            async def trace(event: str, _info: Any) -> None:
                # From the request fully sent: not the client's own wait for a connection.
                if event == "http11.send_request_body.complete":
                    outcome.sent_at = time.monotonic()

            extensions = {"trace": trace}
            async with client.stream("POST", url, json=body, extensions=extensions) as resp:
                outcome.headers_at = time.monotonic()
                outcome.status = resp.status_code
                outcome.headers = dict(resp.headers)
                if resp.status_code == 200:
                    async for line in resp.aiter_lines():
                        if line.startswith("data: "):
                            outcome.events.append(line[6:])
                else:
                    await resp.aread()
                    outcome.body = resp.json()
            outcome.done_at = time.monotonic()
            return fastdeploy, outcome

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_burst_of_200_streams_is_admitted_or_refused_before_any_200(shared: VLServer) -> None:
    before = samples(shared.base_url)
    results = asyncio.run(_burst(shared.base_url, 200))
    after = samples(shared.base_url)
    admitted = [o for _, o in results if o.status == 200]
    refused = [(fd, o) for fd, o in results if o.status != 200]
    refuse_s = [o.headers_at - o.sent_at for _, o in refused]
    rejections = value(after, "vl_serve:admission_rejections_total") - value(
        before, "vl_serve:admission_rejections_total"
    )
    figures(
        "burst",
        admitted=len(admitted),
        refused_503=sum(o.status == 503 for _, o in refused),
        refused_429=sum(o.status == 429 for _, o in refused),
        max_refusal_s=round(max(refuse_s, default=0), 3),
        max_admitted_s=round(max(o.done_at - o.sent_at for o in admitted), 2),
        rejections_metric=rejections,
    )
    assert {o.status for _, o in results} <= {200, 429, 503}
    assert len(admitted) >= 8 and refused  # the bound took 8 at once, the rest waited or not
    for fastdeploy, outcome in refused:
        _assert_refused(outcome, 429 if fastdeploy else 503, "server_overloaded")
        assert outcome.headers_at - outcome.sent_at <= 1.0
    assert any(fd for fd, _ in refused) and any(not fd for fd, _ in refused)
    for outcome in admitted:
        assert outcome.finished, outcome.events[-2:]
    assert rejections == len(refused)


def test_client_disconnects_abort_their_requests(shared: VLServer) -> None:
    """Two 2000-token streams fill the engine (max_num_seqs 2); once their clients hang up, a new
    request is served at once: it would wait minutes behind them had they not been aborted."""
    clients = [httpx.Client(timeout=120) for _ in range(2)]
    streams = []
    for client in clients:
        body = chat_body(stream=True, max_tokens=2000)
        request = client.build_request("POST", shared.url("/v1/chat/completions"), json=body)
        resp = client.send(request, stream=True)
        assert resp.status_code == 200
        lines = resp.iter_lines()
        next(lines)
        streams.append((resp, lines))
    time.sleep(1.0)
    tokens = sum(1 for _ in zip(range(5), streams[0][1], strict=False))
    closed = time.monotonic()
    for (resp, _), client in zip(streams, clients, strict=True):
        resp.close()
        client.close()
    after = post(shared.base_url, chat_body(stream=True, max_tokens=16))
    served_s = after.done_at - closed
    figures("disconnect", streams=len(streams), next_request_done_s=round(served_s, 2))
    assert tokens == 5  # the streams were generating when they were closed
    assert after.status == 200 and after.finished
    assert served_s <= 10
