"""`make bench-smoke`'s path works end to end: one vl-serve server, two rounds, a result file.

Checks the harness and the result's shape only; benchmark figures are never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_bench_smoke_writes_a_sane_result(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    result = json.loads((tmp_path / "latest.json").read_text())
    assert (result["kind"], result["mode"]) == ("vl-serve-bench", "smoke")
    settings = result["settings"]
    assert settings["variants"] == ["vl-serve"]
    (conc,) = settings["concurrency"]
    prompts = settings["prompts"][str(conc)]

    # One cohort: both repetitions measured on the one server started for them.
    assert (settings["schedule"], settings["reps_run"]) == ("cohorts", 2)
    assert settings["instances_per_variant"] == 1
    assert len(result["variants"]["vl-serve"]["startup_s"]) == 1
    assert [(r["rep"], r["instance"]) for r in result["rounds"]] == [(0, 0), (1, 0)]
    for round_ in result["rounds"]:
        assert (round_["variant"], round_["concurrency"]) == ("vl-serve", conc)
        # vLLM's load generator ran every request of the round against the server.
        assert round_["completed"] == prompts == round_["num_prompts"]
        assert round_["failed"] == 0
        assert round_["total_output_tokens"] == prompts * settings["output_len"]
        assert round_["request_throughput"] > 0 and round_["median_ttft_ms"] > 0
        # CPU accounting found the server's own processes (API server, engine) and this one,
        # the API server's in nanoseconds (its process CPU clock), not 10 ms ticks.
        assert round_["api_cpu_ms_per_req"] > 0
        assert round_["engine_cpu_ms_per_req"] > 0
        assert round_["client_cpu_ms_per_req"] > 0
        assert round_["api_cpu_clock"] == "process-cputime-ns"
    assert settings["api_cpu_clock"] == "process-cputime-ns"

    summary = result["summary"]["vl-serve"][str(conc)]
    assert (summary["rounds"], summary["completed"]) == (2, 2 * prompts)

    env = result["environment"]
    assert env["vllm"] and env["cpu_model"] and env["cpu_count"]
    assert "git_commit" in env
    assert "--middleware" in result["variants"]["vl-serve"]["vllm_command"]
    assert settings["bench_argv_example"][:3] == ["vllm", "bench", "serve"]

    baseline = result["transformers_baseline"]
    assert baseline["request_throughput"] > 0
    assert baseline["output_tokens_per_request"] == settings["output_len"]

    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latest.png").stat().st_size > 0
