"""Run vLLM's server as a child: forward the stop signals, exit with its outcome, leave no process.

``vl-serve`` execs ``python -m vl_serve.supervise --drain-timeout N -- <vllm serve command>``.
vLLM's server exits with status 0 after its EngineCore dies, so ``Restart=on-failure``
(systemd) or ``restart: on-failure`` (Docker) would never restart it; here:

* the server runs in a process group of its own; SIGTERM, SIGINT and SIGHUP (as SIGTERM) are
  forwarded to its main process only, which stops the rest itself (the API server drains first,
  :mod:`vl_serve.server.drain`: an EngineCore signalled directly would stop at once);
* an exit nobody asked for is a failure: status 0 becomes :data:`UNASKED_EXIT`, and a non-zero
  status (or death by a signal, 128 + the signal) is passed on;
* after a stop signal the server gets ``drain_timeout`` and :data:`STOP_GRACE_S` more seconds,
  then its whole group is killed;
* once the main process has exited, whatever is left of its group is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any, Final

log = logging.getLogger("vl_serve")

UNASKED_EXIT: Final = 3  # the server stopped on its own (its engine died)
STOP_GRACE_S: Final = 20.0  # past drain_timeout: vLLM's own shutdown, then the group is killed
_FORWARD: Final = {
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGINT: signal.SIGINT,
    signal.SIGHUP: signal.SIGTERM,
}


def status(returncode: int) -> int:
    """A Popen return code as a shell exit status (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def supervise(cmd: list[str], drain_timeout: float, env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` until it exits; the exit status vl-serve should end with."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    asked: list[int] = []
    kill_at = [float("inf")]

    def forward(signum: int, _frame: Any) -> None:
        if not asked:
            kill_at[0] = time.monotonic() + drain_timeout + STOP_GRACE_S
        asked.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, _FORWARD[signal.Signals(signum)])

    for signum in _FORWARD:
        signal.signal(signum, forward)
    while True:
        try:
            returncode = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() > kill_at[0]:
                log.error("vLLM's server did not stop in time: killing it")
                kill_group(proc.pid)
                kill_at[0] = float("inf")
    kill_group(proc.pid)  # its children: nothing outlives the server
    code = status(returncode)
    if asked:
        return code
    if code == 0:
        log.error(
            "vLLM's server stopped on its own (status 0: its engine died); exiting with %d",
            UNASKED_EXIT,
        )
        return UNASKED_EXIT
    log.error("vLLM's server stopped on its own with status %d", code)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vl_serve.supervise")
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        parser.error("no command to run")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s vl-serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return supervise(cmd, args.drain_timeout)


if __name__ == "__main__":
    sys.exit(main())
