"""Media end to end: every accepted form and every refusal through a real vl-serve/vLLM server.

One server for the module (the tiny Qwen3-VL on CPU), the real OpenAI SDK as client. Each table
row is sent twice, non-streaming and streaming: a refusal must come back with the same status and
an OpenAI-shaped error body before any chunk, and an accepted item must reach the model (its
``usage.prompt_tokens`` are checked against a reference).

Network rule: everything this module connects to listens on 127.0.0.1. Rows naming other
addresses (127.0.0.2, ::1, 169.254.169.254) are refused before any connection is tried, which
their message shows (an address refusal, not a connection failure).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from tests.helpers.media_files import data_url, mp4_bytes, pixel_bomb_png, png_bytes, video_bytes
from tests.helpers.media_hosts import MediaHost
from tests.helpers.photos import photo_jpeg
from tests.helpers.processors import image_tokens, video_frames, video_tokens
from tests.helpers.vlserver import VLServer, tiny_config
from vl_serve.builtin.registry import model_dir
from vl_serve.config import VLServeConfig
from vl_serve.media import MediaError, prepare_request
from vl_serve.runtime import runtime_sections

pytestmark = pytest.mark.e2e

MODEL = "tiny-qwen3-vl"
ITEM_LIMIT = 256 * 1024  # media.max_item_bytes: small, so 10x oversized stays fast
READ_TIMEOUT_S = 1.0
FETCH_TIMEOUT_S = 2.0
# The tiny model's processor takes 64x64 .. 256x256 pixels per image: a 512x512 image costs the
# 256x256 maximum (64 tokens) at detail high, and 96x96 (9 tokens) at detail low.
LOW_DETAIL_PIXELS = 96 * 96
MAX_ITEMS = 3
QUESTION = {"type": "text", "text": "What is this?"}
# long.mp4: 40 frames at 2 fps (20 s), so its frames' real times (up to 19.5 s) are written
# with more digits than vLLM's default times for a list of frames (1 fps from 0 s).
LONG_FRAMES, LONG_FPS = 40, 2.0


# ------------------------------------------------------------------------------------------
# Samples


def image_bytes(fmt: str, size: int = 64, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    if fmt == "GIF":  # two frames: the first one is the image
        frames = [Image.new("RGB", (size, size), color), Image.new("RGB", (size, size), (0, 0, 9))]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    else:
        Image.new("RGB", (size, size), color).save(buf, fmt)
    return buf.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>'


@pytest.fixture(scope="module")
def samples() -> dict[str, bytes]:
    return {
        "red.png": png_bytes(64, 64),
        "img.jpg": image_bytes("JPEG"),
        "img.bmp": image_bytes("BMP"),
        "img.webp": image_bytes("WEBP"),
        "img.gif": image_bytes("GIF"),
        "big.png": png_bytes(512, 512, (20, 160, 20)),
        "tiny.png": png_bytes(1, 1),
        "truncated.png": image_bytes("PNG", 256, (1, 2, 3))[:300],
        "truncated.jpg": photo_jpeg(256, 192)[:6000],  # the header whole, the scan cut
        # A 12 MP photo (smooth, to stay under media.max_item_bytes), over the model's budget.
        "photo.jpg": photo_jpeg(4032, 3024, seed=7, noise=0.0, quality=70),
        "garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
        "img.tiff": image_bytes("TIFF"),
        "img.svg": SVG,
        "bomb.png": pixel_bomb_png(),  # ~48 KB, 20000x20000
        "clip.mp4": mp4_bytes(frames=8, size=64),
        "long.mp4": mp4_bytes(frames=LONG_FRAMES, size=64, fps=LONG_FPS),
        "clip.webm": video_bytes("webm", frames=8, size=(64, 64)),
        **{f"frame{i}.png": png_bytes(64, 64, (i * 30, 40, 90)) for i in range(8)},
    }


# ------------------------------------------------------------------------------------------
# A loopback media host with misbehaviours (127.0.0.1 only)


@pytest.fixture(scope="module")
def host(samples: dict[str, bytes]) -> Iterator[MediaHost]:
    srv = MediaHost(
        samples, silent_s=FETCH_TIMEOUT_S * 4, drip_s=READ_TIMEOUT_S / 2, chunk_bytes=64 * 1024
    )
    yield srv
    srv.close()


@dataclass
class Ctx:
    host: MediaHost
    allowed: Path  # media.allowed_local_media_path
    outside: Path  # a folder next to it that must stay unreadable
    samples: dict[str, bytes]


@pytest.fixture(scope="module")
def ctx(host: MediaHost, samples: dict[str, bytes]) -> Iterator[Ctx]:
    with tempfile.TemporaryDirectory(prefix="vlserve-media-e2e-") as tmp:
        allowed, outside = Path(tmp) / "allowed", Path(tmp) / "outside"
        allowed.mkdir()
        outside.mkdir()
        for name in ("red.png", "img.bmp", "clip.mp4"):
            (allowed / name).write_bytes(samples[name])
        (outside / "secret.png").write_bytes(samples["red.png"])
        (allowed / "link.png").symlink_to(outside / "secret.png")
        (allowed / "linkdir").symlink_to(outside)
        yield Ctx(host, allowed, outside, samples)


@pytest.fixture(scope="module")
def server(ctx: Ctx) -> Iterator[VLServer]:
    config = tiny_config(
        limit_mm_per_prompt={"image": 4, "video": 1},
        media={
            "allowed_local_media_path": str(ctx.allowed),
            "allowed_networks": ["127.0.0.1/32"],  # this module's loopback media host only
            "max_redirects": 2,  # each hop is checked again
            "max_item_bytes": ITEM_LIMIT,
            "max_items_per_request": MAX_ITEMS,
            "connect_timeout_s": 1.0,
            "read_timeout_s": READ_TIMEOUT_S,
            "fetch_timeout_s": FETCH_TIMEOUT_S,
            "low_detail_max_pixels": LOW_DETAIL_PIXELS,
        },
    )
    srv = VLServer(config, name="media")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def client(server: VLServer) -> openai.OpenAI:
    return server.client()


# ------------------------------------------------------------------------------------------
# Helpers


def send(client: openai.OpenAI, content: Any, *, stream: bool, **kw: Any) -> int:
    """Send one chat request; return its usage.prompt_tokens (streamed: from the usage chunk)."""
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 1,
        "temperature": 0,
        **kw,
    }
    if not stream:
        resp = client.chat.completions.create(**args)
        assert resp.choices[0].finish_reason in ("length", "stop")
        return int(resp.usage.prompt_tokens)
    chunks = list(
        client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True})
    )
    assert chunks and chunks[-1].usage is not None
    return int(chunks[-1].usage.prompt_tokens)


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def assert_clean_error(exc: openai.APIStatusError, ctx: Ctx) -> dict[str, Any]:
    """The body is exactly the OpenAI error shape and shows nothing of the server's insides."""
    assert exc.response.headers["content-type"].startswith("application/json")
    raw = exc.response.text
    body = exc.response.json()
    assert set(body) == {"error"}, raw
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, raw
    assert isinstance(err["message"], str) and err["message"], raw
    assert isinstance(err["type"], str) and err["type"], raw
    assert err["param"] is None or isinstance(err["param"], str), raw
    # vl-serve's refusals carry a machine-readable code; vLLM's own answers its status.
    code = err["code"]
    assert code == exc.status_code or (isinstance(code, str) and code.isidentifier()), raw
    for leak in (
        "Traceback",
        'File "',
        " object at ",
        "site-packages",
        str(ctx.allowed.parent),
        "/tmp/",
        "secret.png",
        "/etc/",
        f":{ctx.host.port}",
        "169.254",
    ):
        assert leak not in raw, (leak, raw)
    assert not _ADDRESS.search(raw), raw
    return err


