"""Validated config -> the vLLM command line and environment -> vLLM's own server.

vl-serve execs its supervisor (:mod:`vl_serve.supervise`, a fresh interpreter without vLLM
imported), which runs ``vllm serve`` (as ``python -m vllm.entrypoints.cli.main serve``, with this
interpreter) as its child: vLLM's parser, validation and server run unchanged, stop signals are
forwarded to it, and an exit nobody asked for (a dead engine) ends vl-serve with a non-zero
status. The project's plugins load in every vLLM process through the ``vllm.general_plugins``
entry point.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from vl_serve import builtin as builtin_models
from vl_serve import runtime
from vl_serve.argv import build_argv, vllm_args_argv, vllm_env
from vl_serve.config import ServerConfig, VLServeConfig
from vl_serve.errors import ConfigError, raise_all
from vl_serve.loading import interpolate

log = logging.getLogger("vl_serve")

VLLM_MODULE = "vllm.entrypoints.cli.main"
SUPERVISOR = "vl_serve.supervise"
SECRET_ENV = "VLLM_API_KEY"


@dataclass
class Launch:
    """What vl-serve runs: ``vllm serve <argv>`` with ``env`` added to the environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        return [sys.executable, "-m", VLLM_MODULE, "serve", *self.argv]

    def supervised(self, drain_timeout: int) -> list[str]:
        """:meth:`command` run by vl-serve's supervisor (stop signals, exit status, no orphans)."""
        head = [sys.executable, "-m", SUPERVISOR, "--drain-timeout", str(drain_timeout), "--"]
        return [*head, *self.command()]

    def display(self) -> str:
        """The command as a shell line; secrets are never part of it."""
        return shlex.join(["vllm", "serve", *self.argv])


def model_path(cfg: VLServeConfig, *, build: bool) -> str:
    name = cfg.builtin_name
    if name is None:
        return cfg.model
    if build:
        return str(builtin_models.ensure_built(name))
    return str(builtin_models.model_dir(name))


def prepare(cfg: VLServeConfig, *, build: bool = True, check: bool = True) -> Launch:
    """Resolve the model, build and check the argv, and collect the environment for vLLM.

    Every mistake found (an unknown builtin model, each vllm_args problem) is in the ConfigError.
    """
    errors: list[ConfigError] = []
    try:
        path = model_path(cfg, build=build)
    except ConfigError as err:  # still check the arguments, to report every mistake at once
        errors.append(err)
        path = cfg.model
    try:
        argv = build_argv(cfg, path, check=check)
    except ConfigError as err:
        errors.append(err)
    raise_all(errors)
    env: dict[str, str] = {**vllm_env(cfg), **cfg.env}
    if cfg.builtin_name is not None:
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env[runtime.ENV] = runtime.encode(runtime.runtime_sections(cfg))
    return Launch(argv=argv, env=env)


def missing_secrets(server: ServerConfig) -> list[ConfigError]:
    """One mistake per variable named for an API key or the metrics token that is unset or empty."""
    errors = [
        ConfigError(
            "server.api_key_env",
            name,
            f"environment variable {name} is not set or empty; export the API key in it",
        )
        for name in server.api_key_envs()
        if not os.environ.get(name)
    ]
    token = server.metrics_token_env
    if token is not None and not os.environ.get(token):
        errors.append(
            ConfigError(
                "server.metrics_token_env",
                token,
                f"environment variable {token} is not set or empty; export the metrics token in it",
            )
        )
    return errors


def check_secrets(cfg: VLServeConfig) -> None:
    """Every variable the config names must hold its key or token (each one that does not is a
    mistake of the ConfigError raised): vl-serve's access middleware reads them inside vLLM's
    server, which inherits this environment; they never go in the argv or the logs."""
    raise_all(missing_secrets(cfg.server))


def unvalidated_mistakes(data: Any, *, secrets: bool) -> list[ConfigError]:
    """The mistakes that can still be found in a config tree that failed validation.

    So that one run reports them all: ``vllm_args`` keys vl-serve owns or vLLM does not know, and
    with ``secrets`` the unset key variables of a ``server`` section that is valid by itself.
    Mistakes validation reported already are not repeated.
    """
    if not isinstance(data, dict):
        return []
    errors: list[ConfigError] = []
    vllm_args = data.get("vllm_args")
    if isinstance(vllm_args, dict):
        named = {k: v for k, v in vllm_args.items() if isinstance(k, str)}
        errors += vllm_args_argv(named)[1]
    if secrets:
        try:
            server = ServerConfig.model_validate(interpolate(data.get("server") or {}))
        except (ConfigError, ValidationError):
            return errors
        errors += missing_secrets(server)
    return errors


def exec_vllm(
    cfg: VLServeConfig, launch: Launch, base_env: Mapping[str, str] | None = None
) -> None:
    """Replace this process with vl-serve's supervisor running vLLM's server.

    ``base_env`` is the environment vl-serve was started with (default: the current one). The
    CLI passes the one it saw before checking the arguments: that check imports vLLM, whose
    import edits ``os.environ`` (``TORCHINDUCTOR_*``, ``LD_LIBRARY_PATH`` through cv2, ...), and
    vLLM's server must start from the user's environment, as ``vllm serve`` would, not inherit
    those edits (a second copy of cv2's library path, values vLLM only sets for itself).
    """
    check_secrets(cfg)
    env = {**(os.environ if base_env is None else base_env), **launch.env}
    # vl-serve's access middleware checks the keys; a VLLM_API_KEY left in the shell would turn
    # vLLM's own prefix-only check on behind it.
    env.pop(SECRET_ENV, None)
    log.info("starting: %s", launch.display())
    sys.stdout.flush()
    sys.stderr.flush()
    cmd = launch.supervised(cfg.server.drain_timeout)
    os.execve(cmd[0], cmd, env)
