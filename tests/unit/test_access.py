"""AccessMiddleware: deny by default on every route, without vLLM.

Most rows call the middleware with a raw ASGI scope, as uvicorn hands it over (``path`` already
percent-decoded), in front of a stand-in app that answers 200 and records what reached it; a few
go through Starlette's TestClient over a FastAPI app with vLLM's CORS middleware behind ours.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, get_args

import pytest
from fastapi import FastAPI, WebSocket
from starlette.middleware.cors import CORSMiddleware
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from vl_serve import runtime
from vl_serve.config import RouteGroup, VLServeConfig
from vl_serve.server import routes
from vl_serve.server.access import AccessMiddleware

KEY, KEY2, TOKEN = "sk-first-7c1f", "sk-second-99ab", "prom-token-31d0"
BEARER = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", KEY)
    monkeypatch.setenv("T_KEY2", KEY2)
    monkeypatch.setenv("T_TOKEN", TOKEN)


def server(keys: Any = "T_KEY", **fields: Any) -> dict[str, Any]:
    return {"server": {"api_key_env": keys, **fields}}


class Result:
    def __init__(self) -> None:
        self.reached: list[tuple[Any, Any, Any]] = []
        self.sent: list[dict[str, Any]] = []

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def error(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.sent[1]["body"])["error"]
        return body


def call(
    settings: dict[str, Any],
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    root_path: str = "",
    kind: str = "http",
) -> Result:
    result = Result()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        result.reached.append((scope, receive, send))
        if kind == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        result.sent.append(message)

    raw = [(k.encode(), v.encode()) for k, v in {"host": "t", **(headers or {})}.items()]
    scope = {"type": kind, "path": path, "root_path": root_path, "headers": raw}
    if kind == "http":
        scope["method"] = method
    asyncio.run(AccessMiddleware(app, settings)(scope, receive, send))
    if result.reached:
        assert result.reached[0][1] is receive and result.reached[0][2] is send  # untouched
    return result


def status(settings: dict[str, Any], method: str, path: str, **kw: Any) -> int:
    result = call(settings, method, path, **kw)
    return result.status if result.sent else 1008


# --- the table ----------------------------------------------------------------------------------


def test_table_groups_are_the_config_switches() -> None:
    closed = {route.group for route in routes.routes()} - routes.OPEN_GROUPS
    assert closed == set(get_args(RouteGroup))


def test_table_exact_rows_are_canonical_and_not_shadowed() -> None:
    """Exact rows are looked up before templates: no template of the same method may match one
    (Starlette takes the first route in order, so a shadowing template would disagree)."""
    rows = routes.routes()
    for route in rows:
        if "{" not in route.template:
            assert routes.is_canonical(route.template), route
            assert routes.classify(route.method, route.template) == route
    assert len({(r.method, r.template) for r in rows}) == len(rows), "duplicate rows"


CLASSIFY = [
    pytest.param("GET", "/v1/responses/resp_1", "responses", id="template"),
    pytest.param("POST", "/v1/responses/resp_1/cancel", "responses", id="template_suffix"),
    pytest.param("POST", "/v1/responses/render", "scale_out", id="exact_before_template"),
    pytest.param("GET", "/v1/responses/..", None, id="template_dotdot"),
    pytest.param("GET", "/v1/responses/a/b", None, id="template_one_segment"),
    pytest.param("GET", "/static/js/app.js", "docs", id="path_template"),
    pytest.param("GET", "/static/../health", None, id="path_template_dotdot"),
    pytest.param("DELETE", "/adapters/my-lora", "lora", id="delete"),
    pytest.param("HEAD", "/health", None, id="head_not_registered"),
    pytest.param("HEAD", "/docs", "docs", id="head_docs"),
    pytest.param("POST", "/v1/models", None, id="wrong_method"),
    pytest.param("GET", "/metrics/x", None, id="metrics_mount_subpath"),
    pytest.param(routes.WEBSOCKET, "/v1/realtime", "realtime", id="websocket"),
    pytest.param("GET", "/v1/realtime", None, id="websocket_route_over_http"),
]


@pytest.mark.parametrize(("method", "path", "group"), CLASSIFY)
def test_classify(method: str, path: str, group: str | None) -> None:
    route = routes.classify(method, path)
    assert (route.group if route else None) == group


# --- paths --------------------------------------------------------------------------------------

PATHS = [
    pytest.param("GET", "/health", {}, "", 200, id="probe_no_key"),
    pytest.param("GET", "/ready", {}, "", 200, id="ready_probe_no_key"),
    pytest.param("GET", "/v1/models", {}, "", 401, id="api_no_key"),
    pytest.param("GET", "/v1/models", BEARER, "", 200, id="api_key"),
    pytest.param("GET", "//v1/models", BEARER, "", 404, id="double_slash_lead"),
    pytest.param("GET", "/v1//models", BEARER, "", 404, id="double_slash_inner"),
    pytest.param("GET", "/v1/./models", BEARER, "", 404, id="dot_segment"),
    pytest.param("GET", "/v1/../v1/models", BEARER, "", 404, id="dotdot_to_api"),
    pytest.param("GET", "/v1/../health", {}, "", 404, id="dotdot_to_probe"),
    # uvicorn decodes %xx before scope["path"]: /v1/%2e%2e/health arrives as /v1/../health
    pytest.param("GET", "/v1/../health", BEARER, "", 404, id="pct2e_dotdot_decoded"),
    pytest.param("GET", "/v1/models", {}, "", 401, id="pct6d_decoded_needs_key"),
    pytest.param("GET", "/V1/models", BEARER, "", 404, id="upper_case"),
    pytest.param("GET", "/v1/models/", BEARER, "", 404, id="trailing_slash"),
    pytest.param("GET", "/health/", {}, "", 404, id="probe_trailing_slash"),
    pytest.param("GET", "/v1/models;x", BEARER, "", 404, id="trailing_junk"),
    pytest.param("GET", "/metricsfoo", BEARER, "", 404, id="metrics_mount_junk"),
    pytest.param("GET", "/metrics/x", BEARER, "", 404, id="metrics_mount_subpath"),
    pytest.param("GET", "/v1/models", {"host": "x/?"}, "", 401, id="host_query"),
    pytest.param("GET", "/v1/models", {"host": "x/health?"}, "", 401, id="host_probe"),
    pytest.param("GET", "/v1/models", {"host": "x/docs#"}, "", 401, id="host_fragment"),
    pytest.param("GET", "/api/v1/models", {}, "/api", 401, id="root_path_api"),
    pytest.param("GET", "/api/health", {}, "/api", 200, id="root_path_probe"),
    pytest.param("GET", "/health", {}, "/api", 200, id="outside_root_path"),
    pytest.param("GET", "/apihealth", {}, "/api", 404, id="root_path_no_boundary"),
    pytest.param("GET", "/api", {}, "/api", 404, id="root_path_itself"),
    pytest.param("GET", "/nope", BEARER, "", 404, id="unknown"),
    pytest.param("GET", "", {}, "", 404, id="empty"),
]


@pytest.mark.parametrize(("method", "path", "headers", "root", "expected"), PATHS)
def test_paths(method: str, path: str, headers: dict[str, str], root: str, expected: int) -> None:
    assert status(server(), method, path, headers=headers, root_path=root) == expected


def test_unknown_route_answer() -> None:
    result = call(server(), "GET", "/v1/brand_new_route", BEARER)
    assert result.status == 404 and not result.reached
    assert result.error == {
        "message": "Not found.",
        "type": "NotFoundError",
        "param": None,
        "code": "route_closed",
    }


# --- keys ---------------------------------------------------------------------------------------

TWO = ["T_KEY", "T_KEY2"]
KEYS = [
    pytest.param("T_KEY", {"authorization": f"Bearer {KEY}"}, 200, id="bearer"),
    pytest.param("T_KEY", {"authorization": f"bearer {KEY}"}, 200, id="lowercase_scheme"),
    pytest.param("T_KEY", {"authorization": f"BEARER {KEY}"}, 200, id="uppercase_scheme"),
    pytest.param("T_KEY", {"authorization": f"Bearer   {KEY} "}, 200, id="extra_spaces"),
    pytest.param("T_KEY", {"x-api-key": KEY}, 200, id="x_api_key"),
    pytest.param(TWO, {"authorization": f"Bearer {KEY2}"}, 200, id="second_of_two"),
    pytest.param(TWO, {"x-api-key": KEY2}, 200, id="second_of_two_x_api_key"),
    pytest.param("T_KEY", {"x-api-key": "no", "authorization": f"Bearer {KEY}"}, 200, id="either"),
    pytest.param("T_KEY", {}, 401, id="missing"),
    pytest.param("T_KEY", {"authorization": "Bearer wrong"}, 401, id="wrong"),
    pytest.param("T_KEY", {"authorization": f"Bearer {KEY2}"}, 401, id="other_server_key"),
    pytest.param("T_KEY", {"authorization": f"Bearer {KEY}x"}, 401, id="key_plus_suffix"),
    pytest.param("T_KEY", {"authorization": f"Bearer {KEY[:-1]}"}, 401, id="key_prefix"),
    pytest.param("T_KEY", {"authorization": f"Basic {KEY}"}, 401, id="basic_scheme"),
    pytest.param("T_KEY", {"authorization": KEY}, 401, id="no_scheme"),
    pytest.param("T_KEY", {"authorization": "Bearer "}, 401, id="empty_bearer"),
    pytest.param("T_KEY", {"x-api-key": ""}, 401, id="empty_x_api_key"),
    pytest.param("T_KEY", {"x-api-key": f"Bearer {KEY}"}, 401, id="x_api_key_with_scheme"),
    pytest.param("T_KEY", {"authorization": f"Bearer {TOKEN}"}, 401, id="metrics_token_on_api"),
]


@pytest.mark.parametrize(("keys", "headers", "expected"), KEYS)
def test_keys(keys: Any, headers: dict[str, str], expected: int) -> None:
    settings = server(keys, metrics_token_env="T_TOKEN")
    assert status(settings, "POST", "/v1/chat/completions", headers=headers) == expected


def test_401_answer_never_echoes_the_key() -> None:
    result = call(server(), "POST", "/v1/chat/completions", {"authorization": f"Bearer {KEY}x"})
    assert result.status == 401 and not result.reached
    assert result.headers[b"www-authenticate"] == b"Bearer"
    assert result.headers[b"content-type"] == b"application/json"
    assert result.error["code"] == "invalid_api_key"
    assert result.error["type"] == "AuthenticationError"
    assert set(result.error) == {"message", "type", "param", "code"}
    assert KEY.encode() not in result.sent[1]["body"]


def test_missing_key_variable_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_EMPTY", "")
    cases = (
        ("T_UNSET_VAR", server(["T_KEY", "T_UNSET_VAR"])),
        ("T_EMPTY", server(metrics_token_env="T_EMPTY")),
    )
    for name, settings in cases:
        with pytest.raises(RuntimeError, match=f"environment variable {name} is not set"):
            AccessMiddleware(lambda *a: None, settings)  # type: ignore[arg-type]


def test_settings_carry_names_never_keys() -> None:
    cfg = VLServeConfig(model="m", server={"api_key_env": TWO, "metrics_token_env": "T_TOKEN"})
    encoded = runtime.encode(runtime.runtime_sections(cfg))
    assert "T_KEY2" in encoded and "T_TOKEN" in encoded
    assert not any(secret in encoded for secret in (KEY, KEY2, TOKEN))


# --- metrics ------------------------------------------------------------------------------------

NO_KEY: dict[str, str] = {}
TOKEN_BEARER = {"authorization": f"Bearer {TOKEN}"}
METRICS = [
    pytest.param(server(), NO_KEY, 401, id="keyed_no_key"),
    pytest.param(server(), BEARER, 200, id="keyed_key"),
    pytest.param(server(), {"x-api-key": KEY}, 200, id="keyed_x_api_key"),
    pytest.param(server(), TOKEN_BEARER, 401, id="token_not_configured"),
    pytest.param(server(metrics_token_env="T_TOKEN"), TOKEN_BEARER, 200, id="token"),
    pytest.param(server(metrics_token_env="T_TOKEN"), BEARER, 200, id="key_with_token_set"),
    pytest.param(
        server(metrics_token_env="T_TOKEN"), {"authorization": "Bearer x"}, 401, id="wrong"
    ),
    pytest.param(server(open_metrics=True), NO_KEY, 200, id="open_metrics"),
    pytest.param(server(None), NO_KEY, 200, id="no_key_mode"),
    pytest.param(server(None, metrics_token_env="T_TOKEN"), NO_KEY, 401, id="token_only_no_key"),
    pytest.param(server(None, metrics_token_env="T_TOKEN"), TOKEN_BEARER, 200, id="token_only"),
]


@pytest.mark.parametrize(("settings", "headers", "expected"), METRICS)
def test_metrics(settings: dict[str, Any], headers: dict[str, str], expected: int) -> None:
    assert status(settings, "GET", "/metrics", headers=headers) == expected


def test_metrics_token_only_leaves_api_open() -> None:
    assert status(server(None, metrics_token_env="T_TOKEN"), "GET", "/v1/models") == 200


# --- closed groups ------------------------------------------------------------------------------

SAMPLES = {
    "invocations": ("POST", "/invocations"),
    "elastic_ep": ("POST", "/scale_elastic_ep"),
    "generative_scoring": ("POST", "/generative_scoring"),
    "docs": ("GET", "/openapi.json"),
    "dev": ("POST", "/collective_rpc"),
    "lora": ("POST", "/v1/load_lora_adapter"),
    "profiler": ("POST", "/start_profile"),
    "responses": ("GET", "/v1/responses/resp_1"),
    "messages": ("POST", "/v1/messages"),
    "batch": ("POST", "/v1/chat/completions/batch"),
    "systemone": ("POST", "/v1/systemone"),
    "scale_out": ("POST", "/inference/v1/generate"),
    "pooling": ("POST", "/v1/embeddings"),
    "audio": ("POST", "/v1/audio/transcriptions"),
    "realtime": (routes.WEBSOCKET, "/v1/realtime"),
}


def test_every_group_has_a_sample() -> None:
    assert set(SAMPLES) == set(get_args(RouteGroup))


def _sample(group: str, settings: dict[str, Any], headers: dict[str, str]) -> int:
    method, path = SAMPLES[group]
    if method == routes.WEBSOCKET:
        result = call(settings, "", path, headers, kind="websocket")
        return 200 if result.reached else int(result.sent[0]["code"])
    return status(settings, method, path, headers=headers)


@pytest.mark.parametrize("group", sorted(SAMPLES))
def test_closed_group(group: str) -> None:
    assert _sample(group, server(), BEARER) in (404, 1008)
    assert _sample(group, server(None), NO_KEY) in (404, 1008)  # closed without a key too
    method, path = SAMPLES[group]
    if method != routes.WEBSOCKET:
        error = call(server(), method, path, BEARER).error
        assert error["code"] == "route_closed"
        assert f"'{group}' to server.open_routes" in error["message"]


@pytest.mark.parametrize("group", sorted(SAMPLES))
def test_opened_group_needs_the_key(group: str) -> None:
    opened = server(open_routes=[group])
    assert _sample(group, opened, BEARER) == 200
    assert _sample(group, opened, NO_KEY) in (401, 1008)
    assert _sample(group, server(None, open_routes=[group]), NO_KEY) == 200
    other = next(g for g in sorted(SAMPLES) if g != group)
    assert _sample(other, opened, BEARER) in (404, 1008)


# --- preflights, websockets, other scopes, no-key mode ------------------------------------------

PREFLIGHT = {"origin": "https://app.example", "access-control-request-method": "POST"}
OPTIONS = [
    pytest.param("/v1/chat/completions", PREFLIGHT, 200, id="preflight_open_route"),
    pytest.param("/v1/models", PREFLIGHT, 404, id="preflight_unregistered_method"),
    pytest.param(
        "/v1/models", {**PREFLIGHT, "access-control-request-method": "get"}, 200, id="lower_method"
    ),
    pytest.param("/invocations", PREFLIGHT, 404, id="preflight_closed_route"),
    pytest.param("//v1/chat/completions", PREFLIGHT, 404, id="preflight_odd_path"),
    pytest.param("/v1/chat/completions", {"origin": "https://app.example"}, 404, id="plain"),
]


@pytest.mark.parametrize(("path", "headers", "expected"), OPTIONS)
def test_options(path: str, headers: dict[str, str], expected: int) -> None:
    assert status(server(), "OPTIONS", path, headers=headers) == expected


def test_other_scopes_pass() -> None:
    reached = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    async def nothing(*args: Any) -> Any:
        return None

    asyncio.run(AccessMiddleware(app, server())({"type": "lifespan"}, nothing, nothing))
    assert reached == ["lifespan"]


def test_no_key_mode() -> None:
    assert status(server(None), "POST", "/v1/chat/completions") == 200
    assert status(server(None), "GET", "/invocations") == 404
    assert status(server(None), "GET", "//v1/models") == 404


# --- through Starlette: a FastAPI app with vLLM's CORS middleware behind ours -------------------


def _client(settings: dict[str, Any]) -> TestClient:
    app = FastAPI()
    app.add_api_route("/v1/chat/completions", lambda: {"ok": True}, methods=["POST"])
    app.add_api_route("/health", lambda: {}, methods=["GET"])

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    app.add_middleware(CORSMiddleware, allow_origins=["https://app.example"], allow_methods=["*"])
    app.add_middleware(AccessMiddleware, settings=settings)  # last added: outermost
    return TestClient(app)


def test_starlette_decoded_paths_and_preflight() -> None:
    client = _client(server())
    assert client.get("/v1/%2e%2e/health").status_code == 404
    assert client.get("/%68ealth").status_code == 200
    assert client.post("/v1/chat/completions").status_code == 401
    assert client.post("/v1/chat/completions", headers=BEARER).json() == {"ok": True}
    preflight = client.options("/v1/chat/completions", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_starlette_websocket() -> None:
    opened = _client(server(open_routes=["realtime"]))
    for client, headers in ((_client(server()), BEARER), (opened, {})):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/v1/realtime", headers=headers),
        ):
            pass
        assert refused.value.code == 1008
    with opened.websocket_connect("/v1/realtime", headers=BEARER) as ws:
        assert ws.receive_text() == "hello"


def test_server_stack_puts_access_outside_the_request_middleware() -> None:
    """The one class vLLM is given: operations outermost, then the access check around the
    request middleware."""
    from vl_serve.server.middleware import DialectMiddleware
    from vl_serve.server.ops import OpsMiddleware
    from vl_serve.server.stack import ServerStack

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        raise AssertionError("not called")

    stack = ServerStack(app, {"server": {}})
    assert isinstance(stack, OpsMiddleware)
    assert isinstance(stack.app, AccessMiddleware)
    assert isinstance(stack.app.app, DialectMiddleware)
    assert stack.app.app.app is app
