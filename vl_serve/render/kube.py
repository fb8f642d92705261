"""Kubernetes objects both cluster targets share: config, serving container, Service, budget."""

from __future__ import annotations

from typing import Any

from vl_serve.render.shape import (
    CACHE_SIZE,
    CONFIG_DIR,
    HF_CACHE,
    PRESTOP_SLEEP_S,
    Shape,
)

Obj = dict[str, Any]
GPU = "nvidia.com/gpu"
APP = "app.kubernetes.io/name"


def labels(s: Shape) -> dict[str, str]:
    return {APP: s.name, "app.kubernetes.io/part-of": "vl-serve"}


def meta(s: Shape, suffix: str = "", **extra: Any) -> Obj:
    return {"name": s.name + suffix, "labels": labels(s), **extra}


def config_map(s: Shape) -> Obj:
    """The config file as written: its ``${VAR}`` are resolved in the container."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(s, "-config"),
        "data": {"config.yaml": s.config_text},
    }


def secret_env(s: Shape) -> list[Obj]:
    """Each variable the config names, from the secret (never a value in the manifest), and the
    Hugging Face token when the secret has one (gated models)."""
    env = [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": n}}}
        for n in s.secret_envs
    ]
    if "HF_TOKEN" not in s.secret_envs:
        ref = {"name": s.secret, "key": "HF_TOKEN", "optional": True}
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    return env


def resources(s: Shape) -> Obj:
    return {"limits": {GPU: s.gpus_per_node}, "requests": {GPU: s.gpus_per_node}}


def mounts(*, config: bool) -> list[Obj]:
    found = [
        {"name": "model-cache", "mountPath": HF_CACHE},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    return (
        [*found, {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}] if config else found
    )


def volumes(s: Shape, *, config: bool, cache: bool) -> list[Obj]:
    """/dev/shm in memory sized for the GPUs, the config map, the model cache claim (``cache``;
    a LeaderWorkerSet claims its own per pod)."""
    found: list[Obj] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": s.shm}},
    ]
    if config:
        found.append({"name": "config", "configMap": {"name": f"{s.name}-config"}})
    if cache:
        claim = {"claimName": f"{s.name}-model-cache"}
        found.append({"name": "model-cache", "persistentVolumeClaim": claim})
    return found


def cache_claim(s: Shape, *, standalone: bool) -> Obj:
    """The model cache (the Hugging Face cache): downloaded once, kept across restarts."""
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": CACHE_SIZE}}}
    if not standalone:
        return {"metadata": {"name": "model-cache"}, "spec": spec}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(s, "-model-cache"),
        "spec": spec,
    }


def probes(port: str = "http") -> Obj:
    """Startup and liveness on /health (the engine is alive), readiness on /ready (it takes
    requests: not while loading or draining). Startup allows 30 minutes for download and load."""
    return {
        "startupProbe": {
            "httpGet": {"path": "/health", "port": port},
            "periodSeconds": 10,
            "failureThreshold": 180,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": port},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": port},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
    }


def server_container(s: Shape, *, command: list[str] | None = None) -> Obj:
    """The vl-serve container: the preStop sleep lets endpoints drop the pod before SIGTERM starts
    vl-serve's drain; the pod's grace period covers both."""
    container: Obj = {
        "name": "vl-serve",
        "image": s.image,
        **({"command": command} if command else {"args": s.args()}),
        "ports": [{"name": "http", "containerPort": s.port}],
        "env": secret_env(s),
        "resources": resources(s),
        "volumeMounts": mounts(config=True),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_S)]}}},
        **probes(),
    }
    return container


def scrape_annotations(s: Shape) -> dict[str, str]:
    """What the rendered Prometheus job (and most cluster Prometheus setups) keep pods by."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(s.port),
        "prometheus.io/path": "/metrics",
    }


def service(s: Shape, selector: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(s),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": s.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def disruption_budget(s: Shape, selector: dict[str, str]) -> Obj:
    """One pod down at a time in voluntary disruptions (node drains), so replicas drain in turn."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(s),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
