"""``vl-serve``: serve, print-args, check, build-model.

    vl-serve [--config FILE] [--host H] [--port P]     serve (default: the embedded tiny model)
    vl-serve print-args --config FILE                  the exact ``vllm serve`` arguments
    vl-serve check --config FILE                       validate; exit 0, or 2 with one line per problem
    vl-serve build-model [NAME]                        build an embedded tiny model into the cache

Config mistakes print one line (file, field, value, fix) and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from importlib import resources
from pathlib import Path

from vl_serve import __version__
from vl_serve import builtin as builtin_models
from vl_serve.config import VLServeConfig, load
from vl_serve.errors import EXIT_CONFIG, ConfigError

COMMANDS = ("serve", "print-args", "check", "build-model")


def default_config() -> Path:
    """The embedded default config shipped in the package (the tiny random-weight model)."""
    return Path(str(resources.files("vl_serve") / "configs" / "tiny-cpu.yaml"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vl-serve",
        description="Serve a vision-language model through vLLM's OpenAI-compatible server.",
    )
    parser.add_argument("--version", action="version", version=f"vl-serve {__version__}")
    parser.add_argument("command", nargs="?", default="serve", choices=COMMANDS)
    parser.add_argument("name", nargs="?", help="builtin model name (build-model only)")
    parser.add_argument("--config", "-c", type=Path, help="YAML config (default: tiny-cpu.yaml)")
    parser.add_argument("--host", help="override server.host")
    parser.add_argument("--port", type=int, help="override server.port")
    parser.add_argument(
        "--json", action="store_true", help="print-args: print a JSON list instead of a shell line"
    )
    return parser


def _load(args: argparse.Namespace) -> VLServeConfig:
    path = args.config or default_config()
    cfg = load(path)
    overrides = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise ConfigError("--port", args.port, "must be between 1 and 65535", "<command line>")
        overrides["port"] = args.port
    if overrides:
        cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update=overrides)})
    return cfg


def run(argv: list[str]) -> int:
    start_env = dict(os.environ)  # before anything imports vLLM (see launch.exec_vllm)
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s vl-serve: %(message)s"))
    log = logging.getLogger("vl_serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    from vl_serve import launch

    try:
        if args.command == "build-model":
            names = [args.name] if args.name else list(builtin_models.BUILDERS)
            for name in names:
                builtin_models.model_dir(name)  # validates the name
                print(builtin_models.ensure_built(name))
            return 0
        cfg = _load(args)
        source = str(args.config or default_config())
        try:
            if args.command in ("print-args", "check"):
                if args.command == "check":
                    launch.secret_env(cfg)
                # vLLM < 0.32 logs to stdout from its import on: keep stdout for the answer
                with contextlib.redirect_stdout(sys.stderr):
                    plan = launch.prepare(cfg, build=False)
                if args.command == "check":
                    print(f"{source}: ok")
                else:
                    print(json.dumps(plan.argv) if args.json else plan.display())
                return 0
            launch.secret_env(cfg)
            plan = launch.prepare(cfg, build=True)
        except ConfigError as err:
            raise err.with_source(source) from None
        launch.exec_vllm(cfg, plan, start_env)
        return 0  # pragma: no cover - exec does not return
    except ConfigError as err:
        print(f"error: {err.line()}", file=sys.stderr)
        return EXIT_CONFIG


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
