"""vl_serve.media without a vLLM server: every accepted form, every refusal, and the bounds.

Network tests only ever reach HTTP servers started here on 127.0.0.0/8 (127.0.0.1 and
127.0.0.2); refused URLs naming other addresses are refused before any connection is tried.
Tests that need the loopback media server allow it explicitly in their settings.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import os
import re
import socket
import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from tests.helpers.media_files import image_bytes, pixel_bomb_png, video_bytes
from tests.helpers.media_hosts import MediaHost
from vl_serve.config import MediaConfig
from vl_serve.media import MediaError, body_too_large, prepare_request, sanitize_mm_kwargs
from vl_serve.media import fetch as media_fetch
from vl_serve.media.fetch import FetchPolicy, GuardedResolver, address_allowed

MB = 1024 * 1024
LOOPBACK: dict[str, Any] = {"allowed_networks": ["127.0.0.0/8"]}


# ------------------------------------------------------------------------------------------
# Media samples


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def decode_data_url(url: str) -> bytes:
    assert url.startswith("data:"), url[:40]
    return base64.b64decode(url.split(",", 1)[1])


PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    return {
        "img.png": PNG,
        "img.jpg": JPEG,
        "img.bmp": image_bytes("BMP"),
        "img.webp": image_bytes("WEBP"),
        "img.gif": image_bytes("GIF"),
        "big.png": image_bytes("PNG", (1024, 1024)),
        "tiny.png": image_bytes("PNG", (1, 1)),
        "wide.png": image_bytes("PNG", (2100, 10)),
        "img.tiff": image_bytes("TIFF"),
        "truncated.png": image_bytes("PNG", (256, 256), (1, 2, 3))[:300],
        "garbage.png": b"\x89PNG\r\n\x1a\n" + os.urandom(2000),
        "text.txt": b"hello, I am not an image",
        "bomb.png": pixel_bomb_png(),
        "video.mp4": video_bytes("mp4"),
        "video.webm": video_bytes("webm"),
        "frame0.png": image_bytes("PNG", (64, 48), (10, 10, 10)),
        "frame1.jpg": image_bytes("JPEG", (64, 48), (90, 90, 90)),
        "frame2.png": image_bytes("PNG", (64, 48), (180, 180, 180)),
        "frame_odd.png": image_bytes("PNG", (32, 32)),
    }


# ------------------------------------------------------------------------------------------
# Loopback HTTP servers


@pytest.fixture(scope="module")
def server(samples: dict[str, bytes]) -> Iterator[MediaHost]:
    srv = MediaHost(samples, gzip_body=zlib.compress(PNG))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def server2(samples: dict[str, bytes]) -> Iterator[MediaHost]:
    """A second host (127.0.0.2) for per-host and cross-host cases."""
    try:
        srv = MediaHost(samples, host="127.0.0.2", gzip_body=zlib.compress(PNG))
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here")
    yield srv
    srv.close()


# ------------------------------------------------------------------------------------------
# Helpers


def settings(limit_mm: dict[str, int] | None = None, **media: Any) -> dict[str, Any]:
    return {
        "media": MediaConfig(**media).model_dump(mode="json"),
        "limit_mm_per_prompt": limit_mm,
    }


def chat(*parts: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "describe"}, *parts]}],
    }


def image_part(url: str, detail: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"url": url}
    if detail is not None:
        inner["detail"] = detail
    return {"type": "image_url", "image_url": inner}


def video_part(url: str) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url}}


def run(body: dict[str, Any], st: dict[str, Any]) -> bool:
    return asyncio.run(prepare_request(body, st))


def refused(body: dict[str, Any], st: dict[str, Any]) -> MediaError:
    with pytest.raises(MediaError) as info:
        run(body, st)
    err = info.value
    assert_clean(err.message)
    return err


def assert_clean(message: str) -> None:
    """Error text shows no traceback, memory address, server path or exception repr."""
    assert "Traceback" not in message
    assert not re.search(r"0x[0-9a-fA-F]{6,}", message), message
    assert "/tmp" not in message and "site-packages" not in message, message
    assert "Error(" not in message and " object at " not in message, message


def part_of(body: dict[str, Any], index: int = 1) -> dict[str, Any]:
    return body["messages"][0]["content"][index]


# ------------------------------------------------------------------------------------------
# Accepted forms


@pytest.mark.parametrize("name", ["img.png", "img.jpg", "img.bmp", "img.webp", "img.gif"])
def test_image_formats_over_http(server: MediaHost, samples: dict[str, bytes], name: str) -> None:
    body = chat(image_part(server.url(name)))
    assert run(body, settings(**LOOPBACK)) is True
    part = part_of(body)
    assert part == {"type": "image_url", "image_url": {"url": part["image_url"]["url"]}}
    assert decode_data_url(part["image_url"]["url"]) == samples[name]


@pytest.mark.parametrize("name", ["video.mp4", "video.webm"])
def test_video_formats_over_http(server: MediaHost, samples: dict[str, bytes], name: str) -> None:
    body = chat(video_part(server.url(name)))
    run(body, settings(**LOOPBACK))
    url = part_of(body)["video_url"]["url"]
    assert url.startswith("data:video/mp4;" if name.endswith("mp4") else "data:video/webm;")
    assert decode_data_url(url) == samples[name]


def test_accepted_forms(server: MediaHost, samples: dict[str, bytes], tmp_path: Path) -> None:
    (tmp_path / "img.png").write_bytes(PNG)
    st = settings(allowed_local_media_path=str(tmp_path), **LOOPBACK)
    forms = [
        {"type": "image_url", "image_url": server.url("img.png")},  # url as a bare string
        {"image_url": {"url": server.url("img.png")}},  # no type
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
        {"type": "image_url", "image_url": {"url": f"file://{tmp_path}/img.png"}},
        {"type": "input_image", "image_url": server.url("img.png"), "detail": "auto"},
        {"type": "image", "image": server.url("img.png")},  # qwen-vl-utils
        {"type": "image", "image": f"file://{tmp_path}/img.png"},
        {"type": "image", "image": f"{tmp_path}/img.png"},  # bare absolute path
        {"type": "image", "image": "img.png"},  # bare path, relative to the folder
        {"type": "image", "image": data_url("image", PNG)},  # qwen's data:image;base64,
    ]
    for form in forms:
        body = chat(copy.deepcopy(form))
        if form.get("type") == "image_url" and str(form["image_url"]).startswith("{'url': 'data:"):
            assert run(body, st) is False, form  # checked, and passed on exactly as sent
            assert part_of(body) == form
            continue
        assert run(body, st) is True, form
        out = part_of(body)
        assert out["type"] == "image_url", form
        assert decode_data_url(out["image_url"]["url"]) == PNG, form


def test_uuid_is_kept_and_uuid_only_items_pass(server: MediaHost) -> None:
    body = chat(
        {"type": "image_url", "image_url": {"url": server.url("img.png")}, "uuid": "abc"},
        {"type": "image_url", "image_url": None, "uuid": "abc"},
    )
    run(body, settings(**LOOPBACK))
    assert part_of(body, 1)["uuid"] == "abc"
    assert part_of(body, 2) == {"type": "image_url", "image_url": None, "uuid": "abc"}


def test_text_only_request_is_untouched() -> None:
    body = chat()
    before = copy.deepcopy(body)
    assert run(body, settings()) is False
    assert body == before


def frame_list(body: dict[str, Any]) -> list[Image.Image]:
    """The frames of the request's first item, which must be vLLM's frame-list data URL."""
    url = part_of(body)["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,"), url[:40]
    return [Image.open(io.BytesIO(base64.b64decode(e))) for e in url.split(",")[1:]]


# The samples are 20 frames at 10 fps (2 s), frame i a flat gray of i * 12.
@pytest.mark.parametrize(
    ("name", "fields", "media", "count"),
    [
        ("video.mp4", {"nframes": 8}, {}, 8),
        ("video.mp4", {"fps": 2.0}, {}, 4),  # 2 s at 2 fps
        ("video.mp4", {"fps": 3.0}, {}, 6),
        ("video.mp4", {"fps": 1.0}, {}, 4),  # at least 4 (qwen-vl-utils' FPS_MIN_FRAMES)
        ("video.mp4", {"fps": 2.5}, {}, 4),  # 5 frames rounded down to an even count
        ("video.mp4", {"fps": 2.0, "nframes": 6}, {}, 6),  # nframes wins
        ("video.mp4", {"nframes": 7}, {}, 7),  # as on a list of frames: not rounded
        ("video.mp4", {"nframes": 30}, {}, 20),  # never more than the video has
        ("video.mp4", {"fps": 10.0}, {"max_video_frame_images": 5}, 4),
        ("video.mp4", {"nframes": 12}, {"max_video_frame_images": 5}, 5),
        ("video.webm", {"nframes": 4}, {}, 4),
        ("video.webm", {"fps": 5.0}, {}, 10),
    ],
)
def test_qwen_video_file_is_sampled_into_frames(
    server: MediaHost,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    fields: dict[str, Any],
    media: dict[str, Any],
    count: int,
) -> None:
    """fps / nframes on a video file: vl-serve decodes the frames, no processor kwargs."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where the video is decoded from
    body = chat({"type": "video", "video": server.url(name), **fields})
    body["mm_processor_kwargs"] = {"fps": 1}  # the client's own stay as they are
    assert run(body, settings(**LOOPBACK, **media)) is True
    assert body["mm_processor_kwargs"] == {"fps": 1}
    frames = frame_list(body)
    assert len(frames) == count
    assert {f.size for f in frames} == {(64, 48)}
    assert list(tmp_path.iterdir()) == []  # the private temp folder is gone


