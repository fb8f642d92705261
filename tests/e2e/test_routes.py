"""Access control end to end: every route vLLM registers, with no key, a wrong key and the key.

The route list is read from vLLM's own app, built in a subprocess with the flags and environment
the server gets (no engine, no model), so a route that a newer vLLM adds fails here until
vl_serve/server/routes.py classifies it. Requests go out through ``http.client``, which sends the
path and the Host header as given (no normalisation), for the path-trick rows. With ``-s`` the
module prints the route table (markdown) for the README.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers.vlserver import VLServer, tiny_config
from vl_serve import launch, loading
from vl_serve.config import VLServeConfig
from vl_serve.server import routes

pytestmark = pytest.mark.e2e

MODEL = "tiny-qwen3-vl"
KEY_ENV, KEY = "VL_SERVE_ROUTES_KEY", "sk-routes-5e0d1a"
TOKEN_ENV, TOKEN = "VL_SERVE_ROUTES_METRICS_TOKEN", "prom-routes-8b2c"
SECRETS = {KEY_ENV: KEY, TOKEN_ENV: TOKEN}
CONFIG = tiny_config(server={"api_key_env": KEY_ENV, "metrics_token_env": TOKEN_ENV})
TASKS = ("generate",)  # what vLLM reports for the tiny Qwen3-VL

# What the Mounts vLLM registers serve: /metrics/... is not classified (Prometheus' route is
# GET /metrics), /static/... is the offline docs.
MOUNTS = {"/metrics": "/metrics/x", "/static": "/static/x.js"}

_LIST_ROUTES = """
import json, sys
from starlette.routing import Mount, WebSocketRoute
from vllm.entrypoints.launchers.app import build_app
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
args = make_arg_parser(FlexibleArgumentParser()).parse_args(sys.argv[2:])
app = build_app(args, tuple(sys.argv[1].split(",")), None)
rows = []
for route in app.routes:
    if isinstance(route, Mount):
        rows.append(["MOUNT", route.path])
    elif isinstance(route, WebSocketRoute):
        rows.append(["WEBSOCKET", route.path])
    else:
        rows.extend([method, route.path] for method in sorted(route.methods))
