"""A `bench.py` result as text, as a JSON file and as a plot; re-plotting and pooling results.

    .venv/bin/python benchmarks/bench_report.py [RESULT.json] [-o PLOT.png]   # report, re-plot
    .venv/bin/python benchmarks/bench_report.py --pool RUN.json RUN.json ... \\
        [--also vl-serve/vllm-b] [-o POOLED.json]         # pool runs (bench_stats.pool)

The plot: request throughput and median TTFT per concurrency per variant (every round faintly),
and each variant's per-pair throughput ratio and TTFT difference against the baseline (median
and 90% interval: over server pairs where the rounds record their servers, else over pairs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_stats as st

COLORS = {"vllm": "tab:blue", "vl-serve": "tab:orange", "vllm-b": "tab:cyan"}
COLORS["vllm-qwen3"] = "tab:green"


def ci_text(cmp: dict[str, Any], field: str, fmt: str) -> str:
    """`` [lo, hi; lo, hi]``: the pair interval, then the server-pair one (each where known)."""
    parts = [
        f"{ci[0]:{fmt}}, {ci[1]:{fmt}}"
        for ci in (cmp.get(field + "_ci90"), cmp.get(field + "_ci90_by_servers"))
        if ci
    ]
    return f" [{'; '.join(parts)}]" if parts else " [too few pairs]"


def target_lines(result_targets: dict[str, Any]) -> list[str]:
    """One line per thresholded comparison: where each concurrency stands, then the verdict."""
    lines = []
    for name in ("vl-serve", "calibration", "calibration-swapped"):
        if not (entry := result_targets.get(name)):
            continue
        parts = []
        for c, e in entry["per_concurrency"].items():
            checks = (("throughput", e["throughput_ratio_ok"]), ("TTFT", e["ttft_diff_ok"]))
            missed = [label for label, ok in checks if not ok]
            parts.append(f"c={c} " + ("missed " + "+".join(missed) if missed else "ok"))
        lines.append(
            f"targets {name} (throughput >= x{entry['throughput_ratio_min']}, TTFT <= "
            f"+{entry['ttft_diff_ms_max']} ms, every concurrency): {', '.join(parts)} -> "
            + ("met" if entry["all_ok"] else "NOT met")
        )
    return lines


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(result: dict[str, Any]) -> str:
    """Per-variant medians, comparisons with their intervals, targets, the transformers ratio."""
    s, env = result["settings"], result["environment"]
    runs = f", {len(result['runs'])} runs pooled" if "runs" in result else ""
    wall = f", wall {result['wall_s']:.0f}s" if "wall_s" in result else ""
    lines = [
        f"{env.get('cpu_model')} ({env.get('cpus_usable')} cores), vLLM {env.get('vllm')}, "
        f"{s['reps']} reps{runs}{wall}",
        f"{'variant':<11} {'conc':>4} {'req/s':>7} {'out tok/s':>9} {'TTFT p50':>9} "
        f"{'TPOT p50':>9} {'CPU ms/req: api':>15} {'engine':>7}",
    ]
    for v, per in result["summary"].items():
        for c, e in per.items():
            cells = [
                f"{_num(e.get(f), spec):>{width}}{unit}"
                for f, spec, width, unit in (
                    ("request_throughput", ".2f", 7, ""),
                    ("output_throughput", ".1f", 9, ""),
                    ("median_ttft_ms", ".1f", 7, "ms"),
                    ("median_tpot_ms", ".2f", 7, "ms"),
                    ("api_cpu_ms_per_req", ".2f", 15, ""),
                    ("engine_cpu_ms_per_req", ".2f", 7, ""),
                )
            ]
            lines.append(f"{v:<11} {c:>4} " + " ".join(cells))
    shown = {**result["comparisons"], **(result.get("extra_comparisons") or {})}
    for key, per in shown.items():
        lines.append(f"{key}: median of per-pair figures [90% interval; by server pairs]")
        for c, cmp in per.items():
            servers = f" on {cmp['server_pairs']:>2} server pairs" if cmp["server_pairs"] else ""
            lines.append(
                f"  c={c:<3} pairs {len(cmp['pairs']):>2}{servers}  "
                f"throughput x{cmp['throughput_ratio']:.3f}"
                f"{ci_text(cmp, 'throughput_ratio', '.3f')}  "
                f"TTFT {cmp['ttft_diff_ms']:+.1f} ms{ci_text(cmp, 'ttft_diff_ms', '+.1f')}  "
                f"TPOT x{cmp['tpot_ratio']:.3f}  "
                f"API CPU/req {_num(cmp.get('api_cpu_ms_diff'), '+.2f')} ms"
            )
    lines.extend(target_lines(result.get("targets") or {}))
    tf = result.get("transformers_baseline") or {}
    if "request_throughput" in tf:
        lines.append(
            f"transformers generate(), sequential: {tf['request_throughput']:.3f} req/s, "
            f"{tf['output_throughput']:.1f} output tok/s"
        )
        for v, per in (result.get("transformers_ratio") or {}).items():
            ratios = ", ".join(f"c={c} x{r:.1f}" for c, r in per.items())
            lines.append(f"  {v} / transformers: {ratios}")
    lines.extend(f"note: {n}" for n in result.get("notes", []))
    lines.extend(f"warning: {w}" for w in result.get("warnings", []))
    return "\n".join(lines)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def dumps(result: dict[str, Any]) -> str:
    """Indented JSON with 5 significant digits and one line per round (small diffs, small files)."""
    result = _rounded(result)
    text = json.dumps({**result, "rounds": "@rounds@"}, indent=1, ensure_ascii=False)
    rows = ",\n".join("  " + json.dumps(r, separators=(", ", ": ")) for r in result["rounds"])
    return text.replace('"@rounds@"', "[\n" + rows + "\n ]" if rows else "[]") + "\n"


def write(result: dict[str, Any], path: Path) -> None:
    """``path`` (JSON) and the plot beside it (``.png``; skipped without matplotlib)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(result))
    try:
        plot(result, path.with_suffix(".png"))
    except ImportError as exc:
        print(f"no plot ({exc}); install matplotlib", file=sys.stderr)
    print(f"wrote {path} and {path.with_suffix('.png').name}")


