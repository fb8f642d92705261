"""The vl-serve config schema: nested pydantic models using vLLM's own field names.

Every field has a description, bounds where they exist and ``Literal`` choices where the choices
are ours; ``extra="forbid"`` everywhere, so a typo is an error. ``vl-serve schema`` renders these
models as the reference in docs/config.md. Reading the YAML file, ``${VAR}`` interpolation and
turning validation errors into one line each live in :mod:`vl_serve.loading`; checking
``vllm_args`` against vLLM's own argument parser needs vLLM imported and lives in
:mod:`vl_serve.argv`.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from vl_serve import loading
from vl_serve.clients_config import ClientsConfig
from vl_serve.gpu_config import GpuConfig
from vl_serve.media_config import MediaConfig
from vl_serve.reasoning_config import ReasoningConfig
from vl_serve.server_config import RouteGroup, ServerConfig

__all__ = ["RouteGroup", "ServerConfig", "VLServeConfig", "from_dict", "load"]

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


# Secrets the env section must not hold: the file is not where a secret lives, and each has its
# own way in.
SECRET_ENV_NAMES = {
    "VLLM_API_KEY": (
        "vl-serve checks API keys itself: name the variable that holds the key in "
        "server.api_key_env and set it in the server's environment"
    ),
    "HF_TOKEN": "a secret: set it in the server's environment, not in the config file",
    "HUGGING_FACE_HUB_TOKEN": "a secret: set it in the server's environment, not in the config file",
}


def _not_a_secret(name: str) -> str:
    if name in SECRET_ENV_NAMES:
        raise ValueError(SECRET_ENV_NAMES[name])
    return name


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
    gpu: GpuConfig = Field(
        default_factory=GpuConfig,
        description="The GPU the deployment targets, for `vl-serve plan` and `vl-serve check`.",
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
    clients: ClientsConfig = Field(
        default_factory=ClientsConfig,
        description="Model names accepted and answer shapes kept for clients of other servers.",
    )
    env: dict[Annotated[str, AfterValidator(_not_a_secret)], str] = Field(
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
    """Validate a loaded YAML tree (``${VAR}`` interpolated); every mistake is in the ConfigError."""
    return loading.validate(VLServeConfig, data, source)


def load(path: str | os.PathLike[str]) -> VLServeConfig:
    """Read and validate a config file."""
    return from_dict(loading.read_yaml(path), str(path))