def refusal(
    client: openai.OpenAI, content: Any, ctx: Ctx, *, stream: bool, **kw: Any
) -> tuple[openai.APIStatusError, dict[str, Any], float]:
    start = time.perf_counter()
    with pytest.raises(openai.APIStatusError) as info:
        result = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": content}],
            max_tokens=1,
            stream=stream,
            **kw,
        )
        if stream:  # would only get here if the refusal came inside the stream
            chunks = list(result)  # type: ignore[arg-type]
            pytest.fail(f"refusal came after {len(chunks)} streamed chunks")
    elapsed = time.perf_counter() - start
    return info.value, assert_clean_error(info.value, ctx), elapsed


def image_url(url: str, detail: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"url": url}
    if detail is not None:
        inner["detail"] = detail
    return {"type": "image_url", "image_url": inner}


def b64(c: Ctx, name: str, mime: str = "image/png") -> str:
    return data_url(c.samples[name], mime)


STREAM = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])


@pytest.fixture(scope="module")
def reference(client: openai.OpenAI, ctx: Ctx) -> dict[str, int]:
    """Prompt tokens of the question alone and with one 64x64 image (base64)."""
    return {
        "text": send(client, [QUESTION], stream=False),
        "image64": send(client, [image_url(b64(ctx, "red.png")), QUESTION], stream=False),
    }