def test_qwen_video_file_sampling_picks_the_right_frames(samples: dict[str, bytes]) -> None:
    body = chat(
        {"type": "video", "video": data_url("video/mp4", samples["video.mp4"]), "nframes": 4}
    )
    assert run(body, settings()) is True
    grays = [ImageStat.Stat(f.convert("L")).mean[0] for f in frame_list(body)]
    expected = [i * 12 for i in (0, 6, 13, 19)]  # 4 of 20, evenly, first and last included
    assert all(abs(g - e) < 8 for g, e in zip(grays, expected, strict=True)), grays
    assert "mm_processor_kwargs" not in body


def test_qwen_video_file_pixel_budget_resizes_the_frames(server: MediaHost) -> None:
    url = server.url("video.mp4")
    cases: list[tuple[dict[str, Any], int, tuple[int, int]]] = [
        ({"nframes": 2, "max_pixels": 32 * 24}, 2, (32, 24)),
        ({"nframes": 2, "min_pixels": 128 * 96}, 2, (128, 96)),
        ({"nframes": 2, "resized_width": 32}, 2, (32, 24)),
        ({"max_pixels": 32 * 24}, 4, (32, 24)),  # no fps / nframes: qwen-vl-utils' 2 fps
    ]
    for fields, count, size in cases:
        body = chat({"type": "video", "video": url, **fields})
        run(body, settings(**LOOPBACK))
        frames = frame_list(body)
        assert (len(frames), {f.size for f in frames}) == (count, {size}), fields
        assert "mm_processor_kwargs" not in body, fields


