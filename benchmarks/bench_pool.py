"""Pool the rounds of several ``make bench`` results into one comparison.

On a noisy machine one run's per-pair figures are few; runs of the same code with the same
settings can be pooled: their repetitions are renumbered so that pairs stay within a run, then
compared exactly as ``bench.py`` compares one run (median of per-pair figures, 90% bootstrap
interval, targets).

    python benchmarks/bench_pool.py RESULT.json RESULT.json ... [--out POOLED.json]
        [--also VARIANT/REFERENCE ...]

``--also vl-serve/vllm-b`` adds a comparison of two variants of the same runs, paired the same
way (reported under ``extra_comparisons``, never a target). The comparisons a single run makes
(``bench.compare_all``: every variant against the baseline, the baseline against its second arm,
vl-serve against ``vllm-qwen3``) are made anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench
import bench_servers as bs


def pool(results: list[dict[str, Any]], also: list[str] | None = None) -> dict[str, Any]:
    """One result-shaped dict (settings of the first, every run's rounds renumbered) with fresh
    summary, comparisons and targets."""
    if not results:
        raise ValueError("nothing to pool")
    keys = (
        "variants",
        "baseline",
        "concurrency",
        "prompts",
        "input_len",
        "output_len",
        "image",
        "schedule",
        "cpu_layout",
        "order",  # rotated (no record) or shuffled: not pooled together
        "cohort_reps",
    )
    first = {k: results[0]["settings"].get(k) for k in keys}
    commits = {
        (r["environment"].get("git_commit"), r["environment"].get("git_dirty")) for r in results
    }
    for res in results[1:]:
        other = {k: res["settings"].get(k) for k in keys}
        if other != first:
            raise ValueError(f"runs with different settings cannot be pooled: {first} != {other}")
    clocks = {r["settings"].get("api_cpu_clock", bs.TICKS_CLOCK) for r in results}
    if len(clocks) > 1:
        print(
            f"warning: API-server CPU was measured with different clocks {sorted(clocks)}: "
            "api_cpu figures mix them (throughput and TTFT are unaffected)",
            file=sys.stderr,
        )
    if len({commit for commit, _dirty in commits}) > 1:
        print(
            f"warning: pooling runs of different commits: {sorted(map(str, commits))}",
            file=sys.stderr,
        )
    rounds: list[dict[str, Any]] = []
    offset = servers = 0
    for res in results:
        reps = [r["rep"] for r in res["rounds"]]
        for r in res["rounds"]:
            rounds.append({**r, "rep": r["rep"] + offset})
            if "instance" in r:  # another run's servers are other servers
                rounds[-1]["instance"] = r["instance"] + servers
        offset += max(reps, default=-1) + 1
        servers += max((r.get("instance", 0) for r in res["rounds"]), default=0) + 1
    variants, concs = first["variants"], first["concurrency"]
    base = first["baseline"] or bs.BASELINE
    comparisons = bench.compare_all(rounds, variants, base, concs)
    extra = {}
    for name in also or []:
        variant, _, reference = name.partition("/")
        if variant not in variants or reference not in variants:
            raise ValueError(f"--also {name}: both must be variants of these runs ({variants})")
        extra[name] = bench.compare(rounds, variant, reference, concs)
    return {
        "kind": "vl-serve-bench-pooled",
        "runs": [
            {
                "created": res.get("created"),
                "git_commit": res["environment"].get("git_commit"),
                "git_dirty": res["environment"].get("git_dirty"),
                "reps": res["settings"].get("reps"),
                "instances_per_variant": res["settings"].get("instances_per_variant"),
            }
            for res in results
        ],
        "settings": {
            **first,
            "baseline": base,
            "reps": offset,
            "api_cpu_clock": clocks.pop() if len(clocks) == 1 else "mixed",
        },
        "environment": results[0]["environment"],  # the machine (each run's commit: "runs")
        "summary": bench.summarize(rounds, variants, concs),
        "comparisons": comparisons,
        "targets": bench.targets(comparisons),
        "extra_comparisons": extra,
        "rounds": rounds,
    }


def _ci(cmp: dict[str, Any], field: str, fmt: str) -> str:
    return bench.ci_text(cmp, field, fmt).strip() or "[too few pairs]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--also", action="append", default=[], metavar="VARIANT/REFERENCE")
    args = ap.parse_args(argv)
    results = []
    for path in args.results:
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:  # missing, unreadable, not JSON
            print(f"bench_pool: {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 2
    try:
        pooled = pool(results, args.also)
    except ValueError as exc:  # runs that cannot be pooled, an --also that names no variant
        print(f"bench_pool: {exc}", file=sys.stderr)
        return 2
    shown = {**pooled["comparisons"], **pooled["extra_comparisons"]}
    for name, per_conc in shown.items():
        print(
            f"{name}: median of per-pair figures [90% interval; by server pairs], "
            f"{len(args.results)} runs pooled"
        )
        for c, cmp in per_conc.items():
            servers = cmp.get("server_pairs")
            print(
                f"  c={c:<3} pairs {len(cmp['pairs']):>2}"
                f"{f' on {servers} server pairs' if servers else ''}  "
                f"throughput x{cmp['throughput_ratio']:.3f} {_ci(cmp, 'throughput_ratio', '.3f')}  "
                f"TTFT {cmp['ttft_diff_ms']:+.1f} ms {_ci(cmp, 'ttft_diff_ms', '+.1f')}  "
                f"TPOT x{cmp['tpot_ratio']:.3f}"
            )
    for line in bench.target_lines(pooled["targets"]):
        print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(bench.dumps(pooled))
        print(f"wrote {args.out}")
        try:
            import bench_plot

            bench_plot.plot(pooled, args.out.with_suffix(".png"))
        except ImportError as exc:
            print(f"no plot ({exc}); install matplotlib", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
