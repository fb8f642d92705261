"""Plot a bench.py result: request throughput and median TTFT per concurrency per variant, and
each variant's per-pair throughput ratio and TTFT difference against the baseline (median, 90%
bootstrap interval: over server pairs where the rounds record their servers, else over pairs).

.venv/bin/python benchmarks/bench_plot.py [benchmarks/results/latest.json] [-o out.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COLORS = {
    "vllm": "tab:blue",
    "vl-serve": "tab:orange",
    "vllm-qwen3": "tab:green",
    "vllm-qwen3_vl": "tab:purple",
    "vl-serve-noparser": "tab:brown",
    "vllm-b": "tab:cyan",
}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_tp, ax_ttft, ax_ratio, ax_diff) = plt.subplots(1, 4, figsize=(20, 4.2))
    concs = result["settings"]["concurrency"]
    for variant, per in result["summary"].items():
        color = COLORS.get(variant)
        xs = [int(c) for c in per]
        rounds = [r for r in result["rounds"] if r["variant"] == variant]
        for ax, key in ((ax_tp, "request_throughput"), (ax_ttft, "median_ttft_ms")):
            ax.plot(xs, [e[key] for e in per.values()], "o-", color=color, label=variant)
            # every repetition, faintly, so the spread is visible
            xr = [r["concurrency"] for r in rounds]
            ax.scatter(xr, [r[key] for r in rounds], s=10, alpha=0.35, color=color)
    tf = result.get("transformers_baseline") or {}
    if tf.get("request_throughput"):
        ax_tp.axhline(
            tf["request_throughput"],
            ls="--",
            color="gray",
            label="transformers generate (sequential)",
        )
    base = result["settings"].get("baseline", "vllm")
    for key, per in result.get("comparisons", {}).items():
        variant, _, against = key.partition("/")
        if against != base or not per:
            continue
        xs = [int(c) for c in per]
        for ax, field in ((ax_ratio, "throughput_ratio"), (ax_diff, "ttft_diff_ms")):
            ys = [e[field] for e in per.values()]
            cis = [  # resampling server pairs where the rounds record their servers
                e.get(field + "_ci90_by_servers") or e.get(field + "_ci90") or [y, y]
                for y, e in zip(ys, per.values(), strict=True)
            ]
            ax.errorbar(
                xs,
                ys,
                yerr=[
                    [y - lo for y, (lo, _) in zip(ys, cis, strict=True)],
                    [hi - y for y, (_, hi) in zip(ys, cis, strict=True)],
                ],
                fmt="o-",
                capsize=4,
                color=COLORS.get(variant),
                label=f"{variant} / {base}"
                if field == "throughput_ratio"
                else f"{variant} - {base}",
            )
    ax_ratio.axhline(1.0, color="gray", lw=0.8)
    ax_ratio.axhline(0.98, color="tab:red", ls="--", lw=0.8, label="target 0.98")
    ax_ratio.legend(fontsize=8)
    ax_diff.axhline(0.0, color="gray", lw=0.8)
    ax_diff.axhline(2.0, color="tab:red", ls="--", lw=0.8, label="target +2 ms")
    ax_diff.legend(fontsize=8)
    for ax, title, unit in (
        (ax_tp, "request throughput", "requests/s"),
        (ax_ttft, "median time to first token", "ms"),
        (ax_ratio, f"throughput / {base} (per-pair median, 90% interval)", "ratio"),
        (ax_diff, f"median TTFT - {base} (per-pair median, 90% interval)", "ms"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(concs)
        ax.set_xticklabels([str(c) for c in concs])
        ax.set_xlabel("concurrency (max in-flight requests)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax_ttft.set_yscale("log")
    ax_tp.legend(fontsize=8)
    env = result["environment"]
    s = result["settings"]
    fig.suptitle(
        f"{env['cpu_model']} ({env['cpus_usable']} cores), vLLM {env['vllm']}: "
        f"{s['input_len']} in / {s['output_len']} out tokens + {s['image']}; "
        f"median of {s['reps']} alternating reps",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="plot a bench.py result JSON")
    default = Path(__file__).resolve().parent / "results" / "latest.json"
    p.add_argument("result", type=Path, nargs="?", default=default)
    p.add_argument("-o", "--out", type=Path)
    args = p.parse_args(argv)
    out = args.out or args.result.with_suffix(".png")
    plot(json.loads(args.result.read_text()), out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