def test_qwen_video_as_frame_list(server: MediaHost, samples: dict[str, bytes]) -> None:
    frames = [server.url("frame0.png"), server.url("frame1.jpg"), server.url("frame2.png")]
    body = chat({"type": "video", "video": frames})
    run(body, settings(**LOOPBACK))
    url = part_of(body)["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,")
    encoded = url.split(",", 1)[1].split(",")
    assert [base64.b64decode(e) for e in encoded] == [
        samples["frame0.png"],
        samples["frame1.jpg"],
        samples["frame2.png"],
    ]
    # nframes samples the list evenly; resized_* resizes every frame.
    body = chat({"type": "video", "video": frames, "nframes": 2, "resized_width": 32})
    run(body, settings(**LOOPBACK))
    encoded = part_of(body)["video_url"]["url"].split(",", 1)[1].split(",")
    sizes = [Image.open(io.BytesIO(base64.b64decode(e))).size for e in encoded]
    assert sizes == [(32, 24), (32, 24)]


def test_vllm_frame_list_data_url_is_checked() -> None:
    frames = ",".join(base64.b64encode(f).decode() for f in (PNG, PNG))
    body = chat(video_part(f"data:video/jpeg;base64,{frames}"))
    run(body, settings())
    assert part_of(body)["video_url"]["url"].count(",") == 2


def test_detail_low_cuts_pixels_high_keeps_them(samples: dict[str, bytes]) -> None:
    url = data_url("image/png", samples["big.png"])
    low = chat(image_part(url, "low"))
    run(low, settings())
    out = Image.open(io.BytesIO(decode_data_url(part_of(low)["image_url"]["url"])))
    assert out.width * out.height <= 512 * 512
    assert out.size == (512, 512)
    high = chat(image_part(url, "high"))
    run(high, settings())
    assert decode_data_url(part_of(high)["image_url"]["url"]) == samples["big.png"]
    capped = chat(image_part(url, "high"))
    run(capped, settings(high_detail_max_pixels=256 * 256))
    out = Image.open(io.BytesIO(decode_data_url(part_of(capped)["image_url"]["url"])))
    assert out.size == (256, 256)
    # qwen-vl-utils per-image budget
    qwen = chat({"type": "image", "image": url, "max_pixels": 128 * 128})
    run(qwen, settings())
    out = Image.open(io.BytesIO(decode_data_url(part_of(qwen)["image_url"]["url"])))
    assert out.size == (128, 128)


