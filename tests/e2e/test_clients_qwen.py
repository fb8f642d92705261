"""Other servers' clients, unchanged but for host and port, against the default config (tiny Qwen3-VL).

Each row is a request exactly as a document's client sends it, and checks exactly the fields
that client reads:

* FastDeploy's Python clients (ERNIE-4.5-VL guide, online-serving README): ``openai.Client(
  api_key="null")``, ``model="null"``, streamed, ``chunk.choices[0].delta.content``; its curl
  without a model;
* the Qwen3-VL FastAPI tutorial's test clients (``requests``; httpx here): ``GET /health`` then
  ``.json()``, chats read ``result["response"]`` and ``result["usage"]``, the qwen-vl-utils video
  item with a plain relative path; the tutorial server's ``POST /generate`` and ``GET /``;
* the MiniCPM-V guide's ``vllm serve`` client: the OpenAI SDK with ``api_key="token-abc123"``,
  the model's path as ``model``, ``extra_body={"stop_token_ids": [151645, 151643]}``.

The server is the packaged default config with what the documents' setups need: a folder for
local media, the loopback host standing in for the public image URLs, the MiniCPM-V client's
model path as an alias, and a default output length for the requests that set none (as the
documents' servers, which stop at the model's end of text, are not random models).
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers.client_calls import (
    check_chat_answer,
    curl,
    curl_post_json,
    demo_files,
    fastdeploy_stream,
)
from tests.helpers.media_files import mp4_bytes
from tests.helpers.media_hosts import MediaHost
from tests.helpers.vlserver import VLServer, running, tiny_config

pytestmark = pytest.mark.e2e

MINICPM_MODEL = "/root/ld/ld_model_pretrained/Minicpmv2_6"
DEFAULT_MAX_TOKENS = 16


@pytest.fixture(scope="module")
def host() -> Iterator[MediaHost]:
    media = MediaHost(demo_files())
    yield media
    media.close()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vlserve-clients-") as root:
        (Path(root) / "test_video.mp4").write_bytes(mp4_bytes(frames=8, fps=4.0))
        (Path(root) / "pic.jpg").write_bytes(demo_files()["image1.jpg"])
        yield Path(root)


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[VLServer]:
    config = tiny_config(
        served_model_name=["tiny-qwen3-vl", MINICPM_MODEL],
        media={"allowed_local_media_path": str(folder), "allowed_networks": ["127.0.0.1/32"]},
        vllm_args={"override_generation_config": {"max_new_tokens": DEFAULT_MAX_TOKENS}},
    )
    with running(config, name="clients-qwen") as srv:
        yield srv


# --- FastDeploy (documents 000 and 001) -------------------------------------------------------


def test_fastdeploy_python_image_stream(server: VLServer, host: MediaHost) -> None:
    """000: the streamed image question with model="null"."""
    url = host.url("paddlemix/demo_images/example2.jpg")
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {
                    "type": "text",
                    "text": "From which era does the artifact in the image originate?",
                },
            ],
        }
    ]
    assert fastdeploy_stream(server.url("/v1"), messages)
    assert host.hits["paddlemix/demo_images/example2.jpg"] >= 1


def test_fastdeploy_python_text_stream(server: VLServer) -> None:
    """001: system and user turns, streamed, model="null"."""
    messages = [
        {"role": "system", "content": "I'm a helpful AI assistant."},
        {"role": "user", "content": "Rewrite Li Bai's 'Quiet Night Thought' as a modern poem"},
    ]
    assert fastdeploy_stream(server.url("/v1"), messages)


def test_fastdeploy_curl_without_model(server: VLServer) -> None:
    """001: curl with no model field."""
    body = {"messages": [{"role": "user", "content": "Hello!"}]}
    status, doc = curl_post_json(server.url("/v1/chat/completions"), body)
    assert status == 200
    check_chat_answer(doc)
    assert doc["model"] == "tiny-qwen3-vl"
    assert doc["usage"]["completion_tokens"] == DEFAULT_MAX_TOKENS


# --- the Qwen3-VL FastAPI tutorial (document 003) ---------------------------------------------


def test_tutorial_health_check(server: VLServer) -> None:
    response = httpx.get(f"{server.base_url}/health")
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "healthy"
    assert result.get("model") == "tiny-qwen3-vl"
    # The client prints these with .get(): absent is None, not an error.
    assert result.get("device") is None and result.get("gpu_memory") is None


def test_tutorial_health_check_with_curl(server: VLServer) -> None:
    """FastDeploy's `curl -i /health`: HTTP 200 is the whole check (and the body is JSON now)."""
    status, text = curl("-i", server.url("/health"))
    assert status == 200
    assert text.startswith("HTTP/1.1 200")
    assert text.rstrip().endswith('"model":"tiny-qwen3-vl"}')


