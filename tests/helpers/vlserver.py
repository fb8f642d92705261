"""A real vLLM server started by ``vl-serve`` for end-to-end tests (after vLLM's RemoteOpenAIServer).

One per test module: free port on 127.0.0.1, polls /health, fails at once with the log tail if the
process dies, kills the whole process group at the end. ``VL_SERVE_TEST_URL=http://host:port``
points the suite at an already running server instead (for debugging).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "vl_serve" / "configs" / "tiny-cpu.yaml"
START_TIMEOUT_S = float(os.environ.get("VL_SERVE_TEST_START_TIMEOUT", "420"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """The embedded default config with top-level sections merged from ``overrides``."""
    cfg: dict[str, Any] = yaml.safe_load(TINY_CONFIG.read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def reasoning_config(parser: str, **overrides: Any) -> dict[str, Any]:
    """``tiny_config`` with a reasoning parser, and grammars allowed inside the reasoning (the
    forced-output tests steer the tiny random model with structured outputs)."""
    overrides["reasoning"] = {"parser": parser, **overrides.get("reasoning", {})}
    overrides["vllm_args"] = {
        "structured_outputs_config": {"enable_in_reasoning": True},
        **overrides.get("vllm_args", {}),
    }
    return tiny_config(**overrides)


class VLServer:
    def __init__(
        self,
        config: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        name: str = "server",
    ) -> None:
        self.external = os.environ.get("VL_SERVE_TEST_URL")
        self.api_key = "EMPTY"
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix=f"vlserve-{name}-")
        self.log_path = Path(self._tmp.name) / "server.log"
        if self.external:
            self.base_url = self.external.rstrip("/")
            return
        port = free_port()
        config = {
            **config,
            "server": {**config.get("server", {}), "host": "127.0.0.1", "port": port},
        }
        self.config_path = Path(self._tmp.name) / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.base_url = f"http://127.0.0.1:{port}"
        child_env = {**os.environ, **(env or {})}
        api_env = config["server"].get("api_key_env")
        if api_env:
            self.api_key = child_env[api_env]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vl_serve.cli", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,  # its own process group: killed whole in close()
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.close()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"vl-serve exited with {self.proc.returncode} before becoming healthy:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url("/health"), timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"server not healthy after {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def url(self, path: str) -> str:
        return self.base_url + path

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url("/v1"), api_key=self.api_key, max_retries=0, timeout=120, **kwargs
        )

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.proc is not None:
            # Children (engine core) share the group: make sure none outlives the module.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self._log.close()
        self._tmp.cleanup()


@contextlib.contextmanager
def running(config: dict[str, Any], **kwargs: Any) -> Iterator[VLServer]:
    server = VLServer(config, **kwargs)
    try:
        yield server
    finally:
        server.close()
