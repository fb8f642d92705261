"""Hostile and oversized request bodies against a real vl-serve/vLLM server: refused, not served.

One server for the module (the tiny Qwen3-VL on CPU) with a 1 MiB body limit. Every row of the
table gets a 4xx with vLLM's error shape, no server path or traceback in the body, at most one
log line of the server's own for the request (uvicorn's access line and vLLM's periodic engine
stats aside), and the server goes on serving. The API server's resident memory is read before
and after the table and may not grow by more than a generous bound.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.media_files import data_url, png_bytes
from tests.helpers.vlserver import VLServer, tiny_config

pytestmark = pytest.mark.e2e

MODEL = "tiny-qwen3-vl"
LIMIT = 1024 * 1024  # media.max_request_bytes
USER = [{"role": "user", "content": "hi"}]
IMAGE_URL = data_url(png_bytes(64, 64))
IMAGE: dict[str, Any] = {"type": "image_url", "image_url": {"url": IMAGE_URL}}
MAX_RSS_GROWTH_MIB = 200
# Log lines that are not about one request: uvicorn's access line, vLLM's periodic stats.
_NOT_THE_REQUEST = re.compile(r'"(?:GET|POST) \S+ HTTP/1\.1" \d{3}|Avg prompt throughput')
_LEAKS = ("Traceback", 'File "', "/root/", "/work/", "/tmp/", ".py", "object is not", " at 0x")


@pytest.fixture(scope="module")
def server() -> Iterator[VLServer]:
    config = tiny_config(
        media={"max_request_bytes": LIMIT},
        server={"open_routes": ["responses", "invocations"], "max_n": 4, "max_best_of": 4},
    )
    srv = VLServer(config, name="hostile")
    yield srv
    srv.close()


def api_server_pid(server: VLServer) -> int:
    found = re.search(r"\(APIServer pid=(\d+)\)", server.log_text())
    assert server.proc is not None
    return int(found.group(1)) if found else server.proc.pid


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# --- senders: each returns (status, body bytes) ---------------------------------------------------


def _raw_http(server: VLServer, head: bytes, chunks: Iterator[bytes]) -> tuple[int, bytes]:
    """Send ``head`` and then ``chunks`` on one connection (stopping when the server hangs up),
    and read the answer."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        try:
            while part := sock.recv(65536):
                answer += part
        except ConnectionResetError:
            pass
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), body


def oversize_content_length(server: VLServer) -> tuple[int, bytes]:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (LIMIT * 64)
    )
    return _raw_http(server, head, iter(()))  # nothing of the body is sent: none is read


def oversize_chunked(server: VLServer) -> tuple[int, bytes]:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * (64 * 1024)
    chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(LIMIT // len(piece) + 1))
    return _raw_http(server, head, chunks)


def post(path: str, body: bytes | dict[str, Any] | list[Any]) -> Callable[[VLServer], Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    def send(server: VLServer) -> tuple[int, bytes]:
        headers = {"content-type": "application/json"}
        resp = httpx.post(server.url(path), content=raw, headers=headers, timeout=120)
        return resp.status_code, resp.content

    return send


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


@dataclass
class Row:
    send: Callable[[VLServer], tuple[int, bytes]]
    status: int
    code: str | int  # vl-serve's string code, or the status vLLM writes as its code


# fmt: off
ROWS = {
    "oversize_content_length": Row(oversize_content_length, 413, "request_too_large"),
    "oversize_chunked": Row(oversize_chunked, 413, "request_too_large"),
    "deep_1000_metadata": Row(post("/v1/chat/completions", b'{"metadata":{},"messages":' + nested(1000) + b"}"), 400, "json_too_deep"),
    "deep_1000_invocations": Row(post("/invocations", nested(1000)), 400, "json_too_deep"),
    "deep_image_part": Row(post("/v1/chat/completions", b'{"messages":[{"role":"user","content":[' + nested(999, b'{"type":"image_url"}') + b"]}]}"), 400, "json_too_deep"),
    "invalid_utf8": Row(post("/v1/chat/completions", b'{"model":"' + MODEL.encode() + b'","messages":[{"role":"user","content":"\xff\xfe"}]}'), 400, "invalid_json"),
    "duplicate_keys": Row(post("/v1/chat/completions", b'{"messages":[],"messages":[{"role":"user","content":"hi"}]}'), 400, "duplicate_json_key"),
    "messages_null": Row(post("/v1/chat/completions", {"model": MODEL, "messages": None}), 400, "invalid_type"),
    "structured_outputs_int": Row(post("/v1/chat/completions", {"model": MODEL, "messages": USER, "structured_outputs": 5}), 400, "invalid_type"),
    "tool_calls_int": Row(post("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "assistant", "tool_calls": 5}]}), 400, 400),
    "content_int": Row(post("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": 5}]}), 400, 400),
    "prompt_object": Row(post("/v1/completions", {"model": MODEL, "prompt": {"a": 1}}), 400, 400),
    "top_level_array": Row(post("/invocations", [1, 2]), 400, "invalid_type"),
    "huge_prompt_array": Row(post("/v1/completions", {"model": MODEL, "prompt": [0] * 300_000}), 400, 400),
    "model_name_100k": Row(post("/v1/chat/completions", {"model": "m" * 100_000, "messages": USER}), 400, "invalid_parameter"),
    "n_1000": Row(post("/v1/chat/completions", {"model": MODEL, "messages": USER, "n": 1000}), 400, "integer_above_max_value"),
    "best_of_1000": Row(post("/v1/completions", {"model": MODEL, "prompt": "x", "best_of": 1000}), 400, "integer_above_max_value"),
    "chat_three_images": Row(post("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [IMAGE] * 3}]}), 400, "too_many_media_items"),
    "tokenize_three_images": Row(post("/tokenize", {"model": MODEL, "messages": [{"role": "user", "content": [IMAGE] * 3}]}), 400, "too_many_media_items"),
    "invocations_three_images": Row(post("/invocations", {"model": MODEL, "messages": [{"role": "user", "content": [IMAGE] * 3}]}), 400, "too_many_media_items"),
    "completions_processor_kwargs": Row(post("/v1/completions", {"model": MODEL, "prompt": "x", "mm_processor_kwargs": {"do_resize": False}}), 400, "invalid_parameter"),
    # vLLM trusts request kwargs (vl-serve sets media_io_kwargs itself): the middleware gates them.
    "chat_processor_kwargs_untrusted": Row(post("/v1/chat/completions", {"model": MODEL, "messages": USER, "mm_processor_kwargs": {"fps": 1}}), 400, "invalid_parameter"),
    "chat_media_io_kwargs": Row(post("/v1/chat/completions", {"model": MODEL, "messages": USER, "media_io_kwargs": {"video": {"num_frames": 100000}}}), 400, "invalid_parameter"),
    "tokenize_media_io_kwargs": Row(post("/tokenize", {"model": MODEL, "messages": USER, "media_io_kwargs": {"image": {"image_mode": "RGBA"}}}), 400, "invalid_parameter"),
    "responses_processor_kwargs": Row(post("/v1/responses", {"model": MODEL, "input": "x", "mm_processor_kwargs": {"fps": 1}}), 400, "invalid_parameter"),
    "escaped_processor_kwargs_key": Row(post("/v1/completions", b'{"model":"' + MODEL.encode() + b'","prompt":"x","mm\\u005fprocessor_kwargs":{"fps":1}}'), 400, "invalid_parameter"),
    "responses_input_image": Row(post("/v1/responses", {"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": IMAGE_URL}]}]}), 400, "media_not_supported"),
}
# fmt: on