def _interval_bars(ax: Any, per: dict[str, Any], field: str, **style: Any) -> None:
    xs = [int(c) for c in per]
    ys = [e[field] for e in per.values()]
    cis = [e.get(field + "_ci90_by_servers") or e.get(field + "_ci90") for e in per.values()]
    lo = [y - (ci or [y, y])[0] for y, ci in zip(ys, cis, strict=True)]
    hi = [(ci or [y, y])[1] - y for y, ci in zip(ys, cis, strict=True)]
    ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=4, **style)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_tp, ax_ttft, ax_ratio, ax_diff) = plt.subplots(1, 4, figsize=(20, 4.2))
    s = result["settings"]
    base = s.get("baseline", st.BASELINE)
    for variant, per in result["summary"].items():
        color = COLORS.get(variant)
        rounds = [r for r in result["rounds"] if r["variant"] == variant]
        for ax, key in ((ax_tp, "request_throughput"), (ax_ttft, "median_ttft_ms")):
            ax.plot([int(c) for c in per], [e[key] for e in per.values()], "o-", color=color,
                    label=variant)  # fmt: skip
            xr, yr = [r["concurrency"] for r in rounds], [r[key] for r in rounds]
            ax.scatter(xr, yr, s=10, alpha=0.35, color=color)
    tf = result.get("transformers_baseline") or {}
    if tf.get("request_throughput"):
        ax_tp.axhline(tf["request_throughput"], ls="--", color="gray",
                      label="transformers generate (sequential)")  # fmt: skip
    for key, per in result.get("comparisons", {}).items():
        variant, _, against = key.partition("/")
        if against == base and per:
            color = COLORS.get(variant)
            _interval_bars(ax_ratio, per, "throughput_ratio", color=color, label=f"{key}")
            _interval_bars(ax_diff, per, "ttft_diff_ms", color=color, label=f"{variant} - {base}")
    target = st.TARGETS["vl-serve"]
    for ax, null, limit, label in (
        (ax_ratio, 1.0, target["throughput_ratio_min"], f"target {target['throughput_ratio_min']}"),
        (ax_diff, 0.0, target["ttft_diff_ms_max"], f"target +{target['ttft_diff_ms_max']:g} ms"),
    ):
        ax.axhline(null, color="gray", lw=0.8)
        ax.axhline(limit, color="tab:red", ls="--", lw=0.8, label=label)
    for ax, title, unit in (
        (ax_tp, "request throughput", "requests/s"),
        (ax_ttft, "median time to first token", "ms"),
        (ax_ratio, f"throughput / {base} (per-pair median, 90% interval)", "ratio"),
        (ax_diff, f"median TTFT - {base} (per-pair median, 90% interval)", "ms"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(s["concurrency"], [str(c) for c in s["concurrency"]])
        ax.set_xlabel("concurrency (max in-flight requests)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_ttft.set_yscale("log")
    env = result["environment"]
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    default = Path(__file__).resolve().parent / "results" / "latest.json"
    p.add_argument("results", type=Path, nargs="*", default=[default])
    p.add_argument("--pool", action="store_true", help="pool the runs given into one result")
    p.add_argument("--also", action="append", default=[], metavar="VARIANT/REFERENCE",
                   help="with --pool: one more comparison of two variants")  # fmt: skip
    p.add_argument("-o", "--out", type=Path, help="the plot; with --pool: the pooled JSON")
    args = p.parse_args(argv)
    results = []
    for path in args.results:
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:  # missing, unreadable, not JSON
            print(f"bench_report: {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 2
    if not args.pool:
        if len(results) > 1 and args.out:
            p.error("-o takes one result (or --pool)")
        for path, result in zip(args.results, results, strict=True):
            print(report(result))
            plot(result, args.out or path.with_suffix(".png"))
        return 0
    try:
        pooled = st.pool(results, args.also)
    except ValueError as exc:  # runs that cannot be pooled, an --also that names no variant
        print(f"bench_report: {exc}", file=sys.stderr)
        return 2
    print(report(pooled))
    if args.out:
        write(pooled, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
