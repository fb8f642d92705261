"""The servers `bench.py` compares: what each variant runs, and starting/stopping them safely.

Every variant is derived from one vl-serve config:

- ``vllm``: bare ``vllm serve`` with the argv vl-serve builds for that config, minus
  ``--middleware`` and ``--reasoning-parser``, and the same environment (HF_HUB_OFFLINE=1, ...);
- ``vl-serve``: ``vl-serve --config`` with ``reasoning.parser: qwen3_vl`` (middleware always on);
- ``vllm-qwen3``: the bare argv plus vLLM's own ``--reasoning-parser qwen3``;
- ``vllm-b``: the baseline's exact command again, a second arm for an A/A calibration (what
  the comparison gives for two servers that differ in nothing).

Servers bind 127.0.0.1 on a free port, run in their own process group and are killed as a group.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


VARIANTS: dict[str, Variant] = {
    "vllm": Variant("vllm", "vllm", None, "bare vllm serve, no reasoning parser (baseline)"),
    "vl-serve": Variant(
        "vl-serve",
        "vl-serve",
        VL_SERVE_PARSER,
        f"vl-serve: reasoning parser {VL_SERVE_PARSER} + DialectMiddleware",
    ),
    "vllm-qwen3": Variant(
        "vllm-qwen3", "vllm", "qwen3", "bare vllm serve --reasoning-parser qwen3 (vLLM's parser)"
    ),
    # Calibration (not in the default set): the baseline again, under another name. Its
    # comparison with the baseline is what the harness reports when nothing differs (A/A).
    "vllm-b": Variant(
        "vllm-b", "vllm", None, "bare vllm serve again: a second baseline arm (A/A calibration)"
    ),
    # Diagnostic (not in the default set): vl-serve's parser without its middleware.
    "vllm-qwen3_vl": Variant(
        "vllm-qwen3_vl",
        "vllm",
        VL_SERVE_PARSER,
        f"bare vllm serve --reasoning-parser {VL_SERVE_PARSER} (vl-serve's parser, no middleware)",
    ),
    # Diagnostic: vl-serve's middleware without a reasoning parser.
    "vl-serve-noparser": Variant(
        "vl-serve-noparser",
        "vl-serve",
        None,
        "vl-serve without a reasoning parser (middleware only)",
    ),
}
BASELINE = "vllm"
CALIBRATION = "vllm-b"  # the baseline's second arm
# How ``Server.cpu_seconds`` measures the API server: rounds record which one was used (results
# before 2026-11-23 evening have no record: clock ticks).
API_CPU_CLOCK = "process-cputime-ns"
TICKS_CLOCK = "stat-ticks"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def load_config_dict(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: not a YAML mapping")
    return data


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


@dataclass
class Plan:
    """One variant, resolved: the command, environment and (for vl-serve) config file."""

    variant: Variant
    command: list[str]
    display: str
    env: dict[str, str]
    config: dict[str, Any]
    config_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def _strip_flag(argv: list[str], flag: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return out


def _set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def plan_variants(
    names: list[str], config_path: Path, workdir: Path, *, vl_serve_parser: str | None
) -> dict[str, Plan]:
    """Resolve every variant from one config; ``vl_serve_parser`` None runs vl-serve without one."""
    from vl_serve import config as vconfig
    from vl_serve import launch
    from vl_serve.argv import MIDDLEWARE

    raw = load_config_dict(config_path)
    raw["server"] = {**(raw.get("server") or {}), "host": HOST, "port": 8000}
    raw["server"].pop("api_key_env", None)
    raw["reasoning"] = {**(raw.get("reasoning") or {}), "parser": vl_serve_parser}
    cfg = vconfig.from_dict(raw, str(config_path))
    reference = launch.prepare(cfg, build=True, check=True)
    bare = _strip_flag(_strip_flag(reference.argv, "--middleware"), "--reasoning-parser")
    if MIDDLEWARE in bare:
        raise SystemExit("could not strip the middleware from the vl-serve argv")
    env = dict(reference.env)
    plans: dict[str, Plan] = {}
    for name in names:
        variant = VARIANTS[name]
        if variant.kind == "vl-serve":
            notes = []
            if vl_serve_parser is None:
                notes.append(
                    f"reasoning parser {VL_SERVE_PARSER} not available: vl-serve ran without one"
                )
            cfg_path = workdir / f"{name}.yaml"
            cmd = [sys.executable, "-m", "vl_serve.cli", "--config", str(cfg_path)]
            own = raw
            if variant.reasoning_parser is None:
                own = {**raw, "reasoning": {**raw["reasoning"], "parser": None}}
            plans[name] = Plan(variant, cmd, reference.display(), env, own, cfg_path, notes)
        else:
            argv = list(bare)
            if variant.reasoning_parser:
                argv += ["--reasoning-parser", variant.reasoning_parser]
            run = launch.Launch(argv=argv, env=env)
            plans[name] = Plan(variant, run.command(), run.display(), env, raw)
    return plans


def cpu_layout() -> tuple[set[int], set[int]] | None:
    """(API-server + load-generator CPUs, engine CPUs), or None with fewer than 2 usable CPUs.

    vLLM's CPU engine keeps two processes busy while it serves: the worker's compute thread, and
    the EngineCore scheduler, which busy-waits on shared memory (sched_yield) for each step's
    result. Left to float on a small machine they starve the API server and the load generator
    at random moments (whole streams then arrive in one read: TPOT 0), and throughput swings by
    2x from round to round. Pinned, the engine gets every CPU but the last one, and the API
    server and the load generator share the last one: as on a real deployment, where the API
    server has a core of its own. vLLM's own worker binding (``VLLM_CPU_OMP_THREADS_BIND=auto``)
    already puts its compute thread on the low CPUs.
    """
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    return {usable[-1]}, set(usable[:-1])


def pin_threads(pid: int, cpus: set[int]) -> None:
    """sched_setaffinity for every thread of ``pid`` (new threads inherit their creator's)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def process_cpu_ns(pid: int) -> int | None:
    """CPU time in nanoseconds that process ``pid`` has used, all its threads (exited ones
    included): Linux's per-process CPU clock (``clock_gettime`` on ``((~pid) << 3) | 2``, i.e.
    CPUCLOCK_SCHED, the clock behind ``/proc/PID/schedstat``). None where unavailable."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)
    except (OSError, OverflowError):
        return None


def _png(side: int) -> str:
    """A ``side`` x ``side`` gray PNG as a data: URL (built with zlib: no imaging library)."""
    raw = b"".join(b"\x00" + b"\x80" * side for _ in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


_WAKE_IMAGE = _png(64)


class Server:
    """One running variant on a free 127.0.0.1 port; ``close()`` kills its whole process group."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.instance = 0  # which server of its variant in a run (bench.py numbers them)
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.log_path = workdir / f"{plan.variant.name}-{self.port}.log"
        command = list(plan.command)
        if plan.config_path is not None:  # one file per server: several may run at once
            cfg = {**plan.config, "server": {**plan.config["server"], "port": self.port}}
            path = plan.config_path.with_name(f"{plan.variant.name}-{self.port}.yaml")
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            command = [str(path) if arg == str(plan.config_path) else arg for arg in command]
        else:
            command = _set_flag(command, "--port", str(self.port))
        self.command = command
        env = {**os.environ, **plan.env}
        env.pop("VLLM_API_KEY", None)  # a stray key would turn auth on
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.started = time.monotonic()
        self.ready_s: float | None = None
        self.api_cpu_clock = API_CPU_CLOCK
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
        deadline = self.started + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.plan.variant.name} exited with {self.proc.returncode} before "
                    f"becoming healthy:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.base_url + "/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    self.ready_s = time.monotonic() - self.started
                    return self.ready_s
            time.sleep(0.5)
        raise TimeoutError(
            f"{self.plan.variant.name} not healthy after {timeout_s:.0f}s:\n{self.log_tail()}"
        )

    def wake(self, model: str, requests: int, max_tokens: int) -> None:
        """A few unmeasured requests right before a measured round.

        After a server has idled (while the other variants were measured), its first request
        takes 0.4-1.1 s on vLLM's CPU backend, against ~0.15 s for the next ones: the engine's
        busy-wait loops have gone to sleep. Left in, that stall lands on a random variant's
        round, a quarter of a round's time at concurrency 1.
        """
        body = json.dumps(
            {
                "model": model,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Describe the picture."},
                            {"type": "image_url", "image_url": {"url": _WAKE_IMAGE}},
                        ],
                    }
                ],
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "temperature": 0,
            }
        ).encode()
        for _ in range(requests):
            req = urllib.request.Request(
                self.base_url + "/v1/chat/completions",
                body,
                {"content-type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=120) as resp:
                resp.read()

    def _session_stats(self) -> dict[int, list[bytes]]:
        """/proc/PID/stat fields (after the command name) of this server's processes: its
        session, which start_new_session made the API server lead."""
        out = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_bytes()
            except OSError:  # exited meanwhile
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()
            if int(fields[3]) == self.proc.pid:
                out[int(entry.name)] = fields
        return out

    def pin(self, api_cpus: set[int], engine_cpus: set[int]) -> None:
        """Every thread of the API server on ``api_cpus``, of every other process on
        ``engine_cpus`` (see ``cpu_layout``)."""
        for pid in self._session_stats():
            pin_threads(pid, api_cpus if pid == self.proc.pid else engine_cpus)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by this server's processes, by role.

        ``api``: the API server (the process started here: vl-serve execs vLLM in place), from
        its process CPU clock in nanoseconds (``process_cpu_ns``; clock ticks where that fails,
        ``self.api_cpu_clock`` says which);
        ``engine``: every other process of its session (EngineCore, workers, helpers), user +
        system time from ``/proc/PID/stat``. Per-round differences divided by completed requests
        give a cost per request that, unlike throughput, does not depend on whether requests
        queued. The API server's figure is where vl-serve's additions are spent and differs
        between variants by tenths of a millisecond per request: clock ticks (10 ms, i.e.
        0.125 ms per request in an 80-request round) are too coarse for it.
        """
        tick = os.sysconf("SC_CLK_TCK")
        out = {"api": 0.0, "engine": 0.0}
        for pid, fields in self._session_stats().items():
            if pid == self.proc.pid:
                ns = process_cpu_ns(pid)
                self.api_cpu_clock = API_CPU_CLOCK if ns is not None else TICKS_CLOCK
                out["api"] += (
                    ns / 1e9 if ns is not None else (int(fields[11]) + int(fields[12])) / tick
                )
            else:
                out["engine"] += (int(fields[11]) + int(fields[12])) / tick
        return out

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self, grace_s: float = 15.0) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=grace_s)
        finally:
            # The engine core and workers share the group: none may outlive the benchmark,
            # whatever interrupted the graceful stop.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self._log.close()


class ServerPool:
    """Every server started through it is closed on exit, errors and signals included."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []

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
            self.close_all()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, self._old)

    def start(self, plan: Plan) -> Server:
        server = Server(plan, self.workdir)
        self.servers.append(server)
        return server

    def stop(self, server: Server) -> None:
        server.close()
        self.servers.remove(server)

    def close_all(self) -> None:
        while self.servers:
            self.servers.pop().close()
