"""The ``media:`` section of the config: the limits and the fetch policy for request media."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MediaConfig(_Model):
    """Where images and videos may come from, and how large they may be.

    vl-serve fetches and checks every image/video itself (in the API server, before any model
    work) and hands vLLM the checked bytes as ``data:`` URLs: vLLM never fetches a user's URL.
    """

    allowed_domains: list[str] | None = Field(
        None,
        description=(
            "Host names that http(s) media URLs may name (exact match, case-insensitive); null "
            "allows any host. Private addresses stay refused unless allowed_networks or "
            "allowed_private_domains open them."
        ),
    )
    allowed_local_media_path: str | None = Field(
        None,
        description=(
            "Folder that file:// URLs (and bare paths in qwen-vl-utils items) may read from; "
            "null forbids local files. '..', symlinks leading out and file://host/ are refused."
        ),
    )
    allowed_networks: list[str] = Field(
        default_factory=list,
        description=(
            "IP networks (CIDR, e.g. 10.1.0.0/16, or one address) that media URLs may reach "
            "although they are loopback, private, link-local or otherwise non-public. Empty: "
            "public addresses only."
        ),
    )
    allowed_private_domains: list[str] = Field(
        default_factory=list,
        description=(
            "Host names whose addresses may be non-public (e.g. an internal object store). Exact "
            "match; prefer allowed_networks, which is not affected by what DNS answers."
        ),
    )
    max_redirects: int = Field(
        0,
        ge=0,
        le=10,
        description="HTTP redirects followed per fetch, each hop checked again; 0 refuses them.",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to connect to a media host.")
    read_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a media host may stay silent while sending."
    )
    fetch_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds for one whole fetch, waiting for a fetch slot included.",
    )
    max_concurrent_fetches: int = Field(
        16, ge=1, description="Media downloads in flight at once in one API server process."
    )
    max_fetches_per_host: int = Field(
        4,
        ge=1,
        description="Downloads in flight at once from one host: a slow host cannot hold them all.",
    )
    max_item_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1,
        description=(
            "Bytes per media item (download, file, or decoded base64), checked while reading. "
            "Default 10 MiB (Qianfan's limit)."
        ),
    )
    max_video_bytes: int | None = Field(
        None,
        ge=1,
        description="Bytes per video (all frames of a frame list together); null: max_item_bytes.",
    )
    max_request_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Bytes of one request body (base64 media included), checked while receiving.",
    )
    max_items_per_request: int = Field(
        10,
        ge=0,
        description=(
            "Media items (images, videos, audio) in one request; limit_mm_per_prompt caps each "
            "modality as well."
        ),
    )
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description=(
            "Pixels per image, read from the header before decoding (decompression bombs are "
            "refused without being decoded)."
        ),
    )
    min_image_side: int = Field(
        10, ge=1, description="Smallest width or height of an image or video frame, in pixels."
    )
    max_image_aspect_ratio: float = Field(
        200.0, ge=1.0, description="Largest ratio of the long side to the short side."
    )
    max_video_frame_pixels: int = Field(
        3840 * 2160, ge=1, description="Pixels per video frame, read from the container header."
    )
    max_video_frames: int = Field(
        9000, ge=1, description="Frames in a video file (container header), decoded or not."
    )
    max_video_seconds: float = Field(
        300.0, gt=0, description="Duration of a video file in seconds (container header)."
    )
    max_video_frame_images: int = Field(
        32,
        ge=1,
        description="Images in a video given as a list of frames (vLLM's default decode count).",
    )
    low_detail_max_pixels: int = Field(
        512 * 512,
        ge=1,
        description="Pixel budget for image_url detail 'low' (the image is downscaled to fit).",
    )
    high_detail_max_pixels: int | None = Field(
        None,
        ge=1,
        description="Pixel budget for detail 'high'; null keeps the model processor's own limit.",
    )
    presize: bool = Field(
        True,
        description=(
            "Resize an image over the served model's pixel budget (Qwen2-VL, Qwen2.5-VL, "
            "Qwen3-VL: the processor's min/max pixels, mm_processor_kwargs included) to the "
            "processor's own target before vLLM sees it: decoded at a reduced JPEG scale and "
            "resized once, the same image tokens for less work. Other models' images go on "
            "untouched either way."
        ),
    )
    trust_request_mm_kwargs: bool = Field(
        False,
        description=(
            "Pass a request's own mm_processor_kwargs on to the model's processor; vl-serve "
            "accepts only fps, num_frames, min_pixels and max_pixels there, within bounds. Off: "
            "they are refused with a 400, as vLLM refuses them. (vLLM itself always runs with "
            "--trust-request-mm-kwargs, with vl-serve as the gate, so that the videos vl-serve "
            "samples reach it with their real frame times.) Per-video fps, nframes and pixel "
            "fields need no such trust: vl-serve applies them itself."
        ),
    )

    @field_validator("allowed_local_media_path")
    @classmethod
    def _absolute_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise ValueError("must be an absolute path to a folder")
        return str(path)

    @field_validator("allowed_domains", "allowed_private_domains")
    @classmethod
    def _host_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for name in value:
            host = name.strip().lower().rstrip(".")
            if not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[?[0-9a-f:.]+\]?", host):
                raise ValueError(
                    f"{name!r} is not a host name; write the bare name (images.example.com), "
                    "without scheme, port or path"
                )
            out.append(host.strip("[]"))
        return out

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        out = []
        for entry in value:
            try:
                out.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP network; write CIDR like 10.0.0.0/8 or one address"
                ) from None
        return out
