"""What a rendered deployment needs from a validated config: GPUs, nodes, ports, secrets, timings."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vl_serve import __version__
from vl_serve.config import VLServeConfig
from vl_serve.errors import ConfigError
from vl_serve.supervise import STOP_GRACE_S

# The vLLM release CI tests (pyproject's cpu and gpu extras): deploy/Dockerfile builds on it.
VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"
IMAGE = f"vl-serve:{__version__}-vllm{VLLM_IMAGE.rsplit(':v', 1)[1]}"
# Seconds the pod keeps serving after it is marked for deletion, while the endpoints controller
# and the load balancers stop sending it new requests; the drain starts after it.
PRESTOP_SLEEP_S = 10
# Seconds past the drain for the processes to exit after the last request ends: the supervisor's
# own bound (it kills the process group then), and a little more so the kubelet never has to.
EXIT_MARGIN_S = int(STOP_GRACE_S) + 5
# /dev/shm per GPU (NCCL and vLLM's shared-memory broadcast), and at least this much in all.
SHM_GIB_PER_GPU = 2
SHM_MIN_GIB = 2
CACHE_SIZE = "200Gi"
HF_CACHE = "/root/.cache/huggingface"
CONFIG_DIR = "/etc/vl-serve"
CONFIG_PATH = f"{CONFIG_DIR}/config.yaml"
# ${VAR} without a default in the config file: resolved in the container, from the secret.
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")


@dataclass(frozen=True)
class Shape:
    """The deployment of one config: ``nodes`` pods of ``gpus_per_node`` GPUs serve one replica."""

    name: str
    image: str
    port: int
    gpus_per_node: int
    nodes: int
    drain_s: int
    secret_envs: tuple[str, ...]  # variables the pod reads from the secret
    metrics_token_env: str | None  # what Prometheus sends on /metrics (None: /metrics is open)
    config_text: str

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def shm(self) -> str:
        return f"{max(SHM_MIN_GIB, SHM_GIB_PER_GPU * self.gpus_per_node)}Gi"

    @property
    def grace_s(self) -> int:
        """terminationGracePeriodSeconds: the preStop sleep, the drain and the exit."""
        return PRESTOP_SLEEP_S + self.drain_s + EXIT_MARGIN_S

    @property
    def secret(self) -> str:
        return f"{self.name}-secrets"

    def args(self) -> list[str]:
        """vl-serve's arguments in the container: the mounted config, on every address."""
        return ["--config", CONFIG_PATH, "--host", "0.0.0.0", "--port", str(self.port)]


def shape(
    cfg: VLServeConfig,
    config_text: str,
    *,
    name: str,
    image: str,
    gpus_per_node: int,
    multi_node: bool,
    source: str,
) -> Shape:
    """The shape of a config's deployment; a config the target cannot run is a ConfigError."""
    if not _NAME.match(name):
        raise ConfigError(
            "--name", name, "must be lowercase letters, digits and '-' (42 at most)", source
        )
    world = cfg.tensor_parallel_size * cfg.pipeline_parallel_size * cfg.data_parallel_size
    per_node = min(world, gpus_per_node)
    nodes = math.ceil(world / per_node)
    if world % per_node:
        raise ConfigError(
            "tensor_parallel_size",
            cfg.tensor_parallel_size,
            f"{world} GPUs do not split into nodes of {gpus_per_node}; make tensor x pipeline x "
            "data parallel a multiple of --gpus-per-node",
            source,
        )
    if nodes > 1 and not multi_node:
        raise ConfigError(
            "pipeline_parallel_size",
            cfg.pipeline_parallel_size,
            f"{world} GPUs need {nodes} nodes of {gpus_per_node}; render the 'lws' target",
            source,
        )
    if nodes > 1 and cfg.distributed_executor_backend != "ray":
        raise ConfigError(
            "distributed_executor_backend",
            cfg.distributed_executor_backend,
            f"{nodes} nodes run on a Ray cluster; set distributed_executor_backend: ray",
            source,
        )
    server = cfg.server
    keys = server.api_key_envs()
    token = server.metrics_token_env or (keys[0] if keys else None)
    if server.open_metrics:
        token = None
    wanted = [*keys, *([server.metrics_token_env] if server.metrics_token_env else [])]
    wanted += _VAR.findall(config_text)
    return Shape(
        name=name,
        image=image,
        port=server.port,
        gpus_per_node=per_node,
        nodes=nodes,
        drain_s=math.ceil(server.drain_timeout),
        secret_envs=tuple(dict.fromkeys(wanted)),
        metrics_token_env=token,
        config_text=config_text,
    )
