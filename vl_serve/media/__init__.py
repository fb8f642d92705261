"""Multimodal inputs of chat requests, checked and made safe before vLLM sees them.

:func:`prepare_request` is called by the request middleware for every chat-shaped body that may
hold media (``/v1/chat/completions`` and its batch and render routes, ``/invocations`` and
``/tokenize`` with ``messages``). It

* accepts OpenAI parts (``image_url``/``video_url``/``audio_url``, url as a string or
  ``{"url", "detail"}``; Responses-style ``input_image``) and qwen-vl-utils parts
  (``{"type": "image", "image": ...}``, ``{"type": "video", "video": <url or list of frames>,
  "fps", "nframes", "min_pixels", "max_pixels"}``) and rewrites them to vLLM's OpenAI forms;
* counts items against ``limit_mm_per_prompt`` and ``media.max_items_per_request`` before any
  fetch;
* gets every item's bytes under the rules of :mod:`vl_serve.media.sources` (public http(s) hosts,
  ``file://`` inside one folder, base64 ``data:``), checks them (format, pixels, frames, duration)
  and hands vLLM the checked bytes as a ``data:`` URL, so vLLM itself never fetches a user's URL
  or reads a user's path; an image that needs no change is checked from its header only and goes
  on as it came (vLLM decodes it once);
* presizes an image over the served model's pixel budget (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) to
  the processor's own target, decoded at a reduced JPEG scale and resized once, so vLLM neither
  decodes the full image nor resizes it again (``media.presize``);
* applies ``detail: "low" | "high"`` and per-image ``min_pixels``/``max_pixels``/``resized_*`` by
  resizing that image (a per-image pixel budget: it changes the image's token count);
* applies per-video ``fps``/``nframes``/``min_pixels``/``max_pixels``/``resized_*`` itself: a
  video file is sampled (only the needed frames decoded, with OpenCV) into vLLM's frame-list
  form ``data:video/jpeg;base64,<frame>,<frame>,...`` and the frames resized like images, so no
  per-request ``mm_processor_kwargs`` are needed; the request's ``media_io_kwargs`` then tell
  vLLM where the sampled frames sit in the file (its frame rate, the frame numbers), so the
  model is told their real times;
* gates client processor kwargs in vLLM's place (vLLM runs with ``--trust-request-mm-kwargs``):
  ``mm_processor_kwargs`` only with ``media.trust_request_mm_kwargs``, and then a few keys within
  bounds; ``media_io_kwargs`` never.

Refusals raise :class:`MediaError` (the request path's one error type, status 400, or 413 for
byte sizes, with a machine-readable ``code``) whose message names the item
(``messages[0].content[2]``) and the limit, never a URL, a path or an exception's text. On every
other route, :func:`refuse_unread_media` refuses a body that carries media at all.

The modules, in the order a request meets them:

* ``request``: the entry point; ``settings``: the parsed ``media`` section and its limits;
  ``kwargs``: client processor kwargs; ``parts``: finding, reading and counting the items;
* ``inline``: ``data:`` images passed on as sent; ``sources``: an item's bytes from ``data:``,
  ``file://`` or http(s); ``policy`` and ``fetch``: the guarded download; ``workers``: the
  threads and the bound on pixels being decoded;
* ``images`` and ``headers``: image checks; ``presize``: the served model's image budget;
  ``frames``: video items; ``videos``, ``containers``, ``mp4`` and ``webm``: video files;
  ``errors``: the refusals; ``unread``: media on other routes.
"""

from __future__ import annotations

from vl_serve.media.errors import MediaError
from vl_serve.media.kwargs import sanitize_mm_kwargs
from vl_serve.media.request import prepare_request
from vl_serve.media.settings import body_too_large, max_request_bytes
from vl_serve.media.unread import refuse_unread_media

__all__ = [
    "MediaError",
    "body_too_large",
    "max_request_bytes",
    "prepare_request",
    "refuse_unread_media",
    "sanitize_mm_kwargs",
]
