"""The Grafana dashboard: vLLM's usual panels and vl-serve's, each query on a metric that exists.

vLLM's names are those vLLM 0.32 exports (vllm/v1/metrics/loggers.py); vl-serve's are its own
``vl_serve:*`` metrics on the same /metrics. A test runs every query against a real Prometheus
scraping a real server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
UID = "vl-serve"
WINDOW = "1m"


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)


def _rate(metric: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}[{WINDOW}]))"


def _quantiles(metric: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        (f"histogram_quantile({q}, {_rate(metric + '_bucket', 'le')})", f"p{round(q * 100)}")
        for q in (0.5, 0.9, 0.99)
    )


VLLM_PANELS = (
    Panel(
        "Token throughput",
        "tokens/s",
        (
            (_rate("vllm:prompt_tokens_total"), "prompt"),
            (_rate("vllm:generation_tokens_total"), "generation"),
        ),
    ),
    Panel(
        "Finished requests",
        "reqps",
        ((_rate("vllm:request_success_total", "finished_reason"), "{{finished_reason}}"),),
    ),
    Panel("Time to first token", "s", _quantiles("vllm:time_to_first_token_seconds")),
    Panel("Time per output token", "s", _quantiles("vllm:request_time_per_output_token_seconds")),
    Panel("End-to-end latency", "s", _quantiles("vllm:e2e_request_latency_seconds")),
    Panel(
        "Scheduler queue",
        "short",
        (
            ("sum(vllm:num_requests_running)", "running"),
            ("sum(vllm:num_requests_waiting)", "waiting"),
        ),
    ),
    Panel("Queue time", "s", _quantiles("vllm:request_queue_time_seconds")),
    Panel("KV cache usage", "percentunit", (("max(vllm:kv_cache_usage_perc)", "used"),)),
    Panel(
        "Prefix cache hit rate",
        "percentunit",
        (
            (
                f"{_rate('vllm:prefix_cache_hits_total')} / {_rate('vllm:prefix_cache_queries_total')}",
                "hits",
            ),
        ),
    ),
    Panel("Preemptions", "short", ((_rate("vllm:num_preemptions_total"), "preempted"),)),
)

VL_SERVE_PANELS = (
    Panel(
        "Requests by dialect",
        "reqps",
        ((_rate("vl_serve:requests_total", "dialect"), "{{dialect}}"),),
    ),
    Panel(
        "Thinking on / off",
        "reqps",
        ((_rate("vl_serve:thinking_requests_total", "thinking"), "{{thinking}}"),),
    ),
    Panel("Refusals by code", "reqps", ((_rate("vl_serve:refusals_total", "code"), "{{code}}"),)),
    Panel(
        "Admission rejections",
        "reqps",
        ((_rate("vl_serve:admission_rejections_total"), "rejected"),),
    ),
    Panel(
        "Media items",
        "short",
        ((_rate("vl_serve:media_items_total", "modality, source"), "{{modality}} {{source}}"),),
    ),
    Panel("Media fetch time", "s", _quantiles("vl_serve:media_fetch_seconds")),
    Panel("Media fetch size", "bytes", _quantiles("vl_serve:media_fetch_bytes")),
    Panel("Media decode and check time", "s", _quantiles("vl_serve:media_decode_seconds")),
    Panel(
        "Ready and draining",
        "short",
        (("min(vl_serve:ready)", "ready"), ("max(vl_serve:draining)", "draining")),
    ),
)

PANELS = VLLM_PANELS + VL_SERVE_PANELS


def queries() -> list[str]:
    """Every PromQL expression of the dashboard."""
    return [expr for panel in PANELS for expr, _ in panel.queries]


def _panel(index: int, panel: Panel) -> dict[str, object]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }


def dashboard(title: str) -> str:
    """The dashboard as Grafana's JSON model (provisioned from a file)."""
    model = {
        "uid": UID,
        "title": title,
        "schemaVersion": 39,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": [_panel(i, p) for i, p in enumerate(PANELS)],
    }
    return json.dumps(model, indent=2) + "\n"
