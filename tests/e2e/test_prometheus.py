"""The dashboard against real metrics: a real Prometheus scraping a real tiny vl-serve.

Prometheus (the prometheus package's binary) runs the scrape job ``vl-serve render`` writes for
Compose (vl_serve.render.prometheus.static, the metrics token from a file as Compose's secret
gives it), pointed at this module's server. Requests first create the series (an image by URL
and by data URL, thinking on and off, a refused image); then every query of the provisioned
dashboard must return at least one series: no panel on a metric that does not exist.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import prometheus_server
from tests.helpers.media_files import data_url, png_bytes
from tests.helpers.media_hosts import MediaHost
from tests.helpers.vlserver import VLServer, reasoning_config, running
from vl_serve.config import from_dict
from vl_serve.render import dashboard, prometheus
from vl_serve.render.shape import shape

pytestmark = pytest.mark.e2e

MODEL = "tiny-qwen3-vl"
KEY_ENV = "VL_SERVE_TEST_PROM_KEY"
KEY = "prometheus-e2e-key"
SERIES_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def host() -> Iterator[MediaHost]:
    srv = MediaHost({"red.png": png_bytes(64, 64, (220, 20, 20))})
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return reasoning_config(
        "qwen3_vl",
        served_model_name=MODEL,
        server={"api_key_env": KEY_ENV},
        media={"allowed_networks": ["127.0.0.1/32"]},
    )


@pytest.fixture(scope="module")
def server(config: dict[str, Any], host: MediaHost) -> Iterator[VLServer]:
    with running(config, env={KEY_ENV: KEY}, name="prometheus") as srv:
        yield srv


def _chat(server: VLServer, content: Any, **extra: Any) -> httpx.Response:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        **extra,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.post(server.url("/v1/chat/completions"), json=body, headers=headers, timeout=120)


def _image(url: str) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]


@pytest.fixture(scope="module")
def prom(
    server: VLServer,
    host: MediaHost,
    config: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[prometheus_server.Prometheus]:
    token = tmp_path_factory.mktemp("secrets") / "metrics_token"
    token.write_text(KEY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        cfg = from_dict(config)
    s = shape(cfg, "", name="vl-serve", image="x", gpus_per_node=8, multi_node=False, source="-")
    target = server.base_url.removeprefix("http://")
    scrape = prometheus.static(s, target, str(token), interval="1s")
    with prometheus_server.running(scrape) as prom:
        thinking = {"chat_template_kwargs": {"enable_thinking": True}}
        answered = [
            _chat(server, _image(host.url("red.png"))),
            _chat(server, _image(data_url(png_bytes(32, 32)))),
            _chat(server, "hello", **thinking),
            _chat(server, "hello", chat_template_kwargs={"enable_thinking": False}),
        ]
        assert [r.status_code for r in answered] == [200] * 4, [r.text for r in answered]
        refused = _chat(server, _image(host.url("missing.png")))
        assert refused.status_code == 400, refused.text
        yield prom


def test_prometheus_scrapes_vl_serve_with_the_token(prom: prometheus_server.Prometheus) -> None:
    deadline = time.monotonic() + SERIES_TIMEOUT_S
    targets = prom.targets()
    while time.monotonic() < deadline and [t["health"] for t in targets] != ["up"]:
        time.sleep(0.5)  # discovered, then scraped
        targets = prom.targets()
    (target,) = targets
    assert target["health"] == "up", target.get("lastError")
    assert target["scrapeUrl"].endswith("/metrics")


@pytest.mark.parametrize(
    "expr",
    [
        pytest.param(
            expr, id=f"{panel.title}-{legend}".replace(" ", "_").replace("{", "").replace("}", "")
        )
        for panel in dashboard.PANELS
        for expr, legend in panel.queries
    ],
)
def test_every_dashboard_query_returns_a_series(
    prom: prometheus_server.Prometheus, expr: str
) -> None:
    """Each panel query has at least one series once the requests above were scraped (a rate
    needs two scrapes of the counter: the query is polled until it has them)."""
    deadline = time.monotonic() + SERIES_TIMEOUT_S
    result = prom.query(expr)
    while not result and time.monotonic() < deadline:
        time.sleep(1)
        result = prom.query(expr)
    assert result, f"no series for {expr}"


def test_scrape_without_the_token_is_refused(server: VLServer) -> None:
    """The scrape job's token is what opens /metrics: without it the server refuses."""
    assert httpx.get(server.url("/metrics"), timeout=10).status_code == 401
