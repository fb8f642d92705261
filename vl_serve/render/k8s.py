"""The ``k8s`` target: a Deployment of one-node replicas, its Service, budget, config and cache."""

from __future__ import annotations

from vl_serve.render import kube
from vl_serve.render.shape import Shape


def objects(s: Shape, replicas: int) -> list[kube.Obj]:
    selector = kube.labels(s)
    pod_spec: kube.Obj = {
        # Service links would set VL_SERVE_PORT=tcp://... in the pod, which configs interpolate.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": s.grace_s,
        "containers": [kube.server_container(s)],
        "volumes": kube.volumes(s, config=True, cache=True),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": kube.meta(s),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            # A new pod is ready before an old one goes: serving capacity never drops in a rollout.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": selector, "annotations": kube.scrape_annotations(s)},
                "spec": pod_spec,
            },
        },
    }
    return [
        kube.config_map(s),
        kube.cache_claim(s, standalone=True),
        deployment,
        kube.service(s, selector),
        kube.disruption_budget(s, selector),
    ]
