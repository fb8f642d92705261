"""The ``compose`` target: vl-serve, Prometheus scraping it and Grafana with the dashboard."""

from __future__ import annotations

from vl_serve.render import dashboard, prometheus, yamltext
from vl_serve.render.shape import CONFIG_PATH, EXIT_MARGIN_S, HF_CACHE, Shape

PROMETHEUS_IMAGE = "prom/prometheus:v3.4.0"
GRAFANA_IMAGE = "grafana/grafana:11.6.0"
TOKEN_FILE = "/run/secrets/metrics_token"
HEALTHCHECK = (
    "import sys, urllib.request; "
    "sys.exit(urllib.request.urlopen('http://127.0.0.1:{port}/health').status != 200)"
)


def _server(s: Shape) -> dict[str, object]:
    gpus = {"driver": "nvidia", "count": s.gpus_per_node, "capabilities": ["gpu"]}
    return {
        "image": s.image,
        "command": s.args(),
        # Names only: each value comes from the environment `docker compose` runs in.
        "environment": [*s.secret_envs, "HF_TOKEN"]
        if "HF_TOKEN" not in s.secret_envs
        else list(s.secret_envs),
        "ports": [f"{s.port}:{s.port}"],
        "configs": [{"source": "vl-serve-config", "target": CONFIG_PATH}],
        "volumes": [f"model-cache:{HF_CACHE}"],
        "shm_size": s.shm.replace("Gi", "gb"),
        "deploy": {"resources": {"reservations": {"devices": [gpus]}}},
        # SIGTERM starts vl-serve's drain: let it finish before the kill.
        "stop_grace_period": f"{s.drain_s + EXIT_MARGIN_S}s",
        "healthcheck": {
            "test": ["CMD", "python3", "-c", HEALTHCHECK.format(port=s.port)],
            "interval": "30s",
            "timeout": "5s",
            "start_period": "30m",
        },
        "restart": "unless-stopped",
    }


def files(s: Shape) -> dict[str, str]:
    """Every file of the compose project, by path relative to its folder."""
    prometheus_service: dict[str, object] = {
        "image": PROMETHEUS_IMAGE,
        "volumes": ["./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"],
        "ports": ["9090:9090"],
        "depends_on": ["vl-serve"],
        "restart": "unless-stopped",
    }
    top: dict[str, object] = {"configs": {"vl-serve-config": {"file": "./vl-serve.yaml"}}}
    if s.metrics_token_env:
        prometheus_service["secrets"] = ["metrics_token"]
        top["secrets"] = {"metrics_token": {"environment": s.metrics_token_env}}
    grafana = {
        "image": GRAFANA_IMAGE,
        "environment": ["GF_SECURITY_ADMIN_PASSWORD"],
        "volumes": [
            "./grafana/provisioning:/etc/grafana/provisioning:ro",
            "./grafana/dashboards:/var/lib/grafana/dashboards:ro",
        ],
        "ports": ["3000:3000"],
        "depends_on": ["prometheus"],
        "restart": "unless-stopped",
    }
    project = {
        "name": s.name,
        "services": {"vl-serve": _server(s), "prometheus": prometheus_service, "grafana": grafana},
        "volumes": {"model-cache": {}},
        **top,
    }
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": dashboard.DATASOURCE["uid"],
                "url": "http://prometheus:9090",
                "access": "proxy",
                "isDefault": True,
            }
        ],
    }
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "vl-serve",
                "type": "file",
                "options": {"path": "/var/lib/grafana/dashboards"},
            }
        ],
    }
    scrape = prometheus.static(s, f"vl-serve:{s.port}", TOKEN_FILE)
    return {
        "compose.yaml": yamltext.dump(project),
        "vl-serve.yaml": s.config_text,
        "prometheus/prometheus.yml": yamltext.dump(scrape),
        "grafana/provisioning/datasources/prometheus.yaml": yamltext.dump(datasource),
        "grafana/provisioning/dashboards/vl-serve.yaml": yamltext.dump(provider),
        "grafana/dashboards/vl-serve.json": dashboard.dashboard(f"vl-serve: {s.name}"),
    }
