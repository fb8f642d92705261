"""FastDeploy's and Qianfan's clients, unchanged but for host and port, against the ERNIE tiny config.

Each row is a request exactly as a document's client sends it (curl rows run the real curl
binary), checking exactly the fields that client reads:

* FastDeploy's ERNIE-4.5-VL guide: ``curl -i /health``; curl chats without ``model`` (text,
  image by URL, base64 and ``file://``, video by the same three, thinking switched off through
  ``chat_template_kwargs``), answers read as the guide shows them (``content``,
  ``reasoning_content``, ``usage``); the Python client (``model="null"``, streamed);
* FastDeploy's online-serving README: curl "Hello!", the Python client with a system turn;
* Baidu Qianfan v2 (native multimodal): curl on ``/v2/chat/completions`` with a bearer key
  (text, image only, two images, a second round), the search request (refused: this server
  does not search), and the OpenAI SDK with ``base_url=".../v2"`` streaming a base64 image.

The server is the ERNIE tiny model with the ERNIE presets' settings: the ``ernie45_vl``
reasoning parser, Qianfan's model name as an alias, a folder for local media and the loopback
host standing in for the public URLs, and a default output length for requests that set none.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.helpers.client_calls import (
    check_chat_answer,
    check_error,
    curl,
    curl_post_json,
    demo_files,
    fastdeploy_stream,
)
from tests.helpers.media_hosts import MediaHost
from tests.helpers.vlserver import VLServer, running, tiny_config

pytestmark = pytest.mark.e2e

QIANFAN_MODEL = "ernie-4.5-8k-preview"
DEFAULT_MAX_TOKENS = 16
IMAGE = "paddlemix/demo_images/example2.jpg"
VIDEO = "paddlemix/demo_video/example_video.mp4"
QUESTION = "From which era does the artifact in the image originate?"


@pytest.fixture(scope="module")
def host() -> Iterator[MediaHost]:
    media = MediaHost(demo_files())
    yield media
    media.close()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vlserve-clients-ernie-") as root:
        for name, data in demo_files().items():
            (Path(root) / Path(name).name).write_bytes(data)
        yield Path(root)


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[VLServer]:
    config = tiny_config(
        model="builtin:tiny-ernie45-vl",
        served_model_name=["tiny-ernie45-vl", QIANFAN_MODEL],
        trust_remote_code=False,
        reasoning={"parser": "ernie45_vl"},
        media={"allowed_local_media_path": str(folder), "allowed_networks": ["127.0.0.1/32"]},
        vllm_args={"override_generation_config": {"max_new_tokens": DEFAULT_MAX_TOKENS}},
    )
    with running(config, name="clients-ernie") as srv:
        yield srv


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- FastDeploy's ERNIE-4.5-VL guide (document 000) and online-serving README (001) -----------


def test_fastdeploy_health_with_curl(server: VLServer) -> None:
    status, text = curl("-i", server.url("/health"))
    assert status == 200 and text.startswith("HTTP/1.1 200")


def _media_url(kind: str, how: str, host: MediaHost, folder: Path) -> str:
    name = IMAGE if kind == "image" else VIDEO
    if how == "url":
        return host.url(name)
    if how == "base64":
        mime = "image/jpg" if kind == "image" else "video/mp4"  # as the guide writes them
        return f"data:{mime};base64,{b64(demo_files()[name])}"
    return f"file://{folder / Path(name).name}"


MEDIA_ROWS = [
    pytest.param(kind, how, id=f"{kind}-{how}")
    for kind in ("image", "video")
    for how in ("url", "base64", "file")
]


@pytest.mark.parametrize(("kind", "how"), MEDIA_ROWS)
def test_fastdeploy_curl_media(
    server: VLServer, host: MediaHost, folder: Path, kind: str, how: str
) -> None:
    url = _media_url(kind, how, host, folder)
    text = QUESTION if kind == "image" else "How many apples are in the scene?"
    part = {"type": f"{kind}_url", f"{kind}_url": {"url": url}}
    body = {"messages": [{"role": "user", "content": [part, {"type": "text", "text": text}]}]}
    status, doc = curl_post_json(server.url("/v1/chat/completions"), body)
    assert status == 200, doc
    check_chat_answer(doc, reasoning_content=True)
    assert doc["usage"]["prompt_tokens"] > 20  # the item's vision tokens are in the prompt


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Rewrite Li Bai's 'Quiet Night Thoughts' as a modern poem", id="000-text"),
        pytest.param("Hello!", id="001-hello"),
    ],
)
def test_fastdeploy_curl_text(server: VLServer, text: str) -> None:
    body = {"messages": [{"role": "user", "content": text}]}
    status, doc = curl_post_json(server.url("/v1/chat/completions"), body)
    assert status == 200, doc
    check_chat_answer(doc, reasoning_content=True)


def test_fastdeploy_curl_thinking_off(server: VLServer, host: MediaHost) -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": host.url(IMAGE)}},
                    {"type": "text", "text": QUESTION},
                ],
            }
        ],
        "chat_template_kwargs": {"enable_thinking": False},
    }
    status, doc = curl_post_json(server.url("/v1/chat/completions"), body)
    assert status == 200, doc
    check_chat_answer(doc, reasoning_content=True)
    assert doc["choices"][0]["message"]["reasoning_content"] is None  # "output without reasoning"
    assert doc["choices"][0]["message"]["content"]


def test_fastdeploy_python_image_stream(server: VLServer, host: MediaHost) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": host.url(IMAGE)}},
                {"type": "text", "text": QUESTION},
            ],
        }
    ]
    fastdeploy_stream(
        server.url("/v1"), messages
    )  # printed text may be all reasoning: it must not fail


def test_fastdeploy_python_text_stream(server: VLServer) -> None:
    messages = [
        {"role": "system", "content": "I'm a helpful AI assistant."},
        {"role": "user", "content": "Rewrite Li Bai's 'Quiet Night Thought' as a modern poem"},
    ]
    fastdeploy_stream(server.url("/v1"), messages)


# --- Baidu Qianfan v2 (document 002) ----------------------------------------------------------

AUTH = "Authorization: Bearer your-api-key"
TWO_IMAGES_TEXT = "What are in these images? Is there any difference between them?"


def _qianfan(server: VLServer, body: dict[str, Any]) -> tuple[int, Any]:
    return curl_post_json(server.url("/v2/chat/completions"), body, AUTH)


def _two_images(host: MediaHost) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": TWO_IMAGES_TEXT},
            {"type": "image_url", "image_url": {"url": host.url("image1.jpg")}},
            {"type": "image_url", "image_url": {"url": host.url("image2.png")}},
        ],
    }


def test_qianfan_curl_text(server: VLServer) -> None:
    body = {
        "model": QIANFAN_MODEL,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "介绍几个上海著名景点"}]}
        ],
        "stream": False,
    }
    status, doc = _qianfan(server, body)
    assert status == 200, doc
    check_chat_answer(doc)


def test_qianfan_curl_image_only(server: VLServer, host: MediaHost) -> None:
    part = {"type": "image_url", "image_url": {"url": host.url("image1.jpg")}}
    body = {
        "model": QIANFAN_MODEL,
        "messages": [{"role": "user", "content": [part]}],
        "stream": False,
    }
    status, doc = _qianfan(server, body)
    assert status == 200, doc
    check_chat_answer(doc)


def test_qianfan_curl_two_images_then_a_second_round(server: VLServer, host: MediaHost) -> None:
    first = {"model": QIANFAN_MODEL, "messages": [_two_images(host)], "stream": False}
    status, doc = _qianfan(server, first)
    assert status == 200, doc
    reply = check_chat_answer(doc)
    one_image = {
        **first,
        "messages": [{**_two_images(host), "content": _two_images(host)["content"][:2]}],
    }
    assert doc["usage"]["prompt_tokens"] > _qianfan(server, one_image)[1]["usage"]["prompt_tokens"]
    second = {
        "model": QIANFAN_MODEL,
        "messages": [
            _two_images(host),
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "不够详细,再补充解析细节一点哇"},
        ],
        "stream": False,
    }
    status, doc = _qianfan(server, second)
    assert status == 200, doc
    check_chat_answer(doc)


def test_qianfan_curl_web_search_is_refused(server: VLServer) -> None:
    """This server answers from the model alone: a search request gets a 400 naming the field."""
    body = {
        "model": QIANFAN_MODEL,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "2024年奥运会乒乓球男单冠军是谁"}],
            }
        ],
        "web_search": {"enable": True, "enable_trace": True},
        "stream": False,
        "max_tokens": 512,
    }
    status, doc = _qianfan(server, body)
    check_error(status, doc, 400, "web_search")
    # Without the search, the same request is answered.
    status, doc = _qianfan(server, {**body, "web_search": {"enable": False}, "max_tokens": 4})
    assert status == 200, doc
    check_chat_answer(doc)


def test_qianfan_python_base64_image_stream(server: VLServer, folder: Path) -> None:
    client = openai.OpenAI(api_key="your-api-key", base_url=server.url("/v2"))
    base64_image = b64((folder / "image1.jpg").read_bytes())
    response = client.chat.completions.create(
        model=QIANFAN_MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/jpeg;base64,{base64_image}"},
                    },
                ],
            }
        ],
        stream=True,
    )
    chunks = 0
    for chunk in response:
        if chunk.choices[0].delta.content is not None:
            chunks += 1
    assert chunks > 0
    assert next(m.id for m in client.models.list()) == "tiny-ernie45-vl"  # GET /v2/models


def test_qianfan_penalty_score_and_ignored_fields(server: VLServer) -> None:
    """Qianfan's own fields, one documented way each (vl_serve/server/qianfan.py)."""
    import httpx

    body = {
        "model": QIANFAN_MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "penalty_score": 1.3,
        "user_id": "u-1",
        "max_tokens": 3,
    }
    resp = httpx.post(server.url("/v2/chat/completions"), json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.headers["warning"] == '299 vl-serve "ignored Qianfan field(s): user_id"'
    resp = httpx.post(
        server.url("/v2/chat/completions"), json={**body, "penalty_score": 5}, timeout=60
    )
    check_error(resp.status_code, resp.json(), 400, "penalty_score")
