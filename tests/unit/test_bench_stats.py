"""The statistics `make bench` reports (per-pair comparisons, bootstrap intervals, targets,
round order, pooling), its cohort schedule, and how its variants are planned.

Pure functions over hand-written rounds, the schedule with stand-in servers, the variant plans
built from the tiny config and the kept result files; no server, no timing.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_report
import bench_stats as bench


def rounds(variant: str, tps: list[float], ttfts: list[float], api_ms: float) -> list[dict]:
    return [
        {
            "variant": variant,
            "rep": rep,
            "concurrency": 16,
            "request_throughput": tp,
            "median_ttft_ms": ttft,
            "median_tpot_ms": 4.0,
            "api_cpu_ms_per_req": api_ms,
            "engine_cpu_ms_per_req": 30.0,
        }
        for rep, (tp, ttft) in enumerate(zip(tps, ttfts, strict=True))
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0], None),
        ([1.0, 2.0], None),
        ([0.99, 0.99, 0.99, 0.99], [0.99, 0.99]),
    ],
)
def test_bootstrap_ci_small_and_constant(values: list[float], expected: list[float] | None) -> None:
    assert bench.bootstrap_ci(values) == expected


def test_bootstrap_ci_brackets_the_median_and_is_repeatable() -> None:
    values = [0.95, 0.97, 0.98, 0.99, 1.0, 1.01, 1.02, 1.04, 0.96, 0.985]
    lo, hi = bench.bootstrap_ci(values) or (None, None)
    assert lo is not None and hi is not None
    assert min(values) <= lo <= statistics.median(values) <= hi <= max(values)
    assert bench.bootstrap_ci(values) == [lo, hi]
    # more spread, wider interval
    wide = [v + (v - 1.0) * 4 for v in values]
    wlo, whi = bench.bootstrap_ci(wide) or (0.0, 0.0)
    assert whi - wlo > hi - lo


def test_compare_pairs_rounds_of_the_same_repetition() -> None:
    base = rounds("vllm", [20.0, 30.0, 40.0], [100.0, 110.0, 120.0], api_ms=10.0)
    ours = rounds("vl-serve", [19.0, 30.0, 44.0], [101.0, 109.0, 123.0], api_ms=11.0)
    out = bench.compare(base + ours, "vl-serve", "vllm", [16])["16"]
    # per-pair ratios 0.95, 1.0, 1.1: the median is the middle pair, not a ratio of medians
    assert out["throughput_ratio"] == pytest.approx(1.0)
    assert out["ttft_diff_ms"] == pytest.approx(1.0)
    assert out["api_cpu_ms_diff"] == pytest.approx(1.0)
    assert out["api_cpu_ratio"] == pytest.approx(1.1)
    assert [p["rep"] for p in out["pairs"]] == [0, 1, 2]
    lo, hi = out["throughput_ratio_ci90"]
    assert 0.95 <= lo <= 1.0 <= hi <= 1.1


def test_compare_skips_unpaired_rounds() -> None:
    base = rounds("vllm", [20.0], [100.0], api_ms=10.0)
    ours = rounds("vl-serve", [19.0, 25.0], [101.0, 99.0], api_ms=11.0)
    out = bench.compare(base + ours, "vl-serve", "vllm", [16])["16"]
    assert len(out["pairs"]) == 1
    assert out["throughput_ratio_ci90"] is None


def on_servers(rs: list[dict], per: int) -> list[dict]:
    """The rounds as the cohorts schedule numbers them: ``per`` repetitions per server."""
    return [{**r, "instance": r["rep"] // per} for r in rs]


def test_cluster_bootstrap_needs_five_clusters_and_is_repeatable() -> None:
    assert bench.cluster_bootstrap_ci([[1.0, 1.1]] * 4) is None
    clusters = [[0.9, 0.91], [0.95, 0.96], [1.0, 1.0], [1.0, 1.01], [1.05, 1.04], [1.1, 1.1]]
    lo, hi = bench.cluster_bootstrap_ci(clusters) or (None, None)
    assert lo is not None and hi is not None
    assert 0.9 <= lo <= 1.0 <= hi <= 1.1
    assert bench.cluster_bootstrap_ci(clusters) == [lo, hi]


def test_compare_resamples_server_pairs_when_pairs_share_servers() -> None:
    # Six server pairs, each measured four times: within a pair the ratio hardly moves, between
    # pairs it does (one server is lastingly faster than another). Bootstrapping the 24 pairs as
    # if independent gives a narrower interval than resampling the six server pairs.
    level = [0.93, 0.96, 0.99, 1.0, 1.03, 1.06]
    ours_tp = [20.0 * level[rep // 4] * (1 + 0.001 * (rep % 4)) for rep in range(24)]
    base = on_servers(rounds("vllm", [20.0] * 24, [100.0] * 24, 10.0), per=4)
    ours = on_servers(rounds("vl-serve", ours_tp, [100.0] * 24, 10.0), per=4)
    out = bench.compare(base + ours, "vl-serve", "vllm", [16])["16"]
    assert out["server_pairs"] == 6
    assert {tuple(p["servers"]) for p in out["pairs"]} == {(i, i) for i in range(6)}
    lo, hi = out["throughput_ratio_ci90"]
    clo, chi = out["throughput_ratio_ci90_by_servers"]
    assert clo <= lo <= out["throughput_ratio"] <= hi <= chi
    assert chi - clo > hi - lo
    # rounds without a server record: no such interval
    plain = bench.compare(
        rounds("vllm", [20.0] * 6, [100.0] * 6, 10.0)
        + rounds("vl-serve", [20.0] * 6, [100.0] * 6, 10.0),
        "vl-serve",
        "vllm",
        [16],
    )["16"]
    assert plain["server_pairs"] is None and "throughput_ratio_ci90_by_servers" not in plain


def test_pool_keeps_each_runs_servers_apart() -> None:
    one = result([20.0] * 4, [19.0] * 4)
    two = result([20.0] * 4, [21.0] * 4)
    for res in (one, two):  # both runs number their servers from 0
        res["rounds"] = on_servers(res["rounds"], per=2)
    cmp = bench.pool([one, two])["comparisons"]["vl-serve/vllm"]["16"]
    # run 2's two servers (0 and 1 in its own file) are servers 2 and 3 of the pool
    assert [p["servers"] for p in cmp["pairs"]] == [[i // 2, i // 2] for i in range(8)]
    assert cmp["server_pairs"] == 4


def result(base_tps: list[float], our_tps: list[float], **settings: object) -> dict:
    ttfts = [100.0] * len(base_tps)
    return {
        "settings": {"variants": ["vllm", "vl-serve"], "concurrency": [16], **settings},
        "environment": {"git_commit": "x", "git_dirty": False},
        "rounds": rounds("vllm", base_tps, ttfts, 10.0) + rounds("vl-serve", our_tps, ttfts, 10.0),
    }


def test_pool_keeps_pairs_within_each_run() -> None:
    # Run 2 repeats run 1's repetition numbers: pooled naively, rep 0 of one run would be
    # paired with rep 0 of the other.
    one = result([20.0, 20.0], [19.0, 19.0])  # ratio 0.95 twice
    two = result([40.0, 40.0, 40.0], [44.0, 44.0, 44.0])  # ratio 1.1 three times
    out = bench.pool([one, two])
    cmp = out["comparisons"]["vl-serve/vllm"]["16"]
    ratios = sorted(round(p["throughput_ratio"], 6) for p in cmp["pairs"])
    assert ratios == [0.95, 0.95, 1.1, 1.1, 1.1]
    assert [p["rep"] for p in cmp["pairs"]] == [0, 1, 2, 3, 4]
    assert cmp["throughput_ratio"] == pytest.approx(1.1)
    assert out["targets"]["vl-serve"]["per_concurrency"]["16"]["throughput_ratio_ok"]
    assert len(out["runs"]) == 2


def test_pool_also_compares_two_non_baseline_variants_pair_by_pair() -> None:
    one = result([20.0, 20.0], [19.0, 19.0])
    one["settings"]["variants"].append("vllm-qwen3")
    one["rounds"] += rounds("vllm-qwen3", [38.0, 10.0], [100.0, 100.0], 10.0)
    out = bench.pool([one], also=["vl-serve/vllm-qwen3"])
    pairs = out["extra_comparisons"]["vl-serve/vllm-qwen3"]["16"]["pairs"]
    assert sorted(round(p["throughput_ratio"], 6) for p in pairs) == [0.5, 1.9]
    # reported, never a target: the targets stay those of vl-serve against the baseline
    assert out["targets"] == bench.targets(out["comparisons"])
    with pytest.raises(ValueError, match="both must be variants"):
        bench.pool([one], also=["vl-serve/sglang"])


@pytest.mark.parametrize(
    ("ours", "second", "vl_serve_ok", "calibration_ok", "swapped_ok", "line"),
    [
        # vl-serve 1% slower and 1 ms later: within both thresholds; the A/A arm 3% slower
        ([19.8] * 3, [19.4] * 3, True, False, True, "c=16 missed throughput -> NOT met"),
        # vl-serve 3 ms later; the A/A arm identical to the baseline
        ([20.0] * 3, [20.0] * 3, False, True, True, "c=16 ok -> met"),
        # the A/A arm 3% faster: it passes, the baseline measured against it does not
        ([20.0] * 3, [20.6] * 3, False, True, False, "c=16 ok -> met"),
    ],
    ids=["vl-serve-met-aa-slower", "vl-serve-missed-aa-equal", "aa-faster"],
)
def test_targets_apply_the_same_thresholds_to_the_calibration_arm_both_ways(
    ours: list[float],
    second: list[float],
    vl_serve_ok: bool,
    calibration_ok: bool,
    swapped_ok: bool,
    line: str,
) -> None:
    ttft_ours = [101.0] * 3 if vl_serve_ok else [103.0] * 3
    all_rounds = (
        rounds("vllm", [20.0] * 3, [100.0] * 3, 10.0)
        + rounds("vl-serve", ours, ttft_ours, 10.0)
        + rounds("vllm-b", second, [100.0] * 3, 10.0)
    )
    comparisons = bench.compare_all(all_rounds, ["vllm", "vl-serve", "vllm-b"], "vllm", [16])
    assert sorted(comparisons) == ["vl-serve/vllm", "vllm-b/vllm", "vllm/vllm-b"]
    out = bench.targets(comparisons)
    assert out["vl-serve"]["all_ok"] is vl_serve_ok
    assert out["calibration"]["all_ok"] is calibration_ok
    assert out["calibration-swapped"]["all_ok"] is swapped_ok
    assert out["calibration"]["throughput_ratio_min"] == out["vl-serve"]["throughput_ratio_min"]
    lines = bench_report.target_lines(out)
    assert [x.split(" ")[1] for x in lines] == ["vl-serve", "calibration", "calibration-swapped"]
    assert lines[1].endswith(line)
    # without a second baseline arm there is no calibration entry
    assert "calibration" not in bench.targets({"vl-serve/vllm": comparisons["vl-serve/vllm"]})


def test_the_calibration_arm_runs_the_baselines_command(tmp_path: Path) -> None:
    import bench_servers as bs

    names = [bench.BASELINE, bench.CALIBRATION, "vl-serve"]
    plans = bs.plan_variants(names, bs.DEFAULT_CONFIG, tmp_path, vl_serve_parser="qwen3_vl")
    base, second = plans[bench.BASELINE], plans[bench.CALIBRATION]
    assert (second.command, second.env) == (base.command, base.env)
    assert second.command != plans["vl-serve"].command


@pytest.mark.parametrize(
    ("variants", "reps", "per_position"),
    [
        (["vllm", "vl-serve", "vllm-b"], 12, 4),  # two whole sets of the six orderings
        (["vllm", "vl-serve"], 5, None),  # two whole sets and one drawn ordering
        (["vl-serve"], 1, 1),  # smoke
    ],
    ids=["three-variants", "two-variants-odd", "one-variant"],
)
def test_round_orders_are_balanced_shuffled_and_repeatable(
    variants: list[str], reps: int, per_position: int | None
) -> None:
    orders = bench.round_orders(variants, reps, 4, seed=11)
    assert orders == bench.round_orders(variants, reps, 4, seed=11)
    assert len(orders) == 4 and all(len(per_conc) == reps for per_conc in orders)
    for per_conc in orders:
        assert all(sorted(o) == sorted(variants) for o in per_conc)
        for position in range(len(variants)):
            counts = [sum(o[position] == v for o in per_conc) for v in variants]
            if per_position is not None:
                assert counts == [per_position] * len(variants)
            else:
                assert max(counts) - min(counts) <= 1
    if len(variants) == 3:
        # not a rotation: within a concurrency, rep % 3 is not pinned to one place in the
        # order, and the orders differ between concurrencies
        first = [o[0] for o in orders[0]]
        assert any(len({first[r] for r in range(j, reps, 3)}) > 1 for j in range(3))
        assert orders[0] != orders[1]
        assert orders != bench.round_orders(variants, reps, 4, seed=12)


def test_pool_refuses_runs_with_other_settings() -> None:
    with pytest.raises(ValueError, match="different settings"):
        bench.pool([result([20.0], [20.0]), result([20.0], [20.0], input_len=128)])


def test_pool_main_prints_with_too_few_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    paths = []
    for i, (base, ours) in enumerate([([20.0], [19.0]), ([40.0], [44.0])]):
        res = result(base, ours)
        res["environment"]["git_commit"] = f"commit{i}"
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(res))
    assert bench_report.main(["--pool", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "pairs  2" in out and "[too few pairs]" in out
    assert "warning: runs of different commits" in out


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--also", "vl-serve/sglang"], "--also vl-serve/sglang: both must be variants"),
        (["{tmp}/missing.json"], "{tmp}/missing.json: No such file or directory"),
        (["{tmp}/broken.json"], "{tmp}/broken.json: Expecting value"),
    ],
    ids=["unknown-variant", "missing-file", "not-json"],
)
def test_pool_main_says_what_cannot_be_pooled_without_a_traceback(
    extra: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    path = tmp_path / "r.json"
    path.write_text(json.dumps(result([20.0], [19.0])))
    (tmp_path / "broken.json").write_text("not json")
    argv = ["--pool", str(path)] + [a.format(tmp=tmp_path) for a in extra]
    assert bench_report.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench_report: " + says.format(tmp=tmp_path))
    assert "Traceback" not in err and err.count("\n") == 1


def test_process_cpu_ns_counts_every_thread_exited_ones_too() -> None:
    """The API-server CPU figure: the process CPU clock in nanoseconds (the 10 ms clock ticks
    of /proc/PID/stat cannot resolve a fraction of a millisecond per request)."""
    import os
    import threading

    import bench_rounds

    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    before = bench_rounds.process_cpu_ns(os.getpid())
    worker = threading.Thread(target=spin, args=(0.05,))
    worker.start()
    spin(0.05)
    worker.join()  # exited: its time stays counted
    after = bench_rounds.process_cpu_ns(os.getpid())
    assert before is not None and after is not None
    assert 0.099e9 <= after - before < 5e9  # both threads' 50 ms (same clock as thread_time)
    assert bench_rounds.process_cpu_ns(2**22 + 12345) is None  # above the kernel's pid limit


def test_cpu_clock_of_rounds_and_pools() -> None:
    import bench_rounds

    ns, ticks = bench_rounds.API_CPU_CLOCK, bench_rounds.TICKS_CLOCK
    assert bench.cpu_clock([{"api_cpu_clock": ns}, {"api_cpu_clock": ns}]) == ns
    assert bench.cpu_clock([{"api_cpu_clock": ns}, {"api_cpu_clock": ticks}]) == "mixed"
    assert bench.cpu_clock([]) is None

    def run(clock: str) -> dict:
        settings = {"variants": ["vl-serve", "vllm"], "baseline": "vllm", "concurrency": [16]}
        settings["api_cpu_clock"] = clock
        rs = rounds("vllm", [1.0, 1.1], [10.0, 10.0], 10.0)
        rs += rounds("vl-serve", [1.0, 1.1], [10.5, 10.5], 11.0)
        return {"settings": settings, "environment": {"git_commit": "x"}, "rounds": rs}

    assert bench.pool([run(ns), run(ns)])["settings"]["api_cpu_clock"] == ns
    assert bench.pool([run(ns), run(ns)])["warnings"] == []
    mixed = bench.pool([run(ns), run(ticks)])
    assert mixed["settings"]["api_cpu_clock"] == "mixed"
    assert mixed["warnings"] == [f"API-server CPU measured with different clocks: {[ns, ticks]}"]


class _StandInRounds:
    """``bench_rounds.Rounds`` with stand-in servers: records what would be measured where."""

    @staticmethod
    def make(tmp_path: Path, **settings: object) -> object:
        import argparse
        import types

        import bench_rounds

        class StandIn(bench_rounds.Rounds):
            cohorts = 0

            def start_cohort(self, pool: object) -> dict:
                self.cohorts += 1
                return {
                    n: types.SimpleNamespace(name=n, instance=self.cohorts - 1)
                    for n in self.args.variants
                }

            def measure(self, server: object, rep: int, conc: int, warmup: bool = False) -> None:
                name, instance = server.name, server.instance  # type: ignore[attr-defined]
                self.rounds.append(
                    {"variant": name, "rep": rep, "concurrency": conc, "instance": instance}
                )

        args = argparse.Namespace(
            workdir=tmp_path,
            variants=["vllm", "vl-serve", "vllm-b"],
            concurrency=[1, 16],
            reps=4,
            cohort_reps=2,
            order_seed=5,
            time_budget=None,
            cpu_layout="none",
            smoke=False,
        )
        for key, value in settings.items():
            setattr(args, key, value)
        return StandIn(args, {}, "model", "/models/m")


def test_cohorts_replace_every_server_every_cohort_reps_in_the_balanced_order(
    tmp_path: Path,
) -> None:
    import time as time_

    runner = _StandInRounds.make(tmp_path)
    runner.run(time_.monotonic())  # type: ignore[attr-defined]
    rs = runner.rounds  # type: ignore[attr-defined]
    assert runner.cohorts == 2  # type: ignore[attr-defined]
    # repetitions 0-1 on the first cohort of servers, 2-3 on the second
    assert {(r["rep"], r["instance"]) for r in rs} == {(0, 0), (1, 0), (2, 1), (3, 1)}
    orders = bench.round_orders(["vllm", "vl-serve", "vllm-b"], 4, 2, seed=5)
    for rep in range(4):
        for i, conc in enumerate([1, 16]):
            measured = [r["variant"] for r in rs if r["rep"] == rep and r["concurrency"] == conc]
            assert measured == orders[i][rep]
    # every pair shares its repetition's servers: one server pair per cohort
    cmp = bench.compare(
        [
            {**r, "request_throughput": 1.0, "median_ttft_ms": 1.0, "median_tpot_ms": 1.0}
            for r in rs
        ],
        "vl-serve",
        "vllm",
        [1],
    )["1"]
    assert [p["servers"] for p in cmp["pairs"]] == [[0, 0], [0, 0], [1, 1], [1, 1]]


def test_the_time_budget_stops_before_a_repetition_that_would_overrun(tmp_path: Path) -> None:
    import time as time_

    runner = _StandInRounds.make(tmp_path, time_budget=10.0)
    runner.run(time_.monotonic() - 1000)  # type: ignore[attr-defined]
    assert {r["rep"] for r in runner.rounds} == {0}  # type: ignore[attr-defined]
    (note,) = runner.notes  # type: ignore[attr-defined]
    assert note.startswith("time budget 10 s: 1 of 4 repetitions ran")


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_make_bench_defaults_are_the_kept_evaluations_design() -> None:
    """`make bench` (no options) repeats the design of the run kept in results/latest.json."""
    import json

    import bench as bench_cli

    args = bench_cli.parse_args([])
    kept = json.loads((RESULTS / "latest.json").read_text())["settings"]
    assert args.variants == kept["variants"] == ["vllm", "vl-serve", "vllm-b"]
    assert args.concurrency == kept["concurrency"]
    assert {str(c): n for c, n in args.prompts.items()} == kept["prompts"]
    assert (args.reps, args.cohort_reps) == (kept["reps"], kept["cohort_reps"])
    assert (args.warmup_prompts, args.wake_requests) == (
        kept["warmup_prompts"],
        kept["wake_requests"],
    )
    smoke = bench_cli.parse_args(["--smoke"])
    assert (smoke.variants, smoke.reps, smoke.concurrency) == (["vl-serve"], 2, [4])


@pytest.mark.parametrize("name", ["latest.json", "pooled.json"])
def test_the_kept_results_report_and_plot(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The result files the README quotes still read: the A/A arm's verdicts print, and (with
    matplotlib) the plot renders."""
    pytest.importorskip("matplotlib")
    png = tmp_path / "plot.png"
    assert bench_report.main([str(RESULTS / name), "-o", str(png)]) == 0
    out = capsys.readouterr().out
    assert "vl-serve/vllm: median of per-pair figures" in out
    assert "targets calibration " in out and "targets calibration-swapped " in out
    assert png.stat().st_size > 10_000
