"""The servers `bench.py` compares: what each variant runs, and starting/stopping them safely.

Every variant is derived from one vl-serve config:

- ``vllm``: bare ``vllm serve`` with the argv vl-serve builds for that config, minus
  ``--middleware`` and ``--reasoning-parser``, and the same environment (HF_HUB_OFFLINE=1, ...);
- ``vl-serve``: ``vl-serve --config`` with ``reasoning.parser: qwen3_vl`` (middleware always on);
- ``vllm-b``: the baseline's exact command again, an A/A arm (what the comparison gives for two
  servers that differ in nothing);
- ``vllm-qwen3``: the bare argv plus vLLM's own ``--reasoning-parser qwen3`` (optional).

Servers bind 127.0.0.1 on a free port and run in their own process group; stopping one kills that
group and the group of every process under it (vl-serve's supervisor runs vLLM in one of its own).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from bench_stats import BASELINE, CALIBRATION

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "vl_serve" / "configs" / "tiny-cpu.yaml"
HOST = "127.0.0.1"
VL_SERVE_PARSER = "qwen3_vl"


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "vl-serve" or "vllm"
    reasoning_parser: str | None
    description: str


VARIANTS = {
    v.name: v
    for v in (
        Variant(BASELINE, "vllm", None, "bare vllm serve, no reasoning parser (baseline)"),
        Variant(
            "vl-serve",
            "vl-serve",
            VL_SERVE_PARSER,
            f"vl-serve: reasoning parser {VL_SERVE_PARSER} + DialectMiddleware",
        ),
        Variant(CALIBRATION, "vllm", None, "bare vllm serve again: a second baseline arm (A/A)"),
        Variant("vllm-qwen3", "vllm", "qwen3", "bare vllm serve --reasoning-parser qwen3"),
    )
}


@dataclass
class Plan:
    """One variant, resolved: the command, environment and (for vl-serve) config."""

    variant: Variant
    command: list[str]
    display: str
    env: dict[str, str]
    config: dict[str, Any]
    config_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def parser_available(name: str) -> str | None:
    """None when vLLM (with our plugin registered) can load reasoning parser ``name``, else why."""
    try:
        import vl_serve_plugins

        vl_serve_plugins.register()
        from vllm.reasoning import ReasoningParserManager

        ReasoningParserManager.get_reasoning_parser(name)
    except Exception as exc:  # any failure means: run without it, and say so
        return f"{type(exc).__name__}: {exc}"
    return None


def _strip_flag(argv: list[str], flag: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if not skip and arg != flag and not arg.startswith(flag + "="):
            out.append(arg)
        skip = arg == flag and not skip
    return out


def plan_variants(
    names: list[str],
    config_path: Path,
    workdir: Path,
    *,
    vl_serve_parser: str | None,
    overrides: dict[str, Any] | None = None,
    bare_argv: Callable[[list[str]], list[str]] | None = None,
) -> dict[str, Plan]:
    """Resolve every variant from one config; ``vl_serve_parser`` None runs vl-serve without one.

    ``overrides``: top-level config keys replaced before anything is derived (every variant gets
    them); ``bare_argv``: a change to the bare vLLM argv (after the middleware is stripped).
    """
    from vl_serve import config as vconfig
    from vl_serve import launch
    from vl_serve.argv import MIDDLEWARE

    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise SystemExit(f"{config_path}: not a YAML mapping")
    raw.update(overrides or {})
    raw["server"] = {**(raw.get("server") or {}), "host": HOST, "port": 8000}
    raw["server"].pop("api_key_env", None)
    raw["reasoning"] = {**(raw.get("reasoning") or {}), "parser": vl_serve_parser}
    reference = launch.prepare(vconfig.from_dict(raw, str(config_path)), build=True, check=True)
    bare = _strip_flag(_strip_flag(reference.argv, "--middleware"), "--reasoning-parser")
    if MIDDLEWARE in bare:
        raise SystemExit("could not strip the middleware from the vl-serve argv")
    if bare_argv is not None:
        bare = bare_argv(bare)
    env = dict(reference.env)
    plans: dict[str, Plan] = {}
    for name in names:
        variant = VARIANTS[name]
        if variant.kind == "vl-serve":
            notes = []
            if vl_serve_parser is None:
                notes.append(f"reasoning parser {VL_SERVE_PARSER} not available: ran without one")
            path = workdir / f"{name}.yaml"
            cmd = [sys.executable, "-m", "vl_serve.cli", "--config", str(path)]
            plans[name] = Plan(variant, cmd, reference.display(), env, raw, path, notes)
        else:
            argv = list(bare)
            if variant.reasoning_parser:
                argv += ["--reasoning-parser", variant.reasoning_parser]
            run = launch.Launch(argv=argv, env=env)
            plans[name] = Plan(variant, run.command(), run.display(), env, raw)
    return plans


def _png_data_url(side: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Server:
    """One running variant on a free 127.0.0.1 port; ``close()`` kills its whole process group."""

    def __init__(self, plan: Plan, workdir: Path, instance: int) -> None:
        self.plan = plan
        self.instance = instance  # which server of its variant in the run, in start order
        self.port = port = _free_port()
        self.base_url = f"http://{HOST}:{port}"
        self.log_path = workdir / f"{plan.variant.name}-{port}.log"
        command = list(plan.command)
        if plan.config_path is not None:  # one config file per server
            cfg = {**plan.config, "server": {**plan.config["server"], "port": port}}
            path = plan.config_path.with_name(f"{plan.variant.name}-{port}.yaml")
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            command = [str(path) if arg == str(plan.config_path) else arg for arg in command]
        else:
            command[command.index("--port") + 1] = str(port)
        env = {**os.environ, **plan.env}
        env.pop("VLLM_API_KEY", None)  # a stray key would turn auth on
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
            start_new_session=True,  # own process group, killed whole in close()
        )

    def wait_ready(self, timeout_s: float) -> float:
        """Block until /health answers 200; returns the start-up seconds."""
        name = self.plan.variant.name
        while time.monotonic() < self.started + timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {self.proc.returncode} before becoming healthy:\n"
                    + self.log_tail()
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.base_url + "/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return time.monotonic() - self.started
            time.sleep(0.5)
        raise TimeoutError(f"{name} not healthy after {timeout_s:.0f}s:\n{self.log_tail()}")

    def wake(self, model: str, requests: int, max_tokens: int) -> None:
        """A few unmeasured requests right before a measured round: after idling (while other
        variants were measured) a server's first request takes 0.4-1.1 s on vLLM's CPU backend,
        against ~0.15 s for the next ones, and that stall would land on a random round."""
        image = {"type": "image_url", "image_url": {"url": _png_data_url(64)}}
        message = {"role": "user", "content": [{"type": "text", "text": "Describe it."}, image]}
        body = json.dumps(
            {
                "model": model,
                "messages": [message],
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "temperature": 0,
            }
        ).encode()
        url = self.base_url + "/v1/chat/completions"
        for _ in range(requests):
            req = urllib.request.Request(url, body, {"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as resp:
                resp.read()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self, grace_s: float = 15.0) -> None:
        # vl-serve's supervisor runs the API server in a process group of its own: kill the
        # groups of every process of the tree as well, or a server could outlive its supervisor.
        groups = {int(fields[2]) for fields in process_tree(self.proc.pid).values()}
        groups.discard(os.getpgrp())  # never this process's own
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=grace_s)
        finally:
            # The engine core and workers share the group: none may outlive the benchmark.
            for group in groups | {self.proc.pid}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self._log.close()


def process_tree(root: int) -> dict[int, list[bytes]]:
    """/proc/PID/stat fields (after the command name) of ``root`` and every process descending
    from it (a server: bare vLLM's API server and its engine; vl-serve's supervisor, the API
    server it runs as its child in a session of its own, and the engine)."""
    stats = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:  # exited meanwhile
            continue
        stats[int(entry.name)] = stat[stat.rindex(b")") + 2 :].split()
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in tree:
            tree[pid] = stats[pid]
            todo += [p for p, fields in stats.items() if int(fields[1]) == pid]
    return tree


_GIVEN_PORTS: set[int] = set()


def _free_port() -> int:
    """A free port no other server of this run was given: the kernel may hand a released port
    out again, and vLLM binds with SO_REUSEPORT, so two servers on one port would share its
    connections without an error."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


class ServerPool:
    """Every server started through it is closed on exit, errors and signals included."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []
        self.started: dict[str, int] = {}  # servers started so far, per variant

    def __enter__(self) -> ServerPool:
        def on_signal(signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._old = signal.signal(signal.SIGTERM, on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        # A second Ctrl-C or SIGTERM must not interrupt the clean-up itself.
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, self._old)

    def start(self, plan: Plan) -> Server:
        name = plan.variant.name
        server = Server(plan, self.workdir, self.started.get(name, 0))
        self.started[name] = server.instance + 1
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        while self.servers:
            self.servers.pop().close()