print("ROUTES=" + json.dumps(rows))
"""

BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
    },
    "/v1/completions": {"model": MODEL, "prompt": "hi", "max_tokens": 1},
    "/tokenize": {"model": MODEL, "prompt": "hi"},
    "/detokenize": {"model": MODEL, "tokens": [1, 2]},
    "/generate": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
    "/v2/chat/completions": {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
    },
}


# Flags and variables that make vLLM register more routes (pooling routes need a pooling model).
ALL_ROUTES_ENV = {"VLLM_SERVER_DEV_MODE": "1", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"}
ALL_ROUTES_ARGV = [
    "--enable-lora",
    "--profiler-config",
    '{"profiler": "torch", "torch_profiler_dir": "/tmp/vl-serve-profile"}',
    "--enable-scale-out",
    "--tokens-only",
    "--enable-offline-docs",
    "--enable-tokenizer-info-endpoint",
    "--enable-fault-tolerance",
]
ALL_ROUTES_TASKS = ("generate", "transcription", "realtime")
# Known, closed and without a switch yet (see the end of routes.ROWS).
UNCLASSIFIED = {("POST", "/fault_tolerance/apply"), ("GET", "/fault_tolerance/status")}


def list_routes(
    config: dict[str, Any],
    tasks: tuple[str, ...] = TASKS,
    extra_argv: tuple[str, ...] | list[str] = (),
    extra_env: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """(method, path template) of every route vLLM registers, built in a fresh process with the
    flags and environment vl-serve gives the server (the middleware is constructed too)."""
    cfg = loading.validate(VLServeConfig, loading.interpolate(config))
    prepared = launch.prepare(cfg, build=False, check=False)
    env = {**os.environ, **prepared.env, **SECRETS, **(extra_env or {})}
    argv = [sys.executable, "-c", _LIST_ROUTES, ",".join(tasks), *prepared.argv[1:], *extra_argv]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    found = re.search(r"^ROUTES=(.*)$", proc.stdout, re.MULTILINE)
    assert proc.returncode == 0 and found, proc.stderr[-4000:]
    return [(method, path) for method, path in json.loads(found.group(1))]


def unclassified(listed: list[tuple[str, str]]) -> list[str]:
    missing = []
    for method, template in listed:
        if method == "MOUNT":
            if template not in MOUNTS:
                missing.append(f"Mount {template}: add it to MOUNTS here and classify its paths")
            continue
        route = routes.classify(method, concrete(method, template))
        if (route is None or route.template != template) and (method, template) not in UNCLASSIFIED:
            missing.append(f"{method} {template} (matched {route})")
    return missing


@pytest.fixture(scope="module")
def vllm_routes() -> list[tuple[str, str]]:
    return list_routes(CONFIG)


@pytest.fixture(scope="module")
def server() -> Iterator[VLServer]:
    srv = VLServer(CONFIG, env=SECRETS, name="routes")
    yield srv
    srv.close()


def send(
    srv: VLServer,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> int:
    """The status of one request, sent byte for byte as given (path, Host header and all)."""
    where = urlsplit(srv.base_url)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=120)
    try:
        headers = {"Host": f"{where.hostname}:{where.port}", **(headers or {})}
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        data = json.dumps(body).encode() if body is not None else b""
        if method in ("POST", "DELETE") or body is not None:
            headers |= {"Content-Type": "application/json", "Content-Length": str(len(data))}
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(data or None)
        return conn.getresponse().status
    finally:
        conn.close()


def concrete(method: str, template: str) -> str:
    """A path that reaches the route: each ``{param}`` filled with a plausible value."""
    if method == "MOUNT":
        return MOUNTS[template]
    return re.sub(r"\{[^}]+\}", "x1", template)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


WEBSOCKET_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def statuses(srv: VLServer, method: str, path: str) -> list[int]:
    """The status with no key, a wrong key and the key."""
    if method == routes.WEBSOCKET:  # closed before the accept: uvicorn answers 403
        method, extra, body = "GET", WEBSOCKET_HEADERS, None
    else:
        method = "GET" if method == "MOUNT" else method
        extra, body = {}, BODIES.get(path, {}) if method == "POST" else None
    return [
        send(srv, method, path, {**extra, **auth}, body)
        for auth in ({}, bearer("sk-wrong"), bearer(KEY))
    ]


def test_every_vllm_route_is_classified(vllm_routes: list[tuple[str, str]]) -> None:
    missing = unclassified(vllm_routes)
    assert not missing, "classify these in vl_serve/server/routes.py:\n" + "\n".join(missing)


def test_every_flagged_vllm_route_is_classified() -> None:
    """The routes that flags, variables and audio tasks add (dev, LoRA, profiler, scale-out...)."""
    listed = list_routes(CONFIG, ALL_ROUTES_TASKS, ALL_ROUTES_ARGV, ALL_ROUTES_ENV)
    missing = unclassified(listed)
    assert not missing, "classify these in vl_serve/server/routes.py:\n" + "\n".join(missing)
    assert (routes.WEBSOCKET, "/v1/realtime") in listed and ("POST", "/collective_rpc") in listed


def test_every_vllm_route(server: VLServer, vllm_routes: list[tuple[str, str]]) -> None:
    wrong = []
    for method, template in vllm_routes:
        path = concrete(method, template)
        route = routes.classify("GET" if method == "MOUNT" else method, path)
        got = statuses(server, method, path)
        if route is None or route.group not in routes.OPEN_GROUPS:
            closed = [403, 403, 403] if method == routes.WEBSOCKET else [404, 404, 404]
            ok = got == closed
        elif route.group == routes.PROBE:
            ok = all(status not in (401, 404) and status < 500 for status in got)
        else:
            ok = got[:2] == [401, 401] and got[2] not in (401, 404) and got[2] < 500
        if not ok:
            group = route.group if route else "unclassified"
            wrong.append(f"{method} {path} [{group}]: no key, wrong key, key -> {got}")
    assert not wrong, "\n".join(wrong)


def answer(srv: VLServer, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a keyed POST."""
    where = urlsplit(srv.base_url)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=120)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **KEYED})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, {}
    finally:
        conn.close()


CLIENT_KWARGS = {
    "mm_processor_kwargs": {"fps": 1},
    "media_io_kwargs": {"video": {"fps": 30, "num_frames": 2}},
}


def test_client_mm_kwargs_refused_on_every_open_post_route(
    server: VLServer, vllm_routes: list[tuple[str, str]]
) -> None:
    """vLLM runs with --trust-request-mm-kwargs (vl-serve sets media_io_kwargs itself), so with
    media.trust_request_mm_kwargs off no open POST route may take a client's mm_processor_kwargs
    or media_io_kwargs: vl-serve's 400 names the field on each."""
    wrong, checked = [], []
    for method, template in vllm_routes:
        path = concrete(method, template)
        route = routes.classify(method, path)
        if method != "POST" or route is None or route.group not in routes.OPEN_GROUPS:
            continue
        checked.append(path)
        for key, value in CLIENT_KWARGS.items():
            status, body = answer(server, path, {**BODIES.get(path, {}), key: value})
            err = body.get("error") or {}
            if (status, err.get("param"), err.get("code")) != (400, key, "invalid_parameter"):
                wrong.append(f"POST {path} with {key}: {status} {body}")
    print(f"\n{len(checked)} open POST routes checked: {' '.join(checked)}")
    assert {"/v1/chat/completions", "/v1/completions", "/tokenize"} <= set(checked)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("method", "path"),
    sorted(routes.OWN_ROUTES),
    ids=[f"{m} {p}" for m, p in sorted(routes.OWN_ROUTES)],
)
def test_vl_serves_own_routes(server: VLServer, method: str, path: str) -> None:
    """The routes vl-serve answers for other servers' clients: a probe is open, the rest need
    the key like vLLM's API."""
    route = routes.classify(method, path)
    assert route is not None
    got = statuses(server, method, path)
    if route.group == routes.PROBE:
        assert got == [200, 200, 200]
    else:
        assert got == [401, 401, 200]