# ------------------------------------------------------------------------------------------
# Accepted forms

Part = Callable[[Ctx], Any]
ACCEPTED_IMAGES: list[tuple[str, Part]] = [
    ("image_url-string-http", lambda c: {"type": "image_url", "image_url": c.host.url("red.png")}),
    ("image_url-object-http-detail-auto", lambda c: image_url(c.host.url("red.png"), "auto")),
    ("image_url-data-base64", lambda c: image_url(b64(c, "red.png"))),
    ("image_url-file-in-folder", lambda c: image_url((c.allowed / "red.png").as_uri())),
    # The documented rule: allowed_networks is about addresses; a name that resolves only to
    # allowed addresses is fetched (the connection goes to the checked address).
    ("image_url-localhost-name", lambda c: image_url(c.host.url("red.png", "localhost"))),
    ("image_url-redirect-to-loopback", lambda c: image_url(c.host.url("redirect?to=/red.png"))),
    ("qwen-image-http", lambda c: {"type": "image", "image": c.host.url("red.png")}),
    ("qwen-image-bare-path", lambda c: {"type": "image", "image": str(c.allowed / "red.png")}),
    ("qwen-image-relative-path", lambda c: {"type": "image", "image": "red.png"}),
    ("qwen-image-file-url", lambda c: {"type": "image", "image": (c.allowed / "red.png").as_uri()}),
    ("qwen-image-data-url", lambda c: {"type": "image", "image": b64(c, "red.png", "image")}),
    ("jpeg-http", lambda c: image_url(c.host.url("img.jpg"))),
    ("bmp-file", lambda c: image_url((c.allowed / "img.bmp").as_uri())),
    ("webp-data", lambda c: image_url(b64(c, "img.webp", "image/webp"))),
    ("gif-first-frame-http", lambda c: image_url(c.host.url("img.gif"))),
]


@STREAM
@pytest.mark.parametrize(
    "row", [r[1] for r in ACCEPTED_IMAGES], ids=[r[0] for r in ACCEPTED_IMAGES]
)
def test_accepted_image(
    client: openai.OpenAI, ctx: Ctx, reference: dict[str, int], row: Part, stream: bool
) -> None:
    # Every 64x64 image costs the same tokens as the base64 reference, whatever its form.
    assert send(client, [row(ctx), QUESTION], stream=stream) == reference["image64"]


def frames(c: Ctx, n: int) -> list[str]:
    return [b64(c, f"frame{i}.png") for i in range(n)]