def test_client_processor_kwargs_are_bounded() -> None:
    st = settings()
    ok = {"messages": [], "mm_processor_kwargs": {"fps": 1, "max_pixels": 1000}}
    assert sanitize_mm_kwargs(ok, st) is False
    cases: list[tuple[dict[str, Any], str]] = [
        ({"mm_processor_kwargs": {"do_resize": False}}, "mm_processor_kwargs.do_resize"),
        ({"mm_processor_kwargs": {"num_frames": 10_000}}, "mm_processor_kwargs.num_frames"),
        ({"mm_processor_kwargs": {"max_pixels": 10**12}}, "mm_processor_kwargs.max_pixels"),
        ({"mm_processor_kwargs": {"fps": "2"}}, "mm_processor_kwargs.fps"),
        ({"media_io_kwargs": {"video": {"num_frames": 10_000}}}, "media_io_kwargs"),
    ]
    for bad, field in cases:
        with pytest.raises(MediaError) as info:
            sanitize_mm_kwargs({"messages": [], **bad}, st)
        assert info.value.status == 400 and info.value.param == field, bad
    # per-video settings are checked on the item, and never become processor kwargs
    err = refused(chat({"type": "video", "video": data_url("video/mp4", b"x"), "fps": 99}), st)
    assert err.param == "messages[0].content[1].fps"
    err = refused(chat({"type": "video", "video": data_url("video/mp4", b"x"), "nframes": 1}), st)
    assert "nframes must be at least 2" in err.message


def test_body_limit_error() -> None:
    err = body_too_large(settings(max_request_bytes=2 * MB))
    assert err.status == 413 and "2 MB" in err.message and "media.max_request_bytes" in err.message


# ------------------------------------------------------------------------------------------
# Refused inputs: (case, part(server, tmp), settings, status, code, message fragment)

BOMB_MSG = "20000x20000 = 400000000 pixels, over the limit of 16777216 pixels"

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
    ("truncated image", lambda s: image_part(s.url("truncated.png")), LOOPBACK, 400, "truncated"),
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


# ------------------------------------------------------------------------------------------
# Local files


@pytest.fixture()
def media_root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "img.png").write_bytes(PNG)
    (root / "sub" / "img.png").write_bytes(PNG)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "linkdir").symlink_to(outside)
    (root / "media2").mkdir()
    os.mkfifo(root / "fifo.png")
    (tmp_path / "media-evil").mkdir()
    (tmp_path / "media-evil" / "x.png").write_bytes(PNG)
    return root


def test_file_urls(media_root: Path) -> None:
    st = settings(allowed_local_media_path=str(media_root))
    r = str(media_root)
    good = [f"file://{r}/img.png", f"file://{r}/sub/img.png", f"file:{r}/img.png"]
    for url in good:
        body = chat(image_part(url))
        run(body, st)
        assert decode_data_url(part_of(body)["image_url"]["url"]) == PNG, url
    bad = [
        (f"file://{r}/../secret/secret.png", "'..' segments"),
        (f"file://{r}/%2e%2e/secret/secret.png", "'..' segments"),
        (f"file://{r}/sub/%2E%2E/%2E%2E/secret/secret.png", "'..' segments"),
        (f"file://{r}/sub/..%2F..%2Fsecret/secret.png", "'..' segments"),
        (f"file://{r}/./img.png", "'..' segments"),
        (f"file://{r}/link.png", "outside the allowed folder"),
        (f"file://{r}/linkdir/secret.png", "outside the allowed folder"),
        (f"file://{r}-evil/x.png", "outside the allowed folder"),
        ("file:///etc/passwd", "outside the allowed folder"),
        (f"file://{r}", "outside the allowed folder"),
        (f"file://{r}/media2", "not a regular file"),
        (f"file://{r}/fifo.png", "not a regular file"),
        (f"file://{r}/missing.png", "no such file"),
        (f"file://localhost{r}/img.png", "must not name a host"),
        (f"file://evil.example.com{r}/img.png", "must not name a host"),
        (f"file://{r}/img.png%00.txt", "not valid"),
        (f"file://{r}/img.png?x=1", "query"),
    ]
    for url, fragment in bad:
        t0 = time.monotonic()
        err = refused(chat(image_part(url)), st)
        assert time.monotonic() - t0 < 2, url  # a FIFO must not block the read
        assert fragment in err.message, (url, err.message)
        assert r not in err.message


def test_file_size_limit(media_root: Path) -> None:
    (media_root / "big.bin").write_bytes(b"\0" * (2 * MB))
    st = settings(allowed_local_media_path=str(media_root), max_item_bytes=MB)
    err = refused(chat(image_part(f"file://{media_root}/big.bin")), st)
    assert err.status == 413 and "(media.max_item_bytes)" in err.message


# ------------------------------------------------------------------------------------------
# Address rules, resolver and DNS


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
        "::",
        "::1",
        "fe80::1",
        "fe80::1%1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address)


