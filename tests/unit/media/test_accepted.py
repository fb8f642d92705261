"""prepare_request on every accepted form: images, videos, frame lists, detail, kwargs."""

from __future__ import annotations

import base64
import copy
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from tests.helpers.media_hosts import MediaHost
from tests.helpers.media_requests import (
    LOOPBACK,
    MB,
    PNG,
    chat,
    data_url,
    decode_data_url,
    image_part,
    part_of,
    refused,
    run,
    settings,
    video_part,
)
from vl_serve.media import MediaError, body_too_large, sanitize_mm_kwargs


# A truncated pixel stream behind a sound header goes on as it came: vLLM decodes it once and
# answers it with its own 400 (tests/e2e/test_media.py).
@pytest.mark.parametrize(
    "name",
    ["img.png", "img.jpg", "img.bmp", "img.webp", "img.gif", "truncated.png", "truncated.jpg"],
)
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
    """fps / nframes on a video file: vl-serve decodes the frames, no processor kwargs; the
    request's media_io_kwargs say where the frames sit in the file."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where the video is decoded from
    body = chat({"type": "video", "video": server.url(name), **fields})
    body["mm_processor_kwargs"] = {"fps": 1}  # a trusted client's own stay as they are
    assert run(body, settings(**LOOPBACK, **media, trust_request_mm_kwargs=True)) is True
    assert body["mm_processor_kwargs"] == {"fps": 1}
    frames = frame_list(body)
    assert len(frames) == count
    assert {f.size for f in frames} == {(64, 48)}
    timing = body["media_io_kwargs"]["video"]
    assert (timing["fps"], timing["total_num_frames"], timing["duration"]) == (10.0, 20, 2.0)
    assert len(timing["frames_indices"]) == timing["num_frames"] == count
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
    assert body["media_io_kwargs"] == {
        "video": {
            "fps": 10.0,
            "frames_indices": [0, 6, 13, 19],
            "total_num_frames": 20,
            "duration": 2.0,
            "num_frames": 4,
        }
    }


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


# (body fields, trusted, the param of the 400 or None: accepted as sent)
CLIENT_KWARGS = [
    pytest.param({"mm_processor_kwargs": {"fps": 1}}, False, "mm_processor_kwargs", id="untrusted"),
    pytest.param({"mm_processor_kwargs": {"fps": 1, "max_pixels": 1000}}, True, None, id="trusted"),
    pytest.param({"mm_processor_kwargs": {}}, False, None, id="empty-untrusted"),
    pytest.param({"mm_processor_kwargs": None}, False, None, id="null-untrusted"),
    pytest.param({"mm_processor_kwargs": "x"}, True, "mm_processor_kwargs", id="not-an-object"),
    pytest.param({"mm_processor_kwargs": {"do_resize": False}}, True, "mm_processor_kwargs.do_resize", id="unknown-key"),
    pytest.param({"mm_processor_kwargs": {"num_frames": 10_000}}, True, "mm_processor_kwargs.num_frames", id="num_frames"),
    pytest.param({"mm_processor_kwargs": {"max_pixels": 10**12}}, True, "mm_processor_kwargs.max_pixels", id="max_pixels"),
    pytest.param({"mm_processor_kwargs": {"fps": "2"}}, True, "mm_processor_kwargs.fps", id="fps-string"),
    pytest.param({"media_io_kwargs": {"video": {"num_frames": 4}}}, True, "media_io_kwargs", id="media_io-trusted"),
    pytest.param({"media_io_kwargs": {"video": {"fps": 30}}}, False, "media_io_kwargs", id="media_io-untrusted"),
    pytest.param({"media_io_kwargs": {}}, False, None, id="media_io-empty"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "trusted", "param"), CLIENT_KWARGS)
def test_client_processor_kwargs(fields: dict[str, Any], trusted: bool, param: str | None) -> None:
    """Refused unless media.trust_request_mm_kwargs, then bounded; media_io_kwargs never."""
    st = settings(trust_request_mm_kwargs=trusted)
    body = {"messages": [], **copy.deepcopy(fields)}
    if param is not None:
        with pytest.raises(MediaError) as info:
            sanitize_mm_kwargs(body, st)
        assert info.value.status == 400 and info.value.param == param, fields
        assert info.value.code == "invalid_parameter"
        return
    changed = sanitize_mm_kwargs(body, st)
    kept = {k: v for k, v in fields.items() if v}  # empty values are removed
    assert body == {"messages": [], **kept}
    assert changed is (kept != fields)


def test_item_video_options_are_checked_on_the_item() -> None:
    st = settings()
    # per-video settings are checked on the item, and never become processor kwargs
    err = refused(chat({"type": "video", "video": data_url("video/mp4", b"x"), "fps": 99}), st)
    assert err.param == "messages[0].content[1].fps"
    err = refused(chat({"type": "video", "video": data_url("video/mp4", b"x"), "nframes": 1}), st)
    assert "nframes must be at least 2" in err.message


def test_body_limit_error() -> None:
    err = body_too_large(settings(max_request_bytes=2 * MB))
    assert err.status == 413 and "2 MB" in err.message and "media.max_request_bytes" in err.message
