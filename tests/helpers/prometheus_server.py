"""A real Prometheus (the prometheus package's binary) on a free loopback port, for the e2e tests.

Started with a given config in a temporary folder; ``query`` runs PromQL through its HTTP API.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.helpers.vlserver import free_port


class Prometheus:
    def __init__(self, config: dict[str, Any]) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: apt-get install prometheus (.ci/run installs it)"
        self._tmp = tempfile.TemporaryDirectory(prefix="vlserve-prometheus-")
        root = Path(self._tmp.name)
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.base_url = f"http://127.0.0.1:{free_port()}"
        self._log = open(root / "prometheus.log", "wb")  # noqa: SIM115 - closed in close()
        self.log_path = root / "prometheus.log"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address={self.base_url.removeprefix('http://')}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/-/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        self.close()
        raise TimeoutError("prometheus not ready after 60 s")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) of ``expr`` now; an invalid query raises."""
        reply = httpx.get(self.base_url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = reply.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        reply = httpx.get(self.base_url + "/api/v1/targets", timeout=10).json()
        active: list[dict[str, Any]] = reply["data"]["activeTargets"]
        return active

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        self._tmp.cleanup()


@contextlib.contextmanager
def running(config: dict[str, Any]) -> Iterator[Prometheus]:
    server = Prometheus(config)
    try:
        yield server
    finally:
        server.close()
