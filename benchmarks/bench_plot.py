"""Plot a bench.py result: request throughput and median TTFT per concurrency per variant.

.venv/bin/python benchmarks/bench_plot.py [benchmarks/results/latest.json] [-o out.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COLORS = {"vllm": "tab:blue", "vl-serve": "tab:orange", "vllm-qwen3": "tab:green"}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_tp, ax_ttft) = plt.subplots(1, 2, figsize=(11, 4.2))
    concs = result["settings"]["concurrency"]
    for variant, per in result["summary"].items():
        color = COLORS.get(variant)
        xs = [int(c) for c in per]
        ax_tp.plot(
            xs, [e["request_throughput"] for e in per.values()], "o-", color=color, label=variant
        )
        ax_ttft.plot(
            xs, [e["median_ttft_ms"] for e in per.values()], "o-", color=color, label=variant
        )
        # every repetition, faintly, so the spread is visible
        rounds = [r for r in result["rounds"] if r["variant"] == variant]
        ax_tp.scatter(
            [r["concurrency"] for r in rounds],
            [r["request_throughput"] for r in rounds],
            s=10,
            alpha=0.35,
            color=color,
        )
        ax_ttft.scatter(
            [r["concurrency"] for r in rounds],
            [r["median_ttft_ms"] for r in rounds],
            s=10,
            alpha=0.35,
            color=color,
        )
    tf = result.get("transformers_baseline") or {}
    if tf.get("request_throughput"):
        ax_tp.axhline(
            tf["request_throughput"],
            ls="--",
            color="gray",
            label="transformers generate (sequential)",
        )
    for ax, title, unit in (
        (ax_tp, "request throughput", "requests/s"),
        (ax_ttft, "median time to first token", "ms"),
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