def test_allowed_domains(server: MediaHost) -> None:
    body = chat(image_part(server.url("img.png")))
    run(body, settings(allowed_domains=["127.0.0.1"], **LOOPBACK))
    assert decode_data_url(part_of(body)["image_url"]["url"]) == PNG
    policy = FetchPolicy.from_config(MediaConfig(allowed_domains=["xn--e1afmkfd.xn--p1ai"]))
    assert media_fetch.check_url("https://пример.рф/a.png", policy)[1] == "xn--e1afmkfd.xn--p1ai"
    with pytest.raises(media_fetch.Refusal):
        media_fetch.check_url("https://example.com/a.png", policy)


def test_networks_open_addresses() -> None:
    nets = FetchPolicy.from_config(MediaConfig(allowed_networks=["10.0.0.0/8"])).networks
    assert address_allowed("10.9.9.9", nets)
    assert address_allowed("::ffff:10.9.9.9", nets)
    assert not address_allowed("11.0.0.1", ()) or address_allowed("11.0.0.1")
    assert not address_allowed("192.168.0.1", nets)
    assert not address_allowed("127.0.0.1", nets)


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        pass


def test_resolver_drops_refused_addresses() -> None:
    fake = FakeResolver({"mixed.test": ["10.0.0.1", "93.184.215.14", "::1"], "priv.test": ["::1"]})
    policy = FetchPolicy.from_config(MediaConfig())
    resolver = GuardedResolver(policy, inner=fake)  # type: ignore[arg-type]
    answers = asyncio.run(resolver.resolve("mixed.test", 80))
    assert [a["host"] for a in answers] == ["93.184.215.14"]
    with pytest.raises(media_fetch._AddressRefused):
        asyncio.run(resolver.resolve("priv.test", 80))
    policy = FetchPolicy.from_config(MediaConfig(allowed_private_domains=["priv.test"]))
    private_ok = GuardedResolver(policy, inner=fake)  # type: ignore[arg-type]
    assert asyncio.run(private_ok.resolve("priv.test", 80))[0]["host"] == "::1"