ACCEPTED_VIDEOS: list[tuple[str, Part]] = [
    (
        "video_url-mp4-data",
        lambda c: {"type": "video_url", "video_url": {"url": b64(c, "clip.mp4", "video/mp4")}},
    ),
    ("qwen-video-mp4-data", lambda c: {"type": "video", "video": b64(c, "clip.mp4", "video/mp4")}),
    ("qwen-video-mp4-http", lambda c: {"type": "video", "video": c.host.url("clip.mp4")}),
    ("qwen-video-mp4-path", lambda c: {"type": "video", "video": str(c.allowed / "clip.mp4")}),
    (
        "video_url-webm-data",
        lambda c: {"type": "video_url", "video_url": {"url": b64(c, "clip.webm", "video/webm")}},
    ),
    ("qwen-video-frame-list", lambda c: {"type": "video", "video": frames(c, 4)}),
]


@STREAM
@pytest.mark.parametrize(
    "row", [r[1] for r in ACCEPTED_VIDEOS], ids=[r[0] for r in ACCEPTED_VIDEOS]
)
def test_accepted_video(
    client: openai.OpenAI, ctx: Ctx, reference: dict[str, int], row: Part, stream: bool
) -> None:
    tokens = send(client, [row(ctx), QUESTION], stream=stream)
    assert tokens >= reference["text"] + 8  # at least two 64x64 temporal patches' tokens


@STREAM
def test_frame_list_nframes_samples_the_list(client: openai.OpenAI, ctx: Ctx, stream: bool) -> None:
    """nframes on a list of frames is applied by vl-serve itself (no processor kwargs needed)."""
    full = send(client, [{"type": "video", "video": frames(ctx, 8)}, QUESTION], stream=stream)
    sampled = send(
        client, [{"type": "video", "video": frames(ctx, 8), "nframes": 4}, QUESTION], stream=stream
    )
    four = send(client, [{"type": "video", "video": frames(ctx, 4)}, QUESTION], stream=stream)
    assert sampled == four < full


@STREAM
def test_video_file_fps_nframes_are_sampled_by_vl_serve(
    client: openai.OpenAI, ctx: Ctx, reference: dict[str, int], stream: bool
) -> None:
    """fps / nframes on a video file: vl-serve decodes those frames and sends vLLM the frame-list
    form, so vLLM needs no per-request mm_processor_kwargs (which it would refuse)."""
    mp4 = b64(ctx, "clip.mp4", "video/mp4")  # 8 frames at 4 fps: 2 s

    def tokens(video: Any, **fields: Any) -> int:
        return send(client, [{"type": "video", "video": video, **fields}, QUESTION], stream=stream)

    eight = tokens(mp4, nframes=8)
    four = tokens(mp4, nframes=4)
    print(f"\nclip.mp4 prompt tokens: nframes 8 -> {eight}, nframes 4 -> {four}")
    assert reference["text"] + 8 <= four < eight
    assert tokens(ctx.host.url("clip.mp4"), nframes=4) == four
    assert tokens(str(ctx.allowed / "clip.mp4"), fps=1.0) == four  # 2 s at 1 fps: at least 4
    assert tokens(mp4, nframes=8, max_pixels=32 * 32) < eight  # frames resized, fewer tokens


def _default_times(n: int) -> dict[str, Any]:
    """vLLM's metadata for a list of ``n`` frames without media_io_kwargs: 1 fps from 0 s."""
    return {"fps": 1.0, "frames_indices": list(range(n)), "total_num_frames": n, "duration": n}


# (id, part fields, the frames of long.mp4 vl-serve samples for them)
LONG_SAMPLES = [
    ("nframes-4-data", {"nframes": 4}, [0, 13, 26, 39]),
    ("nframes-8-data", {"nframes": 8}, [0, 6, 11, 17, 22, 28, 33, 39]),
    ("fps-0.5-data", {"fps": 0.5}, [0, 4, 9, 13, 17, 22, 26, 30, 35, 39]),  # 20 s at 0.5 fps
    ("nframes-8-http", {"nframes": 8, "by_url": True}, [0, 6, 11, 17, 22, 28, 33, 39]),
]


