"""The foundation end to end: a real vLLM server started by vl-serve on the tiny Qwen3-VL.

Random weights answer noise, so outputs are forced with ``structured_outputs`` (regex) and the
assertions are on exact forced text, token counts, status codes and error messages.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers.media_files import data_url, image_part, mp4_bytes, png_bytes
from tests.helpers.vlserver import VLServer, tiny_config

pytestmark = pytest.mark.e2e

MODEL = "tiny-qwen3-vl"
API_KEY_ENV = "VL_SERVE_E2E_KEY"
API_KEY = "sk-e2e-secret-4f9c2b"


@pytest.fixture(scope="module")
def allowed_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vlserve-allowed-") as root:
        (Path(root) / "red.png").write_bytes(png_bytes(64, 64))
        yield Path(root)


@pytest.fixture(scope="module")
def server(allowed_dir: Path) -> Iterator[VLServer]:
    config = tiny_config(
        server={"api_key_env": API_KEY_ENV},
        media={
            "allowed_local_media_path": str(allowed_dir),
            "allowed_networks": ["127.0.0.1/32"],  # the loopback media server of this module
        },
    )
    srv = VLServer(config, env={API_KEY_ENV: API_KEY}, name="basic")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def client(server: VLServer) -> openai.OpenAI:
    return server.client()


def chat(client: openai.OpenAI, content: Any, *, stream: bool = False, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": content}],
        max_tokens=kw.pop("max_tokens", 16),
        temperature=0,
        stream=stream,
        **kw,
    )


FORCED = "hello world 42"


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_text_chat_forced_output(client: openai.OpenAI, stream: bool) -> None:
    extra = {"structured_outputs": {"regex": FORCED}}
    if not stream:
        resp = chat(client, "Say hello.", extra_body=extra)
        assert resp.choices[0].message.content == FORCED
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage.completion_tokens > 0
        assert resp.usage.prompt_tokens > 0
        return
    chunks = list(
        chat(
            client,
            "Say hello.",
            stream=True,
            extra_body=extra,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FORCED
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def _prompt_tokens(client: openai.OpenAI, content: Any) -> int:
    resp = chat(client, content, max_tokens=1)
    assert resp.choices[0].finish_reason in ("length", "stop")
    return int(resp.usage.prompt_tokens)


def test_image_inputs_every_source(
    client: openai.OpenAI, allowed_dir: Path, media_server: Any, media_dir: Path
) -> None:
    text_only = _prompt_tokens(client, [{"type": "text", "text": "What is this?"}])
    sources = {
        "base64": data_url(png_bytes(64, 64)),
        "file": (allowed_dir / "red.png").as_uri(),
        "http": media_server.url("red.png"),
    }
    counts = {
        name: _prompt_tokens(client, [image_part(url), {"type": "text", "text": "What is this?"}])
        for name, url in sources.items()
    }
    # The same 64x64 image through every source costs the same, and more than no image.
    assert len(set(counts.values())) == 1, counts
    assert counts["base64"] > text_only
    bigger = _prompt_tokens(
        client, [image_part(media_server.url("big.png")), {"type": "text", "text": "What is this?"}]
    )
    assert bigger > counts["http"]


def test_two_images_then_third_rejected(client: openai.OpenAI) -> None:
    one = data_url(png_bytes(64, 64))
    single = _prompt_tokens(client, [image_part(one)])
    double = _prompt_tokens(
        client, [image_part(one), image_part(data_url(png_bytes(64, 64, (0, 99, 0))))]
    )
    assert double > single
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, [image_part(one)] * 3)
    err = info.value.body
    assert isinstance(err, dict)
    # Refused by vl-serve before any model work, naming the item and the limit.
    assert err["param"] == "messages[0].content[2]"
    assert "at most 2" in err["message"] and "limit_mm_per_prompt.image" in err["message"]
    # The server keeps serving.
    assert _prompt_tokens(client, [image_part(one)]) == single


def test_video_mp4(client: openai.OpenAI) -> None:
    text_only = _prompt_tokens(client, [{"type": "text", "text": "What happens?"}])
    video = {"type": "video_url", "video_url": {"url": data_url(mp4_bytes(), "video/mp4")}}
    with_video = _prompt_tokens(client, [video, {"type": "text", "text": "What happens?"}])
    assert with_video > text_only + 4


def test_file_outside_allowed_folder_refused(client: openai.OpenAI, media_dir: Path) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, [image_part((media_dir / "red.png").as_uri())])
    assert str(media_dir) not in str(info.value.body)


def test_api_key_required_and_never_logged(server: VLServer) -> None:
    resp = httpx.post(server.url("/v1/chat/completions"), json={"model": MODEL, "messages": []})
    assert resp.status_code == 401
    ok = httpx.get(server.url("/v1/models"), headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200
    assert [m["id"] for m in ok.json()["data"]] == [MODEL]
    assert API_KEY not in server.log_text()


def test_health_and_metrics(server: VLServer, client: openai.OpenAI) -> None:
    assert httpx.get(server.url("/health")).status_code == 200
    chat(client, "warm", max_tokens=2)
    assert httpx.get(server.url("/metrics")).status_code == 401  # a keyed server guards it
    metrics = httpx.get(server.url("/metrics"), headers={"Authorization": f"Bearer {API_KEY}"}).text
    assert "vllm:num_requests_running" in metrics
    assert "vllm:request_success_total{" in metrics


def test_plugin_entry_point_loaded_in_server(server: VLServer) -> None:
    log = server.log_text()
    assert "vl-serve plugins registered" in log
