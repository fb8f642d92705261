"""The media entry point of one chat request: every item found, counted, fetched and checked.

:func:`prepare_request` rewrites each media part in place into vLLM's OpenAI form with a checked
``data:`` URL, and sets the request's ``media_io_kwargs`` where frames sampled here from a video
file need their real times (:func:`vl_serve.media.frames.request_video_kwargs`). Inline images that vLLM may read as sent are checked from their header without
leaving the caller's turn of the event loop; the other items are fetched and checked together,
and the first refusal cancels the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vl_serve.media.errors import MediaError, Refusal, bad, refused
from vl_serve.media.frames import request_video_kwargs, video
from vl_serve.media.images import check_image
from vl_serve.media.inline import kept_as_sent
from vl_serve.media.kwargs import sanitize
from vl_serve.media.parts import Item, check_counts, find_items, part_type
from vl_serve.media.settings import Context, budget, image_limits, parsed
from vl_serve.media.sources import data_url, load, source_kind
from vl_serve.media.workers import gather, in_image_thread, pixels_of
from vl_serve.server import metrics

logger = logging.getLogger(__name__)

# Parts whose data vLLM already holds or takes inline: a cached item, embeddings, inline audio.
_NOTHING_TO_FETCH = ("image_embeds", "image_pil", "video_embeds", "input_audio", "audio_embeds")


async def _image(found: Item, ctx: Context) -> dict[str, Any] | None:
    data, _mime = await load(
        found.source,
        ctx,
        bare_paths=found.qwen,
        max_bytes=ctx.cfg.max_item_bytes,
        size_field="max_item_bytes",
    )
    with metrics.MEDIA_DECODE_SECONDS.time():
        checked = await in_image_thread(
            pixels_of(data), check_image, data, image_limits(ctx.cfg), found.resize, "image",
            ctx.budget,
        )  # fmt: skip
    return {"type": "image_url", "image_url": {"url": await data_url(checked.mime, checked.data)}}


async def _audio(found: Item, ctx: Context) -> dict[str, Any]:
    data, mime = await load(
        found.source,
        ctx,
        bare_paths=False,
        max_bytes=ctx.cfg.max_item_bytes,
        size_field="max_item_bytes",
    )
    if not mime.startswith("audio/"):
        mime = "audio/wav" if data[:4] == b"RIFF" else "audio/mpeg"
    return {"type": "audio_url", "audio_url": {"url": await data_url(mime, data)}}


_HANDLERS: dict[str, Callable[[Item, Context], Awaitable[dict[str, Any] | None]]] = {
    "image": _image,
    "video": video,
    "audio": _audio,
}


async def _process(found: Item, ctx: Context) -> dict[str, Any] | None:
    """The part that replaces ``found``, or None to leave it as it is."""
    if found.source is None:
        if found.part.get("uuid") is not None or part_type(found.part) in _NOTHING_TO_FETCH:
            return None  # nothing to fetch: vLLM's cached item, embeddings or inline audio
        raise bad(found.where, "the media item has no URL")
    try:
        new = await _HANDLERS[found.modality](found, ctx)
    except MediaError:
        raise
    except Refusal as refusal:
        raise refused(found.where, refusal) from None
    except Exception as exc:
        # One line: a client must not be able to fill the log with tracebacks.
        logger.warning("media item %s could not be processed: %s", found.where, type(exc).__name__)
        logger.debug("media item %s could not be processed", found.where, exc_info=True)
        raise bad(found.where, f"the {found.modality} could not be read") from None
    if new is not None and found.part.get("uuid") is not None:
        new["uuid"] = found.part["uuid"]
    metrics.MEDIA_ITEMS.labels(modality=found.modality, source=source_kind(found.source)).inc()
    return new


async def prepare_request(body: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Check and rewrite the media of one chat completion request in place.

    Returns True if ``body`` changed. Raises :class:`MediaError` for a refused request; every
    limit is checked before any model work, and counts before any fetch.
    """
    cfg, policy = parsed(settings)
    changed = sanitize(body, cfg)
    items = find_items(body, cfg)
    check_counts(items, cfg, settings)
    if not items:
        return changed
    ctx = Context(cfg, policy, budget(settings))
    found_all = items
    sent = len(items)
    items = [found for found in items if not kept_as_sent(found, ctx)]
    if sent > len(items):  # inline images passed on as sent
        metrics.MEDIA_ITEMS.labels(modality="image", source="data").inc(sent - len(items))
    if not items:  # the common case: nothing awaited, the request never yields the event loop
        return changed
    if len(items) == 1:
        results = [await _process(items[0], ctx)]
    else:
        results = await gather([_process(found, ctx) for found in items])
    for found, new in zip(items, results, strict=True):
        if new is not None:
            found.content[found.index] = new
            changed = True
    io_kwargs = request_video_kwargs(found_all)
    if io_kwargs is not None:  # the client's own were refused by sanitize()
        body["media_io_kwargs"] = io_kwargs
        changed = True
    return changed
