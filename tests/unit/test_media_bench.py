"""The media benchmark's pure parts: workload selection, request bodies per arm, the bare argv,
round figures, per-pair ratios and the prompt-token check.

Hand-written rounds and request results; no server, no timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_rounds
import bench_servers
import media_bench
import media_report
import media_rounds
import media_workloads as mw

from vl_serve.argv import NO_FETCH_DOMAIN


@pytest.mark.parametrize(
    ("names", "smoke", "expected"),
    [
        pytest.param(None, True, mw.SMOKE_WORKLOADS, id="smoke_default"),
        pytest.param(None, False, list(mw.WORKLOADS), id="full_default"),
        pytest.param("video-url, photo-url", False, ["photo-url", "video-url"], id="table_order"),
    ],
)
def test_select(names: str | None, smoke: bool, expected: list[str]) -> None:
    assert [w.name for w in mw.select(names, smoke=smoke)] == expected


def test_select_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown workloads \\['gif'\\]"):
        mw.select("photo-url,gif", smoke=False)


def test_workloads_group_by_deployment() -> None:
    groups = mw.by_deployment(mw.select("photo-b64-1mp,small-url,photo-url-1mp", smoke=False))
    assert {d: [w.name for w in ws] for d, ws in groups.items()} == {
        "model": ["small-url"],
        "1mp": ["photo-url-1mp", "photo-b64-1mp"],
    }


@pytest.mark.parametrize(
    ("workload", "bare", "part", "extra"),
    [
        pytest.param(
            "photo-url",
            True,
            {"type": "image_url", "image_url": {"url": "http://h/photo.jpg"}},
            {},
            id="image_url",
        ),
        pytest.param(
            "photo-b64",
            False,
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AA=="}},
            {},
            id="image_inline",
        ),
        pytest.param(
            "video-url",
            False,
            {"type": "video_url", "video_url": {"url": "http://h/clip.mp4"}},
            {},
            id="video",
        ),
        pytest.param(
            "video-url-frames",
            False,
            {"type": "video", "video": "http://h/clip.mp4", "nframes": mw.VIDEO_FRAMES},
            {},
            id="video_frames_vl_serve",
        ),
        pytest.param(
            "video-url-frames",
            True,
            {"type": "video_url", "video_url": {"url": "http://h/clip.mp4"}},
            {"media_io_kwargs": {"video": {"num_frames": mw.VIDEO_FRAMES}}},
            id="video_frames_bare_vllm",
        ),
    ],
)
def test_body(workload: str, bare: bool, part: dict, extra: dict) -> None:
    w = mw.WORKLOADS[workload]
    inline = "data:image/jpeg;base64,AA==" if w.inline else None
    body = mw.body(w, "m", "http://h", inline, bare=bare, max_tokens=8)
    assert body["messages"][0]["content"][1] == part
    assert {k: body[k] for k in ("media_io_kwargs",) if k in body} == extra
    assert body["stream"] is True and body["ignore_eos"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["--allowed-media-domains", NO_FETCH_DOMAIN, "--port", "1"],
            ["--allowed-media-domains", "127.0.0.1", "--port", "1", "--trust-request-mm-kwargs"],
            id="no_fetch_domain_replaced",
        ),
        pytest.param(
            ["--port", "1"],
            ["--port", "1", "--allowed-media-domains", "127.0.0.1", "--trust-request-mm-kwargs"],
            id="domain_added",
        ),
    ],
)
def test_bare_argv(argv: list[str], expected: list[str]) -> None:
    assert mw.bare_argv(argv) == expected


def test_config_overrides_keep_the_config_media_section() -> None:
    out = mw.config_overrides("1mp", {"media": {"max_redirects": 2, "max_item_bytes": 5}})
    assert out["media"]["max_redirects"] == 2
    assert out["media"]["max_item_bytes"] == mw.MEDIA_SECTION["max_item_bytes"]
    assert out["mm_processor_kwargs"] == {"max_pixels": mw.ONE_MP_PIXELS}
    assert "mm_processor_kwargs" not in mw.config_overrides("model", {})


def test_figures_of_a_round() -> None:
    ok = [
        {"ttft": t, "latency": t + 0.07, "usage": {"prompt_tokens": 90, "completion_tokens": 8}}
        for t in (0.1, 0.2, 0.3, 0.4)
    ]
    res = media_rounds.figures([*ok, {"error": "HTTP 400: bad"}], duration=2.0)
    assert res["completed"] == 4 and res["failed"] == 1
    assert res["request_throughput"] == 2.0
    assert res["median_ttft_ms"] == pytest.approx(250.0)
    assert res["p90_ttft_ms"] == pytest.approx(370.0)
    assert res["median_tpot_ms"] == pytest.approx(10.0)
    assert res["prompt_tokens"] == [90]
    assert res["first_error"] == "HTTP 400: bad"


def _round(variant: str, rep: int, ttft: float, tokens: int, instance: int = 0) -> dict:
    return {
        "variant": variant,
        "workload": "photo-url",
        "concurrency": 1,
        "rep": rep,
        "instance": instance,
        "median_ttft_ms": ttft,
        "p90_ttft_ms": ttft * 1.5,
        "request_throughput": 1000 / ttft,
        "api_cpu_ms_per_req": ttft / 2,
        "engine_cpu_ms_per_req": 1.0,
        "median_tpot_ms": 5.0,
        "prompt_tokens": [tokens],
        "completed": 4,
        "failed": 0,
    }


def test_compare_pairs_rounds_of_the_same_rep() -> None:
    rounds = [_round("vllm", rep, 100.0 + rep, 90, rep // 2) for rep in range(6)]
    rounds += [_round("vl-serve", rep, 2 * (100.0 + rep), 90, rep // 2) for rep in range(6)]
    cmp = media_report.compare_all(rounds, ["vllm", "vl-serve"], "vllm")
    entry = cmp["vl-serve/vllm"]["photo-url"]["1"]
    assert entry["ttft_ratio"] == pytest.approx(2.0)
    assert entry["throughput_ratio"] == pytest.approx(0.5)
    assert entry["ttft_ratio_ci90"] == pytest.approx([2.0, 2.0])
    assert entry["server_pairs"] == 3
    assert entry["ttft_ratio_ci90_by_servers"] is None  # under 5 server pairs
    assert len(entry["pairs"]) == 6


@pytest.mark.parametrize(
    ("other_tokens", "warnings"),
    [
        pytest.param(90, [], id="equal"),
        pytest.param(
            64, ["PROMPT TOKENS DIFFER on photo-url: vl-serve [64] vs vllm [90]"], id="differ"
        ),
    ],
)
def test_token_mismatches(other_tokens: int, warnings: list[str]) -> None:
    rounds = [_round("vllm", 0, 100.0, 90), _round("vl-serve", 0, 100.0, other_tokens)]
    summary = media_report.summarize(rounds, ["vllm", "vl-serve"])
    assert summary["photo-url"]["1"]["vllm"]["prompt_tokens"] == [90]
    assert media_report.token_mismatches(summary, "vllm") == warnings


def test_process_tree_and_front_of_a_plain_process() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        tree = bench_servers.process_tree(os.getpid())
        assert child.pid in tree and os.getpid() in tree
        assert int(tree[child.pid][1]) == os.getpid()  # its parent
        assert bench_rounds._front(os.getpid(), tree) == [os.getpid()]  # no supervisor above
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["--smoke"],
            {"reps": 1, "cohort_reps": 1, "variants": ["vllm", "vl-serve"], "time_budget": None},
            id="smoke",
        ),
        pytest.param(
            [],
            {"reps": 4, "cohort_reps": 4, "variants": ["vllm", "vl-serve", "vllm-b"]},
            id="full",
        ),
        pytest.param(
            ["--reps", "6", "--cohort-reps", "2", "--requests", "3", "--workloads", "small-url"],
            {"reps": 6, "cohort_reps": 2, "requests": {1: 3, 8: 3}},
            id="options",
        ),
    ],
)
def test_parse_args(argv: list[str], expected: dict) -> None:
    args = media_bench.parse_args(argv)
    assert {k: getattr(args, k) for k in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--workloads", "gif"], id="unknown_workload"),
        pytest.param(["--variants", "vllm,sglang"], id="unknown_variant"),
        pytest.param(["--concurrency", "1,4", "--requests", "1:2"], id="no_count_for_4"),
        pytest.param(["--reps", "0"], id="no_reps"),
    ],
)
def test_parse_args_refuses(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        media_bench.parse_args(argv)
