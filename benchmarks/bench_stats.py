"""The statistics of the overhead benchmark: round order, pairing, bootstrap intervals, targets.

Pure functions over the rounds `bench.py` records (one dict per `vllm bench serve` run: variant,
repetition, concurrency, the server instance it ran on, vLLM's figures and CPU per request).
A comparison pairs each round of a variant with the baseline's round of the same repetition and
concurrency (measured minutes apart at most) and reports the median of the per-pair figures with
two 90% percentile-bootstrap intervals: one resampling pairs, one resampling server pairs (pairs
measured on the same two servers share those servers' lasting speed). ``pool`` merges runs of the
same settings into one result, keeping pairs and server pairs within their run.
"""

from __future__ import annotations

import itertools
import random
import statistics
from typing import Any

BASELINE = "vllm"
CALIBRATION = "vllm-b"  # the baseline's command again: an A/A arm
ORDER_DESIGN = "balanced-shuffle"
# Per (variant, concurrency): medians over repetitions of these round fields.
SUMMARY_FIELDS = (
    "request_throughput", "output_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms",
    "median_e2el_ms", "api_cpu_ms_per_req", "engine_cpu_ms_per_req", "client_cpu_ms_per_req",
)  # fmt: skip
PAIR_FIELDS = (
    "throughput_ratio", "ttft_diff_ms", "tpot_ratio", "api_cpu_ms_diff", "api_cpu_ratio",
    "engine_cpu_ratio",
)  # fmt: skip
# Settings that must agree for runs to be pooled.
POOL_KEYS = (
    "variants", "baseline", "concurrency", "prompts", "input_len", "output_len", "image",
    "schedule", "cpu_layout", "order", "cohort_reps",
)  # fmt: skip
TARGETS = {
    "vl-serve": {
        "throughput_ratio_min": 0.98,
        "ttft_diff_ms_max": 2.0,
        "note": "vl-serve (parser + middleware) vs bare vllm, every concurrency",
    },
    "reasoning": {
        "concurrency": 16,
        "throughput_ratio_min": 0.97,
        "tpot_ratio_max": 1.05,
        "note": "vl-serve with parser vs bare vllm without parser at concurrency 16",
    },
}


def round_orders(
    variants: list[str], reps: int, n_concurrency: int, seed: int
) -> list[list[list[str]]]:
    """``[concurrency index][rep]``: the order in which the variants are measured.

    Per concurrency, every ordering of the variants is used equally often (whole sets of them,
    then distinct ones drawn for the remainder), shuffled with ``seed``: each variant is measured
    equally often in each position and after each other variant (exactly so when the
    repetitions are a multiple of the number of orderings: 2 for two variants, 6 for three).
    """
    rng = random.Random(seed)
    perms = [list(p) for p in itertools.permutations(variants)]
    out = []
    for _ in range(n_concurrency):
        whole, rest = divmod(reps, len(perms))
        seq = perms * whole + rng.sample(perms, rest)
        rng.shuffle(seq)
        out.append(seq)
    return out