NONE: dict[str, str] = {}
KEYED = bearer(KEY)
PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
TRICKS = [
    pytest.param("GET", "//v1/models", KEYED, 404, id="double_slash_lead"),
    pytest.param("GET", "/v1//models", KEYED, 404, id="double_slash_inner"),
    pytest.param("GET", "/v1/./models", KEYED, 404, id="dot_segment"),
    pytest.param("GET", "/v1/../health", NONE, 404, id="dotdot_to_probe"),
    pytest.param("GET", "/v1/%2e%2e/health", NONE, 404, id="pct_dotdot_to_probe"),
    pytest.param("GET", "/health/%2E%2E/v1/models", KEYED, 404, id="pct_dotdot_to_api"),
    pytest.param("GET", "/V1/models", KEYED, 404, id="upper_case"),
    pytest.param("GET", "/v1/models/", KEYED, 404, id="trailing_slash"),
    pytest.param("GET", "/v1/models;x", KEYED, 404, id="trailing_junk"),
    pytest.param("GET", "/v1/%6dodels", NONE, 401, id="pct_decoded_needs_key"),
    pytest.param("GET", "/v1/%6dodels", KEYED, 200, id="pct_decoded_with_key"),
    pytest.param("GET", "/v1%2Fmodels", NONE, 401, id="pct_slash_needs_key"),
    pytest.param("GET", "/v1/models?x=/../../health", NONE, 401, id="query_ignored"),
    pytest.param("GET", "/health?x=1", NONE, 200, id="probe_query"),
    pytest.param("GET", "http://evil.example/v1/models", NONE, 401, id="absolute_form"),
    pytest.param("GET", "/v1/models", {"Host": "x/?"}, 401, id="host_query"),
    pytest.param("GET", "/v1/models", {"Host": "x/health?"}, 401, id="host_probe"),
    pytest.param("GET", "/v1/models", {"Host": "x/docs?"}, 401, id="host_docs"),
    pytest.param("GET", "/metrics/x", KEYED, 404, id="metrics_mount_subpath"),
    pytest.param("GET", "/metricsfoo", KEYED, 404, id="metrics_mount_junk"),
    pytest.param("GET", "/metrics", NONE, 401, id="metrics_no_key"),
    pytest.param("GET", "/metrics", bearer(TOKEN), 200, id="metrics_token"),
    pytest.param("GET", "/v1/models", bearer(TOKEN), 401, id="metrics_token_not_a_key"),
    pytest.param("GET", "/v1/models", {"x-api-key": KEY}, 200, id="x_api_key"),
    pytest.param("GET", "/v1/models", {"Authorization": f"bearer {KEY}"}, 200, id="lowercase"),
    pytest.param("HEAD", "/health", NONE, 404, id="head_probe_not_registered"),
    pytest.param("OPTIONS", "/v1/models", NONE, 404, id="plain_options"),
    pytest.param("OPTIONS", "/invocations", PREFLIGHT, 404, id="preflight_closed"),
]


@pytest.mark.parametrize(("method", "target", "headers", "expected"), TRICKS)
def test_path_tricks(
    server: VLServer, method: str, target: str, headers: dict[str, str], expected: int
) -> None:
    assert send(server, method, target, headers) == expected


def test_preflight_reaches_cors(server: VLServer) -> None:
    """vLLM's CORS middleware answers it (400: no origin is allowed by default), not our 401."""
    assert send(server, "OPTIONS", "/v1/chat/completions", PREFLIGHT) == 400


def test_route_table(vllm_routes: list[tuple[str, str]]) -> None:
    """Print the classified routes as a markdown table (visible with ``-s``)."""
    registered = {(m, p) for m, p in vllm_routes}
    lines = [
        "| route | group | by default | key needed | registered by default |",
        "| --- | --- | --- | --- | --- |",
    ]
    need = {routes.PROBE: "no", routes.METRICS: "key or metrics token"}
    for route in routes.routes():
        closed = route.group not in routes.OPEN_GROUPS
        lines.append(
            f"| `{route.method} {route.template}` | {route.group} | "
            f"{'closed' if closed else 'open'} | {need.get(route.group, 'yes')} | "
            f"{'yes' if (route.method, route.template) in registered else 'no'} |"
        )
    print("\n" + "\n".join(lines))
    assert len(lines) > 2
