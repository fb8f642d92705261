"""vl-serve's supervisor with real child processes: exit status, forwarded SIGTERM, no orphans."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from vl_serve import launch, supervise

# A child that exits with argv[1] when it gets SIGTERM, or at once with argv[2] when given.
_CHILD = """
import signal, sys, time
code = int(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(code))
if len(sys.argv) > 2:
    sys.exit(int(sys.argv[2]))
print("up", flush=True)
time.sleep(60)
"""
# A child that leaves a grandchild behind which ignores SIGTERM, and exits on its own.
_LEAVER = """
import subprocess, sys
keep = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
grand = subprocess.Popen([sys.executable, "-c", keep])
print(grand.pid, flush=True)
"""


def _supervisor(*child: str, drain: float = 5.0) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "vl_serve.supervise", "--drain-timeout", str(drain), "--"]
    return subprocess.Popen([*cmd, sys.executable, *child], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize(
    ("child_exit", "expected"),
    [
        pytest.param(0, supervise.UNASKED_EXIT, id="exit-0-unasked-is-a-failure"),
        pytest.param(5, 5, id="non-zero-passed-on"),
    ],
)
def test_an_exit_nobody_asked_for_is_non_zero(child_exit: int, expected: int) -> None:
    proc = _supervisor("-c", _CHILD, "0", str(child_exit))
    assert proc.wait(timeout=30) == expected


@pytest.mark.parametrize(
    ("on_term", "expected"),
    [pytest.param(0, 0, id="clean-stop-is-0"), pytest.param(7, 7, id="failed-stop-passed-on")],
)
def test_sigterm_is_forwarded_and_the_childs_status_kept(on_term: int, expected: int) -> None:
    proc = _supervisor("-c", _CHILD, str(on_term))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == expected


def test_nothing_of_the_servers_group_outlives_it() -> None:
    proc = _supervisor("-c", _LEAVER)
    assert proc.stdout is not None
    grand = int(proc.stdout.readline())
    assert proc.wait(timeout=30) == supervise.UNASKED_EXIT
    deadline = time.monotonic() + 5
    while psutil.pid_exists(grand) and time.monotonic() < deadline:
        if psutil.Process(grand).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    assert not psutil.pid_exists(grand) or psutil.Process(grand).status() == psutil.STATUS_ZOMBIE


def test_launch_execs_the_supervisor_around_vllm() -> None:
    plan = launch.Launch(argv=["m", "--port", "1"])
    cmd = plan.supervised(12)
    assert cmd[1:6] == ["-m", "vl_serve.supervise", "--drain-timeout", "12", "--"]
    assert cmd[6:] == plan.command()
    assert Path(cmd[0]) == Path(sys.executable)
