"""The vl-serve config schema: nested pydantic models using vLLM's own field names.

Every field has a description, bounds where they exist and ``Literal`` choices where the choices
are ours; ``extra="forbid"`` everywhere, so a typo is an error. ``vl-serve schema`` renders these
models as the reference in docs/config.md. Reading the YAML file, ``${VAR}`` interpolation and
turning validation errors into one line live in :mod:`vl_serve.loading`; checking ``vllm_args``
against vLLM's own argument parser needs vLLM imported and lives in :mod:`vl_serve.argv`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vl_serve import loading

BUILTIN_PREFIX = "builtin:"

# FastDeploy's weight-only quantization names have no exact vLLM twin: refuse them with the
# vLLM methods to use instead, rather than silently picking a method with other numerics.
FASTDEPLOY_QUANTIZATION = {
    "wint8": (
        "FastDeploy's 'wint8' (weight-only int8) has no identical vLLM method; use 'fp8' "
        "(on-the-fly FP8 weights: W8A8 on Hopper/Ada, weight-only via Marlin on Ampere), "
        "'experts_int8' (weight-only int8 for MoE experts, e.g. ERNIE-4.5-VL), or a "
        "pre-quantized int8 checkpoint ('compressed-tensors', 'gptq')"
    ),
    "wint4": (
        "FastDeploy's 'wint4' (weight-only int4) has no identical vLLM method; use a "
        "pre-quantized 4-bit checkpoint ('awq', 'gptq', 'compressed-tensors') or "
        "'bitsandbytes' for in-flight 4-bit weights"
    ),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    """Where the OpenAI-compatible server listens and who may call it."""

    host: str = Field(
        "127.0.0.1",
        description="Address to bind. Defaults to loopback; use 0.0.0.0 to serve other machines.",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to bind.")
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description=(
            "Name of the environment variable holding the API key clients must send as "
            "'Authorization: Bearer <key>'. The key itself never goes in the file, the argv or logs."
        ),
    )


class ReasoningConfig(_Model):
    """How the thinking part of reasoning models is split and returned."""

    parser: str | None = Field(
        None,
        description=(
            "Reasoning parser name registered with vLLM (vl-serve adds 'qwen3_vl' and 'ernie45_vl'); "
            "null for no reasoning split."
        ),
    )
    default_enable_thinking: bool | None = Field(
        None,
        description=(
            "Server default for thinking when a request does not say (null: the chat template's default)."
        ),
    )
    response_field: Literal["reasoning", "reasoning_content", "both"] = Field(
        "both",
        description=(
            "Field carrying the thinking part in responses: vLLM's 'reasoning', FastDeploy/Qianfan's "
            "'reasoning_content', or both."
        ),
    )


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


class VLServeConfig(_Model):
    """A vl-serve deployment: one model served through vLLM's OpenAI-compatible server."""

    model: str = Field(
        description=(
            "Local path, Hugging Face hub id, or 'builtin:<name>' for an embedded tiny "
            "random-weight model (names: `vl-serve build-model --help`)."
        ),
        min_length=1,
    )
    served_model_name: str | list[str] | None = Field(
        None,
        description=(
            "Model name clients send (defaults to 'model'). A list gives aliases, the first "
            "being the name reported: e.g. [ernie-4.5-vl, 'null', default] for FastDeploy "
            "clients, which send model='null'."
        ),
    )
    trust_remote_code: bool = Field(
        False, description="Run the checkpoint's own Python code. Off by default."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs to shard each layer over.")
    pipeline_parallel_size: int = Field(1, ge=1, description="Pipeline stages (GPUs or nodes).")
    data_parallel_size: int = Field(1, ge=1, description="Independent engine replicas.")
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        None, description="'mp' for one node, 'ray' for multi-node; null lets vLLM choose."
    )
    max_model_len: int | None = Field(
        None,
        ge=16,
        description="Context length (prompt + output tokens) per request; null: the model's own.",
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="Requests batched together at most; null: vLLM's default."
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Fraction of GPU memory vLLM may use; null: vLLM's default.",
    )
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = Field(
        None, description="Weight and activation dtype; null: vLLM's default (auto)."
    )
    quantization: str | None = Field(
        None,
        description=(
            "vLLM quantization method (e.g. fp8, awq, gptq, experts_int8); null: what the "
            "checkpoint declares, if anything."
        ),
    )
    limit_mm_per_prompt: dict[str, int] | None = Field(
        None,
        description="Most items of each modality per request, e.g. {image: 10, video: 3}.",
    )
    mm_processor_kwargs: dict[str, Any] | None = Field(
        None,
        description="Keyword arguments for the model's multimodal processor (e.g. video_max_frames).",
    )
    media_io_kwargs: dict[str, dict[str, Any]] | None = Field(
        None,
        description=(
            "Per-modality media loading options (vLLM --media-io-kwargs), e.g. "
            "{video: {num_frames: 32}}. FastDeploy's mm_processor_kwargs.video_max_frames maps here."
        ),
    )
    server: ServerConfig = Field(
        default_factory=ServerConfig, description="Where the server listens and who may call it."
    )
    reasoning: ReasoningConfig = Field(
        default_factory=ReasoningConfig,
        description="How the thinking part of reasoning models is split and returned.",
    )
    media: MediaConfig = Field(
        default_factory=MediaConfig,
        description="Where images and videos may come from and how large they may be.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables for the vLLM processes (e.g. VLLM_CPU_KVCACHE_SPACE).",
    )
    vllm_args: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Any other vLLM serve argument by its vLLM name (enforce_eager: true). Checked against "
            "vLLM's own parser; arguments that have a field above must be set there."
        ),
    )

    @field_validator("quantization")
    @classmethod
    def _quantization(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in FASTDEPLOY_QUANTIZATION:
            raise ValueError(FASTDEPLOY_QUANTIZATION[value.lower()])
        return value

    @field_validator("limit_mm_per_prompt")
    @classmethod
    def _limits(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for modality, count in (value or {}).items():
            if modality not in ("image", "video", "audio"):
                raise ValueError(f"unknown modality {modality!r}; use image, video or audio")
            if count < 0:
                raise ValueError(f"{modality}: must be >= 0")
        return value

    @model_validator(mode="after")
    def _paddle_weights(self) -> VLServeConfig:
        if self.model.rstrip("/").endswith("-Paddle"):
            raise ValueError(
                f"model {self.model!r} is a PaddlePaddle checkpoint, which vLLM cannot load; use the "
                f"PyTorch weights instead: {self.model.rstrip('/')[: -len('-Paddle')]}-PT"
            )
        return self

    def served_model_names(self) -> list[str]:
        """Names clients may use, the reported one first; a builtin model defaults to its name."""
        if isinstance(self.served_model_name, str):
            return [self.served_model_name]
        if self.served_model_name:
            return list(self.served_model_name)
        return [self.model] if self.builtin_name is not None else []

    @property
    def builtin_name(self) -> str | None:
        """Name of the embedded tiny model, or None for a real checkpoint."""
        return self.model[len(BUILTIN_PREFIX) :] if self.model.startswith(BUILTIN_PREFIX) else None


def from_dict(data: Any, source: str = "<config>") -> VLServeConfig:
    """Validate a loaded YAML tree (``${VAR}`` interpolated); the first problem is a ConfigError."""
    return loading.validate(VLServeConfig, data, source)


def load(path: str | os.PathLike[str]) -> VLServeConfig:
    """Read and validate a config file."""
    return from_dict(loading.read_yaml(path), str(path))