@STREAM
@pytest.mark.parametrize(
    ("fields", "indices"), [r[1:] for r in LONG_SAMPLES], ids=[r[0] for r in LONG_SAMPLES]
)
def test_sampled_video_file_costs_what_the_processor_gives_its_real_times(
    client: openai.OpenAI,
    ctx: Ctx,
    reference: dict[str, int],
    fields: dict[str, Any],
    indices: list[int],
    stream: bool,
) -> None:
    """A video file sampled by vl-serve reaches the model with its frames' real times: its
    prompt costs what the tiny model's HF processor computes for those frames with the file's
    metadata, not what it computes for vLLM's default times of a list of frames."""
    folder = model_dir(MODEL)
    data = ctx.samples["long.mp4"]
    pixels = video_frames(data, indices)
    real = {
        "fps": LONG_FPS,
        "frames_indices": indices,
        "total_num_frames": LONG_FRAMES,
        "duration": LONG_FRAMES / LONG_FPS,
    }
    expected = video_tokens(folder, pixels, real)
    default = video_tokens(folder, pixels, _default_times(len(indices)))
    assert expected != default  # the row tells the real times from the default ones
    fields = dict(fields)
    url = ctx.host.url("long.mp4") if fields.pop("by_url", False) else data_url(data, "video/mp4")
    part = {"type": "video", "video": url, **fields}
    assert send(client, [part, QUESTION], stream=stream) == reference["text"] + expected
    # The same frames as the client's own list keep vLLM's default times.
    listed = [data_url(png_bytes_of(frame)) for frame in pixels]
    assert send(client, [{"type": "video", "video": listed}, QUESTION], stream=stream) == (
        reference["text"] + default
    )


def png_bytes_of(frame: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "PNG")
    return buf.getvalue()


# (id, request fields, the param refused): the module's config leaves
# media.trust_request_mm_kwargs off, and media_io_kwargs are never a client's to set.
CLIENT_KWARGS = [
    ("mm_processor_kwargs-untrusted", {"mm_processor_kwargs": {"fps": 1}}, "mm_processor_kwargs"),
    ("media_io_kwargs", {"media_io_kwargs": {"video": {"fps": 30, "num_frames": 2}}}, "media_io_kwargs"),
]  # fmt: skip


@STREAM
@pytest.mark.parametrize(
    ("extra", "param"), [r[1:] for r in CLIENT_KWARGS], ids=[r[0] for r in CLIENT_KWARGS]
)
def test_client_mm_kwargs_refused(
    client: openai.OpenAI, ctx: Ctx, extra: dict[str, Any], param: str, stream: bool
) -> None:
    part = {"type": "video", "video": b64(ctx, "clip.mp4", "video/mp4"), "nframes": 4}
    exc, err, _elapsed = refusal(client, [part, QUESTION], ctx, stream=stream, extra_body=extra)
    assert exc.status_code == 400, err
    assert (err["param"], err["code"]) == (param, "invalid_parameter"), err


@STREAM
def test_detail_low_costs_fewer_tokens(
    client: openai.OpenAI, ctx: Ctx, reference: dict[str, int], stream: bool
) -> None:
    url = b64(ctx, "big.png")  # 512x512
    tokens = {
        detail: send(client, [image_url(url, detail), QUESTION], stream=stream)
        for detail in ("low", "high", "auto")
    }
    text = reference["text"]
    print(f"\ndetail tokens for a 512x512 image (question alone: {text}): {tokens}")
    # high/auto: the processor's own cap, 256x256 = 64 tokens; low: 96x96 = 9 tokens.
    assert tokens["high"] == tokens["auto"]
    assert tokens["low"] < tokens["high"]
    assert tokens["high"] - tokens["low"] == 64 - 9


