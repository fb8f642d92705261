"""The media benchmark's result: per-pair comparisons, the prompt-token check, text and plot.

Pure functions over the rounds `media_bench.py` records (one dict per variant, workload,
concurrency and repetition). A comparison pairs a variant's round with the baseline's round of
the same workload, concurrency and repetition and reports the median of the per-pair ratios
(TTFT, request throughput, API-server CPU per request) with ``bench_stats``'s two 90% bootstrap
intervals (over pairs, and over server pairs).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_stats as st

RATIOS = {  # pair field: round field
    "ttft_ratio": "median_ttft_ms",
    "ttft_p90_ratio": "p90_ttft_ms",
    "throughput_ratio": "request_throughput",
    "api_cpu_ratio": "api_cpu_ms_per_req",
}
SUMMARY_FIELDS = (
    "median_ttft_ms", "p90_ttft_ms", "request_throughput", "median_tpot_ms",
    "api_cpu_ms_per_req", "engine_cpu_ms_per_req",
)  # fmt: skip
COLORS = {"vl-serve": "tab:orange", "vllm-b": "tab:cyan", "vllm": "tab:blue"}
COLORS["vl-serve-nopresize"] = "tab:red"


def _cells(rounds: list[dict[str, Any]]) -> list[tuple[str, int]]:
    seen: dict[tuple[str, int], None] = {}
    for r in rounds:
        seen[(r["workload"], r["concurrency"])] = None
    return list(seen)


def summarize(rounds: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """``[workload][concurrency][variant]``: medians over repetitions, and the prompt tokens."""
    out: dict[str, Any] = {}
    for (w, c), v in itertools.product(_cells(rounds), variants):
        rs = [r for r in rounds if (r["workload"], r["concurrency"], r["variant"]) == (w, c, v)]
        if not rs:
            continue
        out.setdefault(w, {}).setdefault(str(c), {})[v] = {
            "rounds": len(rs),
            **{f: st._median([r.get(f) for r in rs]) for f in SUMMARY_FIELDS},
            "prompt_tokens": sorted({t for r in rs for t in r.get("prompt_tokens") or ()}),
            "completed": sum(r["completed"] for r in rs),
            "failed": sum(r["failed"] for r in rs),
        }
    return out


def compare(rounds: list[dict[str, Any]], variant: str, base: str) -> dict[str, Any]:
    """``[workload][concurrency]``: per-pair ratios of ``variant`` over ``base``, medians and
    intervals (``*_ci90`` over pairs, ``*_ci90_by_servers`` over server pairs)."""
    out: dict[str, Any] = {}
    for w, c in _cells(rounds):
        here = [r for r in rounds if r["workload"] == w and r["concurrency"] == c]
        base_by_rep = {r["rep"]: r for r in here if r["variant"] == base}
        pairs = []
        for r in here:
            b = base_by_rep.get(r["rep"]) if r["variant"] == variant else None
            if b is None:
                continue
            pair: dict[str, Any] = {"rep": r["rep"], "servers": [r["instance"], b["instance"]]}
            for name, f in RATIOS.items():
                if r.get(f) and b.get(f):
                    pair[name] = r[f] / b[f]
            pairs.append(pair)
        if not pairs:
            continue
        entry: dict[str, Any] = {}
        for name in RATIOS:
            values = [p[name] for p in pairs if name in p]
            entry[name] = st._median(values)
            entry[name + "_ci90"] = st.bootstrap_ci(values)
            clusters: dict[str, list[float]] = {}
            for p in pairs:
                if name in p:
                    clusters.setdefault(str(p["servers"]), []).append(p[name])
            entry[name + "_ci90_by_servers"] = st.cluster_bootstrap_ci(list(clusters.values()))
        entry["server_pairs"] = len({str(p["servers"]) for p in pairs})
        entry["pairs"] = pairs
        out.setdefault(w, {})[str(c)] = entry
    return out


def compare_all(rounds: list[dict[str, Any]], variants: list[str], base: str) -> dict[str, Any]:
    return {f"{v}/{base}": compare(rounds, v, base) for v in variants if v != base}


def _token_differences(summary: dict[str, Any], base: str) -> list[tuple[str, str, list, list]]:
    out = []
    for w, per_c in summary.items():
        seen: dict[str, set[int]] = {}
        for per_v in per_c.values():
            for v, s in per_v.items():
                seen.setdefault(v, set()).update(s["prompt_tokens"])
        ref = seen.get(base, set())
        out += [(w, v, sorted(t), sorted(ref)) for v, t in seen.items() if v != base and t != ref]
    return out


def token_mismatches(summary: dict[str, Any], base: str) -> list[str]:
    """One line per workload and arm whose prompt-token counts differ from the baseline's (a
    mismatch means the image or video reached the model in another size, or other frames)."""
    return [
        f"PROMPT TOKENS DIFFER on {w}: {v} {tokens} vs {base} {ref}"
        for w, v, tokens, ref in _token_differences(summary, base)
    ]


def _ci(entry: dict[str, Any], name: str) -> str:
    ci = entry.get(name + "_ci90_by_servers") or entry.get(name + "_ci90")
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(result: dict[str, Any]) -> str:
    """The text summary: per workload and concurrency, each arm's figures and the ratios."""
    s = result["settings"]
    lines = [
        f"media benchmark ({result['mode']}): variants {', '.join(s['variants'])}, "
        f"{s['reps_run']} reps, concurrency {s['concurrency']}, wall {result['wall_s']:.0f} s",
        f"{'workload':<17} {'c':<3} {'variant':<18} TTFT p50/p90 ms   req/s   API CPU ms/req"
        "  prompt tok",
    ]
    for w, per_c in result["summary"].items():
        for c, per_v in per_c.items():
            for v, x in per_v.items():
                lines.append(
                    f"{w:<17} {c:<3} {v:<18} {_fmt(x['median_ttft_ms'], '7.0f')}/"
                    f"{_fmt(x['p90_ttft_ms'], '<7.0f')}  {_fmt(x['request_throughput'], '6.2f')}"
                    f"  {_fmt(x['api_cpu_ms_per_req'], '9.1f')}       {x['prompt_tokens']}"
                    + (f"  FAILED {x['failed']}" if x["failed"] else "")
                )
    for key, per_w in result["comparisons"].items():
        lines.append(f"{key}: TTFT ratio, throughput ratio, API CPU ratio [90% interval]")
        for w, per_c in per_w.items():
            for c, e in per_c.items():
                lines.append(
                    f"  {w:<17} c={c:<3} TTFT x{_fmt(e['ttft_ratio'], '.3f')}{_ci(e, 'ttft_ratio')}"
                    f"  tput x{_fmt(e['throughput_ratio'], '.3f')}{_ci(e, 'throughput_ratio')}"
                    f"  CPU x{_fmt(e['api_cpu_ratio'], '.3f')}"
                )
    lines.extend(result.get("warnings", []))
    lines.extend(f"note: {n}" for n in result.get("notes", []))
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """TTFT ratio and throughput ratio against the baseline per cell, API CPU per request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = result["settings"]["baseline"]
    cells = [(w, c) for w, per_c in result["summary"].items() for c in per_c]
    differ = {w for w, *_ in _token_differences(result["summary"], base)}
    labels = [f"{w}\nc={c}" + ("\nTOKENS DIFFER" if w in differ else "") for w, c in cells]
    xs = list(range(len(cells)))
    fig, axes = plt.subplots(3, 1, figsize=(max(8, 1.3 * len(cells)), 11), sharex=True)
    for ax, name, title in (
        (axes[0], "ttft_ratio", f"median TTFT / {base}"),
        (axes[1], "throughput_ratio", f"request throughput / {base}"),
    ):
        comparisons = result["comparisons"].items()
        for k, (key, per_w) in enumerate(comparisons):
            variant = key.split("/")[0]
            ys, lo, hi = [], [], []
            for w, c in cells:
                e = per_w.get(w, {}).get(str(c), {})
                y = e.get(name) or float("nan")
                ci = e.get(name + "_ci90_by_servers") or e.get(name + "_ci90") or [y, y]
                ys.append(y)
                lo.append(y - ci[0])
                hi.append(ci[1] - y)
            offset = [x + 0.15 * (k - (len(comparisons) - 1) / 2) for x in xs]
            ax.errorbar(offset, ys, yerr=[lo, hi], fmt="o", capsize=4, label=key,
                        color=COLORS.get(variant))  # fmt: skip
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(title + " (median of pairs, 90% interval)")
        ax.legend(fontsize=8)
    variants = result["settings"]["variants"]
    width = 0.8 / len(variants)
    for k, v in enumerate(variants):
        ys = [result["summary"][w][str(c)].get(v, {}).get("api_cpu_ms_per_req") for w, c in cells]
        axes[2].bar([x + width * (k - (len(variants) - 1) / 2) for x in xs],
                    [y or 0 for y in ys], width, label=v, color=COLORS.get(v))  # fmt: skip
    axes[2].set_title("API-server CPU ms per request (median over repetitions)")
    axes[2].legend(fontsize=8)
    axes[2].set_xticks(xs, labels, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
