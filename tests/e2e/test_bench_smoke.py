"""`make bench-smoke`'s path works end to end: one vl-serve server, a few prompts, a result file.

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
    # Two cohorts of one repetition: the schedule that replaces every server between cohorts.
    cohorts = ["--schedule", "cohorts", "--reps", "2", "--cohort-reps", "1"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--smoke", *cohorts, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["kind"] == "vl-serve-bench"
    assert result["mode"] == "smoke"
    settings = result["settings"]
    assert settings["variants"] == ["vl-serve"]
    (conc,) = settings["concurrency"]
    prompts = settings["prompts"][str(conc)]

    assert settings["schedule"] == "cohorts" and settings["cohort_reps"] == 1
    assert settings["reps_run"] == settings["instances_per_variant"] == 2
    first, round_ = result["rounds"]
    # each repetition was measured on a server of its own (started for it)
    assert [first["rep"], round_["rep"]] == [0, 1]
    assert [first["instance"], round_["instance"]] == [0, 1]
    assert len(result["variants"]["vl-serve"]["startup_s"]) == 2
    assert "starting vl-serve (repetitions 1-1)" in proc.stdout
    assert "starting vl-serve (repetitions 2-2)" in proc.stdout
    assert round_["variant"] == "vl-serve"
    assert round_["concurrency"] == conc
    assert round_["completed"] == prompts == round_["num_prompts"]
    assert round_["failed"] == 0
    assert round_["request_throughput"] > 0
    assert round_["output_throughput"] > 0
    assert round_["total_output_tokens"] == prompts * settings["output_len"]
    assert round_["median_ttft_ms"] > 0
    # CPU accounting found the server's own processes (API server and engine core) and this one.
    assert round_["api_cpu_ms_per_req"] > 0
    assert round_["engine_cpu_ms_per_req"] > 0
    assert round_["client_cpu_ms_per_req"] > 0
    # The API server's figure in nanoseconds (the process CPU clock), not 10 ms ticks.
    assert round_["api_cpu_clock"] == settings["api_cpu_clock"] == "process-cputime-ns"

    summary = result["summary"]["vl-serve"][str(conc)]
    assert summary["completed"] == 2 * prompts
    assert summary["rounds"] == 2

    env = result["environment"]
    assert env["vllm"] and env["cpu_model"] and env["cpu_count"]
    assert "git_commit" in env
    assert result["variants"]["vl-serve"]["startup_s"]
    assert "--middleware" in result["variants"]["vl-serve"]["vllm_command"]
    assert settings["bench_argv_example"][:3] == ["vllm", "bench", "serve"]

    baseline = result["transformers_baseline"]
    assert baseline["request_throughput"] > 0
    assert baseline["output_tokens_per_request"] == settings["output_len"]

    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latest.png").stat().st_size > 0
