"""prepare_request's refusals: one table row per refused input, and the item counts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.media_hosts import MediaHost
from tests.helpers.media_requests import (
    BOMB_MSG,
    LOOPBACK,
    MB,
    PNG,
    chat,
    data_url,
    image_part,
    refused,
    settings,
    video_part,
)

# ------------------------------------------------------------------------------------------
# Refused inputs: (case, part(server), media settings, status, message fragment)

REFUSALS: list[tuple[str, Any, dict[str, Any], int, str]] = [
    # addresses
    ("loopback by default", lambda s: image_part(s.url("img.png")), {}, 400, "non-public address"),
    (
        "name resolving to loopback",
        lambda s: image_part(s.url("img.png", "localhost")),
        {},
        400,
        "non-public address",
    ),
    (
        "cloud metadata address",
        lambda s: image_part("http://169.254.169.254/latest/meta-data/"),
        LOOPBACK,
        400,
        "non-public address",
    ),
    ("private address", lambda s: image_part("http://10.0.0.1/a.png"), {}, 400, "non-public"),
    ("ipv4-mapped", lambda s: image_part("http://[::ffff:10.0.0.1]/a.png"), {}, 400, "non-public"),
    ("nat64", lambda s: image_part("http://[64:ff9b::a9fe:a9fe]/a.png"), {}, 400, "non-public"),
    ("ipv6 loopback", lambda s: image_part("http://[::1]/a.png"), {}, 400, "non-public"),
    ("decimal ip", lambda s: image_part("http://2130706433/a.png"), {}, 400, "canonical"),
    ("short ip", lambda s: image_part("http://127.1/a.png"), {}, 400, "canonical"),
    ("octal ip", lambda s: image_part("http://0177.0.0.1/a.png"), {}, 400, "canonical"),
    (
        "domain not allowed",
        lambda s: image_part(s.url("img.png")),
        {"allowed_domains": ["images.example.com"], **LOOPBACK},
        400,
        "media.allowed_domains",
    ),
    (
        "backslash in authority",
        lambda s: image_part("http://example.com\\@127.0.0.1/a.png"),
        {},
        400,
        "not valid",
    ),
    ("ftp scheme", lambda s: image_part("ftp://example.com/a.png"), {}, 400, "only http"),
    ("gopher scheme", lambda s: image_part("gopher://127.0.0.1:70/"), {}, 400, "only http"),
    ("credentials", lambda s: image_part("http://u:p@example.com/a.png"), {}, 400, "password"),
    # redirects
    (
        "redirect by default",
        lambda s: image_part(s.url("redirect?to=/img.png")),
        LOOPBACK,
        400,
        "redirects are not followed",
    ),
    (
        "redirect to metadata address",
        lambda s: image_part(s.url("redirect?to=http://169.254.169.254/latest/")),
        {"max_redirects": 3, **LOOPBACK},
        400,
        "non-public address",
    ),
    (
        "redirect to a loopback address not allowed",
        lambda s: image_part(s.url("redirect?to=http://127.0.0.2:9/img.png")),
        {"max_redirects": 3, "allowed_networks": ["127.0.0.1/32"]},
        400,
        "non-public address",
    ),
    (
        "redirect to file",
        lambda s: image_part(s.url("redirect?to=file:///etc/passwd")),
        {"max_redirects": 3, **LOOPBACK},
        400,
        "only http",
    ),
    (
        "redirect loop",
        lambda s: image_part(s.url("redirect?to=/redirect%3Fto%3D/img.png")),
        {"max_redirects": 1, **LOOPBACK},
        400,
        "more than 1 times",
    ),
    # HTTP answers
    ("http 404", lambda s: image_part(s.url("missing.png")), LOOPBACK, 400, "HTTP 404"),
    ("compressed body", lambda s: image_part(s.url("gzip")), LOOPBACK, 400, "compressed"),
    # sizes
    (
        "download over the limit (content-length)",
        lambda s: image_part(s.url("big-cl?bytes=" + str(11 * MB))),
        LOOPBACK,
        413,
        "larger than the 10 MB limit (media.max_item_bytes)",
    ),
    (
        "download over the limit (streamed)",
        lambda s: image_part(s.url("big?bytes=" + str(11 * MB))),
        LOOPBACK,
        413,
        "larger than the 10 MB limit (media.max_item_bytes)",
    ),
    (
        "base64 over the limit",
        lambda s: image_part("data:image/png;base64," + "A" * (14 * MB)),
        {},
        413,
        "decoded base64 item is larger than the 10 MB limit",
    ),
    (
        "pixel bomb",
        lambda s: image_part(s.url("bomb.png")),
        LOOPBACK,
        400,
        BOMB_MSG,
    ),
    # content
    ("garbage image", lambda s: image_part(s.url("garbage.png")), LOOPBACK, 400, "corrupt"),
    ("1x1 image", lambda s: image_part(s.url("tiny.png")), LOOPBACK, 400, "at least 10 pixels"),
    ("too wide", lambda s: image_part(s.url("wide.png")), LOOPBACK, 400, "a factor of at most"),
    ("tiff", lambda s: image_part(s.url("img.tiff")), LOOPBACK, 400, "supported image format"),
    ("text as image", lambda s: image_part(s.url("text.txt")), LOOPBACK, 400, "supported image"),
    ("video as image", lambda s: image_part(s.url("video.mp4")), LOOPBACK, 400, "image format"),
    ("image as video", lambda s: video_part(s.url("img.png")), LOOPBACK, 400, "MP4 or WebM"),
    (
        "bad base64",
        lambda s: image_part("data:image/png;base64,@@@@"),
        {},
        400,
        "not valid base64",
    ),
    ("not base64", lambda s: image_part("data:image/png,abc"), {}, 400, "only base64"),
    (
        "bad detail",
        lambda s: image_part(data_url("image/png", PNG), "ultra"),
        {},
        400,
        "detail must be",
    ),
    (
        "video too long",
        lambda s: video_part(s.url("video.mp4")),
        {"max_video_seconds": 1, **LOOPBACK},
        400,
        "lasts 2.0 s, over the limit of 1 s (media.max_video_seconds)",
    ),
    (
        "video too many frames",
        lambda s: video_part(s.url("video.webm")),
        {"max_video_frames": 10, **LOOPBACK},
        400,
        "has 20 frames, over the limit of 10 (media.max_video_frames)",
    ),
    (
        "video frames too large",
        lambda s: video_part(s.url("video.mp4")),
        {"max_video_frame_pixels": 1000, **LOOPBACK},
        400,
        "64x48 = 3072 pixels, over the limit of 1000 pixels (media.max_video_frame_pixels)",
    ),
    (  # the container's limits are checked before any frame is decoded
        "sampled video too long",
        lambda s: {"type": "video", "video": s.url("video.mp4"), "fps": 2.0},
        {"max_video_seconds": 1, **LOOPBACK},
        400,
        "lasts 2.0 s, over the limit of 1 s (media.max_video_seconds)",
    ),
    (
        "sampled video frames too large",
        lambda s: {"type": "video", "video": s.url("video.webm"), "nframes": 4},
        {"max_video_frame_pixels": 1000, **LOOPBACK},
        400,
        "64x48 = 3072 pixels, over the limit of 1000 pixels (media.max_video_frame_pixels)",
    ),
    (
        "sampled video not a video",
        lambda s: {"type": "video", "video": s.url("img.png"), "nframes": 4},
        LOOPBACK,
        400,
        "MP4 or WebM",
    ),
    (
        "frame list of mixed sizes",
        lambda s: {"type": "video", "video": [s.url("frame0.png"), s.url("frame_odd.png")]},
        LOOPBACK,
        400,
        "same width and height",
    ),
    (
        "frame list too long",
        lambda s: {"type": "video", "video": [s.url("frame0.png")] * 40},
        LOOPBACK,
        400,
        "40 frame images, over the limit of 32 (media.max_video_frame_images)",
    ),
    (
        "bad frame in list",
        lambda s: {"type": "video", "video": [s.url("frame0.png"), s.url("garbage.png")]},
        LOOPBACK,
        400,
        "content[1].video[1]: the frame data is truncated or corrupt",
    ),
    (
        "unsupported video option",
        lambda s: {"type": "video", "video": s.url("video.mp4"), "video_start": 1.0},
        LOOPBACK,
        400,
        "'video_start' is not supported",
    ),
    ("file by default", lambda s: image_part("file:///etc/hostname"), {}, 400, "not accepted"),
    ("bare path by default", lambda s: {"type": "image", "image": "/etc/hostname"}, {}, 400, "not"),
    ("bare path in openai form", lambda s: image_part("/etc/hostname"), {}, 400, "only http"),
    ("no url", lambda s: {"type": "image_url", "image_url": {}}, {}, 400, "no URL"),
]


@pytest.mark.parametrize(
    ("case", "make", "overrides", "status", "fragment"),
    REFUSALS,
    ids=[r[0] for r in REFUSALS],
)
def test_refused(
    server: MediaHost, case: str, make: Any, overrides: dict[str, Any], status: int, fragment: str
) -> None:
    err = refused(chat(make(server)), settings(**overrides))
    assert err.status == status, (case, err.message)
    assert fragment in err.message, (case, err.message)
    assert err.message.startswith("messages[0].content[1]"), err.message
    assert err.param is not None and err.param.startswith("messages[0].content[1]")
    assert err.code


def test_messages_do_not_echo_urls(server: MediaHost) -> None:
    secret = server.url("missing.png?X-Amz-Signature=SECRET")
    err = refused(chat(image_part(secret)), settings(**LOOPBACK))
    assert "SECRET" not in err.message and str(server.port) not in err.message


# ------------------------------------------------------------------------------------------
# Item counts


def test_items_per_request() -> None:
    url = data_url("image/png", PNG)
    err = refused(chat(*[image_part(url) for _ in range(11)]), settings())
    assert err.message == (
        "messages[0].content[11]: too many media items in one request: at most 10 "
        "(media.max_items_per_request)"
    )
    assert err.status == 400 and err.code == "too_many_media_items"


def test_limit_mm_per_prompt_is_enforced_before_fetching(server: MediaHost) -> None:
    # The URLs would be refused if fetched: the count is checked first.
    parts = [image_part("http://10.0.0.1/a.png") for _ in range(3)]
    err = refused(chat(*parts), settings(limit_mm={"image": 2}))
    assert err.message == (
        "messages[0].content[3]: too many images in one request: at most 2 "
        "(limit_mm_per_prompt.image)"
    )
    err = refused(chat(video_part(server.url("video.mp4"))), settings(limit_mm={"video": 0}))
    assert "(limit_mm_per_prompt.video)" in err.message
