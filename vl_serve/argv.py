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
import re
from collections.abc import Mapping
from typing import Any

from vl_serve.config import VLServeConfig
from vl_serve.errors import ConfigError, raise_all

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


def _use(field: str) -> str:
    return f"set this with the field '{field}' instead"


# Every vLLM destination vl-serve sets itself or through a schema field, and the fix to print when
# vllm_args names it: a second value would silently win over (or fight with) vl-serve's.
OWNED = {
    **{name: _use(name) for name in DIRECT_FIELDS},
    "model": _use("model"),
    "model_tag": _use("model"),
    "served_model_name": _use("served_model_name"),
    "trust_remote_code": _use("trust_remote_code"),
    "mm_processor_kwargs": _use("mm_processor_kwargs"),
    "media_io_kwargs": _use("media_io_kwargs"),
    "host": _use("server.host"),
    "port": _use("server.port"),
    "api_key": _use("server.api_key_env") + " (the key never goes in the file or the argv)",
    "reasoning_parser": _use("reasoning.parser"),
    "allowed_media_domains": _use("media.allowed_domains") + " (vl-serve fetches media itself)",
    "allowed_local_media_path": _use("media.allowed_local_media_path"),
    "trust_request_mm_kwargs": _use("media.trust_request_mm_kwargs"),
    "shutdown_timeout": _use("server.drain_timeout"),
    "enable_request_id_headers": (
        "vl-serve takes or makes X-Request-Id and echoes it on every answer itself; remove it"
    ),
    "middleware": "vl-serve sets this itself (its middleware checks every request); remove it",
    "hf_token": (
        "a token here would be in vLLM's argv (ps, logs); set HF_TOKEN in the server's "
        "environment instead"
    ),
    "enable_mm_embeds": (
        "embeddings sent in requests would reach the model past vl-serve's media checks; remove it"
    ),
    "config": (
        "vLLM's --config file would set flags past vl-serve's checks; write its settings in "
        "this vl-serve YAML (its fields, or vllm_args)"
    ),
}
# A value vLLM's parser would read as an option of its own (``--api-key``, ``-O3``), not a number.
_OPTION_LIKE = re.compile(r"-(?![0-9.])")

# Access control, then the request middleware (dialect, bodies, media): one vLLM --middleware.
MIDDLEWARE = "vl_serve.server.stack.ServerStack"
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


def vllm_args_argv(
    vllm_args: Mapping[str, Any], *, check: bool = True
) -> tuple[list[str], list[ConfigError]]:
    """``vllm_args`` as vLLM flags, and one mistake for each entry that cannot be passed on.

    Refused: keys vl-serve owns (:data:`OWNED`), values vLLM would read as a flag of their own
    (``[a, --api-key, k]`` would set one past this check) and, with ``check`` (imports vLLM), keys
    vLLM's parser does not know. ``default_chat_template_kwargs`` is left to :func:`build_argv`,
    which merges it with ``reasoning.default_enable_thinking``.
    """
    unowned = any(key.replace("-", "_") not in OWNED for key in vllm_args)
    actions = _actions_by_dest(vllm_parser()) if check and unowned else {}
    argv: list[str] = []
    errors: list[ConfigError] = []
    for key, value in vllm_args.items():
        dest = key.replace("-", "_")
        field = f"vllm_args.{key}"
        if dest == "default_chat_template_kwargs":
            continue
        if dest in OWNED:
            errors.append(ConfigError(field, value, OWNED[dest]))
            continue
        action = actions.get(dest)
        if check and action is None:
            fix = f"Unknown vLLM argument '{key}'; see `vllm serve --help`"
            errors.append(ConfigError(field, value, fix))
            continue
        rendered = _render(_flag(action) if action else _field_flag(dest), value, action)
        options = [token for token in rendered[1:] if _OPTION_LIKE.match(token)]
        if options:
            fix = (
                f"vLLM would read {options[0]!r} as a flag of its own; no value may start with '-'"
            )
            errors.append(ConfigError(field, value, fix))
            continue
        argv += rendered
    return argv, errors


def _chat_template_kwargs(cfg: VLServeConfig) -> tuple[dict[str, Any] | None, list[ConfigError]]:
    """vllm_args' default_chat_template_kwargs with reasoning.default_enable_thinking merged in."""
    merged: dict[str, Any] = {}
    errors: list[ConfigError] = []
    for key, value in cfg.vllm_args.items():
        if key.replace("-", "_") != "default_chat_template_kwargs":
            continue
        if isinstance(value, dict):
            merged.update(value)
        else:
            errors.append(
                ConfigError(
                    f"vllm_args.{key}", value, "must be a mapping of chat template arguments"
                )
            )
    if cfg.reasoning.default_enable_thinking is not None:
        # Reaches the chat template and the reasoning parser; a request's own value wins.
        merged["enable_thinking"] = cfg.reasoning.default_enable_thinking
    return merged or None, errors


# What vLLM's shutdown may take past the drain: the middleware's last answers and the exit.
SHUTDOWN_MARGIN_S = 5


def shutdown_timeout(cfg: VLServeConfig) -> int:
    """vLLM's --shutdown-timeout: the drain and a margin (vLLM's multi-API-server supervisor
    waits this long for its API servers, which drain for ``server.drain_timeout``)."""
    return cfg.server.drain_timeout + SHUTDOWN_MARGIN_S


def api_server_count(cfg: VLServeConfig) -> int:
    """vLLM's API-server processes: ``vllm_args.api_server_count``, else 1."""
    for key, value in cfg.vllm_args.items():
        if key.replace("-", "_") == "api_server_count" and isinstance(value, int) and value > 0:
            return value
    return 1


def build_argv(cfg: VLServeConfig, model_path: str, *, check: bool = True) -> list[str]:
    """The ``vllm serve`` arguments for a config (without the program name).

    ``check`` validates ``vllm_args`` against vLLM's parser and parses the full argv with it;
    every mistake found is in the one ConfigError raised. The API keys are never part of the
    argv: the access middleware reads them inside the server from the variables the config names.
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
    # Always: vl-serve sets a request's media_io_kwargs itself (where the frames it sampled sit
    # in their video), and its middleware gates the client's own in vLLM's place
    # (vl_serve.media.kwargs; media.trust_request_mm_kwargs lets mm_processor_kwargs through).
    argv.append("--trust-request-mm-kwargs")
    argv += ["--host", cfg.server.host, "--port", str(cfg.server.port)]
    if cfg.reasoning.parser:
        argv += ["--reasoning-parser", cfg.reasoning.parser]
    template_kwargs, errors = _chat_template_kwargs(cfg)
    argv += _render("--default-chat-template-kwargs", template_kwargs, None)
    # vl-serve's middleware fetches and checks every media item and hands vLLM data: URLs, so
    # vLLM itself may fetch nothing (a backstop should anything slip past the middleware) and
    # reads no local file (no --allowed-local-media-path).
    argv += ["--allowed-media-domains", NO_FETCH_DOMAIN]
    argv += ["--middleware", MIDDLEWARE]
    # vLLM drains its engine for this long; the middleware ends what is left at drain_timeout.
    argv += ["--shutdown-timeout", str(shutdown_timeout(cfg))]
    if cfg.server.log_format == "json":
        argv += ["--logging-config.formatter", "json"]
    extra, arg_errors = vllm_args_argv(cfg.vllm_args, check=check)
    argv += extra
    errors += arg_errors
    if check:
        try:
            vllm_parser().parse_args(argv)
        except _ParserError as exc:
            errors.append(ConfigError("vllm_args", None, f"vLLM rejects the arguments: {exc}"))
    raise_all(errors)
    return argv
