"""Prometheus scraping of vl-serve's /metrics: a scrape config (compose) or a ServiceMonitor."""

from __future__ import annotations

from typing import Any

from vl_serve.render import kube
from vl_serve.render.shape import Shape

INTERVAL = "15s"


def _auth(s: Shape, token_file: str) -> dict[str, Any]:
    """/metrics needs the metrics token (or an API key) unless the config opens it."""
    if s.metrics_token_env is None:
        return {}
    return {"authorization": {"type": "Bearer", "credentials_file": token_file}}


def static(s: Shape, target: str, token_file: str, *, interval: str = INTERVAL) -> dict[str, Any]:
    """Prometheus' whole config for one vl-serve at ``target`` (host:port)."""
    job = {
        "job_name": "vl-serve",
        "metrics_path": "/metrics",
        "scrape_interval": interval,
        **_auth(s, token_file),
        "static_configs": [{"targets": [target], "labels": {"deployment": s.name}}],
    }
    return {"global": {"scrape_interval": interval}, "scrape_configs": [job]}


def service_monitor(s: Shape) -> dict[str, Any]:
    """A Prometheus Operator ServiceMonitor on the Service's ``http`` port, with the token from
    the deployment's secret (the pods also carry the ``prometheus.io/*`` annotations)."""
    endpoint: dict[str, Any] = {"port": "http", "path": "/metrics", "interval": INTERVAL}
    if s.metrics_token_env is not None:
        token = {"name": s.secret, "key": s.metrics_token_env}
        endpoint["authorization"] = {"type": "Bearer", "credentials": token}
    labels = kube.labels(s)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": s.name, "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "endpoints": [endpoint]},
    }