def test_connection_goes_to_the_checked_address(
    server: MediaHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is resolved once, by the guarded resolver, and that answer is what gets connected.

    ``media.test`` exists only in the fake resolver: the fetch succeeds only because aiohttp
    connected to the address the guard returned, and is refused when that address is loopback
    and loopback is not allowed (the DNS-rebinding case: the name answers loopback at use time).
    """
    fake = FakeResolver({"media.test": ["127.0.0.1"]})
    monkeypatch.setattr(media_fetch, "ThreadedResolver", lambda: fake)
    url = server.url("img.png", "media.test")
    err = refused(chat(image_part(url)), settings())
    assert "non-public address" in err.message
    body = chat(image_part(url))
    run(body, settings(allowed_networks=["127.0.0.1/32"]))
    assert decode_data_url(part_of(body)["image_url"]["url"]) == PNG
    body = chat(image_part(url))
    run(body, settings(allowed_private_domains=["media.test"]))
    assert decode_data_url(part_of(body)["image_url"]["url"]) == PNG


# ------------------------------------------------------------------------------------------
# Time bounds and concurrency


def test_silent_and_dripping_hosts_fail_within_the_bound(server: MediaHost) -> None:
    st = settings(read_timeout_s=0.5, fetch_timeout_s=1.5, **LOOPBACK)
    for path in ("silent", "drip"):
        t0 = time.monotonic()
        err = refused(chat(image_part(server.url(path))), st)
        elapsed = time.monotonic() - t0
        assert err.code == "media_fetch_timeout", err.message
        assert elapsed < 2.5, (path, elapsed)


def test_slow_host_does_not_delay_other_requests(server: MediaHost, server2: MediaHost) -> None:
    st = settings(
        read_timeout_s=3,
        fetch_timeout_s=3,
        max_concurrent_fetches=3,
        max_fetches_per_host=2,
        **LOOPBACK,
    )

    async def scenario() -> tuple[float, list[Any]]:
        slow = [
            asyncio.create_task(prepare_request(chat(image_part(server.url("silent"))), st))
            for _ in range(6)
        ]
        await asyncio.sleep(0.2)  # the slow host now holds its slots; more are queued
        t0 = time.monotonic()
        body = chat(image_part(server2.url("img.png")))
        await prepare_request(body, st)
        fast = time.monotonic() - t0
        results = await asyncio.gather(*slow, return_exceptions=True)
        return fast, results

    fast, results = asyncio.run(scenario())
    assert fast < 0.5, fast
    assert all(isinstance(r, MediaError) and r.code == "media_fetch_timeout" for r in results)


# ------------------------------------------------------------------------------------------
# Bombs and oversized downloads: refused fast, memory flat


def _measure(body: dict[str, Any], st: dict[str, Any]) -> tuple[MediaError, float, int, int]:
    import psutil

    rss0 = psutil.Process().memory_info().rss
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(MediaError) as info:
            run(body, st)
        elapsed = time.monotonic() - t0
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss = psutil.Process().memory_info().rss - rss0
    return info.value, elapsed, peak, rss


def test_pixel_bomb_refused_fast_with_flat_memory(
    server: MediaHost, samples: dict[str, bytes]
) -> None:
    bomb = samples["bomb.png"]
    for label, url in [
        ("http", server.url("bomb.png")),
        ("data", data_url("image/png", bomb)),
    ]:
        err, elapsed, peak, rss = _measure(chat(image_part(url)), settings(**LOOPBACK))
        print(
            f"\npixel bomb ({label}): {len(bomb) / 1024:.0f} KB file, 20000x20000 = 400 MP; "
            f"refused in {elapsed * 1000:.1f} ms, tracemalloc peak {peak / MB:.2f} MB, "
            f"RSS delta {rss / MB:.1f} MB"
        )
        assert BOMB_MSG in err.message
        assert elapsed < 1.0
        # Decoding it would allocate 400 MB (mode "1" is a byte per pixel).
        assert peak < 8 * MB


def test_oversized_download_refused_fast_with_flat_memory(server: MediaHost) -> None:
    for path in ("big", "big-cl"):
        server.sent_big = 0
        body = chat(image_part(server.url(f"{path}?bytes={100 * MB}")))
        err, elapsed, peak, rss = _measure(body, settings(**LOOPBACK))
        time.sleep(0.2)
        print(
            f"\noversized download ({path}, 100 MB offered, 10 MB limit): refused in "
            f"{elapsed * 1000:.1f} ms, tracemalloc peak {peak / MB:.2f} MB, RSS delta "
            f"{rss / MB:.1f} MB, server got rid of {server.sent_big / MB:.1f} MB"
        )
        assert err.status == 413
        assert elapsed < 1.0
        assert peak < 25 * MB  # the limit plus a chunk, never the whole 100 MB
        assert server.sent_big < 40 * MB  # we stopped reading: the server could not send it all


def test_oversized_base64_refused_before_decoding() -> None:
    payload = "A" * (100 * MB)
    body = chat(image_part("data:image/png;base64," + payload))
    err, elapsed, peak, _rss = _measure(body, settings())
    print(
        f"\noversized base64 (75 MB decoded): refused in {elapsed * 1000:.1f} ms, "
        f"tracemalloc peak {peak / MB:.2f} MB"
    )
    assert err.status == 413 and elapsed < 1.0 and peak < 8 * MB


# ------------------------------------------------------------------------------------------
# data: URL images in vLLM's own form: checked from their length and header, passed on as sent


def jpeg_with_big_exif() -> bytes:
    """A JPEG whose 60 KB EXIF block puts its size header past the part decoded for the check."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "JPEG", exif=b"Exif\x00\x00" + bytes(60_000))
    return buf.getvalue()


def jpeg_with_exif(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "JPEG", exif=b"Exif\x00\x00" + bytes(size))
    return buf.getvalue()


def _segment_at(data: bytes, marker: int) -> tuple[int, int]:
    """(start, end) of the first JPEG segment with ``marker`` (walked from SOI)."""
    pos = 2
    while data[pos + 1] != marker:
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return pos, pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]


def jpeg_two_sofs(first: tuple[int, int], last: tuple[int, int]) -> bytes:
    """A JPEG header with two SOF segments: Pillow (and vLLM) take the size of the last one."""
    data = image_bytes("JPEG", first)
    start, end = _segment_at(data, 0xC0)
    sof = bytearray(data[start:end])
    struct.pack_into(">HH", sof, 5, last[1], last[0])
    return data[:end] + bytes(sof) + data[end:]


