"""Config -> vLLM argv, checked by vLLM's own argument parser.

vLLM owns its flags: nothing here declares one. Schema fields map mechanically to the flag of the
same name; ``vllm_args`` entries are looked up in the parser vLLM builds for ``vllm serve`` and
refused when unknown or when a schema field owns them.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from typing import Any

from vl_serve.config import VLServeConfig
from vl_serve.errors import ConfigError

# Schema fields that map one-to-one onto the vLLM flag of the same name.
DIRECT_FIELDS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "distributed_executor_backend",
    "max_model_len",
    "max_num_seqs",
    "gpu_memory_utilization",
    "dtype",
    "quantization",
    "limit_mm_per_prompt",
)

# vLLM destinations that a schema field owns, and the field to use instead.
OWNED = {
    **{name: name for name in DIRECT_FIELDS},
    "model": "model",
    "model_tag": "model",
    "served_model_name": "served_model_name",
    "trust_remote_code": "trust_remote_code",
    "host": "server.host",
    "port": "server.port",
    "api_key": "server.api_key_env",
    "reasoning_parser": "reasoning.parser",
    "allowed_media_domains": "media.allowed_domains",
    "allowed_local_media_path": "media.allowed_local_media_path",
    "mm_processor_kwargs": "mm_processor_kwargs",
    "media_io_kwargs": "media_io_kwargs",
    "middleware": "(set by vl-serve)",
}

MIDDLEWARE = "vl_serve.server.middleware.DialectMiddleware"
# A reserved name (RFC 2606) that no URL can usefully name: vLLM's own fetcher allows nothing.
NO_FETCH_DOMAIN = "media.invalid"


class _ParserError(Exception):
    pass


@functools.cache
def vllm_parser() -> argparse.ArgumentParser:
    """The parser of ``vllm serve`` itself, built by vLLM's serve subcommand (imports vLLM)."""
    from vllm.entrypoints.cli.serve import ServeSubcommand

    try:  # vLLM >= 0.11
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # pragma: no cover - older layouts
        from vllm.utils import FlexibleArgumentParser  # type: ignore[no-redef,attr-defined,unused-ignore]

    subparsers = FlexibleArgumentParser(prog="vllm").add_subparsers()
    parser: argparse.ArgumentParser = ServeSubcommand().subparser_init(subparsers)

    def error(message: str) -> Any:
        raise _ParserError(message)

    parser.error = error  # type: ignore[method-assign]
    return parser


def _actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def _flag(action: argparse.Action) -> str:
    longs = [s for s in action.option_strings if s.startswith("--") and not s.startswith("--no-")]
    # vLLM registers both --max-model-len and --max_model_len on some versions: prefer kebab.
    kebab = [s for s in longs if "_" not in s]
    return (kebab or longs or action.option_strings)[0]