def _median(values: list[Any]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def summarize(rounds: list[dict[str, Any]], variants: list[str], concs: list[int]) -> Any:
    """``[variant][concurrency]``: the median over repetitions of each of ``SUMMARY_FIELDS``."""
    summary: dict[str, dict[str, Any]] = {v: {} for v in variants}
    for v, c in itertools.product(variants, concs):
        if rs := [r for r in rounds if r["variant"] == v and r["concurrency"] == c]:
            summary[v][str(c)] = {
                "rounds": len(rs),
                **{f: _median([r.get(f) for r in rs]) for f in SUMMARY_FIELDS},
                "completed": sum(r.get("completed", 0) for r in rs),
                "failed": sum(r.get("failed", 0) for r in rs),
            }
    return summary


def bootstrap_ci(values: list[float], level: float = 0.90, n: int = 2000) -> list[float] | None:
    """Percentile-bootstrap interval of the median of ``values`` (seeded: same input, same
    interval); None below three values."""
    if len(values) < 3:
        return None
    return cluster_bootstrap_ci([[v] for v in values], level, n, min_clusters=3)


def cluster_bootstrap_ci(
    clusters: list[list[float]], level: float = 0.90, n: int = 2000, min_clusters: int = 5
) -> list[float] | None:
    """Percentile-bootstrap interval of the median of all values, resampling whole clusters
    (the pairs measured on the same servers) instead of single values; None below
    ``min_clusters`` (too few to resample)."""
    if len(clusters) < min_clusters:
        return None
    rng = random.Random(0)
    medians = sorted(
        statistics.median([v for c in rng.choices(clusters, k=len(clusters)) for v in c])
        for _ in range(n)
    )
    lo = int(n * (1 - level) / 2)
    return [medians[lo], medians[n - 1 - lo]]


def _pair(r: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One round of a variant against the baseline's round of the same rep and concurrency."""
    pair = {
        "rep": r["rep"],
        "servers": [r["instance"], b["instance"]] if "instance" in r and "instance" in b else None,
        "throughput_ratio": r["request_throughput"] / b["request_throughput"],
        "ttft_diff_ms": r["median_ttft_ms"] - b["median_ttft_ms"],
        "tpot_ratio": r["median_tpot_ms"] / b["median_tpot_ms"],
    }
    if r.get("api_cpu_ms_per_req") and b.get("api_cpu_ms_per_req"):
        pair["api_cpu_ms_diff"] = r["api_cpu_ms_per_req"] - b["api_cpu_ms_per_req"]
        pair["api_cpu_ratio"] = r["api_cpu_ms_per_req"] / b["api_cpu_ms_per_req"]
    if r.get("engine_cpu_ms_per_req") and b.get("engine_cpu_ms_per_req"):
        pair["engine_cpu_ratio"] = r["engine_cpu_ms_per_req"] / b["engine_cpu_ms_per_req"]
    return pair


def compare(
    rounds: list[dict[str, Any]], variant: str, base: str, concs: list[int]
) -> dict[str, Any]:
    """``[concurrency]``: medians of the per-pair figures of ``variant`` against ``base``, their
    intervals (``*_ci90``; ``*_ci90_by_servers`` where every pair records its servers) and the
    pairs."""
    needed = ("request_throughput", "median_ttft_ms", "median_tpot_ms")
    out: dict[str, Any] = {}
    for c in concs:
        base_by_rep = {
            x["rep"]: x for x in rounds if x["variant"] == base and x["concurrency"] == c
        }
        pairs = []
        for r in rounds:
            b = base_by_rep.get(r["rep"]) if r["variant"] == variant else None
            if r["concurrency"] != c or b is None:
                continue
            if all(b.get(f) and r.get(f) for f in needed):
                pairs.append(_pair(r, b))
        if not pairs:
            continue
        entry: dict[str, Any] = {f: _median([p.get(f) for p in pairs]) for f in PAIR_FIELDS}
        clustered = all(p["servers"] is not None for p in pairs)
        by_servers: dict[str, list[dict[str, Any]]] = {}
        for p in pairs if clustered else ():
            by_servers.setdefault(str(p["servers"]), []).append(p)
        for f in ("throughput_ratio", "ttft_diff_ms"):
            entry[f + "_ci90"] = bootstrap_ci([p[f] for p in pairs])
            if clustered:
                entry[f + "_ci90_by_servers"] = cluster_bootstrap_ci(
                    [[p[f] for p in ps] for ps in by_servers.values()]
                )
        entry["server_pairs"] = len(by_servers) if clustered else None
        entry["pairs"] = pairs
        out[str(c)] = entry
    return out


def compare_all(
    rounds: list[dict[str, Any]], variants: list[str], base: str, concs: list[int]
) -> dict[str, Any]:
    """Every variant against ``base``; with the A/A arm also ``base`` against it (which of two
    identical arms is called the baseline is arbitrary); vl-serve against vLLM's own parser
    (``vllm-qwen3``) when both ran."""
    out = {f"{v}/{base}": compare(rounds, v, base, concs) for v in variants if v != base}
    if base == BASELINE and CALIBRATION in variants:
        out[f"{base}/{CALIBRATION}"] = compare(rounds, base, CALIBRATION, concs)
    if "vl-serve" in variants and "vllm-qwen3" in variants:
        out["vl-serve/vllm-qwen3"] = compare(rounds, "vl-serve", "vllm-qwen3", concs)
    return out


def _against(per: dict[str, Any], t: dict[str, Any]) -> dict[str, Any]:
    """Each concurrency's per-pair medians against the throughput and TTFT thresholds ``t``."""
    out = {}
    for c, cmp in per.items():
        out[c] = {
            **{
                f + suffix: cmp.get(f + suffix)
                for f in ("throughput_ratio", "ttft_diff_ms")
                for suffix in ("", "_ci90", "_ci90_by_servers")
            },
            "throughput_ratio_ok": cmp["throughput_ratio"] >= t["throughput_ratio_min"],
            "ttft_diff_ok": cmp["ttft_diff_ms"] <= t["ttft_diff_ms_max"],
        }
    return out


def _all_ok(per_concurrency: dict[str, Any]) -> bool:
    return all(e["throughput_ratio_ok"] and e["ttft_diff_ok"] for e in per_concurrency.values())


def targets(comparisons: dict[str, Any]) -> dict[str, Any]:
    """Where the figures stand against ``TARGETS`` (reported, never asserted).

    With the A/A arm in the run the vl-serve thresholds are applied to it as well, both ways
    round (``calibration``, ``calibration-swapped``): whether two servers that differ in
    nothing would pass them at the same sample size."""
    out: dict[str, Any] = {}
    vs = comparisons.get(f"vl-serve/{BASELINE}")
    if vs:
        t = TARGETS["vl-serve"]
        per = _against(vs, t)
        out["vl-serve"] = {**t, "per_concurrency": per, "all_ok": _all_ok(per)}
        t = TARGETS["reasoning"]
        at = vs.get(str(t["concurrency"]))
        if at:
            out["reasoning"] = {
                **t,
                "throughput_ratio": at["throughput_ratio"],
                "throughput_ratio_ci90": at.get("throughput_ratio_ci90"),
                "tpot_ratio": at["tpot_ratio"],
                "throughput_ratio_ok": at["throughput_ratio"] >= t["throughput_ratio_min"],
                "tpot_ok": at["tpot_ratio"] <= t["tpot_ratio_max"],
            }
    for key, name, note in (
        (f"{CALIBRATION}/{BASELINE}", "calibration", "the baseline again"),
        (f"{BASELINE}/{CALIBRATION}", "calibration-swapped", "the same arms swapped"),
    ):
        if aa := comparisons.get(key):
            t = {
                **TARGETS["vl-serve"],
                "note": f"{key} ({note}): the vl-serve thresholds applied to two servers that "
                "differ in nothing (A/A)",
            }
            per = _against(aa, t)
            out[name] = {**t, "per_concurrency": per, "all_ok": _all_ok(per)}
    return out


def transformers_ratio(summary: dict[str, Any], tf: Any) -> dict[str, Any] | None:
    """Request throughput of each variant per concurrency over the transformers baseline's."""
    if not tf or not tf.get("request_throughput"):
        return None
    return {
        v: {c: e["request_throughput"] / tf["request_throughput"] for c, e in per.items()}
        for v, per in summary.items()
    }


def cpu_clock(rounds: list[dict[str, Any]]) -> str | None:
    """How the rounds' API-server CPU was measured: one clock's name, "mixed", or None."""
    clocks = {r.get("api_cpu_clock") for r in rounds}
    if len(clocks) > 1:
        return "mixed"
    return clocks.pop() if clocks else None


def pool(results: list[dict[str, Any]], also: list[str] | None = None) -> dict[str, Any]:
    """Runs of the same settings as one result: every run's rounds, repetitions and server
    instances renumbered so that pairs and server pairs stay within their run, then summary,
    comparisons and targets as for one run. ``also``: extra ``VARIANT/REFERENCE`` comparisons
    (``extra_comparisons``, never a target); ``warnings``: what the pool mixes that its figures
    do not show. Raises ValueError for runs whose settings differ."""
    if not results:
        raise ValueError("nothing to pool")
    first = {k: results[0]["settings"].get(k) for k in POOL_KEYS}
    for res in results[1:]:
        other = {k: res["settings"].get(k) for k in POOL_KEYS}
        if other != first:
            raise ValueError(f"runs with different settings cannot be pooled: {first} != {other}")
    rounds: list[dict[str, Any]] = []
    offset = servers = 0
    for res in results:
        for r in res["rounds"]:
            rounds.append({**r, "rep": r["rep"] + offset})
            if "instance" in r:  # another run's servers are other servers
                rounds[-1]["instance"] = r["instance"] + servers
        offset += max((r["rep"] for r in res["rounds"]), default=-1) + 1
        servers += max((r.get("instance", 0) for r in res["rounds"]), default=0) + 1
    variants, concs = first["variants"], first["concurrency"]
    base = first["baseline"] or BASELINE
    comparisons = compare_all(rounds, variants, base, concs)
    extra = {}
    for name in also or []:
        variant, _, reference = name.partition("/")
        if variant not in variants or reference not in variants:
            raise ValueError(f"--also {name}: both must be variants of these runs ({variants})")
        extra[name] = compare(rounds, variant, reference, concs)
    warnings = []
    if len({r["environment"].get("git_commit") for r in results}) > 1:
        warnings.append("runs of different commits (see runs)")
    clocks = {r["settings"].get("api_cpu_clock") for r in results}
    if len(clocks) > 1:
        warnings.append(
            f"API-server CPU measured with different clocks: {sorted(map(str, clocks))}"
        )
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
        "summary": summarize(rounds, variants, concs),
        "comparisons": comparisons,
        "targets": targets(comparisons),
        "extra_comparisons": extra,
        "rounds": rounds,
        "warnings": warnings,
    }
