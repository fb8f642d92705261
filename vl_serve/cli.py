"""The ``vl-serve`` command line: serve, print-args, check, plan, render, build-model, schema.

    vl-serve [serve] [--config FILE] [--host H] [--port P]   serve (default: the embedded tiny model)
    vl-serve print-args [--config FILE] [--json]             the exact ``vllm serve`` arguments
    vl-serve check [CONFIG | --config FILE]                  validate: exit 0, or 2, a line per mistake
    vl-serve plan [CONFIG] [--gpu NAME | --gpu-memory SIZE] [--json]   capacity plan: 0 fits, 1 not
    vl-serve render TARGET [--config FILE] [--out DIR]      compose, k8s or lws deployment files
    vl-serve build-model [NAME]                              build embedded tiny models into the cache
    vl-serve schema [--json]                                 the config reference (docs/config.md)

``serve`` is the default command, so ``vl-serve`` and ``vl-serve --config FILE`` serve. Config
mistakes print one line each (file, field, value, fix), every one found, and exit 2, never a
traceback; argparse's usage errors (a stray or unknown argument) exit 2 as well.
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

from vl_serve import __version__, launch, loading
from vl_serve import builtin as builtin_models
from vl_serve.config import VLServeConfig, from_dict
from vl_serve.errors import EXIT_CONFIG, ConfigError, raise_all
from vl_serve.render import command as render_command

log = logging.getLogger("vl_serve")

DEFAULT_COMMAND = "serve"
# Logged once when `serve` runs without --config: the default model answers noise.
DEMO_NOTICE = (
    "no --config given: serving the embedded demo model %s, which has random weights, so its "
    "answers are noise; pass --config with a real model's YAML to serve that model"
)


def default_config() -> Path:
    """The embedded default config shipped in the package (the tiny random-weight model)."""
    return Path(str(resources.files("vl_serve") / "configs" / "tiny-cpu.yaml"))


def parser() -> argparse.ArgumentParser:
    """The command line: one subparser per command, each with its own arguments and help."""
    top = argparse.ArgumentParser(
        prog="vl-serve",
        description="Serve a vision-language model through vLLM's OpenAI-compatible server.",
        epilog=f"Without a command, vl-serve runs '{DEFAULT_COMMAND}'.",
    )
    top.add_argument("--version", action="version", version=f"vl-serve {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        help="YAML config (default: the embedded tiny-cpu.yaml, a random-weight demo model)",
    )
    config.add_argument("--host", help="override server.host")
    config.add_argument("--port", type=int, help="override server.port")

    serve = commands.add_parser(
        "serve",
        parents=[config],
        help="serve a config through vLLM (the default command)",
        description="Check the config, then replace this process with vLLM's server.",
    )
    print_args = commands.add_parser(
        "print-args",
        parents=[config],
        help="print the exact `vllm serve` command a config runs",
        description="Print the `vllm serve` command (no secrets) that `serve` would run.",
    )
    print_args.add_argument(
        "--json", action="store_true", help="print a JSON list instead of a shell line"
    )
    check = commands.add_parser(
        "check",
        parents=[config],
        help="validate a config: exit 0, or 2 and one line per mistake",
        description="Validate a config with vl-serve's schema and vLLM's own argument parser.",
    )
    check.add_argument(
        "config_file", nargs="?", type=Path, metavar="CONFIG", help="the config (or --config)"
    )
    plan = commands.add_parser(
        "plan",
        parents=[config],
        help="capacity plan: weights, KV cache and media tokens against the GPU's memory",
        description=(
            "Weights per GPU, KV cache tokens after the weights and a 2 GiB allowance per GPU, the "
            "worst request's media tokens, and a verdict for the GPU (gpu: in the file, --gpu or "
            "--gpu-memory). Exit 0: fits (or no GPU named), 1: does not fit, 2: a mistake."
        ),
    )
    plan.add_argument(
        "config_file", nargs="?", type=Path, metavar="CONFIG", help="the config (or --config)"
    )
    target = plan.add_mutually_exclusive_group()
    target.add_argument("--gpu", metavar="NAME", help="plan for this GPU instead of the file's")
    target.add_argument(
        "--gpu-memory", metavar="SIZE", help="plan for a GPU of this memory (80GiB, 81559MiB)"
    )
    plan.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    build = commands.add_parser(
        "build-model",
        help="build embedded tiny models into the cache",
        description="Build an embedded tiny model (all of them without NAME); print its folder.",
    )
    names = list(builtin_models.BUILDERS)
    build.add_argument(
        "name", nargs="?", choices=names, metavar="NAME", help=f"one of: {', '.join(names)}"
    )
    schema = commands.add_parser(
        "schema",
        help="print the config reference (Markdown, as in docs/config.md)",
        description="Print every config field: path, type, default, bounds, description.",
    )
    schema.add_argument("--json", action="store_true", help="print the JSON Schema instead")
    render = render_command.add_parser(commands, [config])
    for command in (serve, print_args, check, plan, render, build, schema):
        command.set_defaults(subparser=command)
    return top


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; without a command (empty, or options first) it is ``serve``."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = [DEFAULT_COMMAND, *argv]
    args, extra = parser().parse_known_args(argv)
    command: argparse.ArgumentParser = args.subparser
    del args.subparser
    if extra:  # reported by the command's parser, so the usage shown is the command's
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    config_file = vars(args).pop("config_file", None)
    if config_file is not None:
        if args.config is not None:
            command.error("give the config once: as CONFIG or as --config, not both")
        args.config = config_file
    return args


def load_config(args: argparse.Namespace, *, secrets: bool = False) -> tuple[VLServeConfig, str]:
    """The config the command runs (the file, or the embedded default) and its source name.

    A file that fails validation is checked further as far as it can be (``vllm_args``, and
    with ``secrets`` the API-key variables), so that the ConfigError lists every mistake.
    """
    path = args.config or default_config()
    source = str(path)
    errors: list[ConfigError] = []
    if args.port is not None and not 1 <= args.port <= 65535:
        errors.append(
            ConfigError("--port", args.port, "must be between 1 and 65535", "<command line>")
        )
    data = loading.read_yaml(path)
    try:
        cfg = from_dict(data, source)
    except ConfigError as err:
        with contextlib.redirect_stdout(sys.stderr):  # may import vLLM (see _checked_launch)
            more = launch.unvalidated_mistakes(data, secrets=secrets)
        found = ConfigError.many([err, *more]).with_source(source) if more else err
        raise ConfigError.many([found, *errors]) from None
    raise_all(errors)
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if overrides:
        cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update=overrides)})
    return cfg, source


def _checked_launch(
    cfg: VLServeConfig, source: str, *, secrets: bool, build: bool
) -> launch.Launch:
    """The launch of a validated config; every mistake left (keys, arguments) in one ConfigError.

    With a key variable missing, the launch is checked without building the model: it would be
    refused anyway.
    """
    errors: list[ConfigError] = []
    if secrets:
        errors += launch.missing_secrets(cfg.server)
    try:
        # vLLM < 0.32 logs to stdout from its import on: keep stdout for the answer
        with contextlib.redirect_stdout(sys.stderr):
            plan = launch.prepare(cfg, build=build and not errors)
    except ConfigError as err:
        errors.append(err)
    if errors:
        raise ConfigError.many(errors).with_source(source)
    return plan


def plan_serve(args: argparse.Namespace) -> tuple[VLServeConfig, launch.Launch]:
    """What ``serve`` execs: the config and its launch, checked (a builtin model is built)."""
    cfg, source = load_config(args, secrets=True)
    if args.config is None:
        log.warning(DEMO_NOTICE, cfg.model)
    return cfg, _checked_launch(cfg, source, secrets=True, build=True)


def _inspect(args: argparse.Namespace) -> int:
    """``check`` and ``print-args``: the launch without building or starting anything."""
    check = args.command == "check"
    cfg, source = load_config(args, secrets=check)
    plan = _checked_launch(cfg, source, secrets=check, build=False)
    if check:
        print(f"{source}: ok")
        from vl_serve.plan import check_warning

        warning = check_warning(cfg)
        if warning:
            print(f"warning: {source}: {warning}", file=sys.stderr)
    else:
        print(json.dumps(plan.argv) if args.json else plan.display())
    return 0


def _plan(args: argparse.Namespace) -> int:
    """``plan``: the capacity plan of a config; exit 1 when it does not fit."""
    from vl_serve import plan_report

    cfg, source = load_config(args)
    return plan_report.run(cfg, source, gpu=args.gpu, gpu_memory=args.gpu_memory, as_json=args.json)


def _render(args: argparse.Namespace) -> int:
    """``render``: the deployment files of a config checked as ``check`` checks it."""
    cfg, source = load_config(args)
    _checked_launch(cfg, source, secrets=False, build=False)
    text = Path(args.config or default_config()).read_text(encoding="utf-8")
    return render_command.run(args, cfg, source, text)


def _build_models(name: str | None) -> int:
    for each in [name] if name else list(builtin_models.BUILDERS):
        print(builtin_models.ensure_built(each))
    return 0


def _schema(as_json: bool) -> int:
    from vl_serve import schema

    sys.stdout.write(schema.json_schema() if as_json else schema.markdown())
    return 0


def _setup_logging() -> None:
    """``LEVEL vl-serve: message`` on stderr, once per process (run() may be called again)."""
    if log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s vl-serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def run(argv: list[str]) -> int:
    """Run one command; the exit status (argparse exits 2 itself on a usage error)."""
    start_env = dict(os.environ)  # before anything imports vLLM (see launch.exec_vllm)
    args = parse_args(argv)
    _setup_logging()
    try:
        if args.command == "build-model":
            return _build_models(args.name)
        if args.command == "schema":
            return _schema(args.json)
        if args.command in ("check", "print-args"):
            return _inspect(args)
        if args.command == "plan":
            return _plan(args)
        if args.command == "render":
            return _render(args)
        cfg, plan = plan_serve(args)
        launch.exec_vllm(cfg, plan, start_env)
        return 0  # pragma: no cover - exec does not return
    except ConfigError as err:
        for line in err.lines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_CONFIG


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
