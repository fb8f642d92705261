"""The ``server`` section: where the server listens, who may call it and what a request may ask."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Route groups closed by default; `server.open_routes` opens each (vl_serve.server.access).
RouteGroup = Literal[
    "invocations",
    "elastic_ep",
    "generative_scoring",
    "docs",
    "dev",
    "lora",
    "profiler",
    "responses",
    "messages",
    "batch",
    "systemone",
    "scale_out",
    "pooling",
    "audio",
    "realtime",
]
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ServerConfig(_Model):
    """Where the OpenAI-compatible server listens, who may call it and what a request may ask."""

    host: str = Field(
        "127.0.0.1",
        description="Address to bind. Defaults to loopback; use 0.0.0.0 to serve other machines.",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to bind.")
    api_key_env: str | list[str] | None = Field(
        None,
        description=(
            "Name of the environment variable holding the API key clients must send as "
            "'Authorization: Bearer <key>' (or 'x-api-key: <key>'), or a list of such names: "
            "every key listed is accepted (rotation). With a key, every route needs it except "
            "the probes (/health, /ready). The keys never go in the file, the argv or logs."
        ),
    )
    metrics_token_env: str | None = Field(
        None,
        pattern=_ENV_NAME,
        description=(
            "Name of the environment variable holding a token of its own for /metrics (what "
            "Prometheus sends as 'Authorization: Bearer <token>'); an API key works there too."
        ),
    )
    open_metrics: bool = Field(
        False,
        description="Serve /metrics to anyone who can reach the port, without a key or token.",
    )
    open_routes: list[RouteGroup] = Field(
        default_factory=list,
        description=(
            "vLLM route groups to open, each closed by default (404): 'invocations' (SageMaker "
            "/invocations, /ping), 'elastic_ep' (/scale_elastic_ep), 'generative_scoring', 'docs' "
            "(/docs, /redoc, /openapi.json), 'dev' (VLLM_SERVER_DEV_MODE routes), 'lora' (runtime "
            "adapter loading), 'profiler', 'responses' (/v1/responses), 'messages' (Anthropic "
            "/v1/messages), 'batch' (/v1/chat/completions/batch), 'systemone', 'scale_out' (render "
            "and token-in routes), 'pooling', 'audio', 'realtime'. An opened route that vl-serve's "
            "media checks do not cover refuses requests carrying media."
        ),
    )
    max_n: int = Field(
        8, ge=1, le=128, description="Largest 'n' (choices per request) a request may ask for."
    )
    max_best_of: int = Field(
        8, ge=1, le=128, description="Largest 'best_of' a request may ask for."
    )
    max_json_depth: int = Field(
        64,
        ge=8,
        le=200,
        description=(
            "Deepest nesting of arrays and objects a JSON request body may have (the JSON "
            "parser's own bound is 200)."
        ),
    )

    drain_timeout: int = Field(
        30,
        ge=0,
        le=3600,
        description=(
            "Seconds a SIGTERM gives the requests in flight to finish: /ready answers 503 and new "
            "requests get a 503 with Retry-After at once; what is still running at the end is "
            "ended with an error event (streams) or a 503. Also vLLM's --shutdown-timeout."
        ),
    )
    max_inflight_requests: int | None = Field(
        None,
        ge=1,
        description=(
            "Generation requests (chat, completions, responses) the server takes at once, running "
            "and queued; more are refused with a 503 and Retry-After (a 429 in FastDeploy's "
            "dialect) before anything is sent. Split evenly across vLLM's API-server processes "
            "(vllm_args.api_server_count). null: 4 x max_num_seqs (4 x 256 when that is unset)."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "Log lines as vLLM writes them ('text') or one JSON object per line ('json'), for "
            "vLLM's own and the HTTP access log: vLLM's --logging-config.formatter json."
        ),
    )

    @field_validator("api_key_env")
    @classmethod
    def _env_names(cls, value: str | list[str] | None) -> str | list[str] | None:
        names = [value] if isinstance(value, str) else (value or [])
        for name in names:
            if not re.fullmatch(_ENV_NAME, name):
                raise ValueError(f"{name!r} is not an environment variable name")
        if isinstance(value, list) and not value:
            raise ValueError("list at least one variable name, or use null for no key")
        return value

    def api_key_envs(self) -> list[str]:
        """The names of the variables holding accepted API keys (none: no key needed)."""
        value = self.api_key_env
        return [value] if isinstance(value, str) else list(value or [])
