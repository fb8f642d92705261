"""Media items found as vLLM finds them: typeless and uuid parts, batch conversations, other routes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.media_requests import PNG, data_url, refused, settings
from vl_serve.config import MediaConfig
from vl_serve.media import MediaError, refuse_unread_media
from vl_serve.media.parts import find_items, part_type
from vl_serve.media.unread import media_location

IMAGE = data_url("image/png", PNG)


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        pytest.param({"type": "image_url", "image_url": IMAGE}, "image_url", id="typed"),
        pytest.param({"image_url": IMAGE}, "image_url", id="typeless"),
        # vLLM reads a part with a uuid by its keys, whatever its type says.
        pytest.param(
            {"type": "text", "text": "x", "uuid": "u", "image_url": IMAGE}, "image_url", id="uuid"
        ),
        # vLLM's own order: audio_url comes before video_url.
        pytest.param({"video_url": "v", "audio_url": "a"}, "audio_url", id="vllm_order"),
        pytest.param({"type": "image", "image": IMAGE, "uuid": "u"}, "image", id="qwen_with_uuid"),
        pytest.param({"text": "x"}, None, id="no_media_key"),
    ],
)
def test_part_type(part: dict[str, Any], expected: str | None) -> None:
    assert part_type(part) == expected


def test_text_part_with_uuid_is_an_item() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "uuid": "u", "image_url": IMAGE}]}
        ]
    }
    (found,) = find_items(body, MediaConfig())
    assert found.modality == "image" and found.source == IMAGE


def test_batch_conversations_are_prompts_of_their_own() -> None:
    one = [{"role": "user", "content": [{"type": "image_url", "image_url": IMAGE}]}]
    body = {"messages": [one, one, [{"role": "user", "content": "text only"}]]}
    items = find_items(body, MediaConfig())
    assert [(i.where, i.prompt) for i in items] == [
        ("messages[0][0].content[0]", 0),
        ("messages[1][0].content[0]", 1),
    ]
    err = refused({"messages": [one, [one[0], one[0]]]}, settings(limit_mm={"image": 1}))
    assert err.param == "messages[1][1].content[0]" and err.code == "too_many_media_items"
    err = refused({"messages": [one] * 3}, settings(max_items_per_request=2))
    assert err.param == "messages[2][0].content[0]"  # the request's limit counts every prompt


# fmt: off
UNREAD = [
    pytest.param({"input": [{"content": [{"type": "input_image", "image_url": "u"}]}]}, "input[0].content[0]", id="responses"),
    pytest.param({"messages": [{"content": [{"type": "image", "source": {}}]}]}, "messages[0].content[0]", id="anthropic"),
    pytest.param({"documents": [{"content": [{"image_url": {"url": "u"}}]}]}, "documents[0].content[0]", id="typeless_in_list"),
    pytest.param({"data_1": {"content": [{"type": "text", "uuid": "u", "video_url": "v"}]}}, "data_1.content[0]", id="uuid_text"),
    pytest.param({"videos": ["http://example.com/v.mp4"]}, "videos", id="systemone"),
    pytest.param({"features": {"kwargs_data": ["x"]}}, "features", id="token_in"),
    pytest.param({"input": "x", "schema": {"properties": {"image_url": {"type": "string"}}}}, None, id="schema_property"),
    pytest.param({"input": [{"type": "message", "content": [{"type": "input_text", "text": "image"}]}]}, None, id="text_only"),
    pytest.param({"images": []}, None, id="empty_list"),
]
# fmt: on


@pytest.mark.parametrize(("body", "where"), UNREAD)
def test_media_on_routes_media_is_not_read_on(body: dict[str, Any], where: str | None) -> None:
    assert media_location(body) == where
    if where is None:
        assert refuse_unread_media(body, settings(), "/v1/chat/completions") is False
        return
    with pytest.raises(MediaError) as info:
        refuse_unread_media(body, settings(), "/v1/chat/completions")
    assert info.value.status == 400 and info.value.code == "media_not_supported"
    assert info.value.param == where and "/v1/chat/completions" in info.value.message