def _render(flag: str, value: Any, action: argparse.Action | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        if value:
            return [flag]
        if action is not None and any(s.startswith("--no-") for s in action.option_strings):
            return ["--no-" + flag[2:]]
        return []
    if isinstance(value, dict):
        return [flag, json.dumps(value, separators=(",", ":"), sort_keys=True)]
    if isinstance(value, (list, tuple)):
        if action is not None and action.nargs in ("+", "*"):
            return [flag, *(str(v) for v in value)]
        return [flag, json.dumps(list(value))]
    return [flag, str(value)]


def multimodal_kwargs(cfg: VLServeConfig) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(mm_processor_kwargs, media_io_kwargs) with FastDeploy's names mapped to vLLM's.

    FastDeploy's ``video_max_frames`` caps the frames sampled from a video; in vLLM that is the
    video loader's ``num_frames`` (``--media-io-kwargs '{"video": {"num_frames": N}}'``).
    """
    mm = dict(cfg.mm_processor_kwargs or {})
    io = {k: dict(v) for k, v in (cfg.media_io_kwargs or {}).items()}
    if "video_max_frames" in mm:
        io.setdefault("video", {})["num_frames"] = mm.pop("video_max_frames")
    return mm or None, io or None


def vllm_env(cfg: VLServeConfig) -> dict[str, str]:
    """vLLM's own media limits, set from the config as a second line behind the middleware."""
    media = cfg.media
    item_bytes = max(media.max_item_bytes, media.max_video_bytes or 0)
    return {
        "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "0",
        "VLLM_MAX_MEDIA_DOWNLOAD_SIZE_MB": str(max(1, math.ceil(item_bytes / 2**20))),
        "VLLM_MAX_IMAGE_PIXELS": str(max(media.max_image_pixels, media.max_video_frame_pixels)),
        "VLLM_IMAGE_FETCH_TIMEOUT": str(math.ceil(media.fetch_timeout_s)),
        "VLLM_VIDEO_FETCH_TIMEOUT": str(math.ceil(media.fetch_timeout_s)),
    }


def _field_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_argv(cfg: VLServeConfig, model_path: str, *, check: bool = True) -> list[str]:
    """The ``vllm serve`` arguments for a config (without the program name).

    ``check`` validates ``vllm_args`` against vLLM's parser and parses the full argv with it.
    The API key is never part of the argv: it reaches vLLM as the VLLM_API_KEY environment variable.
    """
    argv: list[str] = [model_path]
    names = cfg.served_model_names()
    if names:
        argv += ["--served-model-name", *names]
    defaults = VLServeConfig.model_fields
    for name in DIRECT_FIELDS:
        value = getattr(cfg, name)
        if value != defaults[name].default or name in cfg.model_fields_set:
            argv += _render(_field_flag(name), value, None)
    mm_kwargs, io_kwargs = multimodal_kwargs(cfg)
    argv += _render("--mm-processor-kwargs", mm_kwargs, None)
    argv += _render("--media-io-kwargs", io_kwargs, None)
    if cfg.trust_remote_code:
        argv.append("--trust-remote-code")
    argv += ["--host", cfg.server.host, "--port", str(cfg.server.port)]
    if cfg.reasoning.parser:
        argv += ["--reasoning-parser", cfg.reasoning.parser]
    template_kwargs = dict(cfg.vllm_args.get("default_chat_template_kwargs") or {})
    if cfg.reasoning.default_enable_thinking is not None:
        # Reaches the chat template and the reasoning parser; a request's own value wins.
        template_kwargs["enable_thinking"] = cfg.reasoning.default_enable_thinking
    argv += _render("--default-chat-template-kwargs", template_kwargs or None, None)
    # vl-serve's middleware fetches and checks every media item and hands vLLM data: URLs, so
    # vLLM itself may fetch nothing (a backstop should anything slip past the middleware) and
    # reads no local file (no --allowed-local-media-path).
    argv += ["--allowed-media-domains", NO_FETCH_DOMAIN]
    argv += ["--middleware", MIDDLEWARE]

    if not check:
        for key, value in cfg.vllm_args.items():
            if key.replace("-", "_") == "default_chat_template_kwargs":
                continue
            argv += _render(_field_flag(key.replace("-", "_")), value, None)
        return argv

    parser = vllm_parser()
    actions = _actions_by_dest(parser)
    for key, value in cfg.vllm_args.items():
        dest = key.replace("-", "_")
        field = f"vllm_args.{key}"
        if dest == "default_chat_template_kwargs":
            continue  # merged above with reasoning.default_enable_thinking
        if dest in OWNED:
            raise ConfigError(field, value, f"set this with the field '{OWNED[dest]}' instead")
        action = actions.get(dest)
        if action is None:
            raise ConfigError(
                field, value, f"Unknown vLLM argument '{key}'; see `vllm serve --help`"
            )
        argv += _render(_flag(action), value, action)
    try:
        parser.parse_args(argv)
    except _ParserError as exc:
        raise ConfigError("vllm_args", None, f"vLLM rejects the arguments: {exc}") from None
    return argv
