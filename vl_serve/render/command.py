"""The ``render`` subcommand's arguments and run (the CLI's other commands live in vl_serve.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vl_serve.config import VLServeConfig
from vl_serve.errors import ConfigError
from vl_serve.render.shape import IMAGE
from vl_serve.render.targets import TARGETS, render, write


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        "render",
        parents=parents,
        help="deployment files for compose, k8s or lws from the config",
        description=(
            "Render a validated config as a Compose project (vl-serve, Prometheus, Grafana), "
            "Kubernetes manifests, or a LeaderWorkerSet on vLLM's Ray bootstrap. Without --out, "
            "k8s and lws print their manifests."
        ),
    )
    sub.add_argument("target", choices=TARGETS, metavar="TARGET", help=", ".join(TARGETS))
    sub.add_argument("--out", "-o", type=Path, metavar="DIR", help="write the files here")
    sub.add_argument("--name", default="vl-serve", help="name of the objects (default vl-serve)")
    sub.add_argument("--image", default=IMAGE, help=f"the vl-serve image (default {IMAGE})")
    sub.add_argument("--replicas", type=int, default=1, help="serving replicas (default 1)")
    sub.add_argument(
        "--gpus-per-node", type=int, default=8, metavar="N", help="GPUs of one node (default 8)"
    )
    return sub


def run(args: argparse.Namespace, cfg: VLServeConfig, source: str, config_text: str) -> int:
    """Render the target; exit 0, or 2 for a config the target cannot run (raised)."""
    if args.replicas < 1 or args.gpus_per_node < 1:
        flag = "--replicas" if args.replicas < 1 else "--gpus-per-node"
        raise ConfigError(flag, getattr(args, flag[2:].replace("-", "_")), "must be >= 1", source)
    files = render(
        cfg,
        config_text,
        args.target,
        source=source,
        name=args.name,
        image=args.image,
        replicas=args.replicas,
        gpus_per_node=args.gpus_per_node,
    )
    if args.out is None:
        if args.target == "compose":
            raise ConfigError("--out", None, "compose writes several files: give --out DIR", source)
        sys.stdout.write(files[f"{args.target}.yaml"])
        return 0
    for path in write(files, args.out):
        print(path)
    return 0