@STREAM
def test_photo_over_the_budget_costs_the_processors_own_tokens(
    client: openai.OpenAI, ctx: Ctx, reference: dict[str, int], stream: bool
) -> None:
    """A 4032x3024 JPEG by URL is presized by vl-serve to the processor's own target: its prompt
    costs what the tiny model's HF processor computes for the original image."""
    folder = model_dir(MODEL)
    photo = image_tokens(folder, ctx.samples["photo.jpg"])
    small = image_tokens(folder, ctx.samples["red.png"])
    assert photo > small
    tokens = send(client, [image_url(ctx.host.url("photo.jpg")), QUESTION], stream=stream)
    assert tokens == reference["image64"] - small + photo


# ------------------------------------------------------------------------------------------
# Refusals

# (id, content parts, status, message fragment)
Row = tuple[str, Callable[[Ctx], list[Any]], int, str]
NON_PUBLIC = "non-public address"
OUTSIDE = "outside the allowed folder"
DOTS = "must not contain '.' or '..' segments"
MB10 = 10 * ITEM_LIMIT

# fmt: off
REFUSED: list[Row] = [
    # addresses (all refused before any connection: the message is not a connect failure)
    ("loopback-not-allowed-127.0.0.2", lambda c: [image_url(c.host.url("red.png", "127.0.0.2"))], 400, NON_PUBLIC),
    ("loopback-ipv6-::1", lambda c: [image_url(c.host.url("red.png", "[::1]"))], 400, NON_PUBLIC),
    ("metadata-169.254.169.254", lambda c: [image_url("http://169.254.169.254/latest/meta-data/")], 400, NON_PUBLIC),
    ("legacy-numeric-host", lambda c: [image_url(c.host.url("red.png", "2130706433"))], 400, "canonical dotted-decimal"),
    ("redirect-to-metadata", lambda c: [image_url(c.host.url("redirect?to=http://169.254.169.254/"))], 400, NON_PUBLIC),
    ("redirect-to-127.0.0.2", lambda c: [image_url(c.host.url("redirect?to=http://127.0.0.2:9/x.png"))], 400, NON_PUBLIC),
    ("redirect-to-file", lambda c: [image_url(c.host.url("redirect?to=file:///etc/passwd"))], 400, "only http, https"),
    ("scheme-ftp", lambda c: [image_url("ftp://127.0.0.1/red.png")], 400, "only http, https, data and file"),
    # local files
    ("file-outside-folder", lambda c: [image_url((c.outside / "secret.png").as_uri())], 400, OUTSIDE),
    ("file-dotdot", lambda c: [image_url(f"file://{c.allowed}/../outside/secret.png")], 400, DOTS),
    ("file-dotdot-percent-encoded", lambda c: [image_url(f"file://{c.allowed}/%2e%2e/outside/secret.png")], 400, DOTS),
    ("file-symlink-out", lambda c: [image_url((c.allowed / "link.png").as_uri())], 400, OUTSIDE),
    ("file-symlinked-dir-out", lambda c: [image_url(f"{(c.allowed / 'linkdir').as_uri()}/secret.png")], 400, OUTSIDE),
    ("file-with-host", lambda c: [image_url(f"file://localhost{c.allowed}/red.png")], 400, "must not name a host"),
    ("qwen-bare-path-outside", lambda c: [{"type": "image", "image": "/etc/hostname"}], 400, OUTSIDE),
    ("qwen-relative-dotdot", lambda c: [{"type": "image", "image": "../outside/secret.png"}], 400, DOTS),
    ("bare-path-in-image_url", lambda c: [image_url(str(c.allowed / "red.png"))], 400, "only http, https, data and file"),
    # sizes
    ("download-10x-no-length", lambda c: [image_url(c.host.url(f"big?bytes={MB10}"))], 413, "download is larger than the 256 KB limit (media.max_item_bytes)"),
    ("download-10x-content-length", lambda c: [image_url(c.host.url(f"big-cl?bytes={MB10}"))], 413, "download is larger than the 256 KB limit"),
    ("base64-10x", lambda c: [image_url(data_url(b"\x89PNG\r\n\x1a\n" + bytes(MB10)))], 413, "decoded base64 item is larger than the 256 KB limit"),
    ("pixel-bomb-http", lambda c: [image_url(c.host.url("bomb.png"))], 400, "20000x20000 = 400000000 pixels, over the limit"),
    ("pixel-bomb-data", lambda c: [image_url(b64(c, "bomb.png"))], 400, "400000000 pixels, over the limit"),
    ("too-many-items", lambda c: [image_url(b64(c, "red.png"))] * 3 + [{"type": "video", "video": frames(c, 2)}], 400, f"too many media items in one request: at most {MAX_ITEMS}"),
    ("too-many-videos", lambda c: [{"type": "video", "video": frames(c, 2)}] * 2, 400, "too many videos in one request: at most 1"),
    # bad images
    # a data: URL's pixels are decoded once, by vLLM, which answers a truncated stream itself
    ("truncated-png", lambda c: [image_url(b64(c, "truncated.png"))], 400, "Failed to load image: image file is truncated"),
    # fetched ones too: vl-serve checks their header only, and passes the bytes on as they came
    ("truncated-png-http", lambda c: [image_url(c.host.url("truncated.png"))], 400, "Failed to load image: image file is truncated"),
    ("truncated-jpeg-http", lambda c: [image_url(c.host.url("truncated.jpg"))], 400, "Failed to load image: image file is truncated"),
    ("garbage-png", lambda c: [image_url(c.host.url("garbage.png"))], 400, "truncated or corrupt"),
    ("1x1-png", lambda c: [image_url(b64(c, "tiny.png"))], 400, "each side must be at least 10 pixels"),
    ("tiff", lambda c: [image_url(c.host.url("img.tiff"))], 400, "not in a supported image format"),
    ("svg", lambda c: [image_url(b64(c, "img.svg", "image/svg+xml"))], 400, "not in a supported image format"),
    ("text-as-video", lambda c: [{"type": "video", "video": b64(c, "img.svg", "video/mp4")}], 400, "not in a supported format (MP4 or WebM)"),
    ("frames-of-different-sizes", lambda c: [{"type": "video", "video": [b64(c, "red.png"), b64(c, "big.png")]}], 400, "same width and height"),
    ("not-base64", lambda c: [image_url("data:image/png;base64,@@@not-base64@@@")], 400, "not valid base64"),
    # slow hosts: refused within the bound
    ("silent-host", lambda c: [image_url(c.host.url("silent"))], 400, "sent nothing for 1 s (media.read_timeout_s)"),
    ("dripping-host", lambda c: [image_url(c.host.url("drip"))], 400, "did not deliver within 2 s (media.fetch_timeout_s)"),
]
# fmt: on


