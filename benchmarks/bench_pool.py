"""Pool the rounds of several ``make bench`` results into one comparison.

On a noisy machine one run's per-pair figures are few; runs of the same code with the same
settings can be pooled: their repetitions are renumbered so that pairs stay within a run, then
compared exactly as ``bench.py`` compares one run (median of per-pair figures, 90% bootstrap
interval, targets).

    python benchmarks/bench_pool.py RESULT.json RESULT.json ... [--out POOLED.json]
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


def pool(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result-shaped dict (settings of the first, every run's rounds renumbered) with fresh
    summary, comparisons and targets."""
    if not results:
        raise ValueError("nothing to pool")
    keys = ("variants", "concurrency", "prompts", "input_len", "output_len", "image")
    first = {k: results[0]["settings"].get(k) for k in keys}
    for res in results[1:]:
        other = {k: res["settings"].get(k) for k in keys}
        if other != first:
            raise ValueError(f"runs with different settings cannot be pooled: {first} != {other}")
    rounds: list[dict[str, Any]] = []
    offset = 0
    for res in results:
        reps = [r["rep"] for r in res["rounds"]]
        rounds += [{**r, "rep": r["rep"] + offset} for r in res["rounds"]]
        offset += max(reps) + 1
    variants, concs = first["variants"], first["concurrency"]
    comparisons = {
        f"{v}/{bs.BASELINE}": bench.compare(rounds, v, bs.BASELINE, concs)
        for v in variants
        if v != bs.BASELINE
    }
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
        "settings": {**first, "baseline": bs.BASELINE, "reps": offset},
        "environment": results[0]["environment"],  # the machine (each run's commit: "runs")
        "summary": bench.summarize(rounds, variants, concs),
        "comparisons": comparisons,
        "targets": bench.targets(comparisons),
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    pooled = pool([json.loads(p.read_text()) for p in args.results])
    for name, per_conc in pooled["comparisons"].items():
        print(f"{name}: median of per-pair figures, {len(args.results)} runs pooled")
        for c, cmp in per_conc.items():
            lo, hi = cmp.get("throughput_ratio_ci90") or (None, None)
            tlo, thi = cmp.get("ttft_diff_ms_ci90") or (None, None)
            print(
                f"  c={c:<3} pairs {len(cmp['pairs']):>2}  throughput x{cmp['throughput_ratio']:.3f} "
                f"[{lo:.3f}, {hi:.3f}]  TTFT {cmp['ttft_diff_ms']:+.1f} ms [{tlo:+.1f}, {thi:+.1f}]"
                f"  TPOT x{cmp['tpot_ratio']:.3f}"
            )
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
