"""The ``lws`` target: a LeaderWorkerSet whose group is one replica on a Ray cluster of its pods.

As vLLM's LeaderWorkerSet guide does: the leader starts the Ray head, waits for every worker
(vLLM's ``multi-node-serving.sh`` in the vLLM image), then serves; each worker joins the head and
blocks. The group has one pod per node; vLLM places the tensor and pipeline ranks through Ray,
with vl-serve's plugins loaded in every Ray worker through vLLM's plugin entry point.
"""

from __future__ import annotations

import shlex

from vl_serve.render import kube
from vl_serve.render.shape import Shape

SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"
NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
ROLE = "role"


def _leader_command(s: Shape) -> list[str]:
    serve = shlex.join(["exec", "vl-serve", *s.args()])
    return ["sh", "-c", f"bash {SCRIPT} leader --ray_cluster_size=$(LWS_GROUP_SIZE) && {serve}"]


def _worker_command() -> list[str]:
    return ["sh", "-c", f"bash {SCRIPT} worker --ray_address=$(LWS_LEADER_ADDRESS)"]


def objects(s: Shape, replicas: int) -> list[kube.Obj]:
    leader_labels = {**kube.labels(s), ROLE: "leader"}
    leader = kube.server_container(s, command=_leader_command(s))
    worker: kube.Obj = {
        "name": "ray-worker",
        "image": s.image,
        "command": _worker_command(),
        "env": kube.secret_env(s),
        "resources": kube.resources(s),
        "volumeMounts": kube.mounts(config=False),
    }
    common: kube.Obj = {
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": s.grace_s,
    }
    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": kube.meta(s),
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {
                "size": s.nodes,
                # A pod lost is a group lost: Ray and the NCCL groups start again together.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "volumeClaimTemplates": [kube.cache_claim(s, standalone=False)],
                "leaderTemplate": {
                    "metadata": {
                        "labels": leader_labels,
                        "annotations": kube.scrape_annotations(s),
                    },
                    "spec": {
                        **common,
                        "containers": [leader],
                        "volumes": kube.volumes(s, config=True, cache=False),
                    },
                },
                "workerTemplate": {
                    "metadata": {"labels": {**kube.labels(s), ROLE: "worker"}},
                    "spec": {
                        **common,
                        "containers": [worker],
                        "volumes": kube.volumes(s, config=False, cache=False),
                    },
                },
            },
        },
    }
    served = {NAME_LABEL: s.name, ROLE: "leader"}
    return [
        kube.config_map(s),
        lws,
        kube.service(s, served),
        kube.disruption_budget(s, {NAME_LABEL: s.name}),
    ]
