"""Media on routes whose request shapes vl_serve.media does not read: found, and refused.

vLLM takes images on more routes than the chat ones: Responses ``input_image`` parts, Anthropic
``image`` blocks (also inside ``tool_result``), ``/v1/systemone`` URL lists, pooling and scoring
inputs, the token-in route's serialised ``features``. vl-serve checks media only in chat-shaped
``messages``, so on every other route a body that carries any is refused with a 400 naming the
route that takes it, before vLLM could fetch or decode it. A part counts as media by its ``type``
(anywhere in the body) or, in a list, by one of the keys vLLM reads a part without a type by.
"""

from __future__ import annotations

from typing import Any, Final

from vl_serve.media.errors import MediaError
from vl_serve.media.kwargs import sanitize_mm_kwargs

# Part types vLLM (chat, Responses and Anthropic parsers) or qwen-vl-utils read media from.
_MEDIA_TYPES: Final = frozenset(
    {
        "image_url",
        "input_image",
        "image",
        "image_pil",
        "image_embeds",
        "video_url",
        "video",
        "video_embeds",
        "audio_url",
        "input_audio",
        "audio",
        "audio_embeds",
    }
)
# Keys vLLM reads a content part without a type (or with a uuid) by, in vLLM's order
# (vllm/renderers/chat_utils.py, _parse_chat_message_content_mm_part).
VLLM_PART_KEYS: Final = (
    "image_url",
    "image_pil",
    "image_embeds",
    "audio_embeds",
    "video_embeds",
    "audio_url",
    "input_audio",
    "video_url",
)
# Top-level fields that are media in themselves: /v1/systemone's URL lists, the token-in
# route's processed multimodal inputs.
_MEDIA_FIELDS: Final = ("images", "videos", "audio", "features")


def _media_at(value: Any, in_list: bool) -> list[str] | None:
    """The path (innermost first) to the first media part in ``value``, or None."""
    if type(value) is dict:
        kind = value.get("type")
        if isinstance(kind, str) and kind in _MEDIA_TYPES:
            return []
        if (
            in_list
            and (kind is None or "uuid" in value)
            and any(k in value for k in VLLM_PART_KEYS)
        ):
            return []
        for key, item in value.items():
            if type(item) in (dict, list):
                found = _media_at(item, False)
                if found is not None:
                    found.append(f".{key}")
                    return found
    else:
        for index, item in enumerate(value):
            if type(item) in (dict, list):
                found = _media_at(item, True)
                if found is not None:
                    found.append(f"[{index}]")
                    return found
    return None


def media_location(body: dict[str, Any]) -> str | None:
    """Where the first media item of ``body`` is (``input[0].content[1]``), or None."""
    for field in _MEDIA_FIELDS:
        if body.get(field):
            return field
    found = _media_at(body, False)
    if found is None:
        return None
    return "".join(reversed(found)).lstrip(".") or None


def refuse_unread_media(body: dict[str, Any], settings: dict[str, Any], route: str) -> bool:
    """Refuse a body that carries media on a route vl-serve does not read media on.

    ``route`` is the route that takes media, named in the message. Client processor kwargs are
    checked as on the chat route. Returns True if ``body`` changed (empty kwargs removed).
    """
    where = media_location(body)
    if where is not None:
        raise MediaError(
            400,
            f"{where}: this route does not take images, video or audio on this server; "
            f"send them to {route}",
            where,
            "media_not_supported",
        )
    return sanitize_mm_kwargs(body, settings)
