"""The targets of ``vl-serve render`` and writing their files: one function per target."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vl_serve.config import VLServeConfig
from vl_serve.render import compose, k8s, lws, prometheus, yamltext
from vl_serve.render.kube import Obj
from vl_serve.render.shape import IMAGE, Shape, shape

TARGETS = ("compose", "k8s", "lws")
_CLUSTER: dict[str, Callable[[Shape, int], list[Obj]]] = {"k8s": k8s.objects, "lws": lws.objects}


def _header(s: Shape, target: str) -> str:
    lines = [
        f"# vl-serve {target} manifests for {s.name}, rendered by `vl-serve render {target}`.",
        f"# Image: {s.image}, built from deploy/Dockerfile "
        f"(docker build -f deploy/Dockerfile -t {s.image} .).",
    ]
    if s.secret_envs:
        names = ", ".join(s.secret_envs)
        lines += [
            f"# The secret {s.secret} holds {names} (and HF_TOKEN for gated models), e.g.:",
            f"#   kubectl create secret generic {s.secret} --from-env-file=FILE",
        ]
    return "\n".join(lines) + "\n"


def manifest(s: Shape, target: str, replicas: int = 1) -> str:
    """The Kubernetes objects of a cluster target as one multi-document YAML."""
    body = yamltext.dump_all(_CLUSTER[target](s, replicas))
    return _header(s, target) + body


def render(
    cfg: VLServeConfig,
    config_text: str,
    target: str,
    *,
    source: str,
    name: str = "vl-serve",
    image: str = IMAGE,
    replicas: int = 1,
    gpus_per_node: int = 8,
) -> dict[str, str]:
    """The files of ``target`` by relative path; a config the target cannot run is a ConfigError."""
    s = shape(
        cfg,
        config_text,
        name=name,
        image=image,
        gpus_per_node=gpus_per_node,
        multi_node=target == "lws",
        source=source,
    )
    if target == "compose":
        return compose.files(s)
    # Apart: it needs the Prometheus Operator's CRDs in the cluster.
    monitor = yamltext.dump(prometheus.service_monitor(s))
    return {f"{target}.yaml": manifest(s, target, replicas), "servicemonitor.yaml": monitor}


def write(files: dict[str, str], out: Path) -> list[Path]:
    """Write the files under ``out`` (created); the paths written."""
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