def _own_lines(server: VLServer, start: int) -> list[str]:
    time.sleep(0.3)  # let the server's log catch up
    lines = server.log_text().splitlines()[start:]
    return [line for line in lines if not _NOT_THE_REQUEST.search(line)]


def test_hostile_bodies(server: VLServer) -> None:
    pid = api_server_pid(server)
    httpx.post(server.url("/v1/chat/completions"), json={"model": MODEL, "messages": USER, "max_tokens": 2}, timeout=120)  # fmt: skip
    before = rss_mib(pid)
    failures = []
    for name, row in ROWS.items():
        start = len(server.log_text().splitlines())
        status, body = row.send(server)
        own = _own_lines(server, start)
        text = body.decode(errors="replace")
        try:
            err = json.loads(body)["error"]
            ok = (
                status == row.status
                and set(err) == {"message", "type", "param", "code"}
                and err["code"] == row.code
                and not any(leak in text for leak in _LEAKS)
                and len(own) <= 1
                and len(text) < 4000
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        print(f"{name}: {status} {text[:160]!r} log={own}")
        if not ok:
            failures.append(f"{name}: {status} {text[:300]!r} log={own}")
        health = httpx.get(server.url("/health"), timeout=30)
        assert health.status_code == 200, f"server stopped serving after {name}"
    after = rss_mib(pid)
    print(f"API server RSS: {before:.0f} MiB before the table, {after:.0f} MiB after")
    assert not failures, "\n".join(failures)
    assert after - before < MAX_RSS_GROWTH_MIB, (before, after)


def test_still_serves_media_on_chat_shaped_routes(server: VLServer) -> None:
    text = {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}  # fmt: skip
    with_image = {"model": MODEL, "messages": [{"role": "user", "content": [IMAGE, {"type": "text", "text": "x"}]}]}  # fmt: skip
    counts = [httpx.post(server.url("/tokenize"), json=b, timeout=120).json()["count"] for b in (text, with_image)]  # fmt: skip
    assert counts[1] > counts[0]  # the checked image reached the model's processor
    resp = httpx.post(server.url("/v1/chat/completions"), json={**with_image, "max_tokens": 2}, timeout=120)  # fmt: skip
    assert resp.status_code == 200, resp.text


def test_models_list_shows_no_server_path(server: VLServer) -> None:
    resp = httpx.get(server.url("/v1/models"), timeout=30)
    assert resp.status_code == 200
    cards = resp.json()["data"]
    assert [card["root"] for card in cards] == [card["id"] for card in cards] == [MODEL]
    assert "/root/" not in resp.text and "/models/" not in resp.text
