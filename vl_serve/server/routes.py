"""Which group each route of vLLM's server belongs to, matched the way Starlette's router matches.

vl-serve's access check (:mod:`vl_serve.server.access`) decides by group: ``probe`` routes are open
to anyone, ``api`` routes need the API key, ``metrics`` needs the key or the metrics token unless
``server.open_metrics``, and every other group is closed (404) until ``server.open_routes`` names
it. A method and path that no row here matches is closed whatever the key: a route that a newer
vLLM adds stays unreachable until it is classified here (the end-to-end test reads every route
vLLM registers and fails on one missing from this table).

Rows are (methods, path template, group) with Starlette's templates (``{name}`` is one path
segment, ``{name:path}`` the rest), matched on the path with ``root_path`` removed. Only the
methods vLLM registers count: ``HEAD /health`` and a plain ``OPTIONS`` are unknown.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from starlette.routing import compile_path

PROBE: Final = "probe"
API: Final = "api"
METRICS: Final = "metrics"
# Groups that need no switch; every other group is closed until server.open_routes names it.
OPEN_GROUPS: Final = frozenset({PROBE, API, METRICS})
# The method a websocket scope is classified under.
WEBSOCKET: Final = "WEBSOCKET"

_DEV_POST = (
    # VLLM_SERVER_DEV_MODE=1: cache resets, sleep/wake, collective RPC, and the RL routes.
    "/reset_prefix_cache /reset_mm_cache /reset_encoder_cache /collective_rpc /sleep "
    "/release_kv_cache_memory /wake_up /pause /resume /abort_requests "
    "/init_weight_transfer_engine /shutdown_weight_transfer_engine /start_weight_update "
    "/start_draft_weight_update /update_weights /finish_weight_update /update_weight_version "
    "/weight_checker"
)
_DEV_GET = "/server_info /is_sleeping /is_paused /weight_info /get_world_size"
_SCALE_OUT_POST = (
    # Render and token-in routes (403 stubs unless --enable-scale-out / --tokens-only).
    "/v1/chat/completions/render /v1/messages/render /v1/completions/render "
    "/v1/responses/render /v1/chat/completions/derender /v1/completions/derender "
    "/inference/v1/generate /inference/v1/abort_requests"
)
_POOLING_POST = (
    "/pooling /classify /score /v1/score /rerank /v1/rerank /v2/rerank /v1/embeddings /v2/embed"
)

ROWS: Final[tuple[tuple[str, str, str], ...]] = (
    # Probes: never a key (load balancers and orchestrators call them).
    ("GET", "/health", PROBE),
    ("GET", "/ready", PROBE),
    # Prometheus' own route. The Mount behind it (/metrics/..., /metricsfoo) is not classified.
    ("GET", "/metrics", METRICS),
    # Served by vl-serve in front of vLLM for other servers' clients (vl_serve.server.clients):
    # the Qwen3-VL tutorial server's GET / and POST /generate, Qianfan's /v2 OpenAI routes.
    ("GET", "/", PROBE),
    ("POST", "/generate", API),
    ("POST", "/v2/chat/completions", API),
    ("GET", "/v2/models", API),
    # Open with the key: the OpenAI API a VL deployment serves and vLLM's basic server routes.
    ("GET", "/v1/models", API),
    ("POST", "/v1/chat/completions", API),
    ("POST", "/v1/completions", API),
    ("POST", "/tokenize", API),
    ("POST", "/detokenize", API),
    ("GET", "/tokenizer_info", API),  # --enable-tokenizer-info-endpoint
    ("GET", "/load", API),
    ("GET", "/version", API),
    ("GET", "/kv_event_sources", API),
    # Closed until server.open_routes names the group.
    ("GET POST", "/ping", "invocations"),
    ("POST", "/invocations", "invocations"),
    ("POST", "/scale_elastic_ep", "elastic_ep"),
    ("POST", "/is_scaling_elastic_ep", "elastic_ep"),
    ("POST", "/generative_scoring", "generative_scoring"),
    ("GET HEAD", "/openapi.json", "docs"),
    ("GET HEAD", "/docs", "docs"),
    ("GET HEAD", "/docs/oauth2-redirect", "docs"),
    ("GET HEAD", "/redoc", "docs"),
    ("GET HEAD", "/static/{path:path}", "docs"),  # --enable-offline-docs
    *(("POST", path, "dev") for path in _DEV_POST.split()),
    *(("GET", path, "dev") for path in _DEV_GET.split()),
    # VLLM_ALLOW_RUNTIME_LORA_UPDATING=1, and SageMaker's adapter routes when LoRA is on.
    ("POST", "/v1/load_lora_adapter", "lora"),
    ("POST", "/v1/unload_lora_adapter", "lora"),
    ("POST", "/adapters", "lora"),
    ("DELETE", "/adapters/{adapter_name}", "lora"),
    ("POST", "/start_profile", "profiler"),
    ("POST", "/stop_profile", "profiler"),
    ("POST", "/v1/responses", "responses"),
    ("GET", "/v1/responses/{response_id}", "responses"),
    ("POST", "/v1/responses/{response_id}/cancel", "responses"),
    ("POST", "/v1/messages", "messages"),
    ("POST", "/v1/messages/count_tokens", "messages"),
    ("POST", "/v1/chat/completions/batch", "batch"),
    ("POST", "/v1/systemone", "systemone"),
    *(("POST", path, "scale_out") for path in _SCALE_OUT_POST.split()),
    *(("POST", path, "pooling") for path in _POOLING_POST.split()),
    ("POST", "/v1/audio/transcriptions", "audio"),
    ("POST", "/v1/audio/translations", "audio"),
    (WEBSOCKET, "/v1/realtime", "realtime"),
    # Known and left unclassified (closed, no switch yet): VLLM_ENABLE_COHERE_API's
    # /cohere/v2/chat(/render) and --enable-fault-tolerance's /fault_tolerance/{apply,status}.
)


class Route(NamedTuple):
    """One classified route: the method, vLLM's path template and the group."""

    method: str
    template: str
    group: str


