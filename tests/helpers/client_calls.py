"""Calling a server as other servers' documented clients do: the real curl binary, and the checks
of exactly the answer fields those clients read."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import openai

from tests.helpers.media_files import mp4_bytes, png_bytes

CURL_TIMEOUT_S = 180


def curl(*args: str) -> tuple[int, str]:
    """Run ``curl`` with the documented arguments; (HTTP status, body)."""
    cmd = ["curl", "-sS", "--max-time", str(CURL_TIMEOUT_S), "-w", "\n%{http_code}", *args]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=CURL_TIMEOUT_S + 10, check=True
    )
    body, _, status = out.stdout.rpartition("\n")
    return int(status), body


def curl_post_json(url: str, body: dict[str, Any], *headers: str) -> tuple[int, Any]:
    """``curl -X POST URL -H "Content-Type: application/json" [-H ...] -d '<json>'``."""
    args = ["-X", "POST", url, "-H", "Content-Type: application/json"]
    for header in headers:
        args += ["-H", header]
    status, text = curl(*args, "-d", json.dumps(body, ensure_ascii=False))
    return status, json.loads(text)


def jpeg_bytes(color: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    """A small JPEG (the documents' demo images are JPEGs and PNGs)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, "JPEG")
    return buf.getvalue()


def demo_files() -> dict[str, bytes]:
    """What the documents' public media URLs point to, by path on the loopback host."""
    return {
        "paddlemix/demo_images/example2.jpg": jpeg_bytes(),
        "paddlemix/demo_video/example_video.mp4": mp4_bytes(),
        "image1.jpg": jpeg_bytes((90, 160, 60)),
        "image2.png": png_bytes(64, 64, (10, 10, 200)),
        "Qwen-VL/assets/demo.jpeg": jpeg_bytes((200, 180, 40)),
        "vllm_opensource_llava/stop_sign.jpg": jpeg_bytes((220, 20, 20)),
    }


def check_chat_answer(doc: Any, *, reasoning_content: bool = False) -> str:
    """The fields a chat client prints of a non-streamed answer; returns the content."""
    assert isinstance(doc, dict) and "error" not in doc, doc
    choice = doc["choices"][0]
    message = choice["message"]
    assert message["role"] == "assistant"
    assert isinstance(message["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    if reasoning_content:  # FastDeploy's answers carry it, null included
        assert "reasoning_content" in message
    usage = doc["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] > 0
    return str(message["content"])


def check_error(status: int, doc: Any, expected: int, param: str) -> None:
    """An OpenAI-shaped refusal naming ``param``."""
    assert status == expected, doc
    err = doc["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["param"] == param


def fastdeploy_stream(base_url: str, messages: list[dict[str, Any]]) -> str:
    """FastDeploy's Python client: api_key and model "null", streamed, printing delta.content."""
    client = openai.Client(base_url=base_url, api_key="null")
    response = client.chat.completions.create(model="null", messages=messages, stream=True)
    printed = ""
    for chunk in response:
        if chunk.choices[0].delta:
            printed += chunk.choices[0].delta.content or ""
    return printed