@STREAM
@pytest.mark.parametrize(
    ("build", "status", "fragment"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_refused(
    client: openai.OpenAI,
    ctx: Ctx,
    build: Callable[[Ctx], list[Any]],
    status: int,
    fragment: str,
    stream: bool,
) -> None:
    exc, err, elapsed = refusal(client, [*build(ctx), QUESTION], ctx, stream=stream)
    assert exc.status_code == status, err
    assert fragment in err["message"], err
    if err["param"] is not None and "mm_processor_kwargs" not in err["param"]:
        assert err["param"].startswith("messages[0].content["), err
    # Every refusal is quick; slow hosts fail within their own bound.
    assert elapsed < FETCH_TIMEOUT_S + 2.0, elapsed


def _rss_kib(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def test_bomb_and_oversized_download_are_refused_fast(
    client: openai.OpenAI, server: VLServer, ctx: Ctx
) -> None:
    """Pixel bomb and a 10x oversized download: refused in well under a second, flat memory."""
    pid = server.proc.pid if server.proc is not None else None  # vl-serve execs vLLM's server
    if pid is not None and b"vllm" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        pid = None  # not the API server process: time only
    rows = [
        ("pixel bomb over http (48 KB, 20000x20000)", image_url(ctx.host.url("bomb.png"))),
        ("pixel bomb as base64", image_url(b64(ctx, "bomb.png"))),
        (
            f"download 10x over the limit, no Content-Length ({MB10 // 1024} KB)",
            image_url(ctx.host.url(f"big?bytes={MB10}")),
        ),
        (
            "download 10x over the limit, Content-Length",
            image_url(ctx.host.url(f"big-cl?bytes={MB10}")),
        ),
    ]
    refusal(client, [rows[0][1]], ctx, stream=False)  # warm the path once
    print()
    for label, part in rows:
        before = _rss_kib(pid) if pid else {}
        peak_reset = bool(pid) and _reset_peak(pid)
        exc, _err, elapsed = refusal(client, [part, QUESTION], ctx, stream=False)
        after = _rss_kib(pid) if pid else {}
        memory = "memory: not measured"
        if before and after:
            memory = (
                f"API server RSS {before['VmRSS'] / 1024:.0f} -> {after['VmRSS'] / 1024:.0f} MiB"
            )
            if peak_reset:
                memory += f", peak +{(after['VmHWM'] - before['VmRSS']) / 1024:.1f} MiB"
        print(f"  {label}: HTTP {exc.status_code} in {elapsed * 1000:.0f} ms; {memory}")
        assert elapsed < 1.0, (label, elapsed)
        if before and after and peak_reset:
            assert after["VmHWM"] - before["VmRSS"] < 64 * 1024, (label, before, after)


def test_slow_host_fails_in_bound_while_others_are_served(
    client: openai.OpenAI, ctx: Ctx, reference: dict[str, int]
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(refusal, client, [image_url(ctx.host.url("silent"))], ctx, stream=False)
        time.sleep(0.2)  # the slow fetch now holds a slot of this host
        start = time.perf_counter()
        tokens = send(client, [image_url(ctx.host.url("red.png")), QUESTION], stream=False)
        normal = time.perf_counter() - start
        exc, err, slow_elapsed = slow.result(timeout=30)
    print(f"\nslow host refused in {slow_elapsed:.2f} s; normal request meanwhile {normal:.2f} s")
    assert tokens == reference["image64"]
    assert exc.status_code == 400 and "media.read_timeout_s" in err["message"]
    assert slow_elapsed < FETCH_TIMEOUT_S + 1.5
    assert normal < slow_elapsed and normal < FETCH_TIMEOUT_S


def test_default_config_refuses_the_loopback_host(host: MediaHost) -> None:
    """Without allowed_networks, the loopback host is refused before connecting (no server)."""
    settings = runtime_sections(VLServeConfig(model="x"))
    hits = dict(host.hits)
    for url in (host.url("red.png"), host.url("red.png", "localhost")):
        body = {"model": "x", "messages": [{"role": "user", "content": [image_url(url)]}]}
        with pytest.raises(MediaError) as info:
            asyncio.run(prepare_request(body, settings))
        assert info.value.status == 400
        assert NON_PUBLIC in info.value.message
    assert host.hits == hits  # nothing reached the host
    # The same defaults accept a base64 image and refuse local files.
    ok = {
        "model": "x",
        "messages": [{"role": "user", "content": [image_url(data_url(png_bytes()))]}],
    }
    assert asyncio.run(prepare_request(ok, settings)) is False  # accepted, passed on as sent
    local = {
        "model": "x",
        "messages": [{"role": "user", "content": [image_url("file:///etc/hostname")]}],
    }
    with pytest.raises(MediaError, match="allowed_local_media_path is not set"):
        asyncio.run(prepare_request(local, settings))


def test_server_keeps_serving_after_the_table(
    client: openai.OpenAI, server: VLServer, ctx: Ctx, reference: dict[str, int]
) -> None:
    assert server.proc is None or server.proc.poll() is None
    for stream in (False, True):
        assert (
            send(client, [image_url(ctx.host.url("red.png")), QUESTION], stream=stream)
            == (reference["image64"])
        )
    assert "could not be processed" not in server.log_text()  # no unexpected exception path
    assert os.path.exists(ctx.allowed / "red.png")
