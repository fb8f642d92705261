"""data: URL images in vLLM's own form: checked from their length and header, kept as sent."""

from __future__ import annotations

import base64
import copy
import io
import os
from typing import Any

import pytest
from PIL import Image

from tests.helpers.media_files import image_bytes, pixel_bomb_png
from tests.helpers.media_requests import (
    BOMB_MSG,
    JPEG,
    PNG,
    chat,
    data_url,
    decode_data_url,
    image_part,
    jpeg_two_sofs,
    part_of,
    png_two_ihdrs,
    refused,
    run,
    settings,
)
from vl_serve.media import prepare_request


def jpeg_with_big_exif() -> bytes:
    """A JPEG whose 60 KB EXIF block puts its size header past the part decoded for the check."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "JPEG", exif=b"Exif\x00\x00" + bytes(60_000))
    return buf.getvalue()


def jpeg_with_exif(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "JPEG", exif=b"Exif\x00\x00" + bytes(size))
    return buf.getvalue()


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
    """A regular JPEG/PNG header is read from the first 1 KB of the image alone, without
    asking Pillow: the rest of the base64 text is never decoded."""
    import binascii

    from vl_serve.media import images, inline

    decoded: list[int] = []
    real = binascii.a2b_base64

    def a2b(text: str, **kw: Any) -> bytes:
        decoded.append(len(text))
        return real(text, **kw)

    def no_pillow(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("Pillow asked")

    monkeypatch.setattr(inline.binascii, "a2b_base64", a2b)
    monkeypatch.setattr(images.Image, "open", no_pillow)
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
        assert decoded == [inline._QUICK_HEAD_CHARS], decoded


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