def _tables() -> tuple[dict[tuple[str, str], Route], list[tuple[str, re.Pattern[str], Route]]]:
    exact: dict[tuple[str, str], Route] = {}
    templated: list[tuple[str, re.Pattern[str], Route]] = []
    for methods, template, group in ROWS:
        for method in methods.split():
            route = Route(method, template, group)
            if "{" in template:
                templated.append((method, compile_path(template)[0], route))
            else:
                exact[(method, template)] = route
    return exact, templated


_EXACT, _TEMPLATED = _tables()


# The rows above that vl-serve answers itself (vLLM registers none of them).
OWN_ROUTES: Final = frozenset(
    {("GET", "/"), ("POST", "/generate"), ("POST", "/v2/chat/completions"), ("GET", "/v2/models")}
)


def is_canonical(path: str) -> bool:
    """Whether a path is in the one form a route is reached by: no empty, ``.`` or ``..``
    segment and no trailing slash (``/v1//models``, ``/v1/./models``, ``/v1/models/``); the root
    ``/`` is canonical."""
    if path == "/":
        return True  # the root itself
    if not path.startswith("/") or path.endswith("/"):
        return False
    return not any(seg in ("", ".", "..") for seg in path[1:].split("/"))


def classify(method: str, path: str) -> Route | None:
    """The route a request reaches (``path`` with ``root_path`` removed), None when unknown."""
    route = _EXACT.get((method, path))
    if route is not None:
        return route
    if not is_canonical(path):
        return None
    for row_method, pattern, route in _TEMPLATED:
        if row_method == method and pattern.match(path):
            return route
    return None


def routes() -> list[Route]:
    """Every classified route, in table order."""
    return [Route(m, template, group) for ms, template, group in ROWS for m in ms.split()]