def _tutorial_post(server: VLServer, path: str, payload: dict[str, Any]) -> Any:
    response = httpx.post(
        f"{server.base_url}{path}",
        json=payload,
        headers={"Content-Type": "application/json"},
        timeout=180,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _check_tutorial_result(result: Any) -> None:
    assert isinstance(result["response"], str)
    assert result["response"] == result["choices"][0]["message"]["content"]
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


TEXT_PAYLOAD = {
    "messages": [{"role": "user", "content": "你好，请介绍一下你自己。"}],
    "max_tokens": 256,
    "temperature": 0.7,
}


def test_tutorial_text_chat(server: VLServer) -> None:
    _check_tutorial_result(_tutorial_post(server, "/v1/chat/completions", TEXT_PAYLOAD))


def test_tutorial_image_chat(server: VLServer, host: MediaHost) -> None:
    payload = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": host.url("Qwen-VL/assets/demo.jpeg")},
                    {"type": "text", "text": "请描述这张图片的内容。"},
                ],
            }
        ],
        "max_tokens": 512,
        "temperature": 0.7,
    }
    result = _tutorial_post(server, "/v1/chat/completions", payload)
    _check_tutorial_result(result)
    assert result["usage"]["prompt_tokens"] > 10  # the image's tokens are in the prompt


def _video_payload(path: str) -> dict[str, Any]:
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": path, "fps": 1.0, "max_pixels": 360 * 420},
                    {"type": "text", "text": "请描述这个视频的内容，包括主要场景和动作。"},
                ],
            }
        ],
        "max_tokens": 512,
        "temperature": 0.7,
    }


def test_tutorial_video_chat_with_a_relative_path(server: VLServer) -> None:
    """The video test client's plain path, relative to media.allowed_local_media_path."""
    _check_tutorial_result(
        _tutorial_post(server, "/v1/chat/completions", _video_payload("./test_video.mp4"))
    )


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        pytest.param("../test_video.mp4", "'..' segments", id="dotdot"),
        pytest.param("./missing.mp4", "no such file", id="missing"),
        pytest.param("/etc/hostname", "outside the allowed folder", id="outside"),
    ],
)
def test_tutorial_plain_paths_stay_in_the_folder(
    server: VLServer, path: str, fragment: str
) -> None:
    response = httpx.post(server.url("/v1/chat/completions"), json=_video_payload(path), timeout=60)
    assert response.status_code in (400, 403), response.text
    assert fragment in response.json()["error"]["message"]


def test_tutorial_generate_and_root(server: VLServer, folder: Path) -> None:
    """The tutorial server's second endpoint (same body, answers {"response"}) and GET /."""
    result = _tutorial_post(server, "/generate", TEXT_PAYLOAD)
    assert set(result) == {"response"} and isinstance(result["response"], str)
    root = httpx.get(server.base_url + "/")
    assert root.status_code == 200 and root.json()["model"] == "tiny-qwen3-vl"


def test_openai_sdk_unaffected_by_the_response_field(server: VLServer) -> None:
    client = server.client()
    answer = client.chat.completions.create(
        model="tiny-qwen3-vl", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert answer.choices[0].message.content is not None
    assert answer.model == "tiny-qwen3-vl"


# --- vllm serve with MiniCPM-V (document 004) -------------------------------------------------


def _minicpm_chat(server: VLServer, url: str) -> Any:
    client = openai.OpenAI(api_key="token-abc123", base_url=server.url("/v1"))
    return client.chat.completions.create(
        model=MINICPM_MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "请描述这张图片"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
        extra_body={"stop_token_ids": [151645, 151643]},
    )


def test_minicpm_web_image(server: VLServer, host: MediaHost) -> None:
    chat_response = _minicpm_chat(server, host.url("vllm_opensource_llava/stop_sign.jpg"))
    assert isinstance(chat_response.choices[0].message.content, str)
    assert str(chat_response)  # the client prints the whole answer


def test_minicpm_local_image_as_data_url(server: VLServer, folder: Path) -> None:
    data = (folder / "pic.jpg").read_bytes()
    image = "data:image/jpeg;base64," + base64.b64encode(data).decode("utf-8")
    chat_response = _minicpm_chat(server, image)
    assert isinstance(chat_response.choices[0].message.content, str)
