"""A Ray cluster on this host for the multi-node tests: a head node and a second node process.

Each node is ``ray start --block`` in its own process group (killed whole in ``close``), on
127.0.0.1, with the GCS on a free port outside Ray's worker port range.
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

from tests.helpers.vlserver import free_port

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
COUNT_NODES = "import ray; ray.init(address='{address}', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"


class RayCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 2) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="vlray-")
        self.address = f"127.0.0.1:{free_port()}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = [Path(self._tmp.name) / f"node{i}.log" for i in range(nodes)]
        common = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}"]
        head = [
            "--head",
            f"--port={self.address.split(':')[1]}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        try:
            self._start([RAY, "start", *head, *common], self.logs[0])
            self._wait_gcs()
            for log in self.logs[1:]:
                self._start([RAY, "start", f"--address={self.address}", *common], log)
            self._wait(nodes)
        except BaseException:
            self.close()
            raise

    def _start(self, argv: list[str], log: Path) -> None:
        with open(log, "wb") as out:
            self.procs.append(
                subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True
                )
            )

    def _wait_gcs(self, timeout_s: float = 60) -> None:
        """Until the head's GCS takes connections (a driver started before that hangs)."""
        host, port = self.address.split(":")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise RuntimeError("the Ray head exited:\n" + self.log_tail())
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1):
                return
            time.sleep(0.5)
        raise TimeoutError(f"the Ray head's GCS is not up after {timeout_s}s:\n{self.log_tail()}")

    def alive_nodes(self) -> int:
        """Alive nodes as a Ray driver sees them (0 while the cluster does not answer)."""
        try:
            run = subprocess.run(
                [sys.executable, "-c", COUNT_NODES.format(address=self.address)],
                capture_output=True,
                text=True,
                env=ENV,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            return 0
        lines = run.stdout.strip().splitlines()
        return int(lines[-1]) if run.returncode == 0 and lines else 0

    def _wait(self, nodes: int, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError("a Ray node exited:\n" + self.log_tail())
            if self.alive_nodes() == nodes:
                return
            time.sleep(1)
        raise TimeoutError(f"{nodes} Ray nodes not up after {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(
            log.read_text(errors="replace")[-2000:] for log in self.logs if log.exists()
        )

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self._tmp.cleanup()


@contextlib.contextmanager
def running(nodes: int = 2) -> Iterator[RayCluster]:
    cluster = RayCluster(nodes)
    try:
        yield cluster
    finally:
        cluster.close()
