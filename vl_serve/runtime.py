"""Settings handed from the launcher to code running inside vLLM's API server (middleware).

vLLM instantiates ``--middleware`` classes itself, without arguments, so the launcher passes the
validated config sections they need as JSON in one environment variable.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

ENV = "VL_SERVE_RUNTIME"


def encode(settings: dict[str, Any]) -> str:
    return json.dumps(settings, separators=(",", ":"), sort_keys=True)


@functools.cache
def settings() -> dict[str, Any]:
    """The settings of this server: ``{"reasoning": {...}, "media": {...}, ...}`` (config sections).

    Outside a vl-serve launched server (unit tests, plain ``vllm serve --middleware ...``) this
    falls back to the config schema's defaults.
    """
    raw = os.environ.get(ENV)
    if raw:
        return dict(json.loads(raw))
    from vl_serve.config import VLServeConfig

    return runtime_sections(VLServeConfig(model="unset"))


def runtime_sections(cfg: Any) -> dict[str, Any]:
    """The parts of a VLServeConfig that code inside the server needs."""
    return {
        "reasoning": cfg.reasoning.model_dump(mode="json"),
        "media": cfg.media.model_dump(mode="json"),
        "limit_mm_per_prompt": cfg.limit_mm_per_prompt,
        "served_model_name": (cfg.served_model_names() or [cfg.model])[0],
        # Variable names only (api_key_env, metrics_token_env): the keys stay in the environment.
        "server": cfg.server.model_dump(mode="json"),
        "clients": cfg.clients.model_dump(mode="json"),
        "ops": ops_settings(cfg),
        # The media path's image budget is read from these once (vl_serve.media.presize).
        "model": model_settings(cfg),
    }


def model_settings(cfg: Any) -> dict[str, Any]:
    """The model folder (or hub id) vLLM serves and the deployment's processor kwargs."""
    from vl_serve.argv import multimodal_kwargs
    from vl_serve.builtin import model_dir
    from vl_serve.errors import ConfigError

    path: str | None = cfg.model
    if cfg.builtin_name is not None:
        try:
            path = str(model_dir(cfg.builtin_name))
        except ConfigError:  # reported by the launcher; no model files to read here
            path = None
    return {"path": path, "mm_processor_kwargs": multimodal_kwargs(cfg)[0]}


# vLLM's own default of max_num_seqs where the config leaves it unset; admission's bound is a
# multiple of it.
DEFAULT_MAX_NUM_SEQS = 256
ADMISSION_MULTIPLE = 4


def ops_settings(cfg: Any) -> dict[str, Any]:
    """Drain timeout, the admission bound of one API-server process and the process count."""
    from vl_serve.argv import api_server_count

    count = api_server_count(cfg)
    total = cfg.server.max_inflight_requests
    if total is None:
        total = ADMISSION_MULTIPLE * (cfg.max_num_seqs or DEFAULT_MAX_NUM_SEQS)
    return {
        "drain_timeout": cfg.server.drain_timeout,
        "api_server_count": count,
        "max_inflight_total": total,
        # Each process admits its share, rounded up: the kernel spreads connections over the
        # processes' listening sockets (SO_REUSEPORT), not requests by load.
        "max_inflight": -(-total // count),
    }