def png_two_ihdrs(first: tuple[int, int], last: tuple[int, int]) -> bytes:
    """A PNG with a second IHDR chunk before its IDAT: Pillow takes the size of the last one."""
    data = image_bytes("PNG", first)
    ihdr = bytearray(data[12:29])
    struct.pack_into(">II", ihdr, 4, *last)
    chunk = data[8:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return data[:33] + chunk + data[33:]


def wrapped(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


KEPT = [
    pytest.param("image/png", PNG, id="png"),
    pytest.param("image/jpeg", JPEG, id="jpeg"),
    pytest.param("image/gif", image_bytes("GIF"), id="gif"),
    pytest.param("image/webp", image_bytes("WEBP"), id="webp"),
    pytest.param("image/bmp", image_bytes("BMP"), id="bmp"),
    pytest.param("image/png", JPEG, id="declared-type-differs"),  # vLLM reads the bytes' format
    pytest.param("image/png", image_bytes("PNG", (4000, 3000)), id="big-png"),
    # Header past the first 1 KB decoded (the quick look), within the 3 KB of the next try.
    pytest.param("image/jpeg", jpeg_with_exif(2_000), id="jpeg-exif-2k"),
    # Header past the first 3 KB decoded, within the 48 KB of the last try.
    pytest.param("image/jpeg", jpeg_with_exif(20_000), id="jpeg-exif-20k"),
    # An irregular header (fill bytes before a marker) inside the quick look: Pillow decides.
    pytest.param("image/jpeg", JPEG[:2] + b"\xff\xff" + JPEG[2:], id="jpeg-fill-bytes"),
    # Pixels are not decoded here: vLLM decodes them once and answers a truncated stream itself.
    pytest.param(
        "image/png", image_bytes("PNG", (256, 256), (1, 2, 3))[:300], id="truncated-pixels"
    ),
]


@pytest.mark.parametrize(("mime", "data"), KEPT)
def test_data_url_image_is_checked_and_kept_as_sent(mime: str, data: bytes) -> None:
    part = image_part(data_url(mime, data))
    body = chat(copy.deepcopy(part))
    assert run(body, settings()) is False
    assert part_of(body) == part


REWRITTEN = [
    # (id, url, declared type vLLM gets)
    pytest.param(data_url("application/octet-stream", PNG), "image/png", PNG, id="not-image-type"),
    pytest.param("data:image/png;base64," + wrapped(PNG), "image/png", PNG, id="line-breaks"),
    pytest.param(
        data_url("image/jpeg", jpeg_with_big_exif()), "image/jpeg", None, id="long-header"
    ),
]


@pytest.mark.parametrize(("url", "mime", "data"), REWRITTEN)
def test_unusual_data_url_image_gets_the_full_check(
    url: str, mime: str, data: bytes | None
) -> None:
    body = chat(image_part(url))
    assert run(body, settings()) is True
    out = part_of(body)["image_url"]["url"]
    assert out.startswith(f"data:{mime};base64,")
    assert decode_data_url(out) == (data if data is not None else decode_data_url(url))


# fmt: off
REFUSED_DATA = [
    # (url, media settings, status, message part)
    pytest.param(data_url("image/png", pixel_bomb_png()), {}, 400, BOMB_MSG, id="pixel-bomb-header"),
    pytest.param(data_url("image/png", image_bytes("PNG", (4000, 3000))), {"max_item_bytes": 4096}, 413, "the decoded base64 item is larger than the 4 KB limit (media.max_item_bytes)", id="over-max-item-bytes"),
    pytest.param(data_url("image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2), {}, 400, "truncated or corrupt (PNG)", id="unreadable-header"),
    pytest.param(data_url("image/png", bytes(range(256)) * 2), {}, 400, "not in a supported image format", id="not-an-image"),
    # The size Pillow and vLLM would use is the last SOF/IHDR, not the first.
    pytest.param(data_url("image/jpeg", jpeg_two_sofs((16, 16), (5000, 5000))), {}, 400, "5000x5000 = 25000000 pixels", id="jpeg-second-sof"),
    pytest.param(data_url("image/png", png_two_ihdrs((16, 16), (5000, 5000))), {}, 400, "5000x5000 = 25000000 pixels", id="png-second-ihdr"),
    pytest.param(data_url("image/png", image_bytes("PNG", (8, 8))), {"min_image_side": 16}, 400, "each side must be at least 16 pixels", id="too-small"),
]
# fmt: on


@pytest.mark.parametrize(("url", "media", "status", "message"), REFUSED_DATA)
def test_data_url_image_refused_from_its_header(
    url: str, media: dict[str, Any], status: int, message: str
) -> None:
    err = refused(chat(image_part(url)), settings(**media))
    assert err.status == status
    assert message in err.message, err.message
    assert err.param is not None and "content[1]" in err.param


def test_plain_jpeg_and_png_headers_settle_in_the_quick_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A regular JPEG/PNG header is read from the first 1 KB of the image alone (base64
    decoding costs ~3 ns a character), without asking Pillow."""
    import binascii

    from vl_serve import media, media_probe

    decoded: list[int] = []
    real = binascii.a2b_base64

    def a2b(text: str, **kw: Any) -> bytes:
        decoded.append(len(text))
        return real(text, **kw)

    def no_pillow(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("Pillow asked")

    monkeypatch.setattr(media.binascii, "a2b_base64", a2b)
    monkeypatch.setattr(media_probe.Image, "open", no_pillow)
    noise = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noise, "JPEG")
    for mime, data in (
        ("image/png", image_bytes("PNG", (4000, 3000))),
        ("image/jpeg", noise.getvalue()),
    ):
        assert len(data) > 2000
        decoded.clear()
        part = image_part(data_url(mime, data))
        body = chat(copy.deepcopy(part))
        assert run(body, settings()) is False
        assert part_of(body) == part
        assert decoded == [media._QUICK_HEAD_CHARS], decoded


def test_inline_images_kept_as_sent_never_yield_the_event_loop() -> None:
    """The common request (base64 images in vLLM's form) is checked without suspending: other
    requests' streams are not delayed behind it, and its own time to first token is not either."""
    body = chat(image_part(data_url("image/png", PNG)), image_part(data_url("image/jpeg", JPEG)))
    coro = prepare_request(body, settings())
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # runs to the end in one step, or the test fails here
    assert done.value.value is False
    assert body == chat(
        image_part(data_url("image/png", PNG)), image_part(data_url("image/jpeg", JPEG))
    )


# --- exact_size: the header walk that stands in for Pillow's open -----------------------------


def _pillow_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            return im.size
    except Exception:
        return None


def _encoded_variants() -> list[tuple[str, bytes]]:
    out = []
    for size in [(64, 48), (1, 1), (3, 700), (640, 480)]:
        for mode in ("RGB", "L", "CMYK"):
            for kw in ({}, {"progressive": True}, {"exif": b"Exif\x00\x00" + bytes(300)}):
                buf = io.BytesIO()
                Image.new(mode, size, 90).save(buf, "JPEG", **kw)
                out.append(("JPEG", buf.getvalue()))
        for mode in ("RGB", "RGBA", "L", "P", "1"):
            for kw in ({}, {"icc_profile": bytes(600)}, {"optimize": True}):
                buf = io.BytesIO()
                Image.new(mode, size).save(buf, "PNG", **kw)
                out.append(("PNG", buf.getvalue()))
    return out


def test_exact_size_reads_every_regular_header_as_pillow_does() -> None:
    from vl_serve.media.probe import exact_size

    for fmt, data in _encoded_variants():
        assert exact_size(data, fmt) == _pillow_size(data, fmt), (fmt, data[:40].hex())


# fmt: off
IRREGULAR = [
    # (format, bytes): headers exact_size leaves to Pillow
    pytest.param("JPEG", jpeg_two_sofs((16, 16), (5000, 5000)), id="two-sofs"),
    pytest.param("PNG", png_two_ihdrs((16, 16), (5000, 5000)), id="two-ihdrs"),
    pytest.param("JPEG", JPEG[:2] + b"\xff" + JPEG[2:], id="fill-byte"),
    pytest.param("JPEG", JPEG[:2] + b"\xff\xd0" + JPEG[2:], id="rst-marker"),
    pytest.param("JPEG", JPEG[:_segment_at(JPEG, 0xDB)[0]] + b"\x00" + JPEG[_segment_at(JPEG, 0xDB)[0]:], id="junk-byte"),
    pytest.param("JPEG", JPEG[:_segment_at(JPEG, 0xC0)[1] - 1], id="cut-in-sof"),
    pytest.param("JPEG", JPEG[:_segment_at(JPEG, 0xDA)[0]], id="no-sos"),
    pytest.param("PNG", PNG[:40], id="png-cut-before-idat"),
]
# fmt: on


@pytest.mark.parametrize(("fmt", "data"), IRREGULAR)
def test_exact_size_leaves_irregular_headers_to_pillow(fmt: str, data: bytes) -> None:
    from vl_serve.media.probe import exact_size

    assert exact_size(data, fmt) is None


def test_exact_size_never_disagrees_with_pillow_on_mutated_headers() -> None:
    """Random byte edits near the start of real headers: whenever exact_size gives a size,
    Pillow's open gives the same one or fails (and then vLLM refuses the image itself)."""
    import random

    from vl_serve.media.probe import exact_size

    rng = random.Random(5)
    bases = _encoded_variants()
    accepted = 0
    for _ in range(4000):
        fmt, base = rng.choice(bases)
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(2, min(len(data), 400))
            edit = rng.random()
            if edit < 0.5:
                data[i] = rng.randrange(256)
            elif edit < 0.75:
                marker = rng.choice([0xC0, 0xC2, 0xFF, 0xD0, 0x00, 0xDA, 0xE1])
                data[i:i] = bytes([0xFF, marker]) + bytes(rng.randrange(12))
            else:
                del data[i : i + rng.randrange(1, 8)]
        size = exact_size(bytes(data), fmt)
        if size is not None:
            accepted += 1
            pillow = _pillow_size(bytes(data), fmt)
            assert pillow in (None, size), (fmt, size, pillow, bytes(data[:80]).hex())
    assert accepted > 1000  # the property was exercised, not vacuously true
